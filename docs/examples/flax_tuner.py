"""Your own flax (nnx) training loop with an eosmodel tuner (Armijo), sharpness tracked by eosmodel.Monitor.

Run: ``python docs/examples/flax_tuner.py --out runs/flax_armijo [--steps 300]``, then
``eosmodel fit runs/flax_armijo`` (the trace has the columns the trainer writes).

The model is split into its graph and its parameters (``nnx.split``) so the loss is a pure
function ``loss_fn(params, batch)`` of a parameter pytree: what the tuner, the Hessian-vector
products and the monitor all work on.
"""

import argparse

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import eosmodel
from eosmodel import tuners


class MLP(nnx.Module):
    def __init__(self, din: int, width: int, dout: int, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(din, width, rngs=rngs)
        self.l2 = nnx.Linear(width, width, rngs=rngs)
        self.l3 = nnx.Linear(width, dout, rngs=rngs)

    def __call__(self, x):
        return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/flax_armijo")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)

    # Data: 256 examples, 16 features, 4 classes (use your own arrays here).
    kx, kw, kinit = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (256, 16))
    y = jnp.argmax(x @ jax.random.normal(kw, (16, 4)), axis=1)
    data = (x, y)

    graphdef, params = nnx.split(MLP(16, 32, 4, nnx.Rngs(0)))

    def loss_fn(params, batch):  # MSE with the 1/2 convention, mean over examples
        xb, yb = batch
        out = nnx.merge(graphdef, params)(xb)
        return 0.5 * jnp.mean(jnp.sum((out - jax.nn.one_hot(yb, 4)) ** 2, axis=1))

    opt = tuners.armijo(c=0.1)  # any eosmodel tuner is an optax transformation
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        value, grad = jax.value_and_grad(loss_fn)(params, batch)
        value_fn = lambda p: loss_fn(p, batch)  # noqa: E731  (the line search's trial loss)
        updates, opt_state = opt.update(grad, opt_state, params, value=value, grad=grad, value_fn=value_fn)
        return value, grad, updates, opt_state

    monitor = eosmodel.Monitor(loss_fn, data, args.out, key=jax.random.key(1), every=10, grad_curvature=True,
                               config={"tuner": tuners.tuner_config("armijo", c=0.1)}, overwrite=True)
    for t in range(args.steps):
        value, grad, updates, opt_state = step(params, opt_state, data)
        monitor.record(t, params, loss=value, grad=grad, opt_state=opt_state)  # stepsize read from the tuner
        params = optax.apply_updates(params, updates)
    trace = monitor.close()

    steps, lam = trace.measured("sharpness")
    print(f"{len(trace)} steps; final loss {trace['loss'][-1]:.4g}; sharpness {lam[0]:.3g} -> {lam[-1]:.3g}; "
          f"final eta*lambda {trace['normalized_sharpness'][steps[-1]]:.3g}; trace in {args.out}")
    return trace


if __name__ == "__main__":
    main()
