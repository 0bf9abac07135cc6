"""Tuner rules on the joint model's reduced state (λ_t, x_t): η_t = T(λ_t, x_t, η_{t−1}).

In the joint model the loss along the top eigenvector is ½λx², with gradient g = λx and
curvature gᵀHg = λ³x². Each tuner of science.md §3 restricted to that direction is:

==========  ===================================================================================
constant    η_t = η
oracle      η_t = σ/λ_t                                                   (science.md §3.4)
cdat        η_t = σ·λ²x²/(λ³x² + ε)  (= σ/λ_t for ε = 0; ``ema`` is ignored: both moving
            averages scale with x², so the ratio is the same up to their lag)
polyak      η_t = min((½λx² − f*)/(c·λ²x²), Γ_t) (= min(1/(2cλ), Γ_t) for f* = 0), Γ_t = γ_max or
            min(τ·η_{t−1}, γ_max) with ``smooth_cap`` τ                   (science.md §3.2)
armijo      η_t = η₀β^k, η₀ = min(γη_{t−1}, η_max) (η_max with ``init_rule="max"``), k the
            smallest integer in [0, m−1] with η₀β^k ≤ 2(1 − c)/λ_t: the Armijo condition
            (1 − ηλ)² ≤ 1 − 2cηλ on ½λx² is exactly ηλ ≤ 2(1 − c)        (science.md §3.1)
==========  ===================================================================================

These are written here rather than taken from :func:`eosmodel.toys.map_rule`, whose rules act on
the self-stabilisation *toy's* full loss (its sharpening coordinate s and bulk), so their Polyak
and Armijo steps depend on terms (the s-gradient, the loss offset) that a fitted trace does not
determine. The closed-loop fit needs the rule on the reduced state only.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax.numpy as jnp

from eosmodel.fit._data import FitInputError
from eosmodel.tuners import tuner_config

RULE_NAMES = ("constant", "oracle", "armijo", "polyak", "cdat")

#: The hyperparameters that act on the reduced state, per rule (others, e.g. ``on_failure``,
#: ``ema``, are ignored there).
_REDUCED_KEYS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "oracle": ("sigma",),
    "cdat": ("sigma", "eps"),
    "polyak": ("c", "f_star", "max_stepsize", "smooth_cap"),
    "armijo": ("c", "decrease_factor", "increase_factor", "max_stepsize", "max_trials", "init_rule"),
}


def _defaults(name: str) -> dict[str, Any]:
    """Default hyperparameters of a rule: the real tuner's (``tuner_config``), one source of truth."""
    if name == "oracle":
        return {"sigma": 2.0}  # the oracle is not an optax tuner; σ = 2 puts the step on the edge
    if name == "constant":
        return {}
    full = tuner_config(name)
    return {k: full[k] for k in _REDUCED_KEYS[name]}


def reduced_rule(config: Mapping[str, Any]) -> tuple[Callable, float]:
    """The reduced rule of a tuner config: ``(step, eta_init)``.

    ``step(lam, x, prev) -> eta`` is pure ``jax.numpy`` (scan-safe), ``prev`` the previous η (or,
    at t = 0, ``eta_init``: η_max for Armijo and Polyak, the stepsize for constant, 0 otherwise).
    Keys of the tuner config that do not act on the reduced state (``preset``, ``on_failure``,
    ``ema``, Polyak's ``eps``) are ignored.

    Args:
      config: ``{"name": one of RULE_NAMES, **hyper}`` (a :func:`eosmodel.tuners.tuner_config`
        dict works; ``constant`` needs ``stepsize``).

    Returns:
      ``(step, eta_init)``.

    Raises:
      FitInputError: an unknown name or a missing/invalid hyperparameter.

    Example:
      >>> step, prev = reduced_rule({"name": "polyak", "c": 0.5, "max_stepsize": 1.0})
      >>> float(step(4.0, 0.3, prev))  # 1/(2cλ) = 0.25
      0.25
    """
    name = config.get("name")
    if name not in RULE_NAMES:
        raise FitInputError(
            f"tuner {name!r} has no reduced rule; use one of {RULE_NAMES} (e.g. {{'name': 'oracle', 'sigma': 1.5}})."
        )
    keys = _REDUCED_KEYS[name]
    h = {**_defaults(name), **{k: v for k, v in config.items() if k in keys or k == "stepsize"}}

    def num(key: str, lo: float = 0.0) -> float:
        v = h.get(key)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= lo:
            raise FitInputError(f"tuner {name!r} needs {key} > {lo:g} for the closed loop, got {v!r}.")
        return float(v)

    if name == "constant":
        eta = num("stepsize")
        return (lambda lam, x, prev: jnp.full(jnp.shape(lam), eta, jnp.result_type(lam))), eta
    if name in ("oracle", "cdat"):
        sigma = num("sigma")
        eps = float(h.get("eps", 0.0) or 0.0)

        def step(lam, x, prev):
            if eps == 0.0:
                return jnp.where(lam > 0, sigma / jnp.where(lam > 0, lam, 1.0), 0.0)
            return sigma * lam * lam * x * x / (jnp.abs(lam**3 * x * x) + eps)

        return step, 0.0
    if name == "polyak":
        c, gmax, f_star = num("c"), num("max_stepsize"), float(h.get("f_star") or 0.0)
        tau = h.get("smooth_cap")

        def step(lam, x, prev):
            f = 0.5 * lam * x * x - f_star
            g2 = lam * lam * x * x
            ok = (g2 > 0) & (f >= 0)
            ratio = jnp.where(ok, f / jnp.where(ok, c * g2, 1.0), 0.0)
            cap = gmax if tau is None else jnp.minimum(float(tau) * prev, gmax)
            return jnp.where(ok, jnp.minimum(ratio, cap), 0.0)

        return step, gmax
    # armijo
    c, beta, gamma, emax = num("c"), num("decrease_factor"), num("increase_factor"), num("max_stepsize")
    if not (c < 1 and beta < 1 and gamma >= 1):
        raise FitInputError(f"armijo needs c, decrease_factor in (0, 1) and increase_factor >= 1, got {h}.")
    trials = int(h.get("max_trials") or 30)
    from_max = h.get("init_rule") == "max"

    def step(lam, x, prev):
        eta0 = emax if from_max else jnp.minimum(gamma * prev, emax)
        bound = 2.0 * (1.0 - c) / jnp.where(lam > 0, lam, 1.0)
        k = jnp.ceil(jnp.log(eta0 / bound) / math.log(beta) * -1.0 - 1e-12)
        k = jnp.clip(jnp.where(lam > 0, k, 0.0), 0.0, trials - 1)
        return eta0 * beta**k

    return step, emax
