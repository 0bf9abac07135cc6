"""The two EOS models of docs/theory.md §5 and their open-loop fits to a measured trace.

* **EOS alone** (measured η_t): λ_{t+1} = min(λ_t + a·w_t, 2/η_{t+1}) (:func:`eos_alone_predict`,
  :func:`fit_eos_alone`).
* **Joint model**, open loop (measured η_t): a sharpening rate that decays along the run, the
  self-stabilising pull of the oscillation, an edge offset and the stiffening of the top direction
  (:func:`fit_joint_open`); EOS alone is the joint model with its four extra terms at zero.

The closed loop (η_t from the tuner's rule) is in :mod:`eosmodel.fit._closed`.

Time: ``time="eta_t"`` uses w_t = η_t (rates per unit of ηt, the physical parameters);
``time="steps"`` uses w_t = 1 (rates per step), converted to physical ones by dividing by η̄ =
mean η_t (exact only for a constant stepsize: the relative spread of η is reported). A step the
tuner skipped (η_t = 0) advances neither clock and has no ceiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from eosmodel.fit._data import FitData
from eosmodel.fit._joint import (
    EXTRA_PARAMS,
    JOINT_PARAMS,
    clock,
    fit_joint_path,
    inverse_stepsize,
    joint_jacobian,
    joint_path,
    smoother_r2,
)
from eosmodel.fit._stats import effective_size, hac_covariance

TIME_UNITS = ("eta_t", "steps")

_clock = clock  # the name used where a local variable is called clock


@dataclass
class ModelFit:
    """One model fitted to a trace: estimates, uncertainties, statistics and its predictions.

    Attributes:
      name: ``"eos_alone"``, ``"joint"``, ``"joint_closed"`` or ``"eos_alone_windows"``.
      loop: ``"open"`` (measured η_t) or ``"closed"`` (η_t from the tuner rule).
      params: native estimates (rates per step when ``time="steps"``).
      stderr: their standard errors: Newey–West (HAC) sandwich for the open-loop models, which
        accounts for the autocorrelated, period-2 residuals (docs/theory.md §5.4); ``inf`` where a
        parameter is not identified (a note says why).
      physical: the rates per unit of ηt and the initial states, with ``physical_stderr``.
      rss, r2, resid_std: Σr², 1 − RSS/TSS, √(RSS/(n − k)) of the sharpness residuals λ̂ − λ.
      n, k: number of sharpness measurements and of fitted parameters.
      n_eff, rho: the effective number of independent residuals and their autocorrelation.
      aic, bic: n_eff·ln(RSS/n) + 2k and n_eff·ln(RSS/n) + k·ln n_eff.
      sharpness: the predicted λ̂_t at every step (not written to JSON).
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
    n_eff: float = float("nan")
    rho: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (predictions left out)."""
        keys = ("name", "loop", "params", "stderr", "physical", "physical_stderr", "rss", "r2",
                "resid_std", "n", "k", "n_eff", "rho", "aic", "bic", "notes", "extra")
        out = {k: _jsonable(getattr(self, k)) for k in keys}
        out["extra"] = {k: v for k, v in out["extra"].items() if not isinstance(self.extra[k], np.ndarray)}
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else str(f)  # "inf"/"nan": strict JSON has no such numbers
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _statistics(resid: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    n = resid.size
    rss = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    n_eff, rho = effective_size(resid)
    floor = 1e-300 + 1e-30 * n * float(np.mean(y * y))  # exact fits: finite criteria
    ll = n_eff * math.log(max(rss, floor) / n)
    return {
        "rss": rss,
        "r2": 1.0 - rss / tss if tss > 0 else float("nan"),
        "resid_std": math.sqrt(rss / (n - k)) if n > k else float("nan"),
        "n": n,
        "k": k,
        "n_eff": n_eff,
        "rho": rho,
        "aic": ll + 2 * k,
        "bic": ll + k * math.log(n_eff),
    }


def time_weights(stepsize: np.ndarray, time: str) -> tuple[np.ndarray, float]:
    """Per-step clock increments w_t and the factor turning native rates into physical ones.

    ``time="eta_t"``: w_t = η_t, factor 1. ``time="steps"``: w_t = 1 at every step taken (0 where
    the tuner skipped, η_t = 0), factor 1/η̄ (η̄ = mean η_t over the steps taken).

    Raises:
      ValueError: ``time`` not in ``("eta_t", "steps")``.
    """
    if time == "eta_t":
        return stepsize, 1.0
    if time == "steps":
        taken = stepsize > 0
        return taken.astype(np.float64), 1.0 / float(np.mean(stepsize[taken]))
    raise ValueError(f"time must be one of {TIME_UNITS}, got {time!r}; pick one of them.")


def eos_alone_predict(stepsize: Any, a: float, lambda0: float, *, time: str = "eta_t") -> np.ndarray:
    """Sharpness of the "EOS alone" model at every step, from the measured stepsizes (closed form).

    Math (docs/theory.md §5.1): λ_0 = λ₀, λ_{t+1} = min(λ_t + a·w_t, 2/η_{t+1}), with η_t =
    ``stepsize[t]`` (0 at a skipped step: no ceiling, no clock), a = ``a``, λ₀ = ``lambda0`` and
    w_t = η_t (``time="eta_t"``) or 1 (``time="steps"``). The ceiling holds λ_t ≤ 2/η_t, i.e.
    η_tλ_t ≤ 2: the quantity the verdicts test. With E_t = Σ_{s<t} w_s,

        λ_t = a·E_t + min(λ₀, min_{1≤s≤t} (2/η_s − a·E_s)),

    a cumulative minimum (:func:`eosmodel.fit._joint.joint_path` with the joint model's extra
    terms at zero).

    Example:
      >>> eos_alone_predict([0.1, 0.1, 0.1, 0.1], a=50.0, lambda0=10.0)
      array([10., 15., 20., 20.])
    """
    eta = np.asarray(stepsize, dtype=np.float64)
    w, _ = time_weights(eta, time)
    return joint_path(eta, w, None, float(lambda0), float(a)).lam


def _steps_note(eta: np.ndarray) -> str:
    taken = eta[eta > 0]
    spread = float(np.std(taken) / np.mean(taken))
    return (f"time='steps': physical rates = per-step rates / mean(eta); exact for a constant "
            f"stepsize (relative spread of eta here: {spread:.3g})")


def _se(cov: np.ndarray) -> np.ndarray:
    return np.sqrt(np.where(np.isfinite(np.diag(cov)), np.maximum(np.diag(cov), 0.0), np.inf))


def fit_eos_alone(data: FitData, *, time: str = "eta_t") -> ModelFit:
    """Fit the "EOS alone" model (a, λ₀) to the measured sharpness, in open loop.

    Math: minimise Σ_j (λ̂_{t_j} − λ_{t_j}(a, λ₀))² over the measured steps t_j, λ_t from
    :func:`eos_alone_predict` with the measured η_t, a ≥ 0. The objective is piecewise smooth in a
    (the steps where λ meets the ceiling move with a): a grid over a picks the start, then
    ``scipy.optimize.least_squares`` (trust region) refines with the exact Jacobian. Standard
    errors: Newey–West (HAC) sandwich (``inf`` for a when no measured step is below the ceiling).

    Returns:
      :class:`ModelFit` named ``"eos_alone"`` with params ``a``, ``lambda0``.
    """
    eta = data.stepsize
    w, to_phys = time_weights(eta, time)
    idx = data.measured
    y = data.sharpness[idx]
    e = clock(w)
    span = max(e[idx[-1]] - e[idx[0]], 1e-300)
    a_scale = max(float(np.ptp(y)), 1e-9 * float(np.max(np.abs(y))) + 1e-300) / span
    best = None
    for a in np.concatenate(([0.0], a_scale * np.logspace(-3, 2, 11))):
        for l0 in (y[0], y[0] - a * e[idx[0]]):
            r = joint_path(eta, w, None, l0, a).lam[idx] - y
            if best is None or r @ r < best[0]:
                best = (float(r @ r), l0, a)
    start = np.array([best[1], best[2], 0.0, 0.0, 0.0, 0.0])
    theta, sol = fit_joint_path(eta, w, None, idx, y, start, ("lambda0", "alpha"),
                                {"alpha": 0.0}, {})
    lam0, a = float(theta[0]), float(theta[1])
    path = joint_path(eta, w, None, lam0, a, jacobian=True)
    r = path.lam[idx] - y
    jac = joint_jacobian(eta, w, None, theta, path, idx, names=("lambda0", "alpha"))
    se = _se(hac_covariance(jac, r))
    notes = []
    if not np.isfinite(se[1]):
        notes.append("a is not identified: no measured step lies on the sharpening branch")
    if time == "steps":
        notes.append(_steps_note(eta))
    return ModelFit(
        name="eos_alone", loop="open",
        params={"a": a, "lambda0": lam0},
        stderr={"a": float(se[1]), "lambda0": float(se[0])},
        physical={"a": a * to_phys, "lambda0": lam0},
        physical_stderr={"a": float(se[1]) * to_phys, "lambda0": float(se[0])},
        sharpness=path.lam, notes=notes, **_statistics(r, y, k=2),
    )


#: Bounds of the joint model's parameters (native units; the edge offset y* keeps 2 + y* > 0).
_LOWER = {"alpha": 0.0, "kappa": 0.0, "beta": 0.0, "edge": -1.5, "zeta": 0.0}
_UPPER = {"edge": 20.0}


def fit_joint_open(data: FitData, q: np.ndarray | None, *, time: str = "eta_t", kind: str = "x",
                   eos: ModelFit | None = None) -> ModelFit:
    """Fit the joint model in open loop (measured η_t): EOS alone plus what it leaves out.

    Math (docs/theory.md §5.2), θ = (λ₀, α, κ, β, y*, ζ):

        λ_{t+1} = min( λ_t + w_t·(α·e^{−κE_t} − ½β·q_t),  (2 + y*)/η_{t+1} ),   λ̂_t = λ_t + ζ·q_t

    * α·e^{−κE_t}: progressive sharpening whose rate decays along the run (κ ≥ 0, per unit of the
      clock E_t): the measured rate falls as training goes on, and a decay in ηt-time is the form
      that transfers between stepsizes (docs/theory.md §5.2 says why not a saturation in λ);
    * −½β·q_t: the self-stabilising pull of the oscillation (Damian et al.), q_t ≈ x_t² the
      oscillation observable (:func:`eosmodel.fit._joint.oscillation_regressor`);
    * y*: the edge where the orbit's centre is held, 2/η → (2 + y*)/η (y* = 0 at the classical
      edge; y* > 0 when the orbit runs beyond it, as under Polyak);
    * ζ: the stiffening of the top direction: the sharpness measured at an iterate displaced by x
      along it is λ + ζx².

    EOS alone is κ = β = y* = ζ = 0, computed by the same closed form, so the fit starts from the
    EOS-alone estimate (``eos``) and, the trust region method only accepting steps that decrease
    the residual sum of squares, never fits worse. Without an oscillation observable (``q=None``)
    β and ζ are not in the model (k = 4). Standard errors: Newey–West (HAC).

    Args:
      data: validated arrays. q: the oscillation observable or ``None``. time: ``"eta_t"`` or
      ``"steps"``. kind: the observable's description (for the notes). eos: the EOS-alone fit
      (fitted here if ``None``).

    Returns:
      :class:`ModelFit` named ``"joint"`` with params ``lambda0``, ``alpha``, ``kappa``, ``beta``,
      ``edge``, ``zeta`` (β, ζ absent without observable) and ``extra["smoother_r2"]`` (the R² of a
      running median: the share of the variance any smooth trend can explain).
    """
    eos = fit_eos_alone(data, time=time) if eos is None else eos
    eta = data.stepsize
    w, to_phys = time_weights(eta, time)
    idx = data.measured
    y = data.sharpness[idx]
    free = ("lambda0", "alpha", "kappa", "beta", "edge", "zeta") if q is not None else \
        ("lambda0", "alpha", "kappa", "edge")
    start = np.array([eos.params["lambda0"], eos.params["a"], 0.0, 0.0, 0.0, 0.0])
    total = float(clock(w)[-1])
    taken = eta[idx] > 0
    y_hat = float(np.max(eta[idx][taken] * y[taken])) - 2.0 if taken.any() else 0.0
    starts = [{"edge": min(max(y_hat, 0.0) + 0.1, 19.0)}, {"kappa": 3.0 / max(total, 1e-300)},
              {"kappa": 3.0 / max(total, 1e-300), "edge": 0.1}]
    if q is not None:  # no ceiling, no decay: the model is linear in (λ₀, α, β, ζ), solved exactly
        e = clock(w)
        design = np.stack([np.ones(idx.size), e[idx], -0.5 * clock(w * q)[idx], q[idx]], axis=1)
        scale = np.sqrt((design ** 2).sum(axis=0))
        scale[scale == 0] = 1.0
        lin = optimize.lsq_linear(design / scale, y, bounds=([-np.inf, 0, 0, 0], [np.inf] * 4)).x / scale
        starts.append({"lambda0": lin[0], "alpha": lin[1], "beta": lin[2], "zeta": lin[3],
                       "edge": _UPPER["edge"] - 1.0})
    theta, _ = fit_joint_path(eta, w, q, idx, y, start, free, _LOWER, _UPPER, starts)
    path = joint_path(eta, w, q, *theta, jacobian=True)
    r = path.lam[idx] - y
    r_eos = eos.sharpness[idx] - y
    if r @ r > r_eos @ r_eos:  # cannot happen with trf from the nested start; kept as a guard
        theta, path, r = start, joint_path(eta, w, q, *start, jacobian=True), r_eos
    jac = joint_jacobian(eta, w, q, theta, path, idx, names=free)
    cov = hac_covariance(jac, r)
    se_free = _se(cov)
    params = {k: float(theta[JOINT_PARAMS.index(k)]) for k in free}
    stderr = {k: float(s) for k, s in zip(free, se_free)}
    notes = [f"oscillation observable: {kind}"]
    at_bound = [k for k in free if k in _LOWER and params[k] <= _LOWER[k] + 1e-12]
    if at_bound:
        notes.append(f"at the bound (the extra term does not help): {', '.join(at_bound)}; "
                     "their standard errors are one-sided")
    if not path.clipped[idx].any():
        notes.append("the ceiling (2 + y*)/eta never binds at a measured step: y* is only "
                     "bounded below")
    if time == "steps":
        notes.append(_steps_note(eta))
    rate_keys = {"alpha", "beta", "kappa"}
    phys = {k: (v * to_phys if k in rate_keys else v) for k, v in params.items()}
    phys_se = {k: (v * to_phys if k in rate_keys else v) for k, v in stderr.items()}
    if params.get("alpha", 0) > 0 and params.get("beta", 0) > 0:
        phys["delta"] = math.sqrt(2 * params["alpha"] / params["beta"])
    return ModelFit(
        name="joint", loop="open", params=params, stderr=stderr, physical=phys,
        physical_stderr=phys_se, sharpness=path.lam, notes=notes,
        extra={"smoother_r2": smoother_r2(y), "extra_params": [k for k in free if k in EXTRA_PARAMS]},
        **_statistics(r, y, k=len(free)),
    )


# ------------------------------------------------------------------------------------------------
# EOS alone with a sharpening rate per window (piecewise-constant a): the residual test below the
# ceiling, where EOS alone says nothing about how the rate varies in time.
# ------------------------------------------------------------------------------------------------

def _piecewise_parts(stepsize, w, rates, bounds, lambda0, idx, jac=False):
    """λ at ``idx`` and (``jac=True``) its Jacobian in (rates..., λ₀), piecewise-rate EOS alone:
    λ_t = A_t + min(λ₀, min_{1≤s≤t}(2/η_s − A_s)), A_t = Σ_{s<t} a_{k(s)} w_s."""
    n = w.size
    rate_t = np.empty(n)
    for k, (lo, hi) in enumerate(bounds):
        rate_t[lo:hi] = rates[k]
    clock_a = _clock(rate_t * w)[:n]
    m = 2.0 * inverse_stepsize(stepsize) - clock_a
    run = np.minimum.accumulate(m)
    prefix = run[idx]
    lam = clock_a[idx] + np.minimum(lambda0, prefix)
    if not jac:
        return lam, None
    arg = np.maximum.accumulate(np.where(m <= run, np.arange(n), 0))[idx]
    clipped = prefix < lambda0
    clock = _clock(w)
    at = clock[arg]
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

        λ_t = A_t + min(λ₀, min_{1≤s≤t} (2/η_s − A_s)),

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
    se = _se(hac_covariance(jac(sol.x), r))
    names = [f"a_{i}" for i in range(k - 1)] + ["lambda0"]
    params = {n: float(v) for n, v in zip(names, sol.x)}
    stderr = {n: float(v) for n, v in zip(names, se)}
    lam_all = _piecewise_parts(eta, w, sol.x[:-1], bounds, sol.x[-1], np.arange(eta.size))[0]
    return ModelFit(
        name="eos_alone_windows", loop="open", params=params, stderr=stderr,
        physical=dict(params), physical_stderr=dict(stderr), sharpness=lam_all,
        notes=[f"least_squares: {sol.message} ({sol.nfev} evaluations)"], **_statistics(r, y, k=k),
    )
