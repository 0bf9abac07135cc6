"""Benchmark: fit a 1e5-step trace with both models in open loop (target: < 2 s after warm-up).

The trace is the self-stabilisation map (science.md §4.1) at a fixed stepsize, with the sharpness
measured every 10 steps (0.3% noise) and the oscillation coordinate x recorded; a second variant
drops x so that the joint model uses the loss excess (two passes, see ``fit_trace``). The open-loop
fits are numpy/scipy (closed-form EOS-alone recursion, linear teacher-forced joint fit): there is
no compilation, so "warm-up" is the first call (imports, allocations) and "fit" the median of the
next calls. The optional closed-loop fit (``--closed-loop``) compiles a ``lax.scan``; its compile
time is the first call minus a later one.

Run: ``.venv/bin/python benchmarks/bench_fit.py [--steps 100000] [--repeats 5] [--closed-loop]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from eosmodel.fit import fit_trace, simulate_joint
from eosmodel.trace import Trace


def make_trace(steps: int, *, with_x: bool = True, seed: int = 0) -> Trace:
    eta = 0.002
    lam, _, x = simulate_joint(1.0, 4.0, 2 / eta - 5, 0.5, {"name": "constant", "stepsize": eta}, steps)
    rng = np.random.default_rng(seed)
    sharp = lam * (1 + 0.003 * rng.standard_normal(steps))
    sharp[np.arange(steps) % 10 != 0] = np.nan
    cols = {"step": np.arange(steps), "stepsize": np.full(steps, eta), "sharpness": sharp,
            "loss": -(1.0 / 4.0) * (lam - lam[0]) + 0.5 * lam * x * x}
    if with_x:
        cols["x"] = x
    return Trace.from_columns(cols, config={"tuner": {"name": "constant", "stepsize": eta}})


def timed(fn, repeats: int) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--closed-loop", action="store_true")
    args = ap.parse_args()
    for label, with_x in (("x observable", True), ("loss observable", False)):
        trace = make_trace(args.steps, with_x=with_x)
        first, fit, report = timed(lambda: fit_trace(trace), args.repeats)
        j = report.models["joint"].physical
        print(f"open loop, {args.steps} steps, {label}: warm-up (first call) {first:.3f} s, "
              f"fit (median of {args.repeats}) {fit:.3f} s  [alpha={j['alpha']:.3f} beta={j['beta']:.3f} "
              f"(true 1, 4); verdict: {report.verdict}]")
    if args.closed_loop:
        trace = make_trace(args.steps)
        first, fit, report = timed(lambda: fit_trace(trace, closed_loop="auto"), 1)
        print(f"closed loop (constant rule), {args.steps} steps: first call {first:.3f} s "
              f"(compile ~ {max(first - fit, 0):.3f} s), fit {fit:.3f} s")


if __name__ == "__main__":
    main()
