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

Options: --n (examples, default 5000), --repeats (timed repetitions, default 5), --quick (small).
Timings are medians of repetitions after compilation; other processes on the machine add noise.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.sharpness import SharpnessTracker, hvp, top_eigenpairs
from eosmodel.train import init_model, make_data_parallel, make_loss_fn, make_model
from eosmodel.train._loop import TrainState, build_step_fns, chunk_mean, host_layout
from eosmodel.tuners import make_tuner


def _time(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls (it must block until its result is ready).

    The minimum, not the median: on a shared 2-core machine the other processes only ever add time,
    and both sides of every ratio below are measured the same way.
    """
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def dense_flops(n: int, widths: list[int]) -> int:
    """Matmul FLOPs of one forward+backward pass of an MLP with layer widths ``widths`` on n examples."""
    total = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        total += (4 if i == 0 else 6) * n * a * b
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="n=500, 2 repeats (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 500, 2
    n = args.n
    print(f"devices: {jax.devices()}  n={n}")

    # ------------------------------------------------------------------ (a) matmul reference
    k = 4096
    a = jax.random.normal(jax.random.key(0), (k, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, k), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    t_mm = _time(lambda: matmul(a, b).block_until_ready(), args.repeats)
    mm_rate = 2 * k**3 / t_mm
    print(f"(a) 4096x4096 f32 matmul: {t_mm * 1e3:.1f} ms, {mm_rate / 1e9:.1f} GFLOP/s")

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

    t_gd = _time(lambda: jax.block_until_ready(bare_step(params, xd, yd)), args.repeats)
    flops = dense_flops(n, [3072, 200, 200, 10])
    rate = flops / t_gd
    print(
        f"(a) GD step fc-tanh 3072-200-200-10, N={n}: {flops / 1e9:.2f} GFLOP in {t_gd * 1e3:.1f} ms = "
        f"{rate / 1e9:.1f} GFLOP/s = {100 * rate / mm_rate:.0f}% of the matmul rate (target >= 70%)"
    )

    # ------------------------------------------------------------------ (b) loop overhead
    dp = make_data_parallel(1)
    chunks = host_layout((x, y), n, dp, "training set")
    steps = 5

    def loop_time(sharp_every: int) -> float:
        sharp = {"every": sharp_every, "k": 1, "tol": 1e-3, "max_iters": 40}
        tx = make_tuner({"name": "constant", "stepsize": 0.01})
        keys = {"data": jax.random.key(1), "step": jax.random.key(2)}
        fns_ = build_step_fns(fns=fns, tx=tx, dp=dp, keys=keys, n_train=n, batch_size=0, chunk_size=n, sharpness=sharp)
        tracker = SharpnessTracker(k=1, tol=1e-3, max_iters=40).init(params, jax.random.key(3)) if sharp_every else ()
        state = TrainState(params, {}, tx.init(params), tracker, jnp.zeros((0,), jnp.int32), jnp.zeros((), jnp.int32))
        # Warm up (compile, and the tracker's first cold estimate), then time chunks of `steps`.
        state, _ = jax.block_until_ready(fns_.run_chunk(state, chunks, chunks, np.int32(steps), buffer=steps))
        holder = {"s": state}

        def go():
            holder["s"], rec = fns_.run_chunk(holder["s"], chunks, chunks, np.int32(steps), buffer=steps)
            jax.block_until_ready(rec)
            holder["hvps"] = float(np.mean(np.asarray(rec.get("hvps", np.zeros(1)))))

        t = _time(go, max(1, args.repeats // 2)) / steps
        return t, holder.get("hvps", 0.0)

    t_loop, _ = loop_time(0)
    print(
        f"(b) training loop step (constant tuner, records, no sharpness): {t_loop * 1e3:.1f} ms vs bare jitted "
        f"GD step {t_gd * 1e3:.1f} ms: overhead {100 * (t_loop / t_gd - 1):+.1f}% (target <= 10%)"
    )

    # ------------------------------------------------------------------ (c) sharpness cost
    t_sharp, hvps = loop_time(1)
    print(
        f"(c) loop step with warm-started sharpness at every step: {t_sharp * 1e3:.1f} ms; sharpness costs "
        f"{(t_sharp - t_loop) / t_gd:.2f} GD steps per step ({hvps:.1f} HVPs on average; target <= 8)"
    )
    matvec_data = chunks

    @jax.jit
    def cold(p, key):
        mv = lambda v: chunk_mean(lambda bt: hvp(fns.loss, p, bt, v), matvec_data)  # noqa: E731
        res = top_eigenpairs(mv, p, 1, key=key, tol=1e-3, max_iters=40)
        return res.eigenvalues, res.num_hvps

    counter = {"i": 0}

    def go_cold():
        counter["i"] += 1
        counter["out"] = jax.block_until_ready(cold(params, jax.random.key(counter["i"])))

    t_cold = _time(go_cold, max(1, args.repeats // 2))
    print(
        f"(c) cold-start Lanczos at every step: {t_cold * 1e3:.1f} ms = {t_cold / t_gd:.2f} GD steps "
        f"({int(counter['out'][1])} HVPs, tol 1e-3)"
    )


if __name__ == "__main__":
    main()
