"""A sharpness monitor for any JAX training loop: the trainer's tracking and trace, in a user's loop."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.sharpness import SharpnessTracker, full_value_and_grad, hessian_matvec, value_grad_and_matvec
from eosmodel.sharpness._hvp import _split_chunks
from eosmodel.trace import TraceWriter

PyTree = Any

__all__ = ["Monitor", "adam_preconditioner", "rmsprop_preconditioner"]


def _tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _find_state(opt_state: Any, types: tuple[type, ...], what: str) -> Any:
    found = [
        leaf
        for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, types))
        if isinstance(leaf, types)
    ]
    if len(found) != 1:
        raise ValueError(
            f"opt_state holds {len(found)} {what} states, need exactly one; pass the state of an "
            f"optimizer built with optax.{what}, or compute the preconditioner yourself and pass "
            "preconditioner= to Monitor.record."
        )
    return found[0]


def adam_preconditioner(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Callable[[Any], PyTree]:
    """The diagonal preconditioner of Adam, read from an optax state: ``opt_state -> P``.

    Adam's step from w_t is w_{t+1} = w_t − η P_t⁻¹ m_t with m_t the first moment and

        P_t = (1 − β₁ᵗ) · (sqrt(ν_t / (1 − β₂ᵗ)) + ε),

    ν_t the second moment and t the update count, both from ``optax.ScaleByAdamState`` after the
    update of step t. The stability threshold of Adam refers to the preconditioned sharpness
    λ₁(P_t⁻¹ H_t) < (2 + 2β₁) / ((1 − β₁) η) (38/η at β₁ = 0.9).

    Args:
      b1, b2, eps: the hyperparameters the optimizer was built with (optax.adam's defaults).

    Returns:
      A function of the optimizer state (optax.adam, or a chain holding one ``scale_by_adam``)
      returning P_t as a pytree shaped like the parameters.

    Raises (when called): ValueError if the state holds no or several ``ScaleByAdamState``.

    Reference: Cohen et al., "Adaptive gradient methods at the edge of stability", arXiv 2207.14484.
    """
    import optax

    def precond(opt_state: Any) -> PyTree:
        state = _find_state(opt_state, (optax.ScaleByAdamState,), "adam")
        t = jnp.maximum(state.count, 1)

        def leaf(nu):
            tt = t.astype(nu.dtype)
            return (1 - b1**tt) * (jnp.sqrt(nu / (1 - b2**tt)) + eps)

        return jax.tree.map(leaf, state.nu)

    return precond


def rmsprop_preconditioner(eps: float = 1e-8, eps_in_sqrt: bool = True) -> Callable[[Any], PyTree]:
    """The diagonal preconditioner of RMSProp (optax.rmsprop, no momentum): ``opt_state -> P``.

    The step is w_{t+1} = w_t − η P_t⁻¹ g_t with P_t = sqrt(ν_t + ε) (``eps_in_sqrt``, optax's
    default) or sqrt(ν_t) + ε, ν_t from ``optax.ScaleByRmsState``; stability needs
    λ₁(P_t⁻¹ H_t) < 2/η.

    Reference: Cohen et al., arXiv 2207.14484.
    """
    import optax

    def precond(opt_state: Any) -> PyTree:
        state = _find_state(opt_state, (optax.ScaleByRmsState,), "rmsprop")
        if eps_in_sqrt:
            return jax.tree.map(lambda nu: jnp.sqrt(nu + eps), state.nu)
        return jax.tree.map(lambda nu: jnp.sqrt(nu) + eps, state.nu)

    return precond


class Monitor:
    """Record loss, stepsize and warm-started sharpness from your own training loop into a run directory.

    Call :meth:`record` once per step, after the optimizer's update and before applying it (at the
    parameters w_t the step starts from). Every ``every`` steps it estimates, at w_t, the top-k
    eigenvalues λ₁ ≥ … ≥ λ_k of the Hessian of the loss on ``data`` (the full data set or a fixed
    subset; mean over examples, accumulated over chunks of ``chunk_size``) with the warm-started
    :class:`eosmodel.sharpness.SharpnessTracker`, and, with ``grad_curvature`` and ``grad``, the
    curvature along the gradient R_t = gᵀHg/‖g‖² (one more HVP). With ``precondition`` it also estimates the
    preconditioned sharpness λ₁(P_t⁻¹H_t) of an adaptive optimizer (as λ₁ of the symmetric
    P^{-1/2} H P^{-1/2}, which has the same eigenvalues).

    The trace (``run_dir/trace.jsonl`` + ``config.json``, see :mod:`eosmodel.trace`) has the
    trainer's columns: ``step``, ``loss``, ``grad_norm_sq``, ``stepsize``, ``sharpness``,
    ``sharpness_2..k``, ``normalized_sharpness`` (η_t·λ₁), ``grad_curvature``, ``hvps``,
    ``sharpness_converged``, ``wall_time``, ``tuner_<field>`` (with an eosmodel tuner's state),
    and ``preconditioned_sharpness``; NaN where not measured. ``eosmodel fit RUN_DIR`` reads it.

    Cost: the estimate is one jitted function (compiled once; data and parameters are arguments),
    the same tracker and chunked HVPs as ``eosmodel train`` (the gradient on ``data`` linearised
    once per estimate, each HVP a tangent pass: ``eosmodel.sharpness.hessian_matvec``). In a
    full-batch loop on ``data``, :meth:`value_and_grad` gives your step its loss and gradient from
    that same linearisation, so a measured step costs its HVPs alone, as in the trainer. Nothing is
    fetched from the device until every ``flush_every`` records (no host sync per step).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch``.
      data: the batch the sharpness is measured on (pytree, leading example axis).
      run_dir: the run directory to write (must not hold a trace unless ``overwrite``).
      key: PRNG key of the tracker (start vectors; step t uses ``fold_in(key, t)``).
      every: estimate every this many steps (steps t with t % every == 0), >= 1; default 10.
      k: top eigenvalues to track, default 1.
      tol: relative accuracy of each estimate, default 1e-3.
      max_iters: HVP cap per estimate, default 40.
      chunk_size: examples per HVP chunk (memory bound), None for one chunk.
      grad_curvature: also record R_t = gᵀHg/‖g‖² where ``grad`` is given (one more HVP per
        estimate; as the trainer's ``sharpness.grad_curvature``), default False.
      precondition: optional ``opt_state -> P`` (e.g. :func:`adam_preconditioner`) giving the
        diagonal preconditioner; adds the column ``preconditioned_sharpness``.
      config: extra JSON stored in ``config.json`` (e.g. ``{"tuner": {"name": "adam", ...}}``);
        the monitor's settings go under ``"monitor"``.
      flush_every: records kept on the device before one transfer and write, default 100.
      overwrite: replace an existing trace in ``run_dir``.

    Raises:
      ValueError: an out-of-range setting (one sentence naming it).

    Example:
      >>> import jax, jax.numpy as jnp, tempfile
      >>> loss = lambda w, x: 0.5 * jnp.mean((x @ w) ** 2)   # mean over the rows of x
      >>> x = jnp.diag(jnp.array([3.0, 1.0]))   # two examples: H = diag(9, 1) / 2
      >>> mon = Monitor(loss, x, tempfile.mkdtemp(), key=jax.random.key(0), every=2)
      >>> w = jnp.ones(2)
      >>> for t in range(4):
      ...     value, g = jax.value_and_grad(loss)(w, x)
      ...     mon.record(t, w, loss=value, grad=g, stepsize=0.1)
      ...     w = w - 0.1 * g
      >>> trace = mon.close()
      >>> [round(float(s), 3) for s in trace["sharpness"]]
      [4.5, nan, 4.5, nan]
    """

    def __init__(
        self,
        loss_fn: Callable[[PyTree, PyTree], jax.Array],
        data: PyTree,
        run_dir: str | os.PathLike,
        *,
        key: jax.Array,
        every: int = 10,
        k: int = 1,
        tol: float = 1e-3,
        max_iters: int = 40,
        chunk_size: int | None = None,
        grad_curvature: bool = False,
        precondition: Callable[[Any], PyTree] | None = None,
        config: Mapping[str, Any] | None = None,
        flush_every: int = 100,
        overwrite: bool = False,
    ):
        for name, value, lo in (("every", every, 1), ("flush_every", flush_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"Monitor {name} must be an integer >= {lo}, got {value!r}; pass e.g. {name}=10.")
        if not isinstance(grad_curvature, bool):
            raise ValueError(f"Monitor grad_curvature must be True or False, got {grad_curvature!r}.")
        if not callable(loss_fn):
            raise ValueError(f"Monitor loss_fn must be a function loss_fn(params, batch), got {loss_fn!r}.")
        if precondition is not None and not callable(precondition):
            raise ValueError(
                f"Monitor precondition must be a function opt_state -> P (e.g. adam_preconditioner()), got {precondition!r}."
            )
        self.tracker = SharpnessTracker(k=k, tol=tol, max_iters=max_iters)
        _split_chunks(data, chunk_size)  # validates data and chunk_size now
        self.loss_fn, self.every, self.k, self.chunk_size = loss_fn, every, k, chunk_size
        self.flush_every = flush_every
        self.grad_curvature = grad_curvature
        self.precondition = precondition
        self._data = jax.device_put(data)
        self._key = key
        self._tracker_state = None
        self._pre_state = None
        self._pending: list[dict[str, Any]] = []
        settings = {"every": every, "k": k, "tol": tol, "max_iters": max_iters, "chunk_size": chunk_size,
                    "grad_curvature": grad_curvature, "preconditioned": precondition is not None}
        self.writer = TraceWriter(run_dir, {**dict(config or {}), "monitor": settings}, overwrite=overwrite)
        self.run_dir = self.writer.run_dir
        self._clock0 = time.perf_counter()
        self._basic = jax.jit(self._basic_fn)
        # The tracker states are donated: updated in place, as in the trainer's compiled loop.
        self._measure = jax.jit(self._measure_fn, donate_argnums=(0, 1), static_argnames=("plain",))
        self._fused = jax.jit(self._fused_fn, donate_argnums=(0,))
        self._value_and_grad = jax.jit(lambda params, data: full_value_and_grad(loss_fn, params, data, chunk_size))
        self._prepared: tuple[int, dict[str, jax.Array]] | None = None

    # ----------------------------------------------------------------------------- compiled parts

    @staticmethod
    def _basic_fn(loss: jax.Array, grad: PyTree | None, stepsize: jax.Array) -> dict[str, jax.Array]:
        rec = {"loss": jnp.asarray(loss), "stepsize": jnp.asarray(stepsize)}
        if grad is not None:
            rec["grad_norm_sq"] = _tree_vdot(grad, grad)
        return rec

    def _sharpness(self, tstate, matvec, key, grad):
        """The tracker's estimate (and R_t = gᵀHg/‖g‖² when asked and ``grad`` is given) with ``matvec``."""
        tstate, res = self.tracker.estimate(tstate, matvec, key=key)
        dtype = res.eigenvalues.dtype
        out = {"sharpness": res.eigenvalues[0], "sharpness_converged": res.converged.astype(dtype),
               "hvps": res.num_hvps.astype(jnp.int32)}
        for i in range(1, self.k):
            out[f"sharpness_{i + 1}"] = res.eigenvalues[i]
        if grad is not None and self.grad_curvature:
            gg = _tree_vdot(grad, grad)
            ghg = _tree_vdot(grad, matvec(grad))
            out["grad_curvature"] = jnp.where(gg > 0, ghg / jnp.where(gg > 0, gg, 1), jnp.nan).astype(dtype)
            out["hvps"] = out["hvps"] + 1
        return tstate, out

    def _measure_fn(self, tstate, pstate, params, data, key, grad, precond, *, plain: bool = True):
        matvec = hessian_matvec(self.loss_fn, params, data, self.chunk_size)
        out = {"hvps": jnp.zeros((), jnp.int32)}
        if plain:
            tstate, out = self._sharpness(tstate, matvec, key, grad)
        if precond is not None:
            s = jax.tree.map(lambda p: jax.lax.rsqrt(p), precond)  # P^{-1/2}
            pmatvec = lambda v: jax.tree.map(jnp.multiply, s, matvec(jax.tree.map(jnp.multiply, s, v)))  # noqa: E731
            pstate, pres = self.tracker.estimate(pstate, pmatvec, key=jax.random.fold_in(key, 1 << 20))
            out["preconditioned_sharpness"] = pres.eigenvalues[0]
            out["hvps"] = out["hvps"] + pres.num_hvps.astype(jnp.int32)
        return tstate, pstate, out

    def _fused_fn(self, tstate, params, data, key):
        value, grad, matvec = value_grad_and_matvec(self.loss_fn, params, data, self.chunk_size)
        tstate, out = self._sharpness(tstate, matvec, key, grad)
        return tstate, value, grad, out

    # ----------------------------------------------------------------------------- the loop API

    def value_and_grad(self, step: int, params: PyTree) -> tuple[jax.Array, PyTree]:
        """``(f(w_t), ∇f(w_t))`` of ``loss_fn`` on the monitored data; on measuring steps, shared with the estimate.

        For full-batch loops whose training data is the monitored ``data``: call it instead of your
        own ``jax.value_and_grad`` and pass its outputs to :meth:`record` for the same ``step``. On a
        step that is measured (``step % every == 0``) the gradient is linearised once
        (``eosmodel.sharpness.value_grad_and_matvec``): the loss and gradient are its primal
        outputs, and the Hessian-vector products of the estimate reuse its residuals, so measuring
        costs the HVPs alone, as in ``eosmodel train``. On other steps it is a plain jitted
        ``value_and_grad`` (chunked like the estimate). The preconditioned sharpness, which needs
        the optimizer's state after the update, is still measured in :meth:`record`.

        Raises:
          ValueError: ``step`` not an int.
        """
        step = self._check_step(step)
        if step % self.every:
            return self._value_and_grad(params, self._data)
        if self._tracker_state is None:
            self._tracker_state = self.tracker.init(params, self._key)
        self._tracker_state, value, grad, out = self._fused(
            self._tracker_state, params, self._data, jax.random.fold_in(self._key, step)
        )
        self._prepared = (step, out)
        return value, grad

    @staticmethod
    def _check_step(step: Any) -> int:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise ValueError(f"Monitor step must be an int, got {step!r}; pass the loop counter.")
        return int(step)

    def record(
        self,
        step: int,
        params: PyTree,
        *,
        loss: Any,
        grad: PyTree | None = None,
        stepsize: Any = None,
        opt_state: Any = None,
        preconditioner: PyTree | None = None,
    ) -> None:
        """Record step ``step`` at parameters w_t (call after the update is computed, before it is applied).

        Args:
          step: t, a Python int, strictly increasing from call to call.
          params: w_t, the parameters the step starts from (the pytree ``loss_fn`` takes).
          loss: f(w_t) (a scalar array; not fetched to the host here).
          grad: ∇f(w_t), optional: gives ``grad_norm_sq`` and ``grad_curvature``.
          stepsize: η_t (a number or scalar array) for any optimizer; optional with an eosmodel
            tuner, whose stepsize and diagnostics are read from ``opt_state``.
          opt_state: the optimizer state after the update of step t (eosmodel tuner: stepsize and
            ``tuner_*`` columns; adaptive optimizer: the preconditioner via ``precondition``).
          preconditioner: the diagonal preconditioner P_t as a pytree, instead of ``precondition``.

        Raises:
          ValueError: ``step`` not an increasing integer, or no stepsize given or readable.
        """
        step = self._check_step(step)
        diagnostics = {}
        if stepsize is None:
            if opt_state is None:
                raise ValueError(
                    "Monitor.record needs the stepsize: pass stepsize= (any optimizer) or opt_state= "
                    "(an optimizer built with eosmodel.tuners)."
                )
            from eosmodel.tuners import read_diagnostics, read_stepsize

            stepsize = read_stepsize(opt_state)
            diagnostics = {f"tuner_{k}": v for k, v in read_diagnostics(opt_state).items()}
        rec = dict(self._basic(loss, grad, stepsize))
        rec.update(diagnostics)
        rec["step"] = step
        rec["wall_time"] = time.perf_counter() - self._clock0
        if step % self.every == 0:
            if preconditioner is None and self.precondition is not None:
                if opt_state is None:
                    raise ValueError("Monitor.record needs opt_state= to read the preconditioner; pass it.")
                preconditioner = self.precondition(opt_state)
            prepared = self._prepared if self._prepared is not None and self._prepared[0] == step else None
            self._prepared = None
            if self._tracker_state is None:
                self._tracker_state = self.tracker.init(params, self._key)
            if preconditioner is not None and self._pre_state is None:
                self._pre_state = self.tracker.init(params, jax.random.fold_in(self._key, 1 << 20))
            if prepared is None or preconditioner is not None:
                self._tracker_state, self._pre_state, out = self._measure(
                    self._tracker_state, self._pre_state, params, self._data, jax.random.fold_in(self._key, step),
                    grad, preconditioner, plain=prepared is None,
                )
                if prepared is not None:
                    out = {**prepared[1], **out, "hvps": prepared[1]["hvps"] + out["hvps"]}
            else:
                out = prepared[1]
            rec.update(out)
            rec["normalized_sharpness"] = jnp.asarray(rec["stepsize"], out["sharpness"].dtype) * out["sharpness"]
        self._pending.append(rec)
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Fetch the pending records from the device (one transfer) and append them to the trace."""
        if not self._pending:
            return
        pending = jax.device_get(self._pending)
        self._pending = []
        names: dict[str, None] = {}
        for rec in pending:
            names.update(dict.fromkeys(rec))
        columns = {"step": np.asarray([r["step"] for r in pending], dtype=np.int64)}
        for name in names:
            if name == "step":
                continue
            fill = 0.0 if name == "hvps" else math.nan
            columns[name] = np.asarray([float(np.asarray(r[name])) if name in r else fill for r in pending])
        self.writer.append_columns(columns)

    def close(self):
        """Flush, close the trace and return it (:class:`eosmodel.trace.Trace`)."""
        from eosmodel.trace import load_trace

        self.flush()
        self.writer.close()
        return load_trace(self.run_dir)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()
        self.writer.close()
