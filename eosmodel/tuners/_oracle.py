"""Oracle sharpness tuner η = σ/λ (the rule and an optax transformation fed the sharpness)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base


class OracleInfo(NamedTuple):
    """Diagnostics of :func:`oracle` / :class:`OracleRule`.

    Attributes:
      skipped: bool, no step was taken (non-finite input, status 1; λ ≤ 0 or non-finite, status 6).
      status: int32 status code (see :mod:`eosmodel.tuners`).
    """

    skipped: jax.Array
    status: jax.Array


@_base.register_state
class OracleState(NamedTuple):
    """State of :func:`oracle`: the stepsize taken (0 when skipped or before any step), diagnostics."""

    stepsize: jax.Array
    info: OracleInfo


@dataclasses.dataclass(frozen=True, eq=False)
class OracleRule:
    """The oracle rule η_t = σ/λ_t, which holds the normalized sharpness η_tλ_t at σ.

    Math: η_t = σ/λ_t with λ_t = ``sharpness`` (the top Hessian eigenvalue, or a reduced map's
    sharpness variable) and σ = ``sigma``; no step where λ_t ≤ 0 or is non-finite (status 6), or
    where ``finite`` is False (status 1). On the self-stabilisation map with σ < 2,
    λ_t ≈ √(λ₀² + 2σαt) (docs/theory.md §3.4, §4.1).

    Args:
      sigma: σ > 0. Default 2.0 (on the edge, as ``cdat-edge``).

    Call: ``rule(rule_state, *, sharpness, finite=True) -> (eta, rule_state, OracleInfo)``,
    elementwise over the shape of ``sharpness``; ``rule_state`` is ``()``.

    Failure modes: a non-positive or non-finite concrete ``sigma`` raises ``ValueError``.

    Example:
      >>> eta, _, info = OracleRule(1.5)((), sharpness=3.0)
      >>> float(eta), int(info.status)
      (0.5, 0)
    """

    sigma: Any = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _base.check_positive("sigma", self.sigma))

    def init(self, like: Any) -> tuple:
        """The rule's state: ``()`` (none)."""
        del like
        return ()

    def __call__(self, rule_state: tuple, *, sharpness: Any, finite: Any = True) -> tuple[jax.Array, tuple, OracleInfo]:
        lam = jnp.asarray(sharpness)
        finite = jnp.asarray(finite, bool)
        degenerate = finite & ~(jnp.isfinite(lam) & (lam > 0))
        skip = ~finite | degenerate
        eta = jnp.where(skip, 0.0, _base.hyper(self.sigma, lam) / jnp.where(skip, 1.0, lam))
        status = _base.status_code((~finite, _base.STATUS_NONFINITE_INPUT), (degenerate, _base.STATUS_DEGENERATE))
        return eta.astype(lam.dtype), rule_state, OracleInfo(skipped=skip, status=status)


def oracle(sigma: float = 2.0) -> optax.GradientTransformationExtraArgs:
    """Oracle stepsize η = σ/λ from a sharpness the caller measures (:class:`OracleRule`).

    Math: w_{t+1} = w_t − (σ/λ_t)·d_t with d_t = ``updates`` and λ_t = ``sharpness``, the top
    Hessian eigenvalue at w_t (e.g. from :func:`eosmodel.sharpness.top_eigenpairs`).

    Args:
      sigma: σ > 0. Default 2.0.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params=None, *,
      sharpness, value=None, grad=None, value_fn=None, **extra_args)`` returns
      ``-(sigma/sharpness) * updates``; ``sharpness`` is required, ``value``/``grad`` are only
      checked for finiteness, the rest is unused. It is not in ``TUNERS``: a training run does not
      feed it the sharpness at every step.

    Failure modes:
      Non-finite ``updates``/``grad``/``value``: no step, status 1. λ ≤ 0 or non-finite: no step,
      status 6. A missing ``sharpness`` raises ``ValueError``.

    Reference: Damian, Nichani, Lee, arXiv 2209.15594 (the σ/λ tuner of the self-stabilisation
    analysis).

    Example:
      >>> import jax.numpy as jnp
      >>> opt, w = oracle(1.0), jnp.array([1.0])
      >>> u, s = opt.update(4.0 * w, opt.init(w), w, sharpness=4.0)
      >>> float(s.stepsize), u.tolist()
      (0.25, [-1.0])
    """
    rule = OracleRule(sigma)

    def init_fn(params: Any) -> OracleState:
        dtype = _base.real_dtype(params)
        return OracleState(
            stepsize=_base.scalar(0.0, dtype),
            info=_base.initial_info(OracleInfo, dtype),
        )

    def update_fn(
        updates: Any,
        state: OracleState,
        params: Any = None,
        *,
        sharpness: Any = None,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra_args: Any,
    ) -> tuple[Any, OracleState]:
        del params, value_fn, extra_args  # unused
        _base.require("sharpness", sharpness, "oracle")
        dtype = state.stepsize.dtype
        eta, _, info = rule(
            (), sharpness=_base.scalar(sharpness, dtype), finite=_base.all_finite(updates, grad, value)
        )
        return _base.descent_update(eta, updates, info.skipped), OracleState(stepsize=eta, info=info)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
