"""Your own equinox training loop with optax.adam; eosmodel.Monitor tracks the sharpness and Adam's
preconditioned sharpness λ₁(P⁻¹H), whose stability threshold is (2 + 2β₁)/((1 − β₁)η) = 38/η.

Run: ``python docs/examples/equinox_adam.py --out runs/eqx_adam [--steps 300]``.

The model's arrays are the parameter pytree (``eqx.partition``); the rest of the module is static
and is recombined inside the loss, so ``loss_fn(params, batch)`` is a pure function of a pytree.
Reference: Cohen et al., "Adaptive gradient methods at the edge of stability", arXiv 2207.14484.
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import eosmodel
from eosmodel.monitor import adam_preconditioner


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/eqx_adam")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.003)
    args = parser.parse_args(argv)

    kx, kw, kmodel = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (256, 16))
    y = jnp.argmax(x @ jax.random.normal(kw, (16, 4)), axis=1)
    data = (x, y)

    model = eqx.nn.MLP(16, 4, width_size=32, depth=2, activation=jnp.tanh, key=kmodel)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(params, batch):  # MSE with the 1/2 convention, mean over examples
        xb, yb = batch
        out = jax.vmap(eqx.combine(params, static))(xb)
        return 0.5 * jnp.mean(jnp.sum((out - jax.nn.one_hot(yb, 4)) ** 2, axis=1))

    b1, b2, eps = 0.9, 0.999, 1e-8
    opt = optax.adam(args.lr, b1=b1, b2=b2, eps=eps)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        value, grad = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = opt.update(grad, opt_state, params)
        return value, grad, updates, opt_state

    monitor = eosmodel.Monitor(loss_fn, data, args.out, key=jax.random.key(1), every=10, grad_curvature=True,
                               precondition=adam_preconditioner(b1, b2, eps),
                               config={"tuner": {"name": "adam", "lr": args.lr, "b1": b1, "b2": b2, "eps": eps}},
                               overwrite=True)
    for t in range(args.steps):
        value, grad, updates, opt_state = step(params, opt_state, data)
        monitor.record(t, params, loss=value, grad=grad, stepsize=args.lr, opt_state=opt_state)
        params = optax.apply_updates(params, updates)
    trace = monitor.close()

    steps, pre = trace.measured("preconditioned_sharpness")
    print(f"{len(trace)} steps; final loss {trace['loss'][-1]:.4g}; preconditioned sharpness {pre[0]:.4g} -> "
          f"{pre[-1]:.4g} (Adam's threshold (2+2*b1)/((1-b1)*lr) = {(2 + 2 * b1) / ((1 - b1) * args.lr):.4g}); "
          f"trace in {args.out}")
    return trace


if __name__ == "__main__":
    main()
