"""Sweep throughput: the self-stabilisation map with a tuner rule in the loop, vmapped.

Measures trajectory-steps per second of :func:`eosmodel.dynamics.sweep` (float32, >= 1e5
trajectories, summaries reduced on the fly) with the constant and the oracle rule, against a
vectorised NumPy version of the same map and summaries, and a plain Python loop over a few
trajectories (both extrapolated per trajectory-step); then with Armijo and Polyak in the loop.

    .venv/bin/python benchmarks/bench_sweep.py            # ~1-2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_sweep.py --quick    # smaller, for a smoke test

Prints lines such as ``const_jax 6.1e8 traj-steps/s; numpy 1.2e8 (5.1x); python 3.0e5 (2000x)``.
Timings are the best of ``--repeats`` runs after a compilation run.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

ALPHA, BETA, LAMBDA0, INIT_X = 1.0, 1.0, 15.0, 0.5


def best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def jax_rate(rule: str, grid: dict, steps: int, repeats: int, fixed: dict | None = None) -> float:
    from eosmodel.dynamics import sweep

    fixed = {"alpha": ALPHA, "beta": BETA, "lambda0": LAMBDA0, "init_x": INIT_X, **(fixed or {})}
    n = int(np.prod([len(v) for v in grid.values()]))

    def run():
        sweep("self_stabilization", rule, grid, steps=steps, fixed=fixed)

    run()  # compile
    return n * steps / best_time(run, repeats)


def numpy_constant(eta: np.ndarray, steps: int, threshold: float = 1e15) -> dict:
    """The constant-rule sweep of the same map and summaries, vectorised over trajectories.

    As :func:`eosmodel.dynamics.sweep`: float32, runs not frozen on divergence (the first failing
    step is recorded), the six window summaries accumulated only over the last ``steps // 2``.
    """
    f32 = np.float32
    eta = eta.astype(f32)
    x = np.full_like(eta, f32(INIT_X))
    lam = np.full_like(eta, f32(LAMBDA0))
    failed_at = np.full(eta.shape, -1, np.int32)
    window = steps // 2
    acc = [np.zeros_like(eta) for _ in range(4)]
    lo, hi = np.full_like(eta, np.inf), np.full_like(eta, -np.inf)
    alpha, half_beta, one, thr = f32(ALPHA), f32(0.5 * BETA), f32(1), f32(threshold)
    with np.errstate(all="ignore"):
        for t in range(steps):
            ns = eta * lam
            x2 = x * x
            if t >= steps - window:
                acc[0] += ns
                acc[1] += lam
                acc[2] += eta
                acc[3] += x2
                np.minimum(lo, ns, out=lo)
                np.maximum(hi, ns, out=hi)
            x = (one - ns) * x
            lam = lam + eta * (alpha - half_beta * x2)
            bad = ~((np.abs(x) < thr) & (np.abs(lam) < thr))
            failed_at[bad & (failed_at < 0)] = t
    alive = failed_at < 0
    return {"mean_normalized_sharpness": np.where(alive, acc[0] / window, np.nan),
            "diverged_at": failed_at}


def python_constant(eta: float, steps: int, threshold: float = 1e15) -> float:
    """One trajectory of the same map and summaries in plain Python floats."""
    x, lam, failed_at = INIT_X, LAMBDA0, -1
    window = steps // 2
    acc = [0.0, 0.0, 0.0, 0.0]
    lo, hi = math.inf, -math.inf
    for t in range(steps):
        ns = eta * lam
        if t >= steps - window:
            acc[0] += ns
            acc[1] += lam
            acc[2] += eta
            acc[3] += x * x
            lo, hi = min(lo, ns), max(hi, ns)
        x, lam = (1.0 - ns) * x, lam + eta * (ALPHA - 0.5 * BETA * x * x)
        if failed_at < 0 and not (abs(x) < threshold and abs(lam) < threshold):
            failed_at = t
    return acc[0] / window if failed_at < 0 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=102_400)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args()
    n, steps = args.trajectories, args.steps
    numpy_steps, python_traj = 200, 8
    tuned_n, tuned_steps = n, max(steps // 4, 2)
    if args.quick:
        n, steps, numpy_steps, python_traj, args.repeats = 4096, 400, 50, 2, 1
        tuned_n, tuned_steps = 4096, 100

    load0 = os.getloadavg()[0]
    eta = np.linspace(0.01, 0.2, n)
    const = jax_rate("constant", {"eta": eta}, steps, args.repeats)
    oracle = jax_rate("oracle", {"sigma": np.linspace(0.5, 2.5, n)}, steps, args.repeats)

    t_np = best_time(lambda: numpy_constant(eta, numpy_steps), max(1, args.repeats - 1))
    numpy_rate = n * numpy_steps / t_np
    etas = eta[:: max(1, n // python_traj)][:python_traj]
    t_py = best_time(lambda: [python_constant(float(e), steps) for e in etas], 1)
    python_rate = len(etas) * steps / t_py

    print(f"# self-stabilisation map, float32, {n} trajectories x {steps} steps "
          f"(numpy: {numpy_steps} steps, python: {len(etas)} trajectories; per trajectory-step)")
    print(f"const_jax {const:.2g} traj-steps/s; numpy {numpy_rate:.2g} ({const / numpy_rate:.1f}x); "
          f"python {python_rate:.2g} ({const / python_rate:.0f}x)")
    print(f"oracle_jax {oracle:.2g} traj-steps/s")

    c_grid = {"c": np.linspace(0.05, 0.9, tuned_n)}
    armijo = jax_rate("armijo", c_grid, tuned_steps, 1)
    polyak = jax_rate("polyak", c_grid, tuned_steps, 1, fixed={"sharpening_limit": 60.0})
    print(f"armijo_jax {armijo:.2g} traj-steps/s; polyak_jax {polyak:.2g} traj-steps/s "
          f"({tuned_n} trajectories x {tuned_steps} steps)")
    print(f"# load average (1 min) {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
