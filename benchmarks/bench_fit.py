"""Benchmark: fit a 1e5-step trace with both models in open loop (target < 1 s) and in closed loop
(target < 10 s).

The trace is the self-stabilisation map (docs/theory.md §4.1) at a fixed stepsize, with the
sharpness measured every 10 steps (0.3% noise) and the oscillation coordinate x recorded; a second
variant drops x so that the joint model uses the loss excess (two passes, see ``fit_trace``).
"open loop" times the two models alone (EOS alone and the joint model, closed forms with exact
Jacobians, numpy/scipy: no compilation), "fit_trace" adds the verdicts' piecewise fit. The
closed loop (constant rule on the joint model's reduced loss, one compiled ``lax.scan`` per
evaluation) is timed on its first call (compilation included) and a second call. The load
average is printed: the machine is shared, read the figures as such.

Run: ``.venv/bin/python benchmarks/bench_fit.py [--steps 100000] [--repeats 5] [--no-closed-loop]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import os

from eosmodel.fit import (
    JointModel,
    JointState,
    fit_eos_alone,
    fit_joint_open,
    fit_trace,
    oscillation_regressor,
    prepare,
    simulate_closed,
)
from eosmodel.fit._closed import zero_smooth_part
from eosmodel.trace import Trace


def make_trace(steps: int, *, with_x: bool = True, seed: int = 0) -> Trace:
    eta = 0.002
    run = simulate_closed(JointModel(1.0, 0.0, 4.0, 0.0, 0.0, zero_smooth_part()),
                          JointState(2 / eta - 5, 0.5, 0.0, 0.0), {"name": "constant", "stepsize": eta}, steps)
    lam, x = run.lam, run.x
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
    ap.add_argument("--no-closed-loop", action="store_true")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for label, with_x in (("x observable", True), ("loss observable", False)):
        trace = make_trace(args.steps, with_x=with_x)
        data = prepare(trace)

        def both():
            eos = fit_eos_alone(data)
            q, _ = oscillation_regressor(data, 101)
            return fit_joint_open(data, q, eos=eos)

        first, fit, joint = timed(both, args.repeats)
        _, full, report = timed(lambda: fit_trace(trace), max(1, args.repeats // 2))
        j = joint.physical
        print(f"open loop, {args.steps} steps, {label}: both models {fit:.3f} s (median of "
              f"{args.repeats}; first call {first:.3f} s) [target < 1 s]; fit_trace with verdicts "
              f"{full:.3f} s  [alpha={j['alpha']:.3f} beta={j['beta']:.3f} (true 1, 4); "
              f"verdict: {report.verdict}]")
    if not args.no_closed_loop:
        trace = make_trace(args.steps)
        first, fit, report = timed(lambda: fit_trace(trace, closed_loop="auto"), 1)
        c = report.models["joint_closed"]
        print(f"closed loop (constant rule), {args.steps} steps: fit_trace first call {first:.3f} s "
              f"(compilation included), second call {fit:.3f} s [target < 10 s]; "
              f"alpha={c.params['alpha']:.3f} beta={c.params['beta']:.3f}")


if __name__ == "__main__":
    main()
