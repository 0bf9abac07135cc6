"""Closed-form reduced maps of the toy models, and tuner rules expressed on their reduced state.

Three toy losses of docs/theory.md §4 have an exact low-dimensional description of gradient descent
(GD): the state of the map at step t determines the loss, the gradient norm, the curvature along
the gradient and the next state for ANY stepsize η_t. A stepsize tuner can therefore run on the
reduced state exactly as it runs on the toy's parameters:

* :class:`SelfStabilizationModel` (Damian, Nichani, Lee, arXiv 2209.15594), state
  :class:`SelfStabilizationState` ``(x, lam)``;
* :class:`SecondOrderModel` (Agarwala, Pedregosa, Pennington, arXiv 2210.04860), state
  :class:`SecondOrderState` ``(z, ntk)``, and the normalised 2-D map
  :func:`second_order_normalized_step` ``(x, y; e)``;
* :class:`UVModel` (Lewkowycz et al., arXiv 2003.02218; Kalra & Barkeshli, arXiv 2311.02076),
  state :class:`UVState` ``(f, lam)``.

Every model is a ``NamedTuple`` of constants (a pytree: constants can be traced and ``vmap``-ed)
with the same pure methods, the *reduced-model protocol*:

====================  ===========================================================================
``loss(s)``           f(w_t)
``grad_norm_sq(s)``   ‖g_t‖², g_t = ∇f(w_t)
``curvature(s)``      g_tᵀ H(w_t) g_t
``step(s, eta)``      the reduced state of w_t − η g_t (one GD step, exact for any η)
``sharpness(s)``      the model's tracked curvature λ_t (the variable of the map)
``top_eigenvalue(s)`` λ_max(H(w_t)), where the reduced state determines it
====================  ===========================================================================

A tuner rule (:class:`MapRule`, made by :func:`map_rule`, or :func:`constant_rule`,
:func:`oracle_rule`, :func:`armijo_rule`, :func:`polyak_rule`, :func:`cdat_rule`) is a pair of
pure functions ``init(model, state) -> rule_state`` and ``update(model, state, rule_state) ->
(eta, rule_state, diagnostics)`` that only use the protocol above, so every rule runs on every
reduced model (any object with these methods: the fit's reduced model too). It is a thin adapter
around the tuner's single stepsize rule in :mod:`eosmodel.tuners` (``STEPSIZE_RULES``), the same
one its optax transformation calls, so its η equals what that transformation computes on the
toy's parameters (tested to ~1e-12 in float64). :func:`reduce_toy` gives a toy's reduced model and the
map from its parameters to the reduced state; :func:`map_rule` builds a rule from a tuner config.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from eosmodel.tuners import STEPSIZE_RULES, build_rule, tuner_config

Array = jax.Array

__all__ = [
    "MAP_OPTIONS",
    "MapRule",
    "SecondOrderModel",
    "SecondOrderState",
    "SelfStabilizationModel",
    "SelfStabilizationState",
    "UVModel",
    "UVState",
    "armijo_rule",
    "cdat_rule",
    "constant_rule",
    "RULES",
    "map_rule",
    "oracle_rule",
    "polyak_rule",
    "reduce_toy",
    "second_order_normalized_step",
]


def _c(value: Any, like: Array) -> Array:
    """``value`` cast to the floating dtype of ``like`` (model constants follow the state)."""
    return jnp.asarray(value, dtype=jnp.result_type(like))


# ----------------------------------------------------------------------------------------------
# Self-stabilisation (Damian et al.): x along the top eigenvector, lam the sharpness.
# ----------------------------------------------------------------------------------------------


class SelfStabilizationState(NamedTuple):
    """Reduced state of the self-stabilisation model: ``x`` (displacement along the top
    eigenvector), ``lam`` (λ = λ₀ + √β·s, the x–x entry of the Hessian) and ``z`` (the bulk
    coordinates, shape ``(..., k)``, or ``None`` without a bulk)."""

    x: Array
    lam: Array
    z: Array | None = None


class SelfStabilizationModel(NamedTuple):
    """Self-stabilisation model of Damian, Nichani & Lee, exact on the toy's loss, in (x, λ).

    Math (docs/theory.md §4.1; the toy :func:`eosmodel.toys.self_stabilization`): parameters (x, s[,
    z]) with λ = λ₀ + √β·s and loss

        L = −(α/√β)·s + ½λx² [+ ½Σμᵢzᵢ²]                      (``sharpening_limit=None``)
        L = ½κ(s − s∞)² + ½λx² [+ ½Σμᵢzᵢ²],  κ = α/(λ∞ − λ₀), s∞ = (λ∞ − λ₀)/√β.

    With p = a(λ) − βx²/2, a(λ) = α (or α(λ∞ − λ)/(λ∞ − λ₀) with the limit), so that ∂L/∂s =
    −p/√β, GD with stepsize η gives exactly

        x' = (1 − ηλ)x,   λ' = λ + η·p,   z' = (1 − ημ)z      (Damian et al.'s map, y = λ − 2/η)

    and, with H = [[λ, √βx], [√βx, κ]] ⊕ diag(μ) (κ = 0 without the limit):

        f    = −(α/β)(λ − λ₀) + ½λx²   or   ½κ(λ − λ∞)²/β + ½λx²        (+ ½Σμz²)
        ‖g‖² = λ²x² + p²/β (+ Σμ²z²),   gᵀHg = λ³x² − 2λx²p + κp²/β (+ Σμ³z²)
        λ_max(H) = max((λ + κ)/2 + √((λ − κ)²/4 + βx²), max μ).

    Attributes:
      alpha: α > 0, the progressive-sharpening rate (per unit of ηt).
      beta: β > 0, the self-stabilisation strength ‖∇S_⊥‖².
      lambda0: λ₀, the sharpness at s = 0 (the origin of the loss's s-term).
      sharpening_limit: λ∞ > λ₀ or ``None`` (the exact unbounded model; a static choice).
      bulk_eigenvalues: μ (shape ``(k,)``) or ``None`` (no bulk; a static choice).

    Failure modes: λ can be driven negative and x can blow up (ηλ far above 2): the map then
    returns inf/NaN, which :mod:`eosmodel.dynamics` detects and records as divergence.

    Reference: Damian, Nichani, Lee, "Self-stabilization", arXiv 2209.15594.

    Example:
      >>> m = SelfStabilizationModel(alpha=1.0, beta=4.0)
      >>> s = m.step(SelfStabilizationState(x=0.5, lam=3.0), 0.5)
      >>> float(s.x), float(s.lam)
      (-0.25, 3.25)
    """

    alpha: Any = 1.0
    beta: Any = 1.0
    lambda0: Any = 0.0
    sharpening_limit: Any = None
    bulk_eigenvalues: Any = None

    @classmethod
    def from_toy(cls, toy: Any) -> "SelfStabilizationModel":
        """The reduced model of a :func:`eosmodel.toys.self_stabilization` toy (its ``hyper``)."""
        _check_toy_name(toy, "self_stabilization")
        h = toy.hyper
        bulk = h.get("bulk_eigenvalues")
        return cls(
            alpha=h["alpha"], beta=h["beta"], lambda0=h["lambda0"],
            sharpening_limit=h.get("sharpening_limit"),
            bulk_eigenvalues=None if bulk is None else tuple(float(m) for m in bulk),
        )

    def state_from_params(self, params: Any) -> SelfStabilizationState:
        """The reduced state of the toy's parameters ``{"x", "s"[, "z"]}``."""
        x = jnp.asarray(params["x"])
        lam = _c(self.lambda0, x) + jnp.sqrt(_c(self.beta, x)) * jnp.asarray(params["s"], x.dtype)
        z = params.get("z")
        return SelfStabilizationState(x=x, lam=lam, z=None if z is None else jnp.asarray(z, x.dtype))

    def _kappa(self, like: Array) -> Array:
        if self.sharpening_limit is None:
            return jnp.zeros((), jnp.result_type(like))
        return _c(self.alpha, like) / (_c(self.sharpening_limit, like) - _c(self.lambda0, like))

    def _p(self, s: SelfStabilizationState) -> Array:
        """p = a(λ) − βx²/2 (= −√β·∂L/∂s): the sharpening drive minus self-stabilisation."""
        drive = _c(self.alpha, s.x)
        if self.sharpening_limit is not None:
            drive = self._kappa(s.x) * (_c(self.sharpening_limit, s.x) - s.lam)
        return drive - 0.5 * _c(self.beta, s.x) * s.x * s.x

    def _bulk(self, s: SelfStabilizationState, power: int) -> Array | float:
        if self.bulk_eigenvalues is None:
            return 0.0
        mu = _c(self.bulk_eigenvalues, s.x)
        return jnp.sum(mu**power * s.z * s.z, axis=-1)

    def loss(self, s: SelfStabilizationState) -> Array:
        """f (see the class docstring)."""
        b = _c(self.beta, s.x)
        if self.sharpening_limit is None:
            base = -(_c(self.alpha, s.x) / b) * (s.lam - _c(self.lambda0, s.x))
        else:
            d = s.lam - _c(self.sharpening_limit, s.x)
            base = 0.5 * self._kappa(s.x) * d * d / b
        return base + 0.5 * s.lam * s.x * s.x + 0.5 * self._bulk(s, 1)

    def grad_norm_sq(self, s: SelfStabilizationState) -> Array:
        """‖g‖² = λ²x² + p²/β (+ Σμ²z²)."""
        p = self._p(s)
        return (s.lam * s.x) ** 2 + p * p / _c(self.beta, s.x) + self._bulk(s, 2)

    def curvature(self, s: SelfStabilizationState) -> Array:
        """gᵀHg = λ³x² − 2λx²p + κp²/β (+ Σμ³z²)."""
        p = self._p(s)
        out = s.lam * s.x * s.x * (s.lam * s.lam - 2.0 * p)
        if self.sharpening_limit is not None:
            out = out + self._kappa(s.x) * p * p / _c(self.beta, s.x)
        return out + self._bulk(s, 3)

    def step(self, s: SelfStabilizationState, eta: Any) -> SelfStabilizationState:
        """One GD step: x' = (1 − ηλ)x, λ' = λ + η·p, z' = (1 − ημ)z."""
        eta = _c(eta, s.x)
        z = s.z
        if self.bulk_eigenvalues is not None:
            z = (1.0 - eta[..., None] * _c(self.bulk_eigenvalues, s.x)) * s.z
        return SelfStabilizationState(x=(1.0 - eta * s.lam) * s.x, lam=s.lam + eta * self._p(s), z=z)

    def sharpness(self, s: SelfStabilizationState) -> Array:
        """λ, the x–x entry of the Hessian (the map's sharpness variable)."""
        return s.lam

    def top_eigenvalue(self, s: SelfStabilizationState) -> Array:
        """λ_max(H) = max((λ + κ)/2 + √((λ − κ)²/4 + βx²), max μ)."""
        k = self._kappa(s.x)
        top = 0.5 * (s.lam + k) + jnp.hypot(0.5 * (s.lam - k), jnp.sqrt(_c(self.beta, s.x)) * s.x)
        if self.bulk_eigenvalues is not None:
            top = jnp.maximum(top, jnp.max(_c(self.bulk_eigenvalues, s.x)))
        return top

    def coordinates(self, s: SelfStabilizationState) -> dict[str, Array]:
        """The reduced coordinates as trace columns: ``x`` and ``lam``."""
        return {"x": s.x, "lam": s.lam}


def _check_toy_name(toy: Any, name: str) -> None:
    if getattr(toy, "name", None) != name:
        raise ValueError(
            f"toy must be a {name!r} toy, got {getattr(toy, 'name', toy)!r}; build it with "
            f"eosmodel.toys.{name}()."
        )


# ----------------------------------------------------------------------------------------------
# Second-order regression (Agarwala et al.): one data point, two parameters.
# ----------------------------------------------------------------------------------------------


class SecondOrderState(NamedTuple):
    """Reduced state of the 1-point, 2-parameter second-order regression model: ``z`` (the
    residual) and ``ntk`` (T = ‖J‖², the NTK, ≈ the sharpness near z = 0)."""

    z: Array
    ntk: Array


class SecondOrderModel(NamedTuple):
    """Second-order regression model with one data point and two parameters, in (z, T).

    Math (docs/theory.md §4.2): z(θ) = z₀ + Gᵀθ + ½θᵀQθ, loss ½z², J = G + Qθ, T = ‖J‖², Q with
    eigenvalues ±ω, E = z₀ − ½GᵀQ⁻¹G. With φ = θ + Q⁻¹G: z − E = ½φᵀQφ, T = φᵀQ²φ,
    JᵀQJ = φᵀQ³φ = 2ω²(z − E) and φᵀQ⁴φ = ω²T, so GD θ' = θ − ηzJ gives exactly

        z' = (1 − ηT)·z + η²ω²z²(z − E)
        T' = T + η²ω²z²·T − 4ηω²z(z − E)

    and ‖g‖² = z²T, gᵀHg = z²T² + 2ω²z³(z − E) (H = JJᵀ + zQ),
    λ_max(H) = T/2 + √(T²/4 + ω²z² + 2ω²z(z − E)). With x = ηωz, y = ηT − 2, e = ηωE this is
    the normalised map of :func:`second_order_normalized_step`.

    Attributes:
      omega: ω > 0, the modulus of Q's eigenvalues ±ω.
      energy: E = z₀ − ½GᵀQ⁻¹G (the value of z at the saddle of z(θ)).

    Reference: Agarwala, Pedregosa, Pennington, arXiv 2210.04860.

    Example:
      >>> m = SecondOrderModel(omega=1.0, energy=1.0)
      >>> s = m.step(SecondOrderState(z=0.5, ntk=2.0), 0.5)
      >>> float(s.z), float(s.ntk)   # with eta*omega = 0.5: x' = 0.5 z', y' = 0.5 T' - 2
      (-0.03125, 2.625)
    """

    omega: Any = 1.0
    energy: Any = 1.0

    @classmethod
    def from_toy(cls, toy: Any) -> "SecondOrderModel":
        """The reduced model of a :func:`eosmodel.toys.second_order_regression_1d` toy:
        ω and E = z₀ − (g₁² − g₂²)/(2ω)."""
        _check_toy_name(toy, "second_order_regression_1d")
        omega, z0, g = toy.hyper["omega"], toy.hyper["z0"], toy.hyper["g"]
        return cls(omega=omega, energy=z0 - (g[0] ** 2 - g[1] ** 2) / (2.0 * omega))

    @staticmethod
    def state_from_params(toy: Any, params: Any) -> SecondOrderState:
        """(z, T) of the toy's parameters θ (shape ``(..., 2)``): z = z₀ + gᵀθ + ½ω(θ₁² − θ₂²),
        T = ‖g + diag(ω, −ω)θ‖²."""
        _check_toy_name(toy, "second_order_regression_1d")
        theta = jnp.asarray(params)
        omega, z0 = toy.hyper["omega"], toy.hyper["z0"]
        g = jnp.asarray(toy.hyper["g"], theta.dtype)
        q = jnp.asarray([omega, -omega], theta.dtype)
        z = z0 + theta @ g + 0.5 * jnp.sum(q * theta * theta, axis=-1)
        return SecondOrderState(z=z, ntk=jnp.sum((g + q * theta) ** 2, axis=-1))

    def loss(self, s: SecondOrderState) -> Array:
        """f = ½z²."""
        return 0.5 * s.z * s.z

    def grad_norm_sq(self, s: SecondOrderState) -> Array:
        """‖g‖² = z²T."""
        return s.z * s.z * s.ntk

    def curvature(self, s: SecondOrderState) -> Array:
        """gᵀHg = z²T² + 2ω²z³(z − E)."""
        w2 = _c(self.omega, s.z) ** 2
        return s.z * s.z * (s.ntk * s.ntk + 2.0 * w2 * s.z * (s.z - _c(self.energy, s.z)))

    def step(self, s: SecondOrderState, eta: Any) -> SecondOrderState:
        """One GD step (exact for any η)."""
        eta = _c(eta, s.z)
        w2 = _c(self.omega, s.z) ** 2
        d = s.z - _c(self.energy, s.z)
        ez = eta * s.z
        return SecondOrderState(
            z=(1.0 - eta * s.ntk) * s.z + w2 * ez * ez * d,
            ntk=s.ntk + w2 * ez * ez * s.ntk - 4.0 * eta * w2 * s.z * d,
        )

    def sharpness(self, s: SecondOrderState) -> Array:
        """T = ‖J‖² (the NTK; the sharpness at z = 0)."""
        return s.ntk

    def top_eigenvalue(self, s: SecondOrderState) -> Array:
        """λ_max(H) = T/2 + √(T²/4 + ω²z² + 2ω²z(z − E))."""
        w2 = _c(self.omega, s.z) ** 2
        disc = 0.25 * s.ntk * s.ntk + w2 * s.z * s.z + 2.0 * w2 * s.z * (s.z - _c(self.energy, s.z))
        return 0.5 * s.ntk + jnp.sqrt(jnp.maximum(disc, 0.0))

    def coordinates(self, s: SecondOrderState) -> dict[str, Array]:
        """The reduced coordinates as trace columns: ``z`` and ``ntk``."""
        return {"z": s.z, "ntk": s.ntk}


def second_order_normalized_step(x: Any, y: Any, e: Any) -> tuple[Array, Array]:
    """One GD step of the second-order regression model in normalised variables.

    Math (docs/theory.md §4.2), with x = ηωz, y = ηT − 2, e = ηωE at a fixed stepsize η:

        x' = −(1 + y)·x + x²·(x − e)
        y' = y + x²·(y + 2) − 4·x·(x − e)

    Args:
      x: the normalised residual ηωz.
      y: the normalised centred sharpness ηT − 2.
      e: the normalised saddle value ηωE (a constant of the run).

    Returns:
      ``(x', y')``, arrays of the broadcast shape and dtype of the inputs.

    Reference: Agarwala, Pedregosa, Pennington, arXiv 2210.04860.

    Example:
      >>> [float(v) for v in second_order_normalized_step(0.25, -1.0, 0.5)]
      [-0.015625, -0.6875]
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    e = _c(e, x)
    return -(1.0 + y) * x + x * x * (x - e), y + x * x * (y + 2.0) - 4.0 * x * (x - e)


# ----------------------------------------------------------------------------------------------
# uv two-layer model (catapult).
# ----------------------------------------------------------------------------------------------


class UVState(NamedTuple):
    """Reduced state of the uv model: ``f`` = uᵀv/√n (the output) and ``lam`` =
    (‖u‖² + ‖v‖²)/n (the NTK, the sharpness at r = f − y = 0)."""

    f: Array
    lam: Array


class UVModel(NamedTuple):
    """Two-layer linear "uv" model f = uᵀv/√n on one example, in the reduced state (f, λ).

    Math (docs/theory.md §4.3): loss ½r², r = f − y, λ = (‖u‖² + ‖v‖²)/n; GD gives exactly

        f' = f − ηλr + η²r²f/n
        λ' = λ − 4ηrf/n + η²r²λ/n

    and ‖g‖² = r²λ, gᵀHg = r²λ² + 2r³f/n (H = JJᵀ + r·∇²f, Jᵀ∇²fJ = 2f/n). Catapult for
    2/λ₀ < η < 4/λ₀, divergence beyond.

    Attributes:
      target: y, the target of the single example.
      width: n, the width (u, v ∈ ℝⁿ).

    Reference: Lewkowycz et al., arXiv 2003.02218; Kalra & Barkeshli, arXiv 2311.02076.

    Example:
      >>> m = UVModel(target=0.0, width=1)
      >>> s = m.step(UVState(f=1.0, lam=2.0), 0.5)
      >>> float(s.f), float(s.lam)
      (0.25, 0.5)
    """

    target: Any = 0.0
    width: Any = 1

    @classmethod
    def from_toy(cls, toy: Any) -> "UVModel":
        """The reduced model of a :func:`eosmodel.toys.uv` toy: its target and width."""
        _check_toy_name(toy, "uv")
        return cls(target=toy.hyper["target"], width=toy.hyper["width"])

    @staticmethod
    def state_from_params(params: Any) -> UVState:
        """(f, λ) of the parameters ``{"u", "v"}``: f = uᵀv/√n, λ = (‖u‖² + ‖v‖²)/n."""
        u, v = jnp.asarray(params["u"]), jnp.asarray(params["v"])
        n = u.shape[-1]
        return UVState(f=jnp.sum(u * v, axis=-1) / jnp.sqrt(jnp.asarray(n, u.dtype)),
                       lam=(jnp.sum(u * u, axis=-1) + jnp.sum(v * v, axis=-1)) / n)

    def loss(self, s: UVState) -> Array:
        """f = ½(f − y)²."""
        r = s.f - _c(self.target, s.f)
        return 0.5 * r * r

    def grad_norm_sq(self, s: UVState) -> Array:
        """‖g‖² = r²λ."""
        r = s.f - _c(self.target, s.f)
        return r * r * s.lam

    def curvature(self, s: UVState) -> Array:
        """gᵀHg = r²λ² + 2r³f/n."""
        r = s.f - _c(self.target, s.f)
        return r * r * (s.lam * s.lam + 2.0 * r * s.f / _c(self.width, s.f))

    def step(self, s: UVState, eta: Any) -> UVState:
        """One GD step (exact for any η)."""
        eta = _c(eta, s.f)
        n = _c(self.width, s.f)
        r = s.f - _c(self.target, s.f)
        er2 = (eta * r) ** 2 / n
        return UVState(
            f=s.f - eta * s.lam * r + er2 * s.f,
            lam=s.lam - 4.0 * eta * r * s.f / n + er2 * s.lam,
        )

    def sharpness(self, s: UVState) -> Array:
        """λ = (‖u‖² + ‖v‖²)/n."""
        return s.lam

    def top_eigenvalue(self, s: UVState) -> Array:
        """Not determined by (f, λ) away from r = 0; returns λ (exact at r = 0)."""
        return s.lam

    def coordinates(self, s: UVState) -> dict[str, Array]:
        """The reduced coordinates as trace columns: ``f`` and ``lam``."""
        return {"f": s.f, "lam": s.lam}


# ----------------------------------------------------------------------------------------------
# Tuner rules on the reduced state.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MapRule:
    """A stepsize rule on a reduced model: ``init(model, state)`` and ``update(model, state,
    rule_state) -> (eta, rule_state, diagnostics)`` (pure, jit/vmap/scan-safe).

    ``diagnostics`` is a dict of scalars with the same keys and dtypes at every step; the keys are
    those of the matching :mod:`eosmodel.tuners` ``info`` (they become ``tuner_<key>`` trace
    columns). Calling the rule is ``update``.

    Attributes:
      name: the tuner's name (``constant``, ``oracle``, ``armijo``, ``polyak``, ``cdat``).
      init: ``(model, state) -> rule_state``.
      update: ``(model, state, rule_state) -> (eta, rule_state, diagnostics)``.
      hyper: the rule's hyperparameters (for the record; may hold tracers inside ``vmap``).
    """

    name: str
    init: Callable[[Any, Any], Any]
    update: Callable[[Any, Any, Any], tuple[Array, Any, dict[str, Array]]]
    hyper: dict

    def __call__(self, model: Any, state: Any, rule_state: Any):
        return self.update(model, state, rule_state)


#: Settings of the map adapters that are not hyperparameters of the tuner's rule:
#: ``guard`` (constant: check the loss and gradient for finiteness) and ``exact`` (oracle: use
#: ``model.top_eigenvalue`` instead of ``model.sharpness``). Both are static.
MAP_OPTIONS: dict[str, dict[str, bool]] = {"constant": {"guard": True}, "oracle": {"exact": False}}


def _finite_inputs(model: Any, state: Any) -> tuple[Array, Array, Array]:
    """(f, ‖g‖², both finite) of the reduced state."""
    f, g2 = model.loss(state), model.grad_norm_sq(state)
    return f, g2, jnp.isfinite(f) & jnp.isfinite(g2)


def _adapt(name: str, rule: Any, options: dict[str, bool]) -> tuple[Callable, Callable]:
    """``(init, update)`` of the map rule: the local quantities of :class:`MapRule`'s reduced
    model (f, ‖g‖², gᵀHg, φ(η) = f(step(s, η)), λ) fed to the tuner's rule."""
    if name == "constant":

        def init(model, state):
            return rule.init(model.sharpness(state))

        def update(model, state, rs):
            lam = model.sharpness(state)
            if options["guard"]:
                finite = _finite_inputs(model, state)[2]
            else:  # divergence is detected on the state itself (the sweep's fast path)
                finite = jnp.ones(jnp.shape(lam), bool)
            return rule(rs, finite=finite, dtype=jnp.result_type(lam))

    elif name == "oracle":

        def init(model, state):
            return rule.init(model.sharpness(state))

        def update(model, state, rs):
            lam = model.top_eigenvalue(state) if options["exact"] else model.sharpness(state)
            return rule(rs, sharpness=lam)

    else:

        def init(model, state):
            return rule.init(model.loss(state))

        def update(model, state, rs):
            f, g2, finite = _finite_inputs(model, state)
            if name == "armijo":  # GD on the reduced model: d = g, slope ‖g‖², φ exact
                trial = lambda eta: model.loss(model.step(state, eta))  # noqa: E731
                return rule(rs, value=f, slope=g2, trial=trial, finite=finite)
            if name == "polyak":
                return rule(rs, value=f, grad_norm_sq=g2, finite=finite)
            return rule(rs, slope=g2, curvature=model.curvature(state), finite=finite)  # cdat

    def update_dict(model, state, rs):
        eta, rs, info = update(model, state, rs)
        return eta, rs, info._asdict()

    return init, update_dict


def map_rule(config: Any, **hyper: Any) -> MapRule:
    """The tuner's stepsize rule on a reduced model, from a tuner config or a name/preset.

    ``map_rule({"name": "polyak", "c": 0.5})``, ``map_rule(tuner_config("sps-0.5"))``,
    ``map_rule("sps-0.5")`` or ``map_rule("oracle", sigma=1.5)``: the config is resolved by
    :func:`eosmodel.tuners.tuner_config` (the defaults and ranges of the tuner's rule class; the
    oracle σ/λ is one of the tuners there). The rule is that class (e.g.
    :class:`eosmodel.tuners.ArmijoRule`) fed the reduced model's local quantities:

    * f = ``model.loss(s)``, ‖g‖² = ``model.grad_norm_sq(s)``, finite = both finite;
    * constant: η (no step where the inputs are non-finite, unless ``guard=False``);
    * oracle: λ = ``model.sharpness(s)`` (``model.top_eigenvalue(s)`` with ``exact=True``);
    * armijo: slope ‖g‖² and the exact trial φ(η) = ``model.loss(model.step(s, η))``;
    * polyak: f and ‖g‖²;
    * cdat: slope ‖g‖² and curvature gᵀHg = ``model.curvature(s)`` (d = g).

    So its η equals what the :mod:`eosmodel.tuners` transformation takes on the toy's parameters
    (tested to 1e-12 in float64). Hyperparameters may be traced (a ``vmap``-ed sweep).

    Args:
      config: a tuner name or preset, or a config mapping (``preset``/``preset_args`` are
        provenance).
      **hyper: hyperparameters (override the config's), and the adapter options of
        :data:`MAP_OPTIONS` (``guard`` for constant, ``exact`` for oracle).

    Returns:
      A :class:`MapRule` whose ``hyper`` is the complete config's hyperparameters and options.

    Raises:
      ValueError: an unknown rule or hyperparameter, or a hyperparameter out of range.

    Example:
      >>> rule = map_rule("sps-0.5")
      >>> m, s = UVModel(target=0.0, width=1e300), UVState(f=0.3, lam=4.0)  # ½λx² in effect
      >>> float(rule(m, s, rule.init(m, s))[0])  # 1/(2cλ)
      0.25
    """
    if isinstance(config, str):
        name, cfg = config, dict(hyper)
    elif isinstance(config, Mapping):
        cfg = {**config, **hyper}
        name = cfg.get("name", cfg.get("preset"))
    else:
        raise ValueError(f"rule must be a rule name or a tuner config, got {config!r}; pass e.g. 'oracle'.")
    options = dict(MAP_OPTIONS.get(name, {}))
    for key in options:
        if key in cfg:
            options[key] = cfg.pop(key)
    try:
        full = tuner_config(name, **cfg) if isinstance(config, str) else tuner_config(cfg)
    except TypeError as err:
        raise ValueError(f"bad hyperparameters for rule {name!r}: {err}") from None
    rule = build_rule(full)
    init, update = _adapt(full["name"], rule, options)
    record = {k: v for k, v in full.items() if k not in ("name", "preset", "preset_args")}
    return MapRule(full["name"], init, update, {**record, **options})


def _positional(name: str, args: tuple, hyper: dict) -> dict:
    """Positional arguments of a rule factory mapped onto its rule class's fields, in order."""
    fields = list(inspect.signature(STEPSIZE_RULES[name]).parameters)
    if len(args) > len(fields):
        raise ValueError(f"{name}_rule takes at most {len(fields)} positional arguments ({fields}), got {len(args)}.")
    clash = set(fields[: len(args)]) & set(hyper)
    if clash:
        raise ValueError(f"{name}_rule got {sorted(clash)} both by position and by name; give each once.")
    return {**dict(zip(fields, args)), **hyper}


def constant_rule(stepsize: Any, *, guard: bool = True) -> MapRule:
    """Fixed stepsize η_t = η on a reduced model (:class:`eosmodel.tuners.ConstantRule`).

    Args:
      stepsize: η > 0 (may be a traced scalar inside ``vmap``).
      guard: as the real tuner, take no step (η = 0, status 1) when the state's loss or gradient
        norm is non-finite (static; default True). ``guard=False`` skips that check (and the
        loss and gradient it needs): the fast path of :func:`eosmodel.dynamics.sweep`, which
        detects divergence on the state itself.

    Returns:
      A :class:`MapRule` (:func:`map_rule`); diagnostics ``skipped`` and ``status``.
    """
    return map_rule("constant", stepsize=stepsize, guard=guard)


def oracle_rule(*args: Any, exact: bool = False, **hyper: Any) -> MapRule:
    """Oracle sharpness tuner η_t = σ/λ_t on a reduced model (:class:`eosmodel.tuners.OracleRule`).

    Math: η_t = σ/λ_t with λ_t = ``model.sharpness(state)`` (the map's sharpness variable), or
    λ_max(H) = ``model.top_eigenvalue(state)`` when ``exact``. Under it η_tλ_t ≡ σ, and on the
    self-stabilisation map with σ < 2, λ_t ≈ √(λ₀² + 2σαt) (docs/theory.md §3.4, §4.1).

    Args:
      *args, **hyper: the hyperparameters of :class:`eosmodel.tuners.OracleRule` (``sigma``,
        default 2.0; may be traced).
      exact: use the top Hessian eigenvalue instead of the map's λ (static).

    Returns:
      A :class:`MapRule`; no step (status 6) where λ_t ≤ 0 or is non-finite.
    """
    return map_rule("oracle", **_positional("oracle", args, hyper), exact=exact)


def armijo_rule(*args: Any, **hyper: Any) -> MapRule:
    """Armijo backtracking on a reduced model (:class:`eosmodel.tuners.ArmijoRule`).

    Math (docs/theory.md §3.1): the first of η₀, βη₀, … (at most m trials) with
    f(w − ηg) ≤ f(w) − c·η·‖g‖², where f(w − ηg) = ``model.loss(model.step(state, η))`` is exact
    on the reduced state; η₀ = min(γ·η_{t−1}, η_max).

    Args:
      *args, **hyper: the hyperparameters of :class:`eosmodel.tuners.ArmijoRule` (same names,
        order and defaults: ``c``, ``decrease_factor``, ``increase_factor``, ``max_stepsize``,
        ``max_trials``, ``on_failure``, ``init_rule``); numbers may be traced inside ``vmap``.

    Returns:
      A :class:`MapRule`; diagnostics as :class:`eosmodel.tuners.ArmijoInfo`.
    """
    return map_rule("armijo", **_positional("armijo", args, hyper))


def polyak_rule(*args: Any, **hyper: Any) -> MapRule:
    """Polyak stepsize SPS_max on a reduced model (:class:`eosmodel.tuners.PolyakRule`).

    Math (docs/theory.md §3.2): η = min((f − f*)/(c·‖g‖²), Γ_t) with f = ``model.loss`` and ‖g‖² =
    ``model.grad_norm_sq``.

    Args:
      *args, **hyper: the hyperparameters of :class:`eosmodel.tuners.PolyakRule` (``c``,
        ``f_star``, ``max_stepsize``, ``smooth_cap``, ``eps``); numbers may be traced.

    Returns:
      A :class:`MapRule`; diagnostics as :class:`eosmodel.tuners.PolyakInfo`.
    """
    return map_rule("polyak", **_positional("polyak", args, hyper))


def cdat_rule(*args: Any, **hyper: Any) -> MapRule:
    """CDAT on a reduced model (:class:`eosmodel.tuners.CDATRule` with d = g).

    Math (docs/theory.md §3.4): η = σ·‖g‖²/(|gᵀHg| + ε) with ``model.grad_norm_sq`` and
    ``model.curvature`` (or their debiased moving averages with ``ema``).

    Args:
      *args, **hyper: the hyperparameters of :class:`eosmodel.tuners.CDATRule` (``sigma``,
        ``eps``, ``ema``); numbers may be traced.

    Returns:
      A :class:`MapRule`; diagnostics as :class:`eosmodel.tuners.CDATInfo`.
    """
    return map_rule("cdat", **_positional("cdat", args, hyper))


#: Rule factories by name (the tuners of :mod:`eosmodel.tuners` plus the ``oracle``).
RULES: dict[str, Callable[..., MapRule]] = {
    "constant": constant_rule,
    "oracle": oracle_rule,
    "armijo": armijo_rule,
    "polyak": polyak_rule,
    "cdat": cdat_rule,
}


def reduce_toy(toy: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The reduced model of a toy and the map from its parameters to the reduced state.

    Supports :func:`eosmodel.toys.self_stabilization` (state (x, λ[, z])),
    :func:`eosmodel.toys.uv` ((f, λ)) and :func:`eosmodel.toys.second_order_regression_1d`
    ((z, T)). GD, or any tuner, on the toy's parameters then equals the reduced map with the
    matching rule (:func:`map_rule`) started at ``to_state(params)``.

    Returns:
      ``(model, to_state)``.

    Raises:
      ValueError: a toy without a closed-form reduced map.

    Example:
      >>> from eosmodel.toys import uv
      >>> model, to_state = reduce_toy(uv(8, 0.5))
      >>> type(model).__name__, to_state.__name__
      ('UVModel', 'state_from_params')
    """
    name = getattr(toy, "name", None)
    if name == "self_stabilization":
        model = SelfStabilizationModel.from_toy(toy)
        return model, model.state_from_params
    if name == "uv":
        return UVModel.from_toy(toy), UVModel.state_from_params
    if name == "second_order_regression_1d":

        def state_from_params(params: Any) -> SecondOrderState:
            return SecondOrderModel.state_from_params(toy, params)

        return SecondOrderModel.from_toy(toy), state_from_params
    raise ValueError(
        f"toy {name!r} has no closed-form reduced map; use a self_stabilization, uv or "
        "second_order_regression_1d toy (or simulate the toy itself with simulate)."
    )
