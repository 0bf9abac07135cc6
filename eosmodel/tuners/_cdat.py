"""CDAT: curvature-dynamics aware tuning, η = σ·max(−gᵀu, 0)/(|uᵀHu| + ε)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base


class CDATInfo(NamedTuple):
    """Diagnostics of :func:`cdat` for the last update.

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


@_base.register_state
class CDATState(NamedTuple):
    """State of :func:`cdat`.

    Attributes:
      stepsize: the stepsize the last update took (0 when it took no step).
      info: :class:`CDATInfo` diagnostics.
      ema_numerator, ema_curvature: the (biased) moving averages of max(−gᵀu, 0) and |uᵀHu|
        (zero and unused without ``ema``).
      count: int32, the number of finite measurements averaged so far.
    """

    stepsize: jax.Array
    info: CDATInfo
    ema_numerator: jax.Array
    ema_curvature: jax.Array
    count: jax.Array


def cdat(
    sigma: float = 2.0, eps: float = 0.0, ema: float | None = None
) -> optax.GradientTransformationExtraArgs:
    """CDAT stepsize: η = σ·max(−gᵀu, 0)/(|uᵀHu| + ε), the quadratic model's step scaled by σ.

    Math, with u = −d the update direction (d = ``updates``), g = ``grad`` (defaults to d) and H
    the Hessian of f = ``value_fn`` at w = ``params``:

        η = σ · N / D,   N = max(−gᵀu, 0),   D = |uᵀHu| + ε,

    σ = ``sigma``, ε = ``eps``. For GD (d = g) N = ‖g‖² and σ = 1 is the exact minimiser of f
    along −g on a quadratic (η = gᵀg/gᵀHg); σ = 2 puts the step "on edge" (the stability
    threshold of the quadratic model along u). Hu is one Hessian-vector product per step,
    forward-over-reverse: ``jax.jvp(jax.grad(value_fn), (params,), (u,))``.

    With ``ema = ρ`` the numerator and |uᵀHu| are replaced by exponential moving averages
    m_t = ρ·m_{t−1} + (1 − ρ)·N_t and v_t = ρ·v_{t−1} + (1 − ρ)·|uᵀHu|_t (m_{−1} = v_{−1} = 0),
    debiased Adam-style: N = m_t/(1 − ρ^{k}), D = v_t/(1 − ρ^{k}) + ε after k finite measurements.
    The two corrections cancel in N/D when ε = 0, so the first step is the raw ratio and the
    averages are not biased towards 0. Skipped steps leave the averages unchanged.

    Args:
      sigma: σ > 0. Default 2.0 ("cdat-edge"; σ = 1 is "cdat-greedy").
      eps: ε ≥ 0 added to the denominator. Default 0.0 (a zero denominator skips the step).
      ema: ρ in [0, 1), or ``None`` for no averaging (ρ = 0 is the same rule).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value=None, grad=None, value_fn)`` returns ``-eta * updates``; ``value_fn(params) ->
      scalar`` is required (``value`` is only checked for finiteness).

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
    sigma = _base.check_positive("sigma", sigma)
    eps = _base.check_nonnegative("eps", eps)
    rho = None if ema is None else _base.as_real("ema", ema)
    if rho is not None and not 0.0 <= rho < 1.0:
        raise ValueError(f"ema must lie in [0, 1), got {ema!r}; pass a decay such as 0.9, or None.")

    def init_fn(params: Any) -> CDATState:
        dtype = _base.real_dtype(params)
        zero = _base.scalar(0.0, dtype)
        return CDATState(
            stepsize=zero,
            info=CDATInfo(
                skipped=_base.scalar(False, bool),
                status=_base.scalar(_base.STATUS_OK, "int32"),
                numerator=zero,
                denominator=zero,
            ),
            ema_numerator=zero,
            ema_curvature=zero,
            count=_base.scalar(0, "int32"),
        )

    def update_fn(
        updates: Any,
        state: CDATState,
        params: Any,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
    ) -> tuple[Any, CDATState]:
        _base.require("value_fn", value_fn, "cdat")
        dtype = state.stepsize.dtype
        grad = updates if grad is None else grad
        finite = _base.all_finite(updates, grad, value)

        def measure(_: None) -> tuple[jax.Array, jax.Array]:
            u = jax.tree.map(jnp.negative, updates)
            hu = jax.jvp(jax.grad(value_fn), (params,), (u,))[1]
            numerator = jnp.maximum(-_base.tree_vdot(grad, u), 0.0).astype(dtype)
            curvature = jnp.abs(_base.tree_vdot(u, hu)).astype(dtype)
            return numerator, curvature

        def no_measure(_: None) -> tuple[jax.Array, jax.Array]:
            return _base.scalar(0.0, dtype), _base.scalar(0.0, dtype)

        numerator, curvature = jax.lax.cond(finite, measure, no_measure, None)
        measured = finite & jnp.isfinite(numerator) & jnp.isfinite(curvature)
        if rho is None:
            ema_num, ema_curv, count = state.ema_numerator, state.ema_curvature, state.count
            num_used, den_used = numerator, curvature + eps
        else:
            ema_num = jnp.where(measured, rho * state.ema_numerator + (1 - rho) * numerator, state.ema_numerator)
            ema_curv = jnp.where(measured, rho * state.ema_curvature + (1 - rho) * curvature, state.ema_curvature)
            count = jnp.where(measured, state.count + 1, state.count).astype(jnp.int32)
            debias = 1.0 - jnp.asarray(rho, dtype) ** jnp.maximum(count, 1).astype(dtype)
            num_used, den_used = ema_num / debias, ema_curv / debias + eps
        eta_raw = sigma * num_used / jnp.where(den_used > 0, den_used, 1.0)
        degenerate = finite & ~(measured & (den_used > 0) & jnp.isfinite(eta_raw))
        skip = ~finite | degenerate
        eta = jnp.where(skip, 0.0, eta_raw).astype(dtype)
        status = jnp.where(
            ~finite,
            _base.STATUS_NONFINITE_INPUT,
            jnp.where(degenerate, _base.STATUS_DEGENERATE, _base.STATUS_OK),
        ).astype(jnp.int32)
        new_state = CDATState(
            stepsize=eta,
            info=CDATInfo(
                skipped=skip,
                status=status,
                # Reported as used; 0 where unmeasured (status says why).
                numerator=jnp.where(finite & jnp.isfinite(num_used), num_used, 0.0).astype(dtype),
                denominator=jnp.where(finite & jnp.isfinite(den_used), den_used, 0.0).astype(dtype),
            ),
            ema_numerator=ema_num.astype(dtype),
            ema_curvature=ema_curv.astype(dtype),
            count=count,
        )
        return _base.descent_update(eta, updates, skip), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
