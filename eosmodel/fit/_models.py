"""The two EOS models of science.md §5 and their fits to a measured trace.

* **EOS alone** (open loop, measured η_t): λ_{t+1} = min(λ_t + a·w_t, 2/η_t), solved in closed form
  (:func:`eos_alone_predict`) and fitted by ``scipy.optimize.least_squares`` with its exact
  piecewise Jacobian (:func:`fit_eos_alone`).
* **Joint model** (Damian et al.'s self-stabilisation map with the measured or the tuner's η_t):
  x_{t+1} = (1 − η_tλ_t)x_t, λ_{t+1} = λ_t + w_t(α − βx_t²/2); fitted teacher-forced in open loop
  (:func:`fit_joint_open`, linear least squares) and by shooting in closed loop
  (:func:`fit_joint_closed`, the tuner's rule on the reduced state).

Time: ``time="eta_t"`` uses w_t = η_t (rates per unit of ηt, the physical parameters of science.md
§4.1: a, α, β); ``time="steps"`` uses w_t = 1 (rates per step). Under a constant η the two are the
same model, and per-step rates convert to physical ones by dividing by η; the fits report the
physical values with η̄ = mean η_t (exact only for a constant stepsize: the relative spread of η is
reported with the fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import ndimage, optimize

from eosmodel.fit._data import FitData, FitInputError
from eosmodel.fit._rules import reduced_rule

TIME_UNITS = ("eta_t", "steps")


@dataclass
class ModelFit:
    """One model fitted to a trace: estimates, uncertainties, statistics and its predictions.

    Attributes:
      name: ``"eos_alone"``, ``"joint"`` or ``"joint_closed"``.
      loop: ``"open"`` (measured η_t) or ``"closed"`` (η_t from the tuner rule).
      params: native estimates (rates per step when ``time="steps"``).
      stderr: their standard errors (cov = s²(JᵀJ)⁻¹; ``inf`` where not identifiable).
      physical: the rates per unit of ηt (a, α, β) and the initial states, with ``physical_stderr``.
      rss, r2, resid_std: Σr², 1 − RSS/TSS, √(RSS/(n − k)) of the sharpness residuals λ̂ − λ.
      n, k: number of sharpness measurements and of fitted parameters.
      aic, bic: n·ln(RSS/n) + 2k and n·ln(RSS/n) + k·ln n (Gaussian residuals).
      sharpness: the predicted λ_t at every step (not written to JSON).
      stepsize: the predicted η_t at every step (closed loop only; not written to JSON).
      notes: facts about the fit (observable used, identifiability, convergence).
    """

    name: str
    loop: str
    params: dict[str, float]
    stderr: dict[str, float]
    physical: dict[str, float]
    physical_stderr: dict[str, float]
    rss: float
    r2: float
    resid_std: float
    n: int
    k: int
    aic: float
    bic: float
    sharpness: np.ndarray = field(repr=False)
    stepsize: np.ndarray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (predictions left out)."""
        keys = ("name", "loop", "params", "stderr", "physical", "physical_stderr", "rss", "r2",
                "resid_std", "n", "k", "aic", "bic", "notes")
        return {k: _jsonable(getattr(self, k)) for k in keys}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else str(f)  # "inf"/"nan": strict JSON has no such numbers
    if isinstance(v, np.integer):
        return int(v)
    return v


def _statistics(resid: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    n = resid.size
    rss = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    floor = 1e-300 + 1e-30 * n * float(np.mean(y * y))  # exact fits: finite criteria
    ll = n * math.log(max(rss, floor) / n)
    return {
        "rss": rss,
        "r2": 1.0 - rss / tss if tss > 0 else float("nan"),
        "resid_std": math.sqrt(rss / (n - k)) if n > k else float("nan"),
        "n": n,
        "k": k,
        "aic": ll + 2 * k,
        "bic": ll + k * math.log(n),
    }


def _covariance(jac: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """cov = s²(JᵀJ)⁻¹, s² = RSS/(n − k); ``inf`` variances for directions J does not see."""
    n, k = jac.shape
    s2 = float(resid @ resid) / max(n - k, 1)
    scale = np.sqrt((jac * jac).sum(axis=0))
    seen = scale > 0
    cov = np.full((k, k), np.nan)
    np.fill_diagonal(cov, np.inf)
    if seen.any():
        js = jac[:, seen] / scale[seen]
        jtj = js.T @ js
        if np.linalg.cond(jtj) < 1e12:
            inv = np.linalg.inv(jtj) / np.outer(scale[seen], scale[seen])
            cov[np.ix_(seen, seen)] = s2 * inv
    return cov


def time_weights(stepsize: np.ndarray, time: str) -> tuple[np.ndarray, float]:
    """Per-step clock increments w_t and the factor turning native rates into physical ones.

    ``time="eta_t"``: w_t = η_t, factor 1. ``time="steps"``: w_t = 1, factor 1/η̄ (η̄ = mean η_t).

    Raises:
      ValueError: ``time`` not in ``("eta_t", "steps")``.
    """
    if time == "eta_t":
        return stepsize, 1.0
    if time == "steps":
        return np.ones_like(stepsize), 1.0 / float(np.mean(stepsize))
    raise ValueError(f"time must be one of {TIME_UNITS}, got {time!r}; pick one of them.")


def _clock(w: np.ndarray) -> np.ndarray:
    """E_t = Σ_{s<t} w_s for t = 0..n (length n + 1)."""
    out = np.empty(w.size + 1)
    out[0] = 0.0
    np.cumsum(w, out=out[1:])
    return out


def _eos_parts(stepsize: np.ndarray, w: np.ndarray, a: float, lambda0: float, clock=None):
    """λ_t, ∂λ_t/∂a, ∂λ_t/∂λ₀ of the EOS-alone model at every step (closed form)."""
    clock = _clock(w) if clock is None else clock
    m = 2.0 / stepsize - a * clock[1:]  # m_s = 2/η_s − a·E_{s+1}
    run = np.minimum.accumulate(m)
    arg = np.maximum.accumulate(np.where(m <= run, np.arange(m.size), -1))
    prefix = np.concatenate(([np.inf], run[:-1]))  # min over s < t
    prefix_arg = np.concatenate(([-1], arg[:-1]))
    clipped = prefix < lambda0
    lam = a * clock[:-1] + np.minimum(lambda0, prefix)
    d_a = clock[:-1] - np.where(clipped, clock[np.maximum(prefix_arg, 0) + 1], 0.0)
    d_l0 = np.where(clipped, 0.0, 1.0)
    return lam, d_a, d_l0


class _EOSProblem:
    """The EOS-alone residuals at the measured steps only, O(n) per evaluation with few passes.

    min_{s<t_j} m_s for all measured t_j: segment minima of m over [t_{j−1}, t_j)
    (``np.minimum.reduceat``), then their cumulative minimum.
    """

    def __init__(self, stepsize: np.ndarray, w: np.ndarray, idx: np.ndarray, y: np.ndarray):
        self.stepsize, self.w, self.idx, self.y = stepsize, w, idx, y
        self.clock = _clock(w)
        self.inv = 2.0 / stepsize[: idx[-1]]
        self.e_next = self.clock[1 : idx[-1] + 1]
        self.e_idx = self.clock[idx]
        self.starts = np.concatenate(([0], idx[:-1] + 1))

    def lam(self, a: float, lambda0: float) -> np.ndarray:
        m = np.concatenate(([np.inf], self.inv - a * self.e_next))
        prefix = np.minimum.accumulate(np.minimum.reduceat(m, self.starts))
        return a * self.e_idx + np.minimum(lambda0, prefix)

    def resid(self, theta) -> np.ndarray:
        return self.lam(theta[0], theta[1]) - self.y

    def jac(self, theta) -> np.ndarray:
        _, d_a, d_l0 = _eos_parts(self.stepsize, self.w, theta[0], theta[1], self.clock)
        return np.stack([d_a[self.idx], d_l0[self.idx]], axis=1)


def eos_alone_predict(stepsize: Any, a: float, lambda0: float, *, time: str = "eta_t") -> np.ndarray:
    """Sharpness of the "EOS alone" model at every step, from the measured stepsizes (closed form).

    Math (science.md §5): λ_0 = λ₀, λ_{t+1} = min(λ_t + a·w_t, 2/η_t), with η_t = ``stepsize[t]``,
    a = ``a``, λ₀ = ``lambda0`` and w_t = η_t (``time="eta_t"``, a per unit of ηt) or 1
    (``time="steps"``, a per step). With E_t = Σ_{s<t} w_s and u_t = λ_t − a·E_t the recursion is
    u_{t+1} = min(u_t, 2/η_t − a·E_{t+1}), so

        λ_t = a·E_t + min(λ₀, min_{s<t} (2/η_s − a·E_{s+1})),

    a cumulative minimum: O(n) vectorised numpy, exact (no loop over steps).

    Args:
      stepsize: η_t > 0, shape (n,).
      a: sharpening rate a.
      lambda0: λ₀, the sharpness at the first step (it may start above the ceiling).
      time: ``"eta_t"`` (default) or ``"steps"``.

    Returns:
      λ_t, shape (n,).

    Example:
      >>> eos_alone_predict([0.1, 0.1, 0.1, 0.1], a=50.0, lambda0=10.0)
      array([10., 15., 20., 20.])
    """
    eta = np.asarray(stepsize, dtype=np.float64)
    w, _ = time_weights(eta, time)
    return _eos_parts(eta, w, float(a), float(lambda0))[0]


def fit_eos_alone(data: FitData, *, time: str = "eta_t") -> ModelFit:
    """Fit the "EOS alone" model (a, λ₀) to the measured sharpness, in open loop.

    Math: minimise Σ_j (λ̂_{t_j} − λ_{t_j}(a, λ₀))² over the measured steps t_j, λ_t from
    :func:`eos_alone_predict` (simulated at every step with the measured η_t), a ≥ 0. The
    objective is piecewise smooth in a (the steps at which λ meets the ceiling move with a): a
    vectorised grid over a (λ₀ from the first measurement) picks the start, then
    ``scipy.optimize.least_squares`` (trust region) refines with the exact Jacobian
    ∂λ_t/∂a = E_t − E_{s*+1}, ∂λ_t/∂λ₀ = 0 where the ceiling 2/η_{s*} binds, (E_t, 1) elsewhere.
    Uncertainties: cov = s²(JᵀJ)⁻¹ (``inf`` for a when no measured step is below the ceiling).

    Args:
      data: validated arrays (:func:`eosmodel.fit.prepare`).
      time: ``"eta_t"`` or ``"steps"`` (see :func:`time_weights`).

    Returns:
      :class:`ModelFit` named ``"eos_alone"`` with params ``a``, ``lambda0``.
    """
    eta = data.stepsize
    w, to_phys = time_weights(eta, time)
    idx = data.measured
    y = data.sharpness[idx]
    prob = _EOSProblem(eta, w, idx, y)
    clock = prob.clock
    span = max(clock[idx[-1]] - clock[idx[0]], 1e-300)
    a_scale = max(float(np.ptp(y)), 1e-9 * float(np.max(np.abs(y))) + 1e-300) / span
    grid = np.concatenate(([0.0], a_scale * np.logspace(-3, 2, 26)))
    starts = []
    for a in grid:
        for l0 in (y[0], y[0] - a * clock[idx[0]]):
            r = prob.resid((a, l0))
            starts.append((float(r @ r), a, l0))
    _, a0, l00 = min(starts)
    sol = optimize.least_squares(
        prob.resid, x0=[a0, l00], jac=prob.jac, bounds=([0.0, -np.inf], [np.inf, np.inf]),
        method="trf", x_scale=[max(a_scale, 1e-12), max(float(np.std(y)), 1e-12)],
    )
    a, lam0 = (float(v) for v in sol.x)
    r = prob.resid(sol.x)
    cov = _covariance(prob.jac(sol.x), r)
    stats = _statistics(r, y, k=2)
    se = np.sqrt(np.diag(cov))
    notes = []
    if not np.isfinite(se[0]):
        notes.append("a is not identifiable: no measured step lies on the sharpening branch")
    if time == "steps":
        notes.append(_steps_note(eta))
    return ModelFit(
        name="eos_alone", loop="open",
        params={"a": a, "lambda0": lam0},
        stderr={"a": float(se[0]), "lambda0": float(se[1])},
        physical={"a": a * to_phys, "lambda0": lam0},
        physical_stderr={"a": float(se[0]) * to_phys, "lambda0": float(se[1])},
        sharpness=_eos_parts(eta, w, a, lam0, clock)[0],
        notes=notes, **stats,
    )


def _steps_note(eta: np.ndarray) -> str:
    spread = float(np.std(eta) / np.mean(eta))
    return (f"time='steps': physical rates = per-step rates / mean(eta); exact for a constant "
            f"stepsize (relative spread of eta here: {spread:.3g})")


def oscillation_observable(data: FitData, *, trend_window: int = 101) -> tuple[np.ndarray | None, str]:
    """An estimate q_t of x_t² (the squared oscillation along the top eigenvector) at every step.

    Math, in order of preference:

    * column ``x`` present (toy simulations record it): q_t = x_t²;
    * column ``loss`` present: the loss carries ½λ_t x_t² over its stable trend (science.md §4.1),
      so q_t = 2(f_t − T_t)/λ̃_t, with T_t the lower envelope of the loss (running minimum over
      ``trend_window`` steps, then a running mean over the same window) and λ̃_t the measured
      sharpness interpolated linearly between measurements. The envelope sits at the orbit's
      smallest excess, so q_t measures x_t² above its minimum over the window: β is biased high
      when the oscillation never decays within a window; prefer recording ``x``;
    * neither: ``(None, "none")``; the joint model cannot be fitted (its β·x² term has no
      observable scale).

    Args:
      data: validated arrays.
      trend_window: window (steps) of the loss trend; odd, ≥ 3 (default 101).

    Returns:
      ``(q, kind)`` with kind ``"x"``, ``"loss"`` or ``"none"``.
    """
    if data.x is not None:
        return data.x ** 2, "x"
    if data.loss is None:
        return None, "none"
    if int(trend_window) < 3:
        raise ValueError(f"trend_window must be at least 3 steps, got {trend_window}; pass a larger window.")
    win = int(trend_window) | 1
    trend = ndimage.uniform_filter1d(
        ndimage.minimum_filter1d(data.loss, win, mode="nearest"), win, mode="nearest"
    )
    idx = data.measured
    lam = np.interp(np.arange(len(data)), idx, data.sharpness[idx])
    q = np.where(lam > 0, 2.0 * (data.loss - trend) / np.where(lam > 0, lam, 1.0), 0.0)
    return q, "loss"


def fit_joint_open(data: FitData, q: np.ndarray, *, time: str = "eta_t", kind: str = "x") -> ModelFit:
    """Fit the joint model's sharpness equation teacher-forced on the observed oscillation.

    Math: the joint model is x_{t+1} = (1 − η_tλ_t)x_t, λ_{t+1} = λ_t + w_t(α − βx_t²/2). Its x
    is chaotic-ish at EOS: shooting x from x₀ over 10⁵ steps makes the residuals exponentially
    sensitive to (α, β, x₀), an ill-conditioned fit. Instead x_t² is taken from the observable
    q_t (:func:`oscillation_observable`, teacher forcing), and the λ-equation is integrated in
    closed form:

        λ_t = λ₀ + α·E_t − (β/2)·F_t,   E_t = Σ_{s<t} w_s,   F_t = Σ_{s<t} w_s q_s,

    linear in (λ₀, α, β): ordinary least squares on the measured λ̂_{t_j} (exact, no iterations,
    independent errors when λ̂ carries measurement noise), cov = s²(XᵀX)⁻¹. When the unconstrained
    solution has α < 0 or β < 0 (both are non-negative by definition), it is refitted with the
    bounds α, β ≥ 0 (``scipy.optimize.lsq_linear``) and a note says so. The x-equation has
    no free parameter once λ and η are known; closed loop (:func:`fit_joint_closed`) tests it.

    Args:
      data: validated arrays.
      q: x_t² estimates, shape (n,).
      time: ``"eta_t"`` or ``"steps"``.
      kind: the observable's name, recorded in the notes.

    Returns:
      :class:`ModelFit` named ``"joint"`` with params ``lambda0``, ``alpha``, ``beta`` and the
      derived ``delta`` = √(2α/β) (the EOS oscillation amplitude, when α, β > 0).
    """
    w, to_phys = time_weights(data.stepsize, time)
    idx = data.measured
    y = data.sharpness[idx]
    e_clock = _clock(w)
    f_clock = _clock(w * q)
    design = np.stack([np.ones(idx.size), e_clock[idx], -0.5 * f_clock[idx]], axis=1)
    scale = np.sqrt((design ** 2).sum(axis=0))
    scale[scale == 0] = 1.0
    coef_s, *_ = np.linalg.lstsq(design / scale, y, rcond=None)
    notes = [f"oscillation observable: {kind}"]
    if coef_s[1] < 0 or coef_s[2] < 0:
        # alpha = -<grad L, grad S> and beta = |grad S|^2 are non-negative by definition (science.md
        # §4.1): a negative unconstrained estimate means the data do not identify them (e.g. beta
        # soaking up a varying sharpening rate). Refit with the physical bounds alpha, beta >= 0.
        unconstrained = coef_s / scale
        coef_s = optimize.lsq_linear(
            design / scale, y, bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, np.inf])
        ).x
        at_bound = coef_s[1:] <= 1e-9 * np.abs(coef_s).max()  # lsq_linear stops a hair inside
        coef_s[1:] = np.where(at_bound, 0.0, coef_s[1:])
        notes.append(
            "alpha, beta constrained to >= 0 (unconstrained fit gave alpha={:.4g}, beta={:.4g}); "
            "standard errors of a parameter at its bound are not meaningful".format(
                unconstrained[1], unconstrained[2]
            )
        )
    coef = coef_s / scale
    r = design @ coef - y
    cov = _covariance(design, r)
    se = np.sqrt(np.diag(cov))
    lam0, alpha, beta = (float(c) for c in coef)
    stats = _statistics(r, y, k=3)
    if time == "steps":
        notes.append(_steps_note(data.stepsize))
    if not np.isfinite(se[2]) or float(np.ptp(f_clock)) == 0.0:
        notes.append("beta is not identifiable: the observed oscillation is zero")
    elif se[2] > abs(beta):
        notes.append("beta is poorly identified (standard error above 100%): the oscillation "
                     "decays, so the self-stabilisation term barely acts on the sharpness")
    if kind == "x" and data.x is not None:
        notes.append(_x_equation_check(data))
    phys = {"lambda0": lam0, "alpha": alpha * to_phys, "beta": beta * to_phys}
    phys_se = {"lambda0": float(se[0]), "alpha": float(se[1]) * to_phys, "beta": float(se[2]) * to_phys}
    if alpha > 0 and beta > 0:
        phys["delta"] = math.sqrt(2 * alpha / beta)
        # delta method: var(ln δ) = ¼(var α/α² + var β/β² − 2cov/(αβ))
        v = 0.25 * (cov[1, 1] / alpha**2 + cov[2, 2] / beta**2 - 2 * cov[1, 2] / (alpha * beta))
        phys_se["delta"] = phys["delta"] * math.sqrt(max(v, 0.0)) if np.isfinite(v) else float("inf")
    return ModelFit(
        name="joint", loop="open",
        params={"lambda0": lam0, "alpha": alpha, "beta": beta},
        stderr={"lambda0": float(se[0]), "alpha": float(se[1]), "beta": float(se[2])},
        physical=phys, physical_stderr=phys_se,
        sharpness=lam0 + alpha * e_clock[:-1] - 0.5 * beta * f_clock[:-1],
        notes=notes, **stats,
    )


def _x_equation_check(data: FitData) -> str:
    """The joint model's x-equation, parameter-free: 1 − x_{t+1}/x_t against η_tλ̂_t."""
    idx = data.measured[data.measured < len(data) - 1]
    x = data.x
    ok = np.abs(x[idx]) > 0
    idx = idx[ok]
    if idx.size == 0:
        return "x-equation check: x is zero at every measured step"
    implied = 1.0 - x[idx + 1] / x[idx]
    measured = data.stepsize[idx] * data.sharpness[idx]
    med = float(np.median(np.abs(implied - measured)))
    return (f"x-equation check: median |(1 - x_(t+1)/x_t) - eta_t*lambda_t| = {med:.3g} over "
            f"{idx.size} measured steps (0 when x follows x_(t+1) = (1 - eta_t lambda_t) x_t)")


# ------------------------------------------------------------------------------------------------
# Closed loop: the joint model with the tuner's rule in the loop.
# ------------------------------------------------------------------------------------------------

def rule_config(tuner: Any, data: FitData) -> dict[str, Any]:
    """The tuner rule config for the closed loop: ``{"name": ..., **hyper}``.

    ``tuner`` is ``"auto"`` (the trace's ``config["tuner"]``), a rule name (see
    :func:`eosmodel.fit.reduced_rule`; defaults filled, ``constant`` takes the trace's first
    stepsize) or a config dict.

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
    config = dict(tuner)
    if config.get("name") == "constant" and "stepsize" not in config:
        config["stepsize"] = float(data.stepsize[0])
    reduced_rule(config)  # validates
    return config


def simulate_joint(
    alpha: float, beta: float, lambda0: float, x0: float, rule_cfg: Mapping[str, Any], steps: int,
):
    """Run the joint model in closed loop: η_t from the tuner rule on the reduced state.

    Math (science.md §5): η_t = T(λ_t, x_t, η_{t−1}) (:func:`eosmodel.fit.reduced_rule`),
    x_{t+1} = (1 − η_tλ_t)x_t, λ_{t+1} = λ_t + η_t(α − βx_t²/2), from (x₀, λ₀). One ``lax.scan``
    in float64, compiled once per (rule, steps).

    Args:
      alpha, beta: α, β per unit of ηt. lambda0, x0: the initial state. rule_cfg: the tuner rule.
      steps: number of steps.

    Returns:
      ``(lam, eta, x)`` numpy arrays of shape (steps,).

    Example:
      >>> lam, eta, x = simulate_joint(1.0, 4.0, 50.0, 0.1, {"name": "oracle", "sigma": 1.5}, 2000)
      >>> bool(abs(lam[-1] - (50.0**2 + 2 * 1.5 * 1.0 * 1999) ** 0.5) < 0.05)  # λ² = λ₀² + 2σαt
      True
    """
    import jax

    with jax.enable_x64(True):
        fn = _closed_loop_fn(_freeze(rule_cfg), int(steps))[0]
        lam, eta, x = fn(np.array([alpha, beta, lambda0, x0], dtype=np.float64))
        return np.asarray(lam), np.asarray(eta), np.asarray(x)


def _freeze(cfg: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in cfg.items() if not isinstance(v, (dict, list))))


_CLOSED_CACHE: dict = {}


def _closed_loop_fn(frozen_cfg: tuple, steps: int):
    key = (frozen_cfg, steps)
    if key in _CLOSED_CACHE:
        return _CLOSED_CACHE[key]
    import jax

    rule, eta_init = reduced_rule(dict(frozen_cfg))

    def run(theta):
        alpha, beta, lam0, x0 = theta[0], theta[1], theta[2], theta[3]

        def body(carry, _):
            lam, x, prev = carry
            eta = rule(lam, x, prev)
            nxt = (lam + eta * (alpha - 0.5 * beta * x * x), (1.0 - eta * lam) * x, eta)
            return nxt, (lam, eta, x)

        init = (lam0, x0, jax.numpy.asarray(eta_init, theta.dtype))
        _, out = jax.lax.scan(body, init, None, length=steps)
        return out

    def residuals(theta, idx, y, log_eta):
        lam, eta, _ = run(theta)
        r_l = lam[idx] / y - 1.0
        r_e = jax.numpy.log(jax.numpy.maximum(eta[idx], 1e-300)) - log_eta
        r = jax.numpy.concatenate([r_l, r_e])
        # an orbit that blows up gives bounded residuals (squares stay finite for the solver)
        return jax.numpy.where(jax.numpy.isfinite(r), jax.numpy.clip(r, -1e3, 1e3), 1e3)

    fns = (jax.jit(run), jax.jit(residuals), jax.jit(jax.jacfwd(residuals)))
    if len(_CLOSED_CACHE) > 32:
        _CLOSED_CACHE.clear()
    _CLOSED_CACHE[key] = fns
    return fns


def fit_joint_closed(
    data: FitData, rule_cfg: Mapping[str, Any], *, start: Mapping[str, float],
    max_nfev: int = 40,
) -> ModelFit:
    """Fit the joint model in closed loop: η_t generated by the tuner rule from the model state.

    Math: θ = (α, β, λ₀, x₀) (α, β ≥ 0, per unit of ηt), the model of :func:`simulate_joint` run
    from (x₀, λ₀) with no measured input; residuals at the measured steps t_j are the relative
    sharpness errors λ_{t_j}/λ̂_{t_j} − 1 and the log stepsize errors ln η_{t_j} − ln η̂_{t_j},
    minimised by ``scipy.optimize.least_squares`` (Jacobian by forward-mode autodiff through the
    scan) from the open-loop estimates. This is shooting: at EOS the oscillation's phase is
    chaotic-ish, so the fit matches the orbit's envelope, not its phase; statistics (RSS, R², AIC)
    are those of the sharpness residuals λ̂ − λ, comparable with the open-loop models (k = 4).

    Args:
      data: validated arrays.
      rule_cfg: the tuner rule (:func:`rule_config`).
      start: initial ``alpha``, ``beta``, ``lambda0``, ``x0``.
      max_nfev: cap on residual evaluations.

    Returns:
      :class:`ModelFit` named ``"joint_closed"``, with the predicted ``stepsize``.
    """
    import jax
    import jax.numpy as jnp

    idx = data.measured
    y = data.sharpness[idx]
    log_eta = np.log(data.stepsize[idx])
    n = len(data)
    with jax.enable_x64(True):
        fn, res_j, jac_j = _closed_loop_fn(_freeze(rule_cfg), n)
        args = (jnp.asarray(idx), jnp.asarray(y), jnp.asarray(log_eta))
        x0 = np.array([start["alpha"], start["beta"], start["lambda0"], start["x0"]], dtype=np.float64)
        x0 = np.maximum(x0, [1e-12, 1e-12, -np.inf, 1e-300])
        sol = optimize.least_squares(
            lambda th: np.asarray(res_j(jnp.asarray(th), *args)),
            x0,
            # where the orbit overflows the residual is clamped (constant): derivative 0, not NaN
            jac=lambda th: np.nan_to_num(np.asarray(jac_j(jnp.asarray(th), *args)),
                                         nan=0.0, posinf=0.0, neginf=0.0),
            bounds=([0.0, 0.0, -np.inf, 0.0], [np.inf, np.inf, np.inf, np.inf]),
            method="trf", x_scale="jac", max_nfev=max_nfev,
        )
        theta = sol.x
        lam, eta, _ = (np.asarray(v) for v in fn(jnp.asarray(theta)))
    r_abs = lam[idx] - y
    r_rel = np.asarray(sol.fun)
    cov = _covariance(np.asarray(sol.jac), r_rel)
    se = np.sqrt(np.diag(cov))
    stats = _statistics(np.where(np.isfinite(r_abs), r_abs, 1e150), y, k=4)
    names = ("alpha", "beta", "lambda0", "x0")
    params = {k: float(v) for k, v in zip(names, theta)}
    stderr = {k: float(v) for k, v in zip(names, se)}
    notes = [f"tuner rule: {dict(rule_cfg)}", f"least_squares: {sol.message} ({sol.nfev} evaluations)"]
    if not np.all(np.isfinite(lam)):
        notes.append("the closed-loop model diverges within the trace")
    return ModelFit(
        name="joint_closed", loop="closed",
        params=params, stderr=stderr, physical=dict(params), physical_stderr=dict(stderr),
        sharpness=lam, stepsize=eta, notes=notes, **stats,
    )


# ------------------------------------------------------------------------------------------------
# EOS alone with a sharpening rate per window (piecewise-constant a): the residual test below the
# ceiling, where EOS alone says nothing about how the rate varies in time.
# ------------------------------------------------------------------------------------------------

def _piecewise_parts(stepsize, w, rates, bounds, lambda0, idx, jac=False):
    """λ at ``idx`` and (``jac=True``) its Jacobian in (rates..., λ₀), piecewise-rate EOS alone."""
    rate_t = np.empty(w.size)
    for k, (lo, hi) in enumerate(bounds):
        rate_t[lo:hi] = rates[k]
    clock_a = _clock(rate_t * w)  # A_t = Σ_{s<t} a_{k(s)} w_s
    m = 2.0 / stepsize - clock_a[1:]
    run = np.minimum.accumulate(m)
    prefix = np.concatenate(([np.inf], run[:-1]))[idx]
    lam = clock_a[idx] + np.minimum(lambda0, prefix)
    if not jac:
        return lam, None
    arg = np.maximum.accumulate(np.where(m <= run, np.arange(m.size), -1))
    prefix_arg = np.concatenate(([-1], arg[:-1]))[idx]
    clipped = prefix < lambda0
    clock = _clock(w)
    at = clock[np.maximum(prefix_arg, 0) + 1]
    e_lo = np.array([clock[lo] for lo, _ in bounds])
    e_hi = np.array([clock[hi] for _, hi in bounds])
    # E^k_t = Σ_{s<t, s in piece k} w_s = clip(E_t − E_lo, 0, E_hi − E_lo)
    e_k = np.clip(clock[idx][:, None] - e_lo, 0.0, e_hi - e_lo)
    e_k_at = np.clip(at[:, None] - e_lo, 0.0, e_hi - e_lo)
    out = np.empty((idx.size, len(bounds) + 1))
    out[:, :-1] = e_k - np.where(clipped[:, None], e_k_at, 0.0)
    out[:, -1] = np.where(clipped, 0.0, 1.0)
    return lam, out


def eos_piecewise_predict(stepsize: Any, rates: Any, bounds, lambda0: float, *,
                          time: str = "eta_t") -> np.ndarray:
    """EOS alone with a sharpening rate per window: λ_{t+1} = min(λ_t + a_{k(t)}·w_t, 2/η_t).

    Math: as :func:`eos_alone_predict` with the clock E_t replaced by the rate-weighted clock
    A_t = Σ_{s<t} a_{k(s)} w_s (k(s) the window holding step s), so that

        λ_t = A_t + min(λ₀, min_{s<t} (2/η_s − A_{s+1})),

    continuous across windows (EOS alone has no jumps); one rate per window ``bounds[k] = (lo, hi)``
    (step indices ``[lo, hi)``, covering the trace).

    Example:
      >>> eos_piecewise_predict([0.1] * 6, [10.0, 50.0], [(0, 3), (3, 6)], 10.0)
      array([10., 11., 12., 13., 18., 20.])
    """
    eta = np.asarray(stepsize, dtype=np.float64)
    w, _ = time_weights(eta, time)
    return _piecewise_parts(eta, w, np.asarray(rates, float), list(bounds), float(lambda0),
                            np.arange(eta.size))[0]


def fit_eos_piecewise(data: FitData, bounds, *, w: np.ndarray, start: ModelFit) -> ModelFit:
    """Fit EOS alone with one sharpening rate per window (a_k ≥ 0, λ₀), in open loop.

    Math: minimise Σ_j (λ̂_{t_j} − λ_{t_j})² over (a_1..a_K, λ₀), λ_t from
    :func:`eos_piecewise_predict` (w_t = the fit's clock increments); ``least_squares`` (trust
    region, exact piecewise Jacobian ∂λ_t/∂a_k = E^k_t − E^k_{s*+1}, E^k the clock restricted to
    window k, s* the step whose ceiling binds) from the better of two starts: the global fit's rate
    in every window, and each window's OLS slope of λ̂ against the clock (clipped at 0). A window
    where the ceiling binds throughout leaves its rate unidentified (its Jacobian column is zero):
    harmless, the rate only matters below the ceiling. Used by the verdicts' residual test below the
    ceiling, where EOS alone claims growth towards the ceiling, not a constant rate.

    Returns:
      :class:`ModelFit` named ``"eos_alone_windows"`` with params ``a_0..a_{K−1}`` (native clock
      units) and ``lambda0``.
    """
    eta = data.stepsize
    idx = data.measured
    y = data.sharpness[idx]
    bounds = list(bounds)
    clock = _clock(w)

    def resid(theta):
        return _piecewise_parts(eta, w, theta[:-1], bounds, theta[-1], idx)[0] - y

    def jac(theta):
        return _piecewise_parts(eta, w, theta[:-1], bounds, theta[-1], idx, jac=True)[1]

    starts = [np.array([start.params["a"]] * len(bounds) + [start.params["lambda0"]])]
    slopes = []
    for lo, hi in bounds:
        sel = idx[(idx >= lo) & (idx < hi)]
        t = clock[sel]
        ok = sel.size >= 2 and np.ptp(t) > 0
        slopes.append(max(0.0, float(np.polyfit(t, data.sharpness[sel], 1)[0])) if ok else 0.0)
    starts.append(np.array(slopes + [float(y[0])]))
    x0 = min(starts, key=lambda th: float(np.sum(resid(th) ** 2)))
    k = len(bounds) + 1
    sol = optimize.least_squares(
        resid, x0=x0, jac=jac, bounds=([0.0] * (k - 1) + [-np.inf], [np.inf] * k),
        method="trf", x_scale="jac", max_nfev=50 * k, tr_solver="lsmr",
    )
    r = resid(sol.x)
    cov = _covariance(jac(sol.x), r)
    se = np.sqrt(np.diag(cov))
    names = [f"a_{i}" for i in range(k - 1)] + ["lambda0"]
    params = {n: float(v) for n, v in zip(names, sol.x)}
    stderr = {n: float(v) for n, v in zip(names, se)}
    lam_all = _piecewise_parts(eta, w, sol.x[:-1], bounds, sol.x[-1], np.arange(eta.size))[0]
    return ModelFit(
        name="eos_alone_windows", loop="open", params=params, stderr=stderr,
        physical=dict(params), physical_stderr=dict(stderr), sharpness=lam_all,
        notes=[f"least_squares: {sol.message} ({sol.nfev} evaluations)"], **_statistics(r, y, k=k),
    )
