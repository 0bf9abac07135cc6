"""Constant stepsize: plain gradient descent w ← w − η·g."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base


class ConstantInfo(NamedTuple):
    """Diagnostics of :func:`constant`.

    Attributes:
      skipped: bool, no step was taken (non-finite value or gradient).
      status: int32 status code (see :mod:`eosmodel.tuners`).
    """

    skipped: jax.Array
    status: jax.Array


@_base.register_state
class ConstantState(NamedTuple):
    """State of :func:`constant`: the stepsize taken (η; 0 when skipped or before any step), diagnostics."""

    stepsize: jax.Array
    info: ConstantInfo


def constant(stepsize: float) -> optax.GradientTransformationExtraArgs:
    """Fixed stepsize: the update is −η·g, the baseline whose sharpness settles at 2/η.

    Math: w_{t+1} = w_t − η·g_t, with η = ``stepsize`` and g_t = ``updates``.

    Args:
      stepsize: η > 0 (finite).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value=None, grad=None, value_fn=None)`` returns ``-stepsize * updates``; ``value`` and
      ``grad``, when given, are only checked for finiteness; ``value_fn`` is unused.

    Failure modes:
      Non-finite ``updates``/``grad``/``value``: zero update, ``info.skipped = True``,
      ``info.status = 1``. A non-positive or non-finite ``stepsize`` raises ``ValueError``.

    Reference: Cohen et al., arXiv 2103.00065 (GD at a fixed stepsize reaches the edge of
    stability).

    Example:
      >>> import jax.numpy as jnp
      >>> opt = constant(0.5)
      >>> updates, state = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)), jnp.zeros(1))
      >>> updates.tolist(), bool(state.info.skipped)
      ([-1.0], False)
    """
    eta = _base.check_positive("stepsize", stepsize)

    def init_fn(params: Any) -> ConstantState:
        dtype = _base.real_dtype(params)
        return ConstantState(
            stepsize=_base.scalar(0.0, dtype),  # no step taken yet (as for every tuner)
            info=ConstantInfo(
                skipped=_base.scalar(False, bool), status=_base.scalar(0, "int32")
            ),
        )

    def update_fn(
        updates: Any,
        state: ConstantState,
        params: Any = None,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
    ) -> tuple[Any, ConstantState]:
        del params, value_fn  # unused: a constant stepsize needs neither
        dtype = state.stepsize.dtype
        finite = _base.all_finite(updates, grad, value)
        skip = ~finite
        new_updates = _base.descent_update(_base.scalar(eta, dtype), updates, skip)
        new_state = ConstantState(
            stepsize=_base.scalar(jnp.where(skip, 0.0, eta), dtype),
            info=ConstantInfo(
                skipped=skip,
                status=_base.scalar(
                    jnp.where(skip, _base.STATUS_NONFINITE_INPUT, _base.STATUS_OK), "int32"
                ),
            ),
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
