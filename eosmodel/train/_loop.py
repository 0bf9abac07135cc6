"""The compiled training step: GD/SGD with any stepsize tuner, sharpness tracked in the same program.

One call of the compiled function advances the run by ``num_steps`` <= ``log_every`` steps in a
``lax.fori_loop`` (a traced trip count, so every chunk length shares one compiled program) and
returns the per-step records written into ``[log_every]`` device buffers (one host transfer per
logging period). Step t
(from parameters w_t):

1. loss and gradient: full batch, f(w) = (1/n) Σ_i |B_i| f(w; B_i) over the physical batches
   (chunks) B_i of the training set; mini-batch, the mean over batch S_t, where the batches of
   epoch e are consecutive slices of the permutation π_e = permutation(fold_in(k_data, e), n)
   (sampling without replacement; an incomplete last batch is dropped);
2. sharpness, when t % every == 0: the top-k Hessian eigenvalues of the training loss on the fixed
   subset (the whole training set by default) at w_t, by the warm-started ``SharpnessTracker``,
   and with ``grad_curvature`` the curvature along the step direction, R_t = g_tᵀH g_t / ‖g_t‖²
   (one more HVP; H the Hessian on the subset). On a quadratic, Armijo accepts η iff
   η·R ≤ 2(1 − c), so R/λ_1 (≤ 1) says how far g is from the top eigenvector;
3. the tuner update w_{t+1} = w_t − η_t g_t, with ``value`` = f(w_t), ``grad`` = g_t and
   ``value_fn`` = f over the same data as the gradient (the full training set in full batch, S_t in
   mini-batch, as in Vaswani et al. 2019 and Loizou et al. 2021).

Record t holds f(w_t), ‖g_t‖², η_t, λ_i(w_t), η_t·λ_1(w_t), R_t, the HVPs spent and the tuner's
diagnostics. BatchNorm models: the loss, its gradient and the Hessian whose eigenvalues are
measured are those of the training-mode loss (each chunk normalised with its own batch
statistics); the running averages (used only in evaluation) are updated once per step with the
size-weighted mean over chunks of the per-chunk updates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from eosmodel.sharpness import SharpnessTracker, hvp, linearize_gradient
from eosmodel.train._parallel import DataParallel
from eosmodel.tuners import read_diagnostics, read_stepsize

PyTree = Any

__all__ = ["Chunks", "StepFns", "TrainState", "build_step_fns", "chunk_mean", "split_chunks"]


class TrainState(NamedTuple):
    """Everything a run carries from one step to the next (a pytree; checkpointed as is).

    Attributes:
      params: model parameters w_t.
      model_state: non-parameter collections (``{"batch_stats": ...}``, or ``{}``).
      opt_state: the tuner's optax state.
      tracker: the ``SharpnessTracker`` state (warm-start eigenvectors), ``()`` if not tracking.
      perm: int32 ``[n]`` permutation of the current epoch (mini-batch), int32 ``[0]`` in full batch.
      step: int32 scalar t, the number of steps done (index of the next step).
    """

    params: PyTree
    model_state: PyTree
    opt_state: PyTree
    tracker: PyTree
    perm: jax.Array
    step: jax.Array


class Chunks(NamedTuple):
    """A data set cut into physical batches: ``full`` leaves ``[m, c, ...]``, ``rem`` leaves ``[r, ...]``.

    ``full`` is None when m = 0 and ``rem`` is None when r = 0 (n = m·c + r examples).
    """

    full: PyTree
    rem: PyTree


def split_chunks(data: PyTree, chunk_size: int) -> Chunks:
    """Cut ``data`` (leaves with a leading example axis n) into m = n // c chunks of c and a remainder.

    Works on numpy arrays (host layout) and inside ``jit`` (static shapes). c = min(chunk_size, n).
    """
    n = int(jax.tree.leaves(data)[0].shape[0])
    c = min(int(chunk_size), n)
    m, r = divmod(n, c)
    full = jax.tree.map(lambda x: x[: m * c].reshape((m, c) + x.shape[1:]), data)
    rem = jax.tree.map(lambda x: x[m * c :], data) if r else None
    return Chunks(full, rem)


def chunk_mean(fn: Callable[[PyTree], PyTree], chunks: Chunks, dp: DataParallel | None = None) -> PyTree:
    """Size-weighted mean over chunks of ``fn(batch)``: (1/n)[Σ_i c·fn(B_i) + r·fn(B_r)].

    For ``fn`` a batch mean (a loss, its gradient, an HVP), this is the exact mean over all n
    examples; the full chunks are scanned with a running sum (memory: one chunk's activations).
    Each chunk is constrained to be split over the devices of ``dp``.
    """
    sizes = []
    if chunks.full is not None:
        lead = jax.tree.leaves(chunks.full)[0]
        sizes.append((int(lead.shape[0]), int(lead.shape[1])))
    r = int(jax.tree.leaves(chunks.rem)[0].shape[0]) if chunks.rem is not None else 0
    m, c = sizes[0] if sizes else (0, 0)
    n = m * c + r
    total = None
    if m:
        def body(acc, batch):
            if dp is not None:
                batch = dp.constrain_batch(batch)
            return jax.tree.map(jnp.add, acc, fn(batch)), None

        first = jax.tree.map(lambda x: x[0], chunks.full)
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))
        acc, _ = lax.scan(body, zero, chunks.full)
        total = jax.tree.map(lambda a: a * (c / n), acc)
    if r:
        rem = chunks.rem
        if dp is not None and r % dp.num_devices == 0:
            rem = dp.constrain_batch(rem)
        part = jax.tree.map(lambda a: a * (r / n), fn(rem))
        total = part if total is None else jax.tree.map(jnp.add, total, part)
    return total


def _tree_sq_norm(tree: PyTree) -> jax.Array:
    return sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree))


class StepFns(NamedTuple):
    """The compiled functions of a run (see :func:`build_step_fns`)."""

    run_chunk: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    evaluate: Callable[..., tuple[jax.Array, jax.Array]]
    train_loss: Callable[..., jax.Array]


def build_step_fns(
    *,
    fns: Any,
    tx: optax.GradientTransformationExtraArgs,
    dp: DataParallel,
    keys: dict[str, jax.Array],
    n_train: int,
    batch_size: int,
    chunk_size: int,
    sharpness: dict[str, Any],
    subset_is_train: bool = False,
) -> StepFns:
    """Build the jitted functions of one run (closures over settings and functions, never over data).

    Args:
      fns: the model's ``LossFns`` (``loss``, ``loss_with_state``, ``evaluate``).
      tx: the tuner (``GradientTransformationExtraArgs``).
      dp: the device layout.
      keys: ``{"data": ..., "step": ...}`` base PRNG keys (per-step keys are ``fold_in(key, t)``).
      n_train: training-set size n.
      batch_size: b, or 0 for full batch.
      chunk_size: physical batch size.
      sharpness: the ``[sharpness]`` table (``every``, ``k``, ``tol``, ``max_iters``, optional
        ``grad_curvature``).
      subset_is_train: the sharpness subset passed to ``run_chunk`` is the training set itself; in
        full batch the measured steps then share one linearisation between the step's gradient and
        the Hessian operator (``eosmodel.sharpness.linearize_gradient``).

    Returns:
      :class:`StepFns`: ``run_chunk(state, train_data, subset, num_steps, buffer=B) -> (state,
      records)`` (``num_steps`` <= B steps, records ``[B]`` per column, the first ``num_steps`` valid),
      ``evaluate(params, model_state, test_chunks) -> (loss, accuracy)``,
      and ``train_loss(params, train_chunks) -> scalar``.
    """
    every, k = int(sharpness["every"]), int(sharpness["k"])
    with_curvature = bool(sharpness.get("grad_curvature", False))
    tracker = SharpnessTracker(k=k, tol=float(sharpness["tol"]), max_iters=int(sharpness["max_iters"])) if every else None
    full_batch = batch_size == 0
    fuse = full_batch and subset_is_train
    steps_per_epoch = n_train // batch_size if batch_size else 1

    def batch_of(state: TrainState, train_data: Any) -> tuple[Chunks, jax.Array]:
        """The data of step t (chunked) and the epoch permutation in force."""
        if full_batch:
            return train_data, state.perm
        epoch, pos = jnp.divmod(state.step, steps_per_epoch)
        perm = lax.cond(
            pos == 0,
            lambda: jax.random.permutation(jax.random.fold_in(keys["data"], epoch), n_train).astype(jnp.int32),
            lambda: state.perm,
        )
        idx = lax.dynamic_slice(perm, (pos * batch_size,), (batch_size,))
        x, y = train_data
        batch = dp.constrain_batch((jnp.take(x, idx, axis=0), jnp.take(y, idx, axis=0)))
        return split_chunks(batch, chunk_size), perm

    def value_grad_state(params: PyTree, model_state: PyTree, data: Chunks):
        vg = jax.value_and_grad(fns.loss_with_state, has_aux=True)

        def one(batch):
            (value, new_state), grad = vg(params, model_state, batch)
            return value, grad, new_state

        return chunk_mean(one, data, dp)

    def subset_hessian_matvec(params: PyTree, subset: Chunks) -> Callable[[PyTree], PyTree]:
        """v -> H v, H the Hessian of the training loss on the sharpness subset at ``params``.

        The subset's chunked gradient is linearised once per estimate when its residuals fit the
        memory budget (``linearize_gradient``), so each product runs only the tangent pass;
        otherwise forward-over-reverse per chunk, summed (memory: one chunk).
        """
        vg = jax.value_and_grad(fns.loss)

        def fun(p):
            return chunk_mean(lambda b: vg(p, b), subset, dp), None

        linearized = linearize_gradient(fun, params)
        if linearized is not None:
            return linearized[3]
        return lambda v: chunk_mean(lambda b: hvp(fns.loss, params, b, v), subset, dp)

    def gradient_and_sharpness(state: TrainState, data: Chunks, subset: Chunks):
        """Loss, gradient and model state of the step, and the tracker's estimate at ``state.params``.

        Fused (full batch, the subset is the training set, residuals within the memory budget): one
        linearisation of the step's gradient gives the loss and gradient (its primal outputs) and
        the Hessian operator (its tangent map), so the estimate costs its HVPs only.
        """
        def fun(p):  # w -> ((f(w), ∇f(w)), model state): the step's chunked gradient
            value, grad, new_state = value_grad_state(p, state.model_state, data)
            return (value, grad), new_state

        fused = linearize_gradient(fun, state.params) if fuse else None
        if fused is not None:
            value, grad, model_state, matvec = fused
        else:
            value, grad, model_state = value_grad_state(state.params, state.model_state, data)
            matvec = subset_hessian_matvec(state.params, subset)
        tstate, res = tracker.estimate(state.tracker, matvec, key=jax.random.fold_in(keys["step"], state.step))
        hvps = res.num_hvps.astype(jnp.int32)
        if with_curvature:  # gᵀHg; divided by ‖g‖² in ``step``, which has it
            ghg = optax.tree_utils.tree_vdot(grad, matvec(grad)).astype(value.dtype)
            hvps = hvps + 1
        else:
            ghg = jnp.full((), jnp.nan, value.dtype)
        measured = (tstate, res.eigenvalues.astype(value.dtype), hvps, res.converged, ghg)
        return (value, grad, model_state), measured

    def gradient_only(state: TrainState, data: Chunks):
        value, grad, model_state = value_grad_state(state.params, state.model_state, data)
        nan = jnp.full((), jnp.nan, value.dtype)
        skipped = (state.tracker, jnp.full((k,), jnp.nan, value.dtype), jnp.zeros((), jnp.int32),
                   jnp.zeros((), bool), nan)
        return (value, grad, model_state), skipped

    def step(state: TrainState, train_data: Any, subset: Chunks) -> tuple[TrainState, dict[str, jax.Array]]:
        t = state.step
        data, perm = batch_of(state, train_data)
        tracker_state = state.tracker
        if tracker is None:
            value, grad, model_state = value_grad_state(state.params, state.model_state, data)
        else:
            measure = lambda: gradient_and_sharpness(state, data, subset)  # noqa: E731
            if every == 1:
                (value, grad, model_state), measured = measure()
            else:
                (value, grad, model_state), measured = lax.cond(
                    t % every == 0, measure, lambda: gradient_only(state, data)
                )
            tracker_state, eigs, hvps, converged, ghg = measured
        gg = _tree_sq_norm(grad)
        record: dict[str, jax.Array] = {"step": t, "loss": value, "grad_norm_sq": gg}
        value_fn = lambda p: chunk_mean(lambda b: fns.loss(p, b), data, dp)  # noqa: E731
        updates, opt_state = tx.update(grad, state.opt_state, state.params, value=value, grad=grad, value_fn=value_fn)
        params = optax.apply_updates(state.params, updates)
        eta = read_stepsize(opt_state)
        record["stepsize"] = eta
        if tracker is not None:
            record["sharpness"] = eigs[0]
            for i in range(1, k):
                record[f"sharpness_{i + 1}"] = eigs[i]
            record["normalized_sharpness"] = eta * eigs[0]
            if with_curvature:
                record["grad_curvature"] = jnp.where(gg > 0, ghg / jnp.where(gg > 0, gg, 1), jnp.nan).astype(value.dtype)
            record["hvps"] = hvps
            record["sharpness_converged"] = jnp.where(jnp.isnan(eigs[0]), jnp.nan, converged.astype(value.dtype))
        for name, val in read_diagnostics(opt_state).items():
            record[f"tuner_{name}"] = val
        if not full_batch:
            record["epoch"] = t // steps_per_epoch
        new = TrainState(params, model_state, opt_state, tracker_state, perm, t + 1)
        return new, record

    @functools.partial(jax.jit, static_argnames=("buffer",))
    def run_chunk(state: TrainState, train_data: Any, subset: Chunks, num_steps: jax.Array, *, buffer: int):
        # One compiled program for every chunk length <= buffer: a while loop with a traced trip
        # count writes record i into row i of a [buffer] array per column (rows >= num_steps unused).
        shapes = jax.eval_shape(lambda s: step(s, train_data, subset)[1], state)
        records = {name: jnp.zeros((buffer,) + sd.shape, sd.dtype) for name, sd in shapes.items()}

        def body(i, carry):
            s, recs = carry
            s, rec = step(s, train_data, subset)
            recs = {name: recs[name].at[i].set(rec[name]) for name in recs}
            return s, recs

        return lax.fori_loop(0, num_steps, body, (state, records))

    @jax.jit
    def evaluate(params: PyTree, model_state: PyTree, test: Chunks):
        return chunk_mean(lambda b: fns.evaluate(params, model_state, b), test, dp)

    @jax.jit
    def train_loss(params: PyTree, train: Chunks):
        return chunk_mean(lambda b: fns.loss(params, b), train, dp)

    return StepFns(run_chunk, evaluate, train_loss)


def host_layout(data: Any, chunk_size: int, dp: DataParallel, what: str) -> Chunks:
    """Place a data set on the devices cut into chunks, each chunk split over the devices.

    Raises:
      ValueError: the chunk size is not a multiple of the number of devices.
    """
    chunks = split_chunks(data, chunk_size)
    if chunks.full is not None:
        c = int(jax.tree.leaves(chunks.full)[0].shape[1])
        if c % dp.num_devices:
            raise ValueError(
                f"train.chunk_size (effective {c} for the {what}) must be a multiple of the number of "
                f"devices ({dp.num_devices}); change it or set train.devices."
            )
        full = dp.put_batch(chunks.full, leading_axes=1)
    else:
        full = None
    rem = dp.put_replicated(chunks.rem) if chunks.rem is not None else None
    return Chunks(full, rem)


def to_host(tree: PyTree) -> PyTree:
    """``jax.device_get`` into numpy arrays (one transfer for the whole pytree)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
