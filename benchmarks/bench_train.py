"""Benchmark of the training loop (prints its figures; run: python benchmarks/bench_train.py).

(a) Full-batch GD step of the fc-tanh MLP 3072-200-200-10 (656,810 parameters) on 5,000
    CIFAR-shaped random examples with MSE: FLOPs of the dense layers counted exactly, achieved
    FLOP rate, and the fraction of the rate of a 4096x4096 float32 matmul measured in the same run.
(b) The training loop's per-step cost (compiled chunk of steps with the tuner, records, no
    sharpness) vs the bare jitted gradient step.
(c) Sharpness tracked at every step with the warm-started tracker, in units of a GD step, and the
    cost of a cold (random-start) Lanczos estimate at every step for comparison.

FLOP count of one GD step, for a dense layer a -> b on N examples (matmuls only; bias, tanh and
the loss are O(N·b) and left out):
    forward x W:                 2·N·a·b
    backward dL/dW = xᵀ δ:       2·N·a·b
    backward dL/dx = δ Wᵀ:       2·N·a·b   (not for the first layer: inputs need no gradient)
so 4·N·3072·200 + 6·N·200·200 + 6·N·200·10 = 13.55 GFLOP at N = 5,000.

Options: --n (examples, default 5000), --repeats (timed rounds, default 8), --quick (small).
Timings are the best of repetitions after compilation (other processes on a shared machine only
ever add time); in (a) the matmul and the step alternate, round by round, and the fraction is also
printed per round.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.sharpness import SharpnessTracker, hvp, top_eigenpairs
from eosmodel.train import init_model, make_data_parallel, make_loss_fn, make_model
from eosmodel.train._loop import TrainState, build_step_fns, chunk_mean, host_layout
from eosmodel.tuners import make_tuner


def _time_rounds(fns: dict, rounds: int) -> dict[str, np.ndarray]:
    """Wall times of each ``fns[name]()``, called in turn, round after round.

    Each call must block until its result is ready; one warm-up call of each (compilation) comes
    first. Interleaving puts every side of every ratio under the same conditions: on a shared
    machine a slow spell hits one round of all of them rather than all repetitions of one.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: np.asarray(t) for name, t in times.items()}


def _spread(x: np.ndarray) -> str:
    return f"per round: median {np.median(x):.2f}, min {np.min(x):.2f}, max {np.max(x):.2f}"


def dense_flops(n: int, widths: list[int]) -> int:
    """Matmul FLOPs of one forward+backward pass of an MLP with layer widths ``widths`` on n examples."""
    total = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        total += (4 if i == 0 else 6) * n * a * b
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="n=500, 2 rounds (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 500, 2
    n = args.n
    print(f"devices: {jax.devices()}  n={n}  load average {os.getloadavg()} (cores {os.cpu_count()}; shared machine: "
          "per-round spreads below)")

    # ------------------------------------------------------------------ set-up
    k = 4096
    a = jax.random.normal(jax.random.key(0), (k, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, k), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    model = make_model({"name": "fc-tanh", "width": 200, "depth": 2}, 10)
    fns = make_loss_fn(model, {"name": "mse"}, 10)
    params = init_model(model, jax.random.key(0), x[:1])["params"]
    xd, yd = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def bare_step(p, xb, yb):
        g = jax.grad(fns.loss)(p, (xb, yb))
        return jax.tree.map(lambda w, gw: w - 0.01 * gw, p, g)

    dp = make_data_parallel(1)
    chunks = host_layout((x, y), n, dp, "training set")
    steps = 5  # steps per compiled chunk of the training loop

    def loop_chunk(sharp_every: int):
        """A callable running one compiled chunk of ``steps`` loop steps (state carried across calls)."""
        sharp = {"every": sharp_every, "k": 1, "tol": 1e-3, "max_iters": 40}
        tx = make_tuner({"name": "constant", "stepsize": 0.01})
        keys = {"data": jax.random.key(1), "step": jax.random.key(2)}
        fns_ = build_step_fns(fns=fns, tx=tx, dp=dp, keys=keys, n_train=n, batch_size=0, chunk_size=n, sharpness=sharp,
                              subset_is_train=True)
        tracker = SharpnessTracker(k=1, tol=1e-3, max_iters=40).init(params, jax.random.key(3)) if sharp_every else ()
        holder = {
            "s": TrainState(params, {}, tx.init(params), tracker, jnp.zeros((0,), jnp.int32), jnp.zeros((), jnp.int32)),
            "hvps": [],
        }

        def go():
            holder["s"], rec = fns_.run_chunk(holder["s"], chunks, chunks, np.int32(steps), buffer=steps)
            jax.block_until_ready(rec)
            if "hvps" in rec:
                holder["hvps"].append(np.asarray(rec["hvps"]))

        # The first call compiles and makes the tracker's first (cold) estimate.
        go()
        holder["hvps"].clear()
        return go, holder

    loop_plain, _ = loop_chunk(0)
    loop_sharp, sharp_holder = loop_chunk(1)

    @jax.jit
    def cold(p, key):
        mv = lambda v: chunk_mean(lambda bt: hvp(fns.loss, p, bt, v), chunks)  # noqa: E731
        res = top_eigenpairs(mv, p, 1, key=key, tol=1e-3, max_iters=40)
        return res.eigenvalues, res.num_hvps

    cold_out = {"i": 0, "hvps": []}

    def go_cold():
        cold_out["i"] += 1
        _, m = jax.block_until_ready(cold(params, jax.random.key(cold_out["i"])))
        cold_out["hvps"].append(int(m))

    t = _time_rounds(
        {"matmul": lambda: matmul(a, b).block_until_ready(),
         "gd": lambda: jax.block_until_ready(bare_step(params, xd, yd)),
         "loop": loop_plain, "loop_sharp": loop_sharp, "cold": go_cold},
        rounds=args.repeats,
    )
    t["loop"] /= steps
    t["loop_sharp"] /= steps
    best = {name: float(v.min()) for name, v in t.items()}

    # ------------------------------------------------------------------ (a) FLOP rate
    flops = dense_flops(n, [3072, 200, 200, 10])
    mm_rate, rate = 2 * k**3 / best["matmul"], flops / best["gd"]
    frac = (flops / t["gd"]) / (2 * k**3 / t["matmul"])
    print(f"(a) 4096x4096 f32 matmul: {best['matmul'] * 1e3:.1f} ms, {mm_rate / 1e9:.1f} GFLOP/s")
    print(
        f"(a) GD step fc-tanh 3072-200-200-10, N={n}: {flops / 1e9:.2f} GFLOP in {best['gd'] * 1e3:.1f} ms = "
        f"{rate / 1e9:.1f} GFLOP/s = {100 * rate / mm_rate:.0f}% of the matmul rate "
        f"(target >= 70%; fraction {_spread(frac)})"
    )

    # ------------------------------------------------------------------ (b) loop overhead
    over = t["loop"] / t["gd"] - 1
    print(
        f"(b) training loop step (constant tuner, records, no sharpness): {best['loop'] * 1e3:.1f} ms vs bare "
        f"jitted GD step {best['gd'] * 1e3:.1f} ms: overhead {100 * (best['loop'] / best['gd'] - 1):+.1f}% "
        f"(target <= 10%; overhead {_spread(100 * over)} %)"
    )

    # ------------------------------------------------------------------ (c) sharpness cost
    cost = (t["loop_sharp"] - t["loop"]) / t["gd"]
    hvps = float(np.mean(np.concatenate(sharp_holder["hvps"])))
    print(
        f"(c) loop step with warm-started sharpness at every step: {best['loop_sharp'] * 1e3:.1f} ms; sharpness "
        f"costs {(best['loop_sharp'] - best['loop']) / best['gd']:.2f} GD steps per step ({hvps:.1f} HVPs on "
        f"average; target <= 3; {_spread(cost)})"
    )
    print(f"load average at end {os.getloadavg()}")
    cold_cost = t["cold"] / t["gd"]
    print(
        f"(c) cold-start Lanczos at every step: {best['cold'] * 1e3:.1f} ms = {best['cold'] / best['gd']:.2f} GD "
        f"steps ({np.mean(cold_out['hvps'][1:]):.1f} HVPs on average, tol 1e-3; {_spread(cold_cost)})"
    )


if __name__ == "__main__":
    main()
