"""The closed loop: the joint model with the tuner's own rule choosing η_t (docs/theory.md §5.5).

The joint model is written as a *reduced model* of :mod:`eosmodel.toys` (the protocol of
:mod:`eosmodel.toys._maps`: ``loss``, ``grad_norm_sq``, ``curvature``, ``step``, ``sharpness``,
``top_eigenvalue``, ``coordinates``), so the stepsize in the loop comes from the very rule that
the optax tuner and the toy simulations use (:func:`eosmodel.toys.map_rule`, built on
:mod:`eosmodel.tuners`): no tuner is re-written here. The tuner sees a reduced loss that keeps
the smooth part of the loss (its trend) as well as the oscillation's energy, as it does on a
network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage, optimize

from eosmodel.fit._data import FitData, FitInputError
from eosmodel.fit._joint import clock, loss_energy
from eosmodel.fit._verdict import edge_centre

_GRID = 400

Array = jax.Array


class SmoothPart(NamedTuple):
    """The smooth part of the loss along the run: its relative decay rate on the clock E = Σ η.

    Along gradient flow dL/dE = −‖g‖², so the smooth gradient's squared norm per unit of smooth
    loss is μ(E) = −d ln L_s/dE: measured from the loss trend alone (no contaminated ‖g‖²: at the
    edge the recorded gradient is dominated by the oscillation).

    Attributes:
      clock: (m,) increasing grid of E.
      mu: (m,) μ(E) = −d ln L_s/dE ≥ 0 on the grid.
      tail: p ≥ 0, the power-law exponent of L_s ∝ E^{−p} fitted on the second half of the run:
        beyond the grid μ(E) = p/E (a run whose clock outruns the measured one).
      loss0: L_s at E = 0 (the initial smooth loss).
    """

    clock: Any
    mu: Any
    tail: Any
    loss0: Any

    def at(self, e: Array) -> Array:
        """μ(E): linear interpolation on the grid, p/E beyond it."""
        end = self.clock[-1]
        return jnp.where(e <= end, jnp.interp(e, self.clock, self.mu),
                         self.tail / jnp.maximum(e, jnp.maximum(end, 1e-300)))


def _sharpness_step(lam: Array, change: Array) -> Array:
    """λ' = λ + Δ when Δ ≥ 0 (sharpening), λ' = λ·exp(Δ/λ) when Δ < 0 (self-stabilisation).

    The two agree to first order and in their first derivative at Δ = 0; the multiplicative form
    keeps λ > 0 through a catapult, where a large oscillation would make the additive Euler step
    of Damian's map overshoot to a negative sharpness (on a network the sharpness falls by a
    factor, not below zero).
    """
    safe = jnp.where(lam > 0, lam, 1.0)
    return jnp.where(change >= 0, lam + change, jnp.where(lam > 0, lam * jnp.exp(change / safe), lam + change))


def _smooth_step(ls: Array, eta: Array, mu: Array, curvature: Array) -> Array:
    """L_s' = L_s·max(1 − ημ(1 − ½ηR_s), 0): a step of size η along the smooth gradient (squared
    norm μL_s) on the quadratic model with curvature R_s along it, floored at 0."""
    return ls * jnp.maximum(1.0 - eta * mu * (1.0 - 0.5 * eta * curvature), 0.0)


class JointState(NamedTuple):
    """State of :class:`JointModel`: ``lam`` (the orbit centre's sharpness λ), ``x`` (the
    displacement along the top eigenvector), ``ls`` (the smooth loss L_s), ``clock`` (E = Σ η)."""

    lam: Array
    x: Array
    ls: Array
    clock: Array


class JointModel(NamedTuple):
    """The joint stepsize–sharpness model as a reduced loss (docs/theory.md §5.5).

    Math. Along the top eigenvector the loss is ½λx² + (ζ/12)x⁴ (its curvature at x is λ + ζx²:
    the measured sharpness); the rest is a smooth part L_s whose gradient has squared norm μ(E)L_s
    (:class:`SmoothPart`, from the run's loss trend) and curvature R_s = ρλ along it:

        f    = L_s + ½λx² + (ζ/12)x⁴,         g_x = λx + (ζ/3)x³,
        ‖g‖² = μL_s + g_x²,                    gᵀHg = ρλ·μL_s + (λ + ζx²)·g_x²,

    and one step of size η (any η: the tuner's trials use it too):

        x'   = x − η·g_x                        (= (1 − ηλ)x at ζ = 0: Damian's map)
        λ'   = λ + η·(α·e^{−κE} − ½βx²)         (sharpening that decays in ηt, self-stabilisation;
                                                 multiplicative when negative, :func:`_sharpness_step`)
        L_s' = L_s·max(1 − ημ(1 − ½ηρλ), 0)    (a quadratic step on the smooth part)
        E'   = E + η.

    ρ is the curvature along the smooth gradient relative to the sharpness: the smooth part is
    stable under a step iff ηρλ < 2, and Armijo's condition on it reads ηλ ≤ 2(1 − c)/ρ.

    Attributes:
      alpha, kappa, beta, zeta, rho: α ≥ 0, κ ≥ 0, β ≥ 0, ζ ≥ 0, ρ ≥ 0 (rates per unit of ηt).
      smooth: the :class:`SmoothPart`.

    Reference: Damian, Nichani, Lee, arXiv 2209.15594 (the λ, x map); Roulet, Agarwala,
    Pedregosa, arXiv 2312.00209 (the tuners in the loop).
    """

    alpha: Any
    kappa: Any
    beta: Any
    zeta: Any
    rho: Any
    smooth: SmoothPart

    def _gx(self, s: JointState) -> Array:
        return s.lam * s.x + (self.zeta / 3.0) * s.x ** 3

    def loss(self, s: JointState) -> Array:
        return s.ls + 0.5 * s.lam * s.x * s.x + (self.zeta / 12.0) * s.x ** 4

    def grad_norm_sq(self, s: JointState) -> Array:
        return self.smooth.at(s.clock) * s.ls + self._gx(s) ** 2

    def curvature(self, s: JointState) -> Array:
        g_s = self.smooth.at(s.clock) * s.ls
        return self.rho * s.lam * g_s + (s.lam + self.zeta * s.x * s.x) * self._gx(s) ** 2

    def step(self, s: JointState, eta: Any) -> JointState:
        eta = jnp.asarray(eta, jnp.result_type(s.lam))
        drive = self.alpha * jnp.exp(-self.kappa * s.clock) - 0.5 * self.beta * s.x * s.x
        return JointState(
            lam=_sharpness_step(s.lam, eta * drive),
            x=s.x - eta * self._gx(s),
            ls=_smooth_step(s.ls, eta, self.smooth.at(s.clock), self.rho * s.lam),
            clock=s.clock + eta,
        )

    def sharpness(self, s: JointState) -> Array:
        return s.lam + self.zeta * s.x * s.x

    def top_eigenvalue(self, s: JointState) -> Array:
        return self.sharpness(s)

    def coordinates(self, s: JointState) -> dict[str, Array]:
        return {"x": s.x, "lam": s.lam, "smooth_loss": s.ls}


class EOSAloneState(NamedTuple):
    """State of :class:`EOSAloneModel`: ``lam``, ``ls`` (smooth loss), ``clock``."""

    lam: Array
    ls: Array
    clock: Array


class EOSAloneModel(NamedTuple):
    """"EOS alone" in closed loop: no oscillation, the ceiling enforced by decree.

    Math: f = L_s, ‖g‖² = μL_s, gᵀHg = ρλ·μL_s (the tuner sees only the smooth part: there is no
    oscillation to see), and a step of size η: λ' = min(λ + η·a, 2/η), L_s' as in
    :class:`JointModel`, E' = E + η. The stepsize is set by the smooth part alone and the
    sharpness is clipped to whatever ceiling that stepsize implies.
    """

    a: Any
    rho: Any
    smooth: SmoothPart

    def loss(self, s: EOSAloneState) -> Array:
        return s.ls

    def grad_norm_sq(self, s: EOSAloneState) -> Array:
        return self.smooth.at(s.clock) * s.ls

    def curvature(self, s: EOSAloneState) -> Array:
        return self.rho * s.lam * self.smooth.at(s.clock) * s.ls

    def step(self, s: EOSAloneState, eta: Any) -> EOSAloneState:
        eta = jnp.asarray(eta, jnp.result_type(s.lam))
        ceiling = jnp.where(eta > 0, 2.0 / jnp.where(eta > 0, eta, 1.0), jnp.inf)
        return EOSAloneState(
            lam=jnp.minimum(s.lam + eta * self.a, ceiling),
            ls=_smooth_step(s.ls, eta, self.smooth.at(s.clock), self.rho * s.lam),
            clock=s.clock + eta,
        )

    def sharpness(self, s: EOSAloneState) -> Array:
        return s.lam

    def top_eigenvalue(self, s: EOSAloneState) -> Array:
        return s.lam

    def coordinates(self, s: EOSAloneState) -> dict[str, Array]:
        return {"lam": s.lam, "smooth_loss": s.ls}


# ------------------------------------------------------------------------------------------------
# The smooth part measured on a run.
# ------------------------------------------------------------------------------------------------


def zero_smooth_part() -> SmoothPart:
    """No smooth part: the tuner sees the oscillation only (traces without a loss column)."""
    return SmoothPart(clock=np.array([0.0, 1.0]), mu=np.zeros(2), tail=0.0, loss0=0.0)


def smooth_part(data: FitData, *, window: int = 101) -> SmoothPart:
    """The smooth part of a run's loss on its clock E_t = Σ_{s<t} η_s (docs/theory.md §5.5).

    Math: L_s = the loss trend (lower envelope, :func:`loss_energy`), smoothed again over the same
    window in ln L_s; μ(E) = −d ln L_s/dE by central differences (clipped at 0), on at most 400
    grid points; the tail exponent p of L_s ∝ E^{−p} by least squares of ln L_s on ln E over the
    second half of the clock.

    Raises:
      FitInputError: the trace has no finite ``loss`` at every step.
    """
    if data.loss is None:
        raise FitInputError(
            "the closed loop needs the loss at every step (what the tuner sees); record it "
            "(eosmodel's trainer does) or fit in open loop only."
        )
    _, trend = loss_energy(data.loss, window)
    win = max(3, int(window)) | 1
    log_l = ndimage.uniform_filter1d(np.log(np.maximum(trend, 1e-300)), win, mode="nearest")
    e = clock(data.stepsize)[:-1]
    pick = np.unique(np.linspace(0, len(data) - 1, min(_GRID, len(data))).astype(int))
    pick = pick[np.concatenate(([True], np.diff(e[pick]) > 0))]
    ee, ll = e[pick], log_l[pick]
    if ee.size < 2:
        return zero_smooth_part()._replace(loss0=float(trend[0]))
    mu = np.maximum(-np.gradient(ll, ee), 0.0)
    half = (ee > ee[-1] / 2) & (ee > 0)
    tail = max(-float(np.polyfit(np.log(ee[half]), ll[half], 1)[0]), 0.0) if half.sum() >= 3 else 0.0
    return SmoothPart(clock=ee, mu=mu, tail=tail, loss0=float(np.exp(log_l[0])))


def curvature_ratio(data: FitData, default: float = 1.0) -> float:
    """ρ̂ = median of the recorded gᵀHg/‖g‖² over λ̂ at the measured steps (``default`` when the
    trace has no ``grad_curvature``): how much of the sharpness the gradient direction sees."""
    if data.grad_curvature is None:
        return default
    idx = data.measured
    r = data.grad_curvature[idx] / data.sharpness[idx]
    r = r[np.isfinite(r)]
    return float(np.clip(np.median(r), 0.0, 10.0)) if r.size else default


def pool_smooth_parts(parts: list[SmoothPart]) -> SmoothPart:
    """Several runs' smooth parts on one clock grid: the mean of μ where a run covers the clock,
    the mean tail exponent and initial loss (the runs of one network and data set follow one path
    in ηt-time up to their different stepsizes: docs/theory.md §5.6)."""
    if len(parts) == 1:
        return parts[0]
    hi = max(float(p.clock[-1]) for p in parts)
    grid = np.linspace(0.0, hi, _GRID)
    mus = [np.where(grid <= float(p.clock[-1]), np.interp(grid, p.clock, p.mu), np.nan) for p in parts]
    return SmoothPart(clock=grid, mu=np.nanmean(mus, axis=0), tail=float(np.mean([p.tail for p in parts])),
                      loss0=float(np.mean([p.loss0 for p in parts])))


# ------------------------------------------------------------------------------------------------
# Simulation.
# ------------------------------------------------------------------------------------------------

_RULES: dict = {}


def closed_rule(config: Mapping[str, Any]):
    """The tuner rule of a config, one object per config (so the compiled loop is reused)."""
    from eosmodel.toys import map_rule

    key = tuple(sorted((k, str(v)) for k, v in dict(config).items()))
    if key not in _RULES:
        try:
            _RULES[key] = map_rule(dict(config))
        except (TypeError, ValueError) as err:
            raise FitInputError(f"tuner {dict(config)!r} has no rule for the closed loop: {err}") from None
    return _RULES[key]


def _as64(tree: Any) -> Any:
    return jax.tree.map(lambda v: jnp.asarray(v, dtype=jnp.float64), tree)


@dataclass
class ClosedRun:
    """A closed-loop simulation: per-step predicted ``stepsize``, ``sharpness`` (measured-like:
    λ + ζx²), the centre ``lam``, ``x`` (NaN for EOS alone), ``loss``; ``diverged_at`` or None."""

    stepsize: np.ndarray
    sharpness: np.ndarray
    lam: np.ndarray
    x: np.ndarray
    loss: np.ndarray
    diverged_at: int | None


def simulate_closed(model: Any, state: Any, rule_config: Mapping[str, Any], steps: int) -> ClosedRun:
    """Run a reduced model (:class:`JointModel` or :class:`EOSAloneModel`) with a tuner's rule in
    the loop for ``steps`` steps, in float64 (one compiled ``lax.scan``,
    :func:`eosmodel.dynamics.map_records`)."""
    one = type(model)(*(f if isinstance(f, SmoothPart) else np.asarray(f, dtype=np.float64)[None]
                         for f in model))
    states = type(state)(*(np.asarray(v, dtype=np.float64)[None] for v in state))
    return simulate_closed_batch(one, states, rule_config, steps)[0]


_BATCHED: dict = {}


def _batched_fn(rule: Any, steps: int, model: Any, batch: int):
    """``jit(vmap(map_records))`` over the per-run leaves of ``model`` (the smooth part shared);
    a batch of one runs unbatched (a vmapped scan of one is about twice as slow on a CPU)."""
    key = (id(rule), steps, type(model).__name__, batch == 1)
    if key not in _BATCHED:
        from eosmodel.dynamics import map_records

        axes = type(model)(*(None if isinstance(f, SmoothPart) else 0 for f in model))
        if batch == 1:
            def one(m, s):
                squeeze = lambda t: jax.tree.map(lambda v: v[0], t)  # noqa: E731
                m = type(m)(*(f if isinstance(f, SmoothPart) else squeeze(f) for f in m))
                return jax.tree.map(lambda v: v[None], map_records(m, rule, squeeze(s), steps))

            fn = jax.jit(one)
        else:
            fn = jax.jit(jax.vmap(lambda m, s: map_records(m, rule, s, steps), in_axes=(axes, 0)))
        if len(_BATCHED) > 16:
            _BATCHED.clear()
        _BATCHED[key] = (rule, fn)  # keep the rule alive: its id is the key
    return _BATCHED[key][1]


def simulate_closed_batch(models: Any, states: Any, rule_config: Mapping[str, Any],
                          steps: int) -> list[ClosedRun]:
    """:func:`simulate_closed` for a batch of parameter sets at once (one ``vmap``-ed scan).

    ``models``: a :class:`JointModel`/:class:`EOSAloneModel` whose numeric fields have a leading
    batch axis (the :class:`SmoothPart` shared); ``states`` the initial states, batched alike.
    The finite-difference Jacobian of the closed-loop fit evaluates all its columns this way.
    """
    rule = closed_rule(rule_config)
    n = int(steps)
    with jax.enable_x64(True):
        fn = _batched_fn(rule, n, models, int(np.shape(states[0])[0]))
        rec = jax.device_get(fn(_as64(models), _as64(states)))
    runs = []
    for i in range(np.asarray(rec["stepsize"]).shape[0]):
        alive = np.asarray(rec["alive"][i], bool)

        def col(name):
            if name not in rec:
                return np.full(n, np.nan)
            return np.where(alive, np.asarray(rec[name][i], dtype=np.float64), np.nan)

        dead = np.flatnonzero(~alive)
        run = ClosedRun(stepsize=col("stepsize"), sharpness=col("sharpness"), lam=col("lam"),
                        x=col("x"), loss=col("loss"),
                        diverged_at=int(dead[0]) if dead.size else None)
        # The discrete λ-update can overshoot when the oscillation outgrows self-stabilisation:
        # a sharpness that turns negative (or a non-finite stepsize) is the model breaking down,
        # reported as divergence, and nothing after it is compared with the measurements.
        broke = np.flatnonzero(~(run.sharpness >= 0) | ~np.isfinite(run.stepsize))
        if broke.size:
            t = int(broke[0])
            for arr in (run.stepsize, run.sharpness, run.lam, run.x, run.loss):
                arr[t:] = np.nan
            run.diverged_at = t if run.diverged_at is None else min(int(run.diverged_at), t)
        runs.append(run)
    return runs


# ------------------------------------------------------------------------------------------------
# Block statistics used by the closed-loop fit and the predictions.
# ------------------------------------------------------------------------------------------------


def blocks(idx: np.ndarray, count: int = 24) -> list[np.ndarray]:
    """The measured indices cut into up to ``count`` consecutive blocks of ≥ 4 measurements."""
    count = max(1, min(count, idx.size // 4))
    return [b for b in np.array_split(idx, count) if b.size]


def block_medians(values: np.ndarray, idx_blocks: list[np.ndarray]) -> np.ndarray:
    """Median of ``values`` over each block (NaN where a block has no finite value)."""
    out = []
    for b in idx_blocks:
        v = values[b]
        v = v[np.isfinite(v)]
        out.append(float(np.median(v)) if v.size else np.nan)
    return np.array(out)


def closed_errors(data: FitData, run: ClosedRun) -> dict[str, float]:
    """How a closed-loop run compares with the measured one (docs/theory.md §5.6).

    * ``median_eta_lambda``: median of η_tλ̂_t over the measured steps, predicted and measured,
      and their difference (the first target of the closed loop);
    * ``centre_eta_lambda``: 2 + the median of pair means of η_tλ̂_t − 2 over consecutive
      measurements (the verdicts' centre, :func:`eosmodel.fit.edge_centre`), predicted and
      measured: on a period-2 orbit sampled at alternate phases the plain median falls anywhere
      between the two phases' values, the pair means do not;
    * ``final_sharpness``: median λ̂ over the last 10% of the measurements, predicted and
      measured, and the relative error;
    * ``rms_log_sharpness``, ``rms_log_stepsize``: RMS over blocks of measurements of the log
      ratio of block medians (predicted / measured).
    """
    idx = data.measured
    lam_m, eta_m = data.sharpness[idx], data.stepsize[idx]
    lam_p, eta_p = run.sharpness[idx], run.stepsize[idx]
    # the median ηλ and the final sharpness are judged on the whole run: a prediction that broke
    # down before the end has no final sharpness (NaN), never a made-up one
    tail = idx[-max(1, idx.size // 10):]
    nl_p = eta_p * lam_p
    out = {
        "median_eta_lambda_measured": float(np.median(eta_m * lam_m)),
        "median_eta_lambda_predicted": float(np.nanmedian(nl_p)) if np.isfinite(nl_p).any() else float("nan"),
        "final_sharpness_measured": float(np.median(data.sharpness[tail])),
        "final_sharpness_predicted": float(np.nanmedian(run.sharpness[tail])) if np.isfinite(run.sharpness[tail]).any() else float("nan"),
    }
    out["median_eta_lambda_error"] = out["median_eta_lambda_predicted"] - out["median_eta_lambda_measured"]
    t = data.step[idx].astype(np.float64)
    out["centre_eta_lambda_measured"] = 2.0 + edge_centre(eta_m * lam_m - 2.0, t, 0.0)[0]
    out["centre_eta_lambda_predicted"] = 2.0 + edge_centre(nl_p - 2.0, t, 0.0)[0]
    out["final_sharpness_rel_error"] = out["final_sharpness_predicted"] / out["final_sharpness_measured"] - 1.0
    bl = blocks(idx)
    for key, pred, meas in (("sharpness", run.sharpness, data.sharpness),
                            ("stepsize", run.stepsize, data.stepsize)):
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.log(block_medians(pred, bl)) - np.log(block_medians(meas, bl))
        out[f"rms_log_{key}"] = float(np.sqrt(np.mean(d * d))) if np.all(np.isfinite(d)) else float("inf")
    if run.diverged_at is not None:  # medians over a broken-down run would be made-up numbers
        out["median_eta_lambda_predicted"] = out["final_sharpness_predicted"] = float("nan")
        out["centre_eta_lambda_predicted"] = float("nan")
        out["median_eta_lambda_error"] = out["final_sharpness_rel_error"] = float("nan")
    out["diverged_at"] = run.diverged_at
    return out


def _clip_blocks(d: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(d), np.clip(d, -10.0, 10.0), 10.0)


@dataclass
class ClosedFit:
    """The closed-loop fit: parameters, the simulated run, its errors, the optimiser's message."""

    params: dict[str, float]
    stderr: dict[str, float]
    run: ClosedRun
    errors: dict[str, float]
    rss: float
    message: str
    nfev: int


CLOSED_PARAMS = ("alpha", "kappa", "beta", "zeta", "rho", "lambda0", "log_x0")


def joint_state(lambda0: float, x0: float, smooth: SmoothPart) -> JointState:
    """The initial state (λ₀, x₀, L_s(0), E = 0)."""
    return JointState(lam=lambda0, x=x0, ls=smooth.loss0, clock=0.0)


def fit_closed(data: FitData, rule_config: Mapping[str, Any], start: Mapping[str, float], *,
               smooth: SmoothPart | None = None, max_nfev: int = 30) -> ClosedFit:
    """Fit the joint model in closed loop: η_t from the tuner's rule, nothing measured fed in
    but the run's smooth part (docs/theory.md §5.5).

    Math: θ = (α, κ, β, ζ, ρ, λ₀, ln x₀); the model of :class:`JointModel` run from (λ₀, x₀, L_s(0))
    with the rule. The orbit's phase is chaotic, so the residuals compare block medians over
    consecutive measured steps (:func:`blocks`): ln median λ̂, ln median η and ln median ηλ̂,
    predicted minus measured; ``scipy.optimize.least_squares`` (trust region, forward differences
    with a 5% step, which averages over the phase, all columns in one batched simulation,
    :func:`simulate_closed_batch`) from ``start``, from ρ = 1, and from the variants β ×10 and
    ζ = 0 (on traces up to 20,000 steps; beyond, from a variant only when it starts better); ρ starts from the median recorded gᵀHg/‖g‖² over λ̂
    (``start["rho"]``).
    Standard errors: s²(JᵀJ)⁻¹ on the block residuals (blocks of ≥ 4 measurements are close to
    independent); ``inf`` where the finite-difference Jacobian does not see a parameter (noted).

    Returns:
      :class:`ClosedFit`.
    """
    smooth = smooth_part(data) if smooth is None else smooth
    idx = data.measured
    bl = blocks(idx)
    lam_b = np.log(block_medians(data.sharpness, bl))
    eta_b = np.log(np.maximum(block_medians(data.stepsize, bl), 1e-300))
    nl_b = np.log(np.maximum(block_medians(data.stepsize * data.sharpness, bl), 1e-300))
    n = len(data)

    def models_of(ths):
        ths = np.atleast_2d(ths)
        model = JointModel(*(ths[:, i] for i in range(5)), smooth)
        state = JointState(ths[:, 5], np.exp(ths[:, 6]), np.full(len(ths), smooth.loss0),
                           np.zeros(len(ths)))
        return model, state

    def residuals_of(run):
        with np.errstate(divide="ignore", invalid="ignore"):
            d1 = np.log(block_medians(run.sharpness, bl)) - lam_b
            d2 = np.log(np.maximum(block_medians(run.stepsize, bl), 1e-300)) - eta_b
            d3 = np.log(np.maximum(block_medians(run.stepsize * run.sharpness, bl), 1e-300)) - nl_b
        return _clip_blocks(np.concatenate([d1, d2, d3]))

    def runs_of(ths):
        return simulate_closed_batch(*models_of(ths), rule_config, n)

    def run_of(th):
        return runs_of(th)[0]

    def resid(th):
        return residuals_of(run_of(th))

    th0 = np.array([start["alpha"], start.get("kappa", 0.0), start["beta"], start.get("zeta", 0.0),
                    start.get("rho", 1.0), start["lambda0"], math.log(max(start["x0"], 1e-12))])
    lb = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1e-12, -40.0])
    ub = np.array([np.inf, np.inf, np.inf, np.inf, 10.0, np.inf, 5.0])
    floor = np.maximum(np.abs(th0), 1e-3)

    def jac(th):
        # forward differences with a 5% step (averaging over the orbit's phase), every column
        # in one batched simulation
        h = 0.05 * np.maximum(np.abs(th), floor)
        h = np.where(th + h > ub, -h, h)
        ths = np.vstack([th] + [th + np.eye(th.size)[i] * h[i] for i in range(th.size)])
        res = [residuals_of(r) for r in runs_of(ths)]
        return np.stack([(res[i + 1] - res[0]) / h[i] for i in range(th.size)], axis=1)

    rho_one = th0.copy()
    rho_one[4] = 1.0
    variants = [np.clip(v, lb, ub) for v in
                (th0, rho_one, th0 * np.array([1, 1, 10, 1, 1, 1, 1]), th0 * np.array([1, 1, 1, 0, 1, 1, 1]))]
    costs = [float(np.sum(residuals_of(r) ** 2)) for r in runs_of(np.vstack(variants))]
    # refine the measured-rho start and the rho = 1 start (Armijo's ηλ hinges on rho, whose cost
    # landscape has a local minimum on each side), plus a variant that starts better than both
    # (on a short trace, up to 20,000 steps, every start is refined: it costs seconds)
    better = [i for i in (2, 3) if costs[i] < min(costs[0], costs[1])]
    chosen = [0, 1, 2, 3] if n <= 20_000 else [0, 1] + sorted(better, key=costs.__getitem__)[:1]
    best = None
    for i in chosen:  # a trust-region refinement never increases the cost
        sol = optimize.least_squares(resid, variants[i], jac=jac, bounds=(lb, ub), method="trf",
                                     x_scale=floor, max_nfev=max_nfev)
        if best is None or sol.cost < best.cost:
            best = sol
    run = run_of(best.x)
    jac, r = np.asarray(best.jac), np.asarray(best.fun)
    dof = max(r.size - jac.shape[1], 1)
    s2 = float(r @ r) / dof
    se = np.full(jac.shape[1], np.inf)
    seen = np.sqrt((jac * jac).sum(axis=0)) > 0
    if seen.any():
        jtj = jac[:, seen].T @ jac[:, seen]
        if np.linalg.cond(jtj) < 1e12:
            se[seen] = np.sqrt(np.maximum(np.diag(np.linalg.inv(jtj)) * s2, 0.0))
    params = dict(zip(CLOSED_PARAMS, (float(v) for v in best.x)))
    params["x0"] = math.exp(params.pop("log_x0"))
    stderr = dict(zip(CLOSED_PARAMS, (float(v) for v in se)))
    stderr["x0"] = params["x0"] * stderr.pop("log_x0")
    return ClosedFit(params=params, stderr=stderr, run=run, errors=closed_errors(data, run),
                     rss=float(r @ r), message=str(best.message), nfev=int(best.nfev))


def rule_config(tuner: Any, data: FitData) -> dict[str, Any]:
    """The tuner rule config for the closed loop: ``{"name": ..., **hyper}``.

    ``tuner`` is ``"auto"`` (the trace's ``config["tuner"]``), a rule name (``constant``,
    ``oracle``, ``armijo``, ``polyak``, ``cdat``; ``constant`` takes the trace's first positive
    stepsize) or a config dict (a :func:`eosmodel.tuners.tuner_config` dict works).

    Raises:
      FitInputError: ``"auto"`` on a trace without ``config["tuner"]``, or an unknown rule.
    """
    if isinstance(tuner, str) and tuner == "auto":
        if not data.tuner or "name" not in data.tuner:
            raise FitInputError(
                "closed_loop='auto' needs the trace's config['tuner'] (e.g. {'name': 'polyak', "
                "'c': 0.5}); name the tuner instead, e.g. closed_loop={'name': 'constant', 'stepsize': 0.05}."
            )
        tuner = data.tuner
    if isinstance(tuner, str):
        tuner = {"name": tuner}
    if not isinstance(tuner, Mapping):
        raise FitInputError(
            f"closed_loop must be None, 'auto', a rule name or a config dict, got {tuner!r}."
        )
    config = {k: v for k, v in dict(tuner).items() if k not in ("preset", "preset_args")}
    if config.get("name") == "constant" and "stepsize" not in config:
        config["stepsize"] = float(data.stepsize[data.stepsize > 0][0])
    closed_rule(config)  # validates
    return config
