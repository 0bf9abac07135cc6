"""CDAT: curvature-dynamics aware tuning, η = σ·max(−gᵀu, 0)/(|uᵀHu| + ε): the rule and its optax
transformation."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base


class CDATInfo(NamedTuple):
    """Diagnostics of :func:`cdat` / :class:`CDATRule` for the last update.

    Attributes:
      skipped: bool, no step was taken.
      status: int32 status code (0 ok, 1 non-finite input, 6 degenerate: zero or non-finite
        denominator, or a non-finite stepsize).
      numerator: max(−gᵀu, 0) as used (the bias-corrected average with ``ema``).
      denominator: |uᵀHu| + ε as used (the bias-corrected average of |uᵀHu|, plus ε, with ``ema``).
    """

    skipped: jax.Array
    status: jax.Array
    numerator: jax.Array
    denominator: jax.Array


class CDATRuleState(NamedTuple):
    """State of :class:`CDATRule`.

    Attributes:
      ema_numerator, ema_curvature: the (biased) moving averages of max(⟨g, d⟩, 0) and |dᵀHd|
        (zero and unused without ``ema``).
      count: int32, the number of finite measurements averaged so far (0 without ``ema``).
    """

    ema_numerator: jax.Array
    ema_curvature: jax.Array
    count: jax.Array


@_base.register_state
class CDATState(NamedTuple):
    """State of :func:`cdat`.

    Attributes:
      stepsize: the stepsize the last update took (0 when it took no step).
      info: :class:`CDATInfo` diagnostics.
      rule_state: :class:`CDATRuleState` (the moving averages).
    """

    stepsize: jax.Array
    info: CDATInfo
    rule_state: CDATRuleState


@dataclasses.dataclass(frozen=True, eq=False)
class CDATRule:
    """The CDAT rule η = σ·N/D on local quantities: the quadratic model's step scaled by σ.

    Math, with d the direction (the step is −η·d), g the gradient and H the Hessian:

        η = σ · N / D,   N = max(⟨g, d⟩, 0) (``slope``),   D = |dᵀHd| + ε (``curvature`` = dᵀHd),

    σ = ``sigma``, ε = ``eps``. For GD (d = g) N = ‖g‖² and σ = 1 is the exact minimiser of f
    along −g on a quadratic (η = gᵀg/gᵀHg); σ = 2 puts the step "on edge". With ``ema = ρ``, N
    and |dᵀHd| are replaced by exponential moving averages m_t = ρ·m_{t−1} + (1 − ρ)·N_t,
    v_t = ρ·v_{t−1} + (1 − ρ)·|dᵀHd|_t (m_{−1} = v_{−1} = 0) debiased Adam-style:
    N = m_t/(1 − ρ^k), D = v_t/(1 − ρ^k) + ε after k finite measurements (skipped steps leave
    them unchanged). No step when ``finite`` is False (status 1) or when D ≤ 0, a measurement is
    non-finite or η is non-finite (status 6).

    Args:
      sigma: σ > 0. Default 2.0 ("cdat-edge"; σ = 1 is "cdat-greedy").
      eps: ε ≥ 0. Default 0.0.
      ema: ρ in [0, 1), or ``None`` (no averaging; a static choice).

    The numbers may be traced JAX values (then they are not validated).

    Call: ``rule(rule_state, *, slope, curvature, finite=True) -> (eta, rule_state, CDATInfo)``,
    elementwise over the shape of ``slope``; ``slope`` and ``curvature`` are ignored (taken as 0)
    where ``finite`` is False.

    Failure modes: bad concrete hyperparameters raise ``ValueError``.

    Reference: Roulet, Agarwala, Grill, Swirszcz, Blondel, Pedregosa, "Stepping on the edge:
    curvature aware learning rate tuners", arXiv 2407.06183.

    Example:
      >>> rule = CDATRule(sigma=1.0)  # f = 2w² at w = 1: g = 4, gᵀHg = 64
      >>> eta, _, info = rule(rule.init(0.0), slope=16.0, curvature=64.0)
      >>> float(eta)
      0.25
    """

    sigma: Any = 2.0
    eps: Any = 0.0
    ema: Any = None

    def __post_init__(self) -> None:
        checked = {
            "sigma": _base.check_positive("sigma", self.sigma),
            "eps": _base.check_nonnegative("eps", self.eps),
            "ema": None if self.ema is None else _base.check_unit_interval("ema", self.ema),
        }
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def init(self, like: Any) -> CDATRuleState:
        """Zero averages and count, in the dtype and shape of ``like``."""
        zero = jnp.zeros_like(jnp.asarray(like))
        return CDATRuleState(zero, zero, jnp.zeros(jnp.shape(zero), jnp.int32))

    def __call__(
        self, rule_state: CDATRuleState, *, slope: Any, curvature: Any, finite: Any = True
    ) -> tuple[jax.Array, CDATRuleState, CDATInfo]:
        slope = _base.as_floating(slope, rule_state.ema_numerator)
        dtype = slope.dtype
        finite = jnp.asarray(finite, bool)
        numerator = jnp.where(finite, jnp.maximum(slope, 0.0), 0.0).astype(dtype)
        curvature = jnp.where(finite, jnp.abs(jnp.asarray(curvature, dtype)), 0.0).astype(dtype)
        measured = finite & jnp.isfinite(numerator) & jnp.isfinite(curvature)
        eps = _base.hyper(self.eps, slope)
        if self.ema is None:
            new_state = rule_state
            num_used, den_used = numerator, curvature + eps
        else:
            rho = _base.hyper(self.ema, slope)
            # A concrete ρ: 1 − ρ in Python (double precision), as the transformation always did.
            one_minus = _base.hyper(1.0 - self.ema, slope) if isinstance(self.ema, float) else 1 - rho
            m = jnp.where(measured, rho * rule_state.ema_numerator + one_minus * numerator, rule_state.ema_numerator)
            v = jnp.where(measured, rho * rule_state.ema_curvature + one_minus * curvature, rule_state.ema_curvature)
            count = jnp.where(measured, rule_state.count + 1, rule_state.count).astype(jnp.int32)
            debias = 1.0 - rho ** jnp.maximum(count, 1).astype(dtype)
            new_state = CDATRuleState(m.astype(dtype), v.astype(dtype), count)
            num_used, den_used = m / debias, v / debias + eps
        eta_raw = _base.hyper(self.sigma, slope) * num_used / jnp.where(den_used > 0, den_used, 1.0)
        degenerate = finite & ~(measured & (den_used > 0) & jnp.isfinite(eta_raw))
        skip = ~finite | degenerate
        eta = jnp.where(skip, 0.0, eta_raw).astype(dtype)
        status = _base.status_code((~finite, _base.STATUS_NONFINITE_INPUT), (degenerate, _base.STATUS_DEGENERATE))
        info = CDATInfo(
            skipped=skip,
            status=status,
            # Reported as used; 0 where unmeasured (status says why).
            numerator=jnp.where(finite & jnp.isfinite(num_used), num_used, 0.0).astype(dtype),
            denominator=jnp.where(finite & jnp.isfinite(den_used), den_used, 0.0).astype(dtype),
        )
        return eta, new_state, info


def cdat(
    sigma: float = 2.0, eps: float = 0.0, ema: float | None = None
) -> optax.GradientTransformationExtraArgs:
    """CDAT stepsize η = σ·max(−gᵀu, 0)/(|uᵀHu| + ε), as an optax transformation.

    Math (:class:`CDATRule`), with u = −d the update direction (d = ``updates``), g = ``grad``
    (defaults to d) and H the Hessian of f = ``value_fn`` at w = ``params``:

        η = σ · N / D,   N = max(−gᵀu, 0),   D = |uᵀHu| + ε,

    σ = ``sigma``, ε = ``eps``, with the optional debiased moving averages of ``ema``. Hu is one
    Hessian-vector product per step, forward-over-reverse: ``jax.jvp(jax.grad(value_fn),
    (params,), (u,))`` (extra ``update`` keyword arguments that ``value_fn`` accepts, e.g. a
    batch, are passed on to it). The two debiasing corrections cancel in N/D when ε = 0, so the
    first step is the raw ratio.

    Args:
      sigma: σ > 0. Default 2.0 ("cdat-edge"; σ = 1 is "cdat-greedy").
      eps: ε ≥ 0 added to the denominator. Default 0.0 (a zero denominator skips the step).
      ema: ρ in [0, 1), or ``None`` for no averaging (ρ = 0 is the same rule).

    Numbers may be traced (``optax.inject_hyperparams(cdat)(sigma=1.5)`` works under ``jit``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value=None, grad=None, value_fn, **extra_args)`` returns ``-eta * updates``;
      ``value_fn(params) -> scalar`` is required (``value`` is only checked for finiteness).

    Failure modes:
      Non-finite value/gradient: no step, ``status=1`` (no Hessian-vector product taken). Zero
      or non-finite denominator, or non-finite η (e.g. a non-finite HVP): no step, ``status=6``.
      Bad hyperparameters raise ``ValueError`` at construction.

    Reference: Roulet, Agarwala, Grill, Swirszcz, Blondel, Pedregosa, "Stepping on the edge:
    curvature aware learning rate tuners", arXiv 2407.06183.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda w: 2.0 * jnp.sum(w**2)  # Hessian 4·I
      >>> opt, w = cdat(sigma=1.0), jnp.array([1.0, -2.0])
      >>> u, s = opt.update(4.0 * w, opt.init(w), w, value_fn=f)
      >>> float(s.stepsize)  # gᵀg/gᵀHg = 1/4
      0.25
    """
    rule = CDATRule(sigma, eps, ema)

    def init_fn(params: Any) -> CDATState:
        dtype = _base.real_dtype(params)
        zero = _base.scalar(0.0, dtype)
        return CDATState(
            stepsize=zero,
            info=_base.initial_info(CDATInfo, dtype),
            rule_state=rule.init(zero),
        )

    def update_fn(
        updates: Any,
        state: CDATState,
        params: Any,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra_args: Any,
    ) -> tuple[Any, CDATState]:
        _base.require("value_fn", value_fn, "cdat")
        dtype = state.stepsize.dtype
        grad = updates if grad is None else grad
        finite = _base.all_finite(updates, grad, value)
        fn = _base.bind_value_fn(value_fn, extra_args)

        def measure(_: None) -> tuple[jax.Array, jax.Array]:
            u = jax.tree.map(jnp.negative, updates)
            hu = jax.jvp(jax.grad(fn), (params,), (u,))[1]
            slope = -_base.tree_vdot(grad, u).astype(dtype)  # ⟨g, d⟩ = −gᵀu
            return slope, _base.tree_vdot(u, hu).astype(dtype)

        def no_measure(_: None) -> tuple[jax.Array, jax.Array]:
            return _base.scalar(0.0, dtype), _base.scalar(0.0, dtype)

        # The Hessian-vector product is only taken on finite inputs.
        slope, curvature = jax.lax.cond(finite, measure, no_measure, None)
        eta, rule_state, info = rule(state.rule_state, slope=slope, curvature=curvature, finite=finite)
        new_state = CDATState(stepsize=eta, info=info, rule_state=rule_state)
        return _base.descent_update(eta, updates, info.skipped), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
