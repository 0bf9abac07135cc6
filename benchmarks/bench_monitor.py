"""Overhead of eosmodel.Monitor in a user's own loop, against the same loop without it and against
the trainer's own tracking (run: python benchmarks/bench_monitor.py [--n 5000] [--steps 20]).

Model: the fc-tanh benchmark MLP 3072-200-200-10 (656,810 parameters), MSE, full-batch GD, on n
CIFAR-shaped random examples (synthetic data of CIFAR-10's shape: the cost does not depend on the
pixel values; n = 5000 by default, Cohen et al.'s size). Smaller n (1000, 500) shows the regime
where a monitor's per-call costs (one dispatch per step, the estimate's temporary buffers allocated
at each call, which the trainer's compiled loop reuses across steps) weigh against a step of a
few milliseconds. Measured, in interleaved rounds (each round times every variant once, so a slow
spell of the machine hits all of them):

* bare: the user's loop, one jitted value_and_grad + optax.sgd update per step;
* monitor every 10 / every 1: the same loop with ``monitor.record(...)`` each step (the sharpness
  estimated every 10th step / every step; warm-started tracker, tol 1e-3);
* monitor ..., fused: the loss and gradient from ``monitor.value_and_grad`` (full batch on the
  monitored data: one linearisation serves the gradient and the estimate's HVPs), then ``record``;
* trainer: ``eosmodel train``'s compiled loop (``build_step_fns``) without and with sharpness at
  every step, for the target "at cadence 1, no more than the trainer's tracking costs".

Printed: ms per step (median over rounds), the ratio of each to the bare step, and the tracking
cost per step in bare steps (monitor at cadence 1 vs the trainer). Figures are ratios measured in
the same run; the load average is printed: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eosmodel.monitor import Monitor
from eosmodel.sharpness import SharpnessTracker
from eosmodel.train import init_model, make_data_parallel, make_loss_fn, make_model
from eosmodel.train._loop import TrainState, build_step_fns, host_layout
from eosmodel.tuners import make_tuner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="examples (default 5000)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed segment (a multiple of 10)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, steps, lr = args.n, args.steps, 0.01
    print(f"devices: {jax.devices()}  n={n}  steps per segment={steps}  rounds={args.rounds}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine: noisy)")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    model = make_model({"name": "fc-tanh", "width": 200, "depth": 2}, 10)
    fns = make_loss_fn(model, {"name": "mse"}, 10)
    params0 = init_model(model, jax.random.key(0), x[:1])["params"]
    data = (jnp.asarray(x), jnp.asarray(y))
    opt = optax.sgd(lr)

    @jax.jit
    def step(p, s, batch):
        value, grad = jax.value_and_grad(fns.loss)(p, batch)
        updates, s = opt.update(grad, s, p)
        return value, grad, updates, s

    @jax.jit
    def update(grad, s, p):
        return opt.update(grad, s, p)

    def user_loop(every: int | None, fused: bool = False):
        """One segment of ``steps`` steps of the user's loop (state carried across segments).

        ``fused``: the loss and gradient come from ``monitor.value_and_grad`` (one linearisation
        shared with the estimate on measured steps) instead of the user's own jitted step.
        """
        holder = {"p": params0, "s": opt.init(params0), "t": 0}
        mon = None
        holder["mon"] = None
        if every is not None:
            mon = Monitor(fns.loss, data, tempfile.mkdtemp(), key=jax.random.key(1), every=every, tol=1e-3,
                          max_iters=40, chunk_size=n, flush_every=steps)
            holder["mon"] = mon

        def go():
            p, s = holder["p"], holder["s"]
            for _ in range(steps):
                if fused:
                    value, grad = mon.value_and_grad(holder["t"], p)
                    updates, s = update(grad, s, p)
                else:
                    value, grad, updates, s = step(p, s, data)
                if mon is not None:
                    mon.record(holder["t"], p, loss=value, grad=grad, stepsize=lr)
                p = optax.apply_updates(p, updates)
                holder["t"] += 1
            jax.block_until_ready(p)
            if mon is not None:
                mon.flush()  # the host transfer and trace write are part of the cost
            holder["p"], holder["s"] = p, s

        return go, holder

    dp = make_data_parallel(1)
    chunks = host_layout((x, y), n, dp, "training set")

    def trainer_loop(sharp_every: int):
        sharp = {"every": sharp_every, "k": 1, "tol": 1e-3, "max_iters": 40}
        tx = make_tuner({"name": "constant", "stepsize": lr})
        keys = {"data": jax.random.key(1), "step": jax.random.key(2)}
        fns_ = build_step_fns(fns=fns, tx=tx, dp=dp, keys=keys, n_train=n, batch_size=0, chunk_size=n, sharpness=sharp,
                              subset_is_train=True)
        tracker = SharpnessTracker(k=1, tol=1e-3, max_iters=40).init(params0, jax.random.key(3)) if sharp_every else ()
        holder = {"s": TrainState(params0, {}, tx.init(params0), tracker, jnp.zeros((0,), jnp.int32), jnp.zeros((), jnp.int32)),
                  "hvps": []}

        def go():
            holder["s"], rec = fns_.run_chunk(holder["s"], chunks, chunks, np.int32(steps), buffer=steps)
            rec = jax.device_get(rec)
            if "hvps" in rec:
                holder["hvps"].extend(np.asarray(rec["hvps"]).tolist())

        return go, holder

    variants = {
        "bare": user_loop(None),
        "monitor every 10": user_loop(10),
        "monitor every 1": user_loop(1),
        "monitor every 10, fused": user_loop(10, fused=True),
        "monitor every 1, fused": user_loop(1, fused=True),
        "trainer, no sharpness": trainer_loop(0),
        "trainer, sharpness every 1": trainer_loop(1),
    }
    holders = {name: h for name, (_, h) in variants.items()}
    variants = {name: go for name, (go, _) in variants.items()}
    for go in variants.values():  # compile, and the tracker's first (cold) estimate
        go()
    holders["trainer, sharpness every 1"]["hvps"].clear()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, go in variants.items():
            t0 = time.perf_counter()
            go()
            times[name].append((time.perf_counter() - t0) / steps)
    med = {name: float(np.median(v)) for name, v in times.items()}
    bare = med["bare"]
    print(f"{'variant':<28} {'ms/step':>9} {'x bare':>7}   per round (x bare)")
    for name, v in times.items():
        ratios = ", ".join(f"{t / b:.2f}" for t, b in zip(v, times["bare"]))
        print(f"{name:<28} {med[name] * 1e3:9.1f} {med[name] / bare:7.2f}   {ratios}")
    trainer_cost = (med["trainer, sharpness every 1"] - med["trainer, no sharpness"]) / med["trainer, no sharpness"]
    for name in ("monitor every 1", "monitor every 1, fused"):
        print(f"tracking cost per step at cadence 1: {name}: {(med[name] - bare) / bare:.2f} bare steps; trainer "
              f"{trainer_cost:.2f} of its steps (target: monitor <= trainer)")
    mon1 = holders["monitor every 1"]["mon"]
    mon1.writer.sync()
    from eosmodel.trace import load_trace

    hv = load_trace(mon1.run_dir)["hvps"][1:]  # warm estimates (the first, cold one left out)
    print(f"HVPs per warm estimate: monitor {np.mean(hv):.2f}, trainer {np.mean(holders['trainer, sharpness every 1']['hvps']):.2f}")
    for name in ("monitor every 10", "monitor every 10, fused"):
        print(f"{name}: {med[name] / bare:.2f}x the bare step (target < 1.5x)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
