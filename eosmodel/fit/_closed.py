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

Array = jax.Array


class SmoothPart(NamedTuple):
    """The smooth part of the loss as seen along the run, tabulated on the clock E = Σ η.

    Attributes:
      clock: (m,) increasing grid of E.
      mu: (m,) μ(E) = ‖g_s‖²/(2L_s), the smooth gradient's squared norm per unit of smooth loss
        (2μ is the curvature of a quadratic bulk holding that loss).
      curvature: (m,) R_s(E), the curvature of the loss along the smooth gradient.
      loss0: L_s at E = 0 (the initial smooth loss).
    """

    clock: Any
    mu: Any
    curvature: Any
    loss0: Any

    def at(self, e: Array) -> tuple[Array, Array]:
        """(μ(E), R_s(E)) by linear interpolation (constant beyond the table)."""
        return (jnp.interp(e, self.clock, self.mu), jnp.interp(e, self.clock, self.curvature))


def _smooth_step(ls: Array, eta: Array, mu: Array, r: Array) -> Array:
    """L_s' = L_s·max(1 − 2ημ(1 − ½ηR_s), 0): a step of size η along the smooth gradient on the
    quadratic model with slope −2μL_s and curvature R_s·2μL_s; floored at 0 where the measured μ
    and R_s (not those of one quadratic bowl) would predict a negative smooth loss."""
    return ls * jnp.maximum(1.0 - 2.0 * eta * mu * (1.0 - 0.5 * eta * r), 0.0)


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
    the measured sharpness); the rest of the loss is a smooth part L_s with gradient norm²
    2μ(E)L_s and curvature R_s(E) along its gradient (:class:`SmoothPart`, measured on a run):

        f      = L_s + ½λx² + (ζ/12)x⁴,         g_x = λx + (ζ/3)x³,
        ‖g‖²   = 2μL_s + g_x²,                   gᵀHg = R_s·2μL_s + (λ + ζx²)·g_x²,

    and one step of size η (any η: the tuner's trials use it too):

        x'   = x − η·g_x                         (= (1 − ηλ)x at ζ = 0: Damian's map)
        λ'   = λ + η·(α·e^{−κE} − ½βx²)          (sharpening that decays in ηt, self-stabilisation)
        L_s' = L_s·max(1 − 2ημ(1 − ½ηR_s), 0)  (a quadratic step on the smooth part)
        E'   = E + η.

    Attributes:
      alpha, kappa, beta, zeta: α ≥ 0, κ ≥ 0, β ≥ 0, ζ (per unit of ηt for rates).
      smooth: the :class:`SmoothPart`.

    Reference: Damian, Nichani, Lee, arXiv 2209.15594 (the λ, x map); Roulet, Agarwala,
    Pedregosa, arXiv 2312.00209 (the tuners in the loop).
    """

    alpha: Any
    kappa: Any
    beta: Any
    zeta: Any
    smooth: SmoothPart

    def _gx(self, s: JointState) -> Array:
        return s.lam * s.x + (self.zeta / 3.0) * s.x ** 3

    def loss(self, s: JointState) -> Array:
        return s.ls + 0.5 * s.lam * s.x * s.x + (self.zeta / 12.0) * s.x ** 4

    def grad_norm_sq(self, s: JointState) -> Array:
        mu, _ = self.smooth.at(s.clock)
        return 2.0 * mu * s.ls + self._gx(s) ** 2

    def curvature(self, s: JointState) -> Array:
        mu, r = self.smooth.at(s.clock)
        return r * 2.0 * mu * s.ls + (s.lam + self.zeta * s.x * s.x) * self._gx(s) ** 2

    def step(self, s: JointState, eta: Any) -> JointState:
        eta = jnp.asarray(eta, jnp.result_type(s.lam))
        mu, r = self.smooth.at(s.clock)
        drive = self.alpha * jnp.exp(-self.kappa * s.clock) - 0.5 * self.beta * s.x * s.x
        return JointState(
            lam=s.lam + eta * drive,
            x=s.x - eta * self._gx(s),
            ls=_smooth_step(s.ls, eta, mu, r),
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

    Math: f = L_s, ‖g‖² = 2μL_s, gᵀHg = R_s·2μL_s (the tuner sees only the smooth part: there is
    no oscillation to see), and a step of size η: λ' = min(λ + η·a, 2/η), L_s' as in
    :class:`JointModel`, E' = E + η. The stepsize is then set by the smooth part alone and the
    sharpness is clipped to whatever ceiling that stepsize implies.
    """

    a: Any
    smooth: SmoothPart

    def loss(self, s: EOSAloneState) -> Array:
        return s.ls

    def grad_norm_sq(self, s: EOSAloneState) -> Array:
        mu, _ = self.smooth.at(s.clock)
        return 2.0 * mu * s.ls

    def curvature(self, s: EOSAloneState) -> Array:
        mu, r = self.smooth.at(s.clock)
        return r * 2.0 * mu * s.ls

    def step(self, s: EOSAloneState, eta: Any) -> EOSAloneState:
        eta = jnp.asarray(eta, jnp.result_type(s.lam))
        mu, r = self.smooth.at(s.clock)
        ceiling = jnp.where(eta > 0, 2.0 / jnp.where(eta > 0, eta, 1.0), jnp.inf)
        return EOSAloneState(
            lam=jnp.minimum(s.lam + eta * self.a, ceiling),
            ls=_smooth_step(s.ls, eta, mu, r),
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

_GRID = 400


def zero_smooth_part() -> SmoothPart:
    """No smooth part: the tuner sees the oscillation only (traces without loss/gradient norm)."""
    return SmoothPart(clock=np.array([0.0, 1.0]), mu=np.zeros(2), curvature=np.zeros(2), loss0=0.0)


def smooth_part(data: FitData, *, window: int = 101) -> SmoothPart:
    """Tabulate the smooth part of a run's loss on its clock E_t = Σ_{s<t} η_s.

    Math (docs/theory.md §5.5): L_s = the loss trend (lower envelope, :func:`loss_energy`);
    ‖g_s‖² = the lower envelope of the recorded ‖g‖² (running minimum over ``window`` steps: the
    orbit's phases where the oscillation's gradient is smallest); μ = ‖g_s‖²/(2L_s); R_s = the
    lower envelope of the recorded curvature along the gradient gᵀHg/‖g‖² (``grad_curvature``),
    interpolated between its measurements, or 0 when not recorded (a first-order smooth step).

    Raises:
      FitInputError: the trace has no ``loss`` or no ``grad_norm_sq`` column (the closed loop
        needs both to know what the tuner sees).
    """
    if data.loss is None or data.grad_norm_sq is None:
        raise FitInputError(
            "the closed loop needs the loss and grad_norm_sq columns at every step (what the tuner "
            "sees); record them (eosmodel's trainer does) or fit in open loop only."
        )
    _, trend = loss_energy(data.loss, window)
    trend = np.maximum(trend, 1e-300)
    win = max(3, int(window)) | 1
    g_s = ndimage.minimum_filter1d(data.grad_norm_sq, win, mode="nearest")
    mu = g_s / (2.0 * trend)
    if data.grad_curvature is not None and np.isfinite(data.grad_curvature).sum() >= 2:
        ok = np.flatnonzero(np.isfinite(data.grad_curvature))
        r = np.interp(np.arange(len(data)), ok, data.grad_curvature[ok])
        r = ndimage.minimum_filter1d(r, win, mode="nearest")
    else:
        r = np.zeros(len(data))
    e = clock(data.stepsize)[:-1]
    pick = np.unique(np.linspace(0, len(data) - 1, min(_GRID, len(data))).astype(int))
    keep = np.concatenate(([True], np.diff(e[pick]) > 0))
    pick = pick[keep]
    return SmoothPart(clock=e[pick], mu=mu[pick], curvature=r[pick], loss0=float(trend[0]))


def pool_smooth_parts(parts: list[SmoothPart]) -> SmoothPart:
    """Several runs' smooth parts on one clock grid: the geometric mean of μ and the mean of R_s
    where a run covers the clock (the runs of one network and data set follow one path in ηt-time
    up to their different stepsizes: docs/theory.md §5.6)."""
    if len(parts) == 1:
        return parts[0]
    hi = max(float(p.clock[-1]) for p in parts)
    grid = np.linspace(0.0, hi, _GRID)
    log_mu, curv = [], []
    for p in parts:
        inside = grid <= float(p.clock[-1])
        log_mu.append(np.where(inside, np.log(np.maximum(np.interp(grid, p.clock, p.mu), 1e-300)), np.nan))
        curv.append(np.where(inside, np.interp(grid, p.clock, p.curvature), np.nan))
    return SmoothPart(clock=grid, mu=np.exp(np.nanmean(log_mu, axis=0)), curvature=np.nanmean(curv, axis=0),
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
    :func:`eosmodel.dynamics.simulate_map`)."""
    from eosmodel.dynamics import simulate_map

    rule = closed_rule(rule_config)
    with jax.enable_x64(True):
        tr = simulate_map(_as64(model), rule, _as64(state), int(steps))
    n = int(steps)

    def col(name):
        out = np.full(n, np.nan)
        if name in tr.columns:
            v = np.asarray(tr[name], dtype=np.float64)
            out[: v.size] = v[:n]
        return out

    run = ClosedRun(stepsize=col("stepsize"), sharpness=col("sharpness"), lam=col("lam"),
                    x=col("x"), loss=col("loss"), diverged_at=tr.config.get("diverged_at"))
    # The discrete λ-update overshoots when the oscillation outgrows self-stabilisation (βx²η ≫ λ):
    # a sharpness that turns negative is the model breaking down, reported as divergence, and
    # nothing after it is compared with the measurements.
    broke = np.flatnonzero(~(run.sharpness > 0) | ~np.isfinite(run.stepsize))
    if broke.size:
        t = int(broke[0])
        for arr in (run.stepsize, run.sharpness, run.lam, run.x, run.loss):
            arr[t:] = np.nan
        run.diverged_at = t if run.diverged_at is None else min(int(run.diverged_at), t)
    return run


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
    out["final_sharpness_rel_error"] = out["final_sharpness_predicted"] / out["final_sharpness_measured"] - 1.0
    bl = blocks(idx)
    for key, pred, meas in (("sharpness", run.sharpness, data.sharpness),
                            ("stepsize", run.stepsize, data.stepsize)):
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.log(block_medians(pred, bl)) - np.log(block_medians(meas, bl))
        out[f"rms_log_{key}"] = float(np.sqrt(np.mean(d * d))) if np.all(np.isfinite(d)) else float("inf")
    if run.diverged_at is not None:  # medians over a broken-down run would be made-up numbers
        out["median_eta_lambda_predicted"] = out["final_sharpness_predicted"] = float("nan")
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


CLOSED_PARAMS = ("alpha", "kappa", "beta", "zeta", "lambda0", "log_x0")


def joint_state(lambda0: float, x0: float, smooth: SmoothPart) -> JointState:
    """The initial state (λ₀, x₀, L_s(0), E = 0)."""
    return JointState(lam=lambda0, x=x0, ls=smooth.loss0, clock=0.0)


def fit_closed(data: FitData, rule_config: Mapping[str, Any], start: Mapping[str, float], *,
               smooth: SmoothPart | None = None, max_nfev: int = 60) -> ClosedFit:
    """Fit the joint model in closed loop: η_t from the tuner's rule, nothing measured fed in
    but the run's smooth part (docs/theory.md §5.5).

    Math: θ = (α, κ, β, ζ, λ₀, ln x₀); the model of :class:`JointModel` run from (λ₀, x₀, L_s(0))
    with the rule. The orbit's phase is chaotic, so the residuals compare block medians over
    consecutive measured steps (:func:`blocks`): ln median λ̂ and ln median η, predicted minus
    measured; ``scipy.optimize.least_squares`` (trust region, finite differences with a 5% step,
    which averages over the phase) from ``start`` and two variants (β ×10, ζ = 0).
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
    n = len(data)

    def run_of(th):
        a, k, b, z, l0, lx = th
        return simulate_closed(JointModel(a, k, b, z, smooth), joint_state(l0, math.exp(lx), smooth),
                               rule_config, n)

    def resid(th):
        run = run_of(th)
        with np.errstate(divide="ignore", invalid="ignore"):
            d1 = np.log(block_medians(run.sharpness, bl)) - lam_b
            d2 = np.log(np.maximum(block_medians(run.stepsize, bl), 1e-300)) - eta_b
        return _clip_blocks(np.concatenate([d1, d2]))

    th0 = np.array([start["alpha"], start.get("kappa", 0.0), start["beta"], start.get("zeta", 0.0),
                    start["lambda0"], math.log(max(start["x0"], 1e-12))])
    lb = np.array([0.0, 0.0, 0.0, 0.0, 1e-12, -40.0])
    ub = np.array([np.inf, np.inf, np.inf, np.inf, np.inf, 5.0])
    best = None
    for variant in (th0, th0 * np.array([1, 1, 10, 1, 1, 1]), th0 * np.array([1, 1, 1, 0, 1, 1])):
        x0 = np.clip(variant, lb, ub)
        sol = optimize.least_squares(resid, x0, bounds=(lb, ub), method="trf", diff_step=0.05,
                                     x_scale=np.maximum(np.abs(x0), 1e-3), max_nfev=max_nfev)
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
