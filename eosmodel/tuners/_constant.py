"""Constant stepsize: plain gradient descent w ← w − η·g (the rule and its optax transformation)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base


class ConstantInfo(NamedTuple):
    """Diagnostics of :func:`constant` / :class:`ConstantRule`.

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


@dataclasses.dataclass(frozen=True, eq=False)
class ConstantRule:
    """The constant stepsize rule η_t = η, as a pure function of the local quantities.

    Math: η_t = η (``stepsize``) when the inputs are finite, else 0 (no step, status 1).

    Args:
      stepsize: η > 0 (finite; may be a traced value, then it is not validated).

    Call: ``rule(rule_state, *, finite, dtype) -> (eta, rule_state, ConstantInfo)``; ``finite``
    (bool, any shape) says whether the value and gradient were finite; ``rule_state`` is ``()``
    (the rule keeps no state; :meth:`init` returns it).

    Failure modes: a non-positive or non-finite concrete ``stepsize`` raises ``ValueError``.

    Example:
      >>> eta, _, info = ConstantRule(0.5)((), finite=True, dtype="float32")
      >>> float(eta), bool(info.skipped)
      (0.5, False)
    """

    stepsize: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "stepsize", _base.check_positive("stepsize", self.stepsize))

    def init(self, like: Any) -> tuple:
        """The rule's state: ``()`` (none)."""
        del like
        return ()

    def __call__(self, rule_state: tuple, *, finite: Any, dtype: Any) -> tuple[jax.Array, tuple, ConstantInfo]:
        skip = ~jnp.asarray(finite, bool)
        eta = jnp.where(skip, 0.0, jnp.asarray(self.stepsize, dtype)).astype(dtype)
        status = _base.status_code((skip, _base.STATUS_NONFINITE_INPUT))
        return eta, rule_state, ConstantInfo(skipped=skip, status=status)


def constant(stepsize: float) -> optax.GradientTransformationExtraArgs:
    """Fixed stepsize: the update is −η·g, the baseline whose sharpness settles at 2/η.

    Math: w_{t+1} = w_t − η·g_t, with η = ``stepsize`` and g_t = ``updates``
    (:class:`ConstantRule`).

    Args:
      stepsize: η > 0 (finite).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value=None, grad=None, value_fn=None, **extra_args)`` returns ``-stepsize * updates``;
      ``value`` and ``grad``, when given, are only checked for finiteness; ``value_fn`` and other
      extra arguments are unused.

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
    rule = ConstantRule(stepsize)

    def init_fn(params: Any) -> ConstantState:
        dtype = _base.real_dtype(params)
        return ConstantState(
            stepsize=_base.scalar(0.0, dtype),  # no step taken yet (as for every tuner)
            info=_base.initial_info(ConstantInfo, dtype),
        )

    def update_fn(
        updates: Any,
        state: ConstantState,
        params: Any = None,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra_args: Any,
    ) -> tuple[Any, ConstantState]:
        del params, value_fn, extra_args  # unused: a constant stepsize needs none of them
        dtype = state.stepsize.dtype
        eta, _, info = rule((), finite=_base.all_finite(updates, grad, value), dtype=dtype)
        new_updates = _base.descent_update(eta, updates, info.skipped)
        return new_updates, ConstantState(stepsize=eta, info=info)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
