"""Polyak stepsize SPS_max (Loizou et al.), with an optional smoothed cap: the rule and its optax
transformation."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base


class PolyakInfo(NamedTuple):
    """Diagnostics of :func:`polyak` / :class:`PolyakRule` for the last update.

    Attributes:
      skipped: bool, no step was taken (non-finite input, ‖g‖² ≤ eps, or f < f*).
      status: int32 status code (0 ok, 1 non-finite input, 2 zero gradient, 3 f < f*).
      ratio: the uncapped Polyak ratio (f − f*)/(c‖g‖²); 0 when the input is non-finite or
        ‖g‖² ≤ eps (the ratio is undefined there), negative when f < f*.
      cap: the cap in force, γ_max or min(τ·η_{t−1}, γ_max) with the smoothed cap.
    """

    skipped: jax.Array
    status: jax.Array
    ratio: jax.Array
    cap: jax.Array


class PolyakRuleState(NamedTuple):
    """State of :class:`PolyakRule`: ``reference_stepsize`` = η_{t−1} of the smoothed cap, the last
    positive stepsize taken (γ_max before the first step; unused without ``smooth_cap``)."""

    reference_stepsize: jax.Array


@_base.register_state
class PolyakState(NamedTuple):
    """State of :func:`polyak`.

    Attributes:
      stepsize: the stepsize the last update took (0 when it took no step).
      info: :class:`PolyakInfo` diagnostics.
      rule_state: :class:`PolyakRuleState` (the smoothed cap's reference stepsize).
    """

    stepsize: jax.Array
    info: PolyakInfo
    rule_state: PolyakRuleState


@dataclasses.dataclass(frozen=True, eq=False)
class PolyakRule:
    """The Polyak rule SPS_max, η = min((f − f*)/(c‖g‖²), Γ_t), on local quantities.

    Math:

        η_t = min( (f − f*) / (c·‖g‖²),  Γ_t ),
        Γ_t = γ_max                                   (``smooth_cap=None``),
        Γ_t = min(τ·η_{t−1}, γ_max), Γ_0 = γ_max       (smoothed cap),

    with f = ``value``, ‖g‖² = ``grad_norm_sq``, f* = ``f_star``, c = ``c``, γ_max =
    ``max_stepsize``, τ = ``smooth_cap`` and η_{t−1} the last positive stepsize taken. No step
    (η = 0) when ``finite`` is False (status 1), ‖g‖² ≤ ``eps`` (status 2) or f < f* (status 3).
    On f = ½λw² with f* = 0: η = min(1/(2cλ), γ_max).

    Args:
      c: c > 0. Default 0.5.
      f_star: f*, finite. Default 0.0.
      max_stepsize: γ_max > 0. Default 1.0.
      smooth_cap: τ ≥ 1, or ``None`` (fixed cap; a static choice).
      eps: ≥ 0, the zero-gradient guard. Default 0.0.

    The numbers may be traced JAX values (then they are not validated).

    Call: ``rule(rule_state, *, value, grad_norm_sq, finite=True) -> (eta, rule_state,
    PolyakInfo)``, elementwise over the shape of ``value``.

    Failure modes: bad concrete hyperparameters raise ``ValueError``.

    Reference: Loizou et al., arXiv 2002.10542.

    Example:
      >>> rule = PolyakRule(c=0.5, max_stepsize=10.0)  # f = 2w², λ = 4, at w = 1
      >>> eta, _, info = rule(rule.init(0.0), value=2.0, grad_norm_sq=16.0)
      >>> float(eta), float(info.ratio)  # 1/(2cλ)
      (0.25, 0.25)
    """

    c: Any = 0.5
    f_star: Any = 0.0
    max_stepsize: Any = 1.0
    smooth_cap: Any = None
    eps: Any = 0.0

    def __post_init__(self) -> None:
        checked = {
            "c": _base.check_positive("c", self.c),
            "f_star": _base.check_finite("f_star", self.f_star),
            "max_stepsize": _base.check_positive("max_stepsize", self.max_stepsize),
            "smooth_cap": None if self.smooth_cap is None
            else _base.check_at_least("smooth_cap", self.smooth_cap, 1.0),
            "eps": _base.check_nonnegative("eps", self.eps),
        }
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def init(self, like: Any) -> PolyakRuleState:
        """η_{−1} = γ_max, in the dtype and shape of ``like``."""
        like = jnp.asarray(like)
        return PolyakRuleState(reference_stepsize=jnp.full(jnp.shape(like), _base.hyper(self.max_stepsize, like)))

    def __call__(
        self, rule_state: PolyakRuleState, *, value: Any, grad_norm_sq: Any, finite: Any = True
    ) -> tuple[jax.Array, PolyakRuleState, PolyakInfo]:
        f = _base.as_floating(value, rule_state.reference_stepsize)
        dtype = f.dtype
        g2 = jnp.asarray(grad_norm_sq, dtype)
        finite = jnp.asarray(finite, bool)
        gap = f - _base.hyper(self.f_star, f)
        zero_grad = finite & (g2 <= _base.hyper(self.eps, f))
        defined = finite & ~zero_grad
        below = defined & (gap < 0)
        ratio = jnp.where(defined, gap / jnp.where(defined, _base.hyper(self.c, f) * g2, 1.0), 0.0).astype(dtype)
        gamma_max = _base.hyper(self.max_stepsize, f)
        if self.smooth_cap is None:
            cap = jnp.full_like(f, gamma_max)
        else:
            cap = jnp.minimum(_base.hyper(self.smooth_cap, f) * rule_state.reference_stepsize, gamma_max)
        cap = cap.astype(dtype)
        skip = ~finite | zero_grad | below
        eta = jnp.where(skip, 0.0, jnp.minimum(ratio, cap)).astype(dtype)
        status = _base.status_code(
            (~finite, _base.STATUS_NONFINITE_INPUT),
            (zero_grad, _base.STATUS_ZERO_GRADIENT),
            (below, _base.STATUS_BELOW_F_STAR),
        )
        new_state = PolyakRuleState(jnp.where(eta > 0, eta, rule_state.reference_stepsize).astype(dtype))
        return eta, new_state, PolyakInfo(skipped=skip, status=status, ratio=ratio, cap=cap)


def polyak(
    c: float = 0.5,
    f_star: float = 0.0,
    max_stepsize: float = 1.0,
    smooth_cap: float | None = None,
    eps: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """Polyak stepsize SPS_max: η = min((f − f*)/(c‖g‖²), γ_max), as an optax transformation.

    Math (:class:`PolyakRule`), with f(w_t) = ``value``, g_t = ``grad`` (defaults to ``updates``;
    the step follows −``updates``):

        η_t = min( (f(w_t) − f*) / (c·‖g_t‖²),  Γ_t ),
        Γ_t = γ_max                                   (``smooth_cap=None``),
        Γ_t = min(τ·η_{t−1}, γ_max), Γ_0 = γ_max       (smoothed cap),

    τ = ``smooth_cap`` is the *per-step* growth factor of the cap (Loizou et al.'s smoothing uses
    τ = γ^{b/n} for batch size b, data set size n and a per-epoch factor γ, e.g. 2^{b/n}; pass
    that number). η_{t−1} is the last positive stepsize taken, so a skipped step does not
    collapse the cap. On f = ½λw² with f* = 0: η = min(1/(2cλ), γ_max).

    optax 0.2.8's ``polyak_sgd(scaling=s, max_learning_rate=m)`` is ``chain(sgd(s),
    scale_by_polyak(m))``: the Polyak ratio is measured on the already scaled updates −s·g, so its
    step is s·min(gap/(s²‖g‖²), m) = min(gap/(s‖g‖²), s·m). With a fixed cap this rule therefore
    equals it at s = c, m = γ_max/c (not s = 1/c; both facts are tested). The ratio is computed
    by :class:`PolyakRule` rather than through optax because the same rule runs on reduced maps,
    and the per-step (smoothed) cap and the diagnostics are not exposed by optax.

    Args:
      c: c > 0. Default 0.5 (0.2 is the other common choice).
      f_star: f*, a lower bound of the loss. Default 0.0 (interpolating models).
      max_stepsize: γ_max > 0. Default 1.0.
      smooth_cap: τ ≥ 1, the per-step growth factor of the smoothed cap, or ``None`` (fixed cap).
      eps: ≥ 0; no step when ‖g‖² ≤ eps (the zero-gradient guard). Default 0.0.

    Numbers may be traced (``optax.inject_hyperparams(polyak)(c=0.2)`` works under ``jit``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value, grad=None, value_fn=None, **extra_args)`` returns ``-eta * updates``; ``value`` is
      required, ``value_fn`` and other extra arguments are unused.

    Failure modes:
      No step (``skipped=True``) when the value or gradient is non-finite (``status=1``), when
      ‖g‖² ≤ eps (``status=2``), or when f < f* (``status=3``; never an ascent step). Bad
      hyperparameters raise ``ValueError`` at construction.

    References: Loizou et al., arXiv 2002.10542 (SPS_max and its smoothing); Roulet, Agarwala,
    Pedregosa, arXiv 2312.00209.

    Example:
      >>> import jax.numpy as jnp
      >>> opt, w = polyak(c=0.5, max_stepsize=10.0), jnp.array([1.0])
      >>> u, s = opt.update(4.0 * w, opt.init(w), w, value=2.0 * w[0] ** 2)  # f = 2w², λ = 4
      >>> float(s.stepsize)  # 1/(2cλ)
      0.25
    """
    rule = PolyakRule(c, f_star, max_stepsize, smooth_cap, eps)

    def init_fn(params: Any) -> PolyakState:
        dtype = _base.real_dtype(params)
        zero = _base.scalar(0.0, dtype)
        return PolyakState(
            stepsize=zero,
            info=_base.initial_info(PolyakInfo, dtype, cap=_base.scalar(rule.max_stepsize, dtype)),
            rule_state=rule.init(zero),
        )

    def update_fn(
        updates: Any,
        state: PolyakState,
        params: Any = None,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra_args: Any,
    ) -> tuple[Any, PolyakState]:
        del params, value_fn, extra_args  # unused
        _base.require("value", value, "polyak")
        dtype = state.stepsize.dtype
        grad = updates if grad is None else grad
        value = _base.scalar(value, dtype)
        finite = _base.all_finite(updates, grad, value)
        grad_sq = _base.tree_vdot(grad, grad).astype(dtype)
        eta, rule_state, info = rule(state.rule_state, value=value, grad_norm_sq=grad_sq, finite=finite)
        new_state = PolyakState(stepsize=eta, info=info, rule_state=rule_state)
        return _base.descent_update(eta, updates, info.skipped), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
