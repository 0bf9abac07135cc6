"""Window-by-window verdicts: where does "EOS alone" explain the sharpness, and how does it fail?

See :func:`window_verdicts` for the criteria.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from eosmodel.fit._data import FitData, FitInputError

EXPLAINED = "explained"
ABOVE_CEILING = "above ceiling"
GROWING_BELOW_EDGE = "growing below edge"
OFF_MODEL = "off model"
VERDICTS = (EXPLAINED, ABOVE_CEILING, GROWING_BELOW_EDGE, OFF_MODEL)

#: Default effect size on ηλ around the edge (relative): GD at a fixed stepsize sits up to ~6%
#: above 2/η on real networks (docs/theory.md §5.7), so a window is flagged only beyond 7.5%.
DEFAULT_EDGE_TOL = 0.075

#: Fewest sharpness measurements in a verdict window.
MIN_PER_WINDOW = 3


@dataclass(frozen=True)
class WindowVerdict:
    """The verdict on one window of steps ``[start_step, end_step]``.

    Attributes:
      start_step, end_step: the window's first and last step (inclusive).
      n_measured: sharpness measurements in it.
      verdict: one of :data:`VERDICTS`.
      median_gap: the window's centre c of y_j = η_{t_j}λ̂_{t_j} − 2 (y of docs/theory.md §1): the
        median of the pair means ½(y_j + y_{j+1}) over consecutive, non-overlapping pairs of
        measurements (a period-2 oscillation sampled at alternate phases cancels in each pair).
      gap_se: the standard error of c (see :func:`window_verdicts`).
      regime: ``"above"`` (c > b), ``"edge"`` (|c| ≤ b) or ``"below"`` (c < −b) the ceiling.
      growth: ln(λ̂) gained over the window (OLS slope against the clock × the window's span), and
        ``growth_se`` its standard error.
      follow: d ln(ηλ̂)/d ln λ̂ (OLS): 1 when η is fixed, 0 when the tuner holds ηλ constant.
      eos_rel_bias, eos_rel_rms: mean and RMS of (λ̂ − λ_EOS)/λ_EOS, the residuals of EOS alone
        with one global rate a (reported; not a criterion).
      rate: the window's mean sharpening rate in EOS alone with a rate of its own on each piece
        of each window (:func:`fit_windowed`; clock units of the fit: per unit of ηt by
        default); ``rate_rel_bias``, ``rate_rel_rms`` that model's relative residuals in the
        window (the residual test below the ceiling).
      joint_rel_rms: the RMS relative residual of the joint model (NaN when it was not fitted).
      tolerance: the band b on the centre c: 2·``edge_tol`` + 2·``gap_se``.
      reason: one line saying why the verdict was given.
    """

    start_step: int
    end_step: int
    n_measured: int
    verdict: str
    median_gap: float
    gap_se: float
    regime: str
    growth: float
    growth_se: float
    follow: float
    eos_rel_bias: float
    eos_rel_rms: float
    rate: float
    rate_rel_bias: float
    rate_rel_rms: float
    joint_rel_rms: float
    tolerance: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                for k, v in asdict(self).items()}


def noise_scale(values: np.ndarray) -> float:
    """Robust noise scale of a slowly varying measured series: 1.4826·MAD(v_{j+2} − v_j)/√2.

    Differences at lag 2 remove the trend and a period-2 oscillation sampled at alternate phases
    (at EOS the sharpness flips every step; measured every odd number of steps, consecutive
    measurements alternate phases, and first differences would swing by twice the oscillation's
    amplitude with a bimodal distribution on which the MAD breaks down). The median absolute
    deviation ignores the rare jumps (catapults, the ceiling being met). For i.i.d. Gaussian noise
    of std σ on a smooth series it returns ≈ σ.
    """
    v = np.asarray(values, dtype=np.float64)
    d = v[2:] - v[:-2] if v.size > 2 else np.diff(v)
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def window_bounds(data: FitData, windows: int | Sequence[int]) -> list[tuple[int, int]]:
    """Index ranges ``[lo, hi)`` of the verdict windows.

    ``windows`` is a number of windows (equal numbers of sharpness measurements each, reduced so
    that each holds at least :data:`MIN_PER_WINDOW`), or the sorted steps at which windows start
    (the first window starts at the trace's first step regardless).

    Raises:
      FitInputError: a window count < 1 or window starts that are not increasing steps of the trace.
    """
    n = len(data)
    idx = data.measured
    if isinstance(windows, (int, np.integer)):
        if windows < 1:
            raise FitInputError(f"windows must be a positive count or a list of start steps, got {windows}.")
        count = int(max(1, min(int(windows), idx.size // MIN_PER_WINDOW)))
        parts = np.array_split(idx, count)
        starts = [0] + [int(p[0]) for p in parts[1:]]
    else:
        steps = [int(s) for s in windows]
        if any(b <= a for a, b in zip(steps, steps[1:])) or not steps:
            raise FitInputError(f"window start steps {steps} must be a non-empty increasing list.")
        pos = np.searchsorted(data.step, steps)
        starts = sorted({0, *[int(p) for p in pos if 0 < p < n]})
    ends = starts[1:] + [n]
    return list(zip(starts, ends))


def _ols_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size < 2 or np.ptp(x) == 0:
        return 0.0, float("inf")
    xc = x - x.mean()
    b = float(xc @ (y - y.mean()) / (xc @ xc))
    if x.size < 3:
        return b, float("inf")
    r = y - y.mean() - b * xc
    se = math.sqrt(float(r @ r) / (x.size - 2) / float(xc @ xc))
    return b, se


#: Fewest measurement pairs from which a window's own fluctuations give the centre's error.
_MIN_PAIRS = 4


def edge_centre(y: np.ndarray, t: np.ndarray, floor: float) -> tuple[float, float]:
    """The centre c of y over a window and its standard error, robust to EOS oscillations.

    Math: pair means m_k = ½(y_{2k} + y_{2k+1}) (a period-2 oscillation sampled at alternate
    phases cancels); c = median(m_k). Its error: r_k, the m_k minus their OLS line in time; scale
    s = 1.4826·MAD(r); lag-1 autocorrelation ρ of r clipped to [0, 1) (slow fluctuations such as
    catapult cycles make neighbouring pairs alike); effective sample size
    n_eff = max(1, K(1 − ρ)/(1 + ρ)) (AR(1)); se(c) = √(π/2)·s/√n_eff (the median's efficiency),
    never below ``floor``/√K (the measurement noise). With fewer than 4 pairs: se = ``floor``.
    """
    k = y.size // 2
    if k == 0:
        return float(np.median(y)) if y.size else float("nan"), floor
    m = 0.5 * (y[0:2 * k:2] + y[1:2 * k:2])
    c = float(np.median(m))
    if k < _MIN_PAIRS:
        return c, floor
    tm = 0.5 * (t[0:2 * k:2] + t[1:2 * k:2])
    b, _ = _ols_slope(tm, m)
    r = m - m.mean() - b * (tm - tm.mean())
    s = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    rc = r - r.mean()
    denom = float(rc @ rc)
    rho = float(rc[1:] @ rc[:-1]) / denom if denom > 0 else 0.0
    rho = min(max(rho, 0.0), 0.999)
    n_eff = max(1.0, k * (1.0 - rho) / (1.0 + rho))
    return c, max(math.sqrt(math.pi / 2) * s / math.sqrt(n_eff), floor / math.sqrt(k))


def window_verdicts(
    data: FitData,
    eos_pred: np.ndarray,
    joint_pred: np.ndarray | None,
    clock: np.ndarray,
    *,
    windows: int | Sequence[int] = 8,
    edge_tol: float = DEFAULT_EDGE_TOL,
    follow_threshold: float = 0.5,
    windowed_fit: Any = None,
    time: str = "eta_t",
) -> tuple[list[WindowVerdict], float]:
    """Decide, window by window, whether "EOS alone" explains the measured sharpness.

    EOS alone (docs/theory.md §5) claims two things: below the ceiling the sharpness does not fall and,
    if it grows, grows until it meets the ceiling 2/η_t; at the ceiling it is held there. It says
    nothing about how fast it grows: the rate a may vary in time. Each criterion tests one claim.

    Math. In each window, y_j = η_{t_j}λ̂_{t_j} − 2 at its measurements; its centre c and standard
    error se (:func:`edge_centre`: medians of pair means, so that a period-2 oscillation sampled at
    alternate phases cancels; se from the fluctuations about the window's trend, with the effective
    sample size of autocorrelated fluctuations such as catapult cycles; floor η̃σ with σ =
    :func:`noise_scale` of λ̂ over the trace, η̃ = median η); the band b = 2·``edge_tol`` + 2·se
    (``edge_tol`` is relative to the ceiling: ηλ = 2(1 + ``edge_tol``) is y = 2·``edge_tol``).

    * **above ceiling** if c > b: persistently (for at least half the window's measurement pairs)
      the sharpness exceeds 2/η_t by more than ``edge_tol`` plus twice the uncertainty of the
      window's centre. EOS alone forbids λ > 2/η after the first step. Single spikes above the
      ceiling (a catapult) and the oscillation about it do not count;
    * **explained**, at the edge, if |c| ≤ b: the sharpness hovers within ``edge_tol`` (plus noise)
      of the ceiling, the claim of EOS alone there. A brief drop below the ceiling after a catapult
      (λ falls from above 2/η to below it, then resumes) moves the centre little and is EOS
      dynamics, not a failure; the oscillation's amplitude is the joint model's business. In open
      loop the ceiling is the measured 2/η_t: a sharpness that hovers at a ceiling receding because
      a tuner shrinks η is explained here too (given η_t, EOS alone holds λ at 2/η_t; why η
      shrinks is the tuner's rule, the closed loop's question);
    * below the edge (c < −b):

      - **growing below edge** if ln λ̂ grows significantly (the OLS slope of ln λ̂ against the
        clock E_t, times the window's span, G > 3·se(G) and G > σ/median λ̂) and ηλ̂ does not follow
        λ̂ (d ln(ηλ̂)/d ln λ̂ < ``follow_threshold``): the stepsize shrinks as the sharpness grows,
        so the ceiling recedes and is never met (the σ/λ oracle with σ < 2, Armijo's snowball;
        docs/theory.md §4.1). Under a fixed η the ratio is 1: progressive sharpening towards a fixed
        ceiling is what EOS alone claims, and is not flagged;
      - **off model** if the sharpness does what EOS alone forbids below the ceiling, whatever its
        rate (EOS alone says nothing about how fast it sharpens, and real networks accelerate,
        then slow down): it falls over the window, G < −(``edge_tol`` + 2σ/median λ̂) and
        G < −3·se(G); or EOS alone with a free rate misses it: the model
        λ_{t+1} = min(λ_t + a_p·w_t, 2/η_t), continuous over the whole trace, with a rate a_p ≥ 0
        of its own on each of :data:`PIECES_PER_WINDOW` pieces of every window
        (:func:`fit_windowed`), leaves relative residuals r_j = (λ̂ − λ)/λ off systematically,
        |mean r_j| > ``edge_tol`` + 2σ/median λ̂, or scattered, RMS r_j > 2·``edge_tol`` +
        2σ/median λ̂ (a sharpness that fell far below the ceiling and stays there: the model cannot
        fall, even across a window boundary; a brief drop moves the residuals little);
      - **explained** otherwise.

    The global-rate residuals (``eos_pred``, ``eos_rel_*``) are reported but decide nothing: one
    rate a cannot follow a progressive-sharpening rate that varies in time, and EOS alone does not
    claim a constant rate (the global fit still gives the parameter estimates). Limitation: with
    an even measurement cadence a period-2 oscillation is sampled at one phase only and aliases
    into an offset of c.

    Args:
      data: validated arrays.
      eos_pred: EOS-alone λ_t (one global rate) at every step.
      joint_pred: joint-model λ_t at every step or ``None``.
      clock: E_t (length n + 1), the clock the models used.
      windows: a count (default 8) or start steps (see :func:`window_bounds`).
      edge_tol: relative tolerance on ηλ around 2 (default :data:`DEFAULT_EDGE_TOL` = 0.075:
        "within a few percent of 2/η",
        docs/theory.md §6).
      follow_threshold: the ratio d ln(ηλ)/d ln λ below which the tuner is said to hold ηλ.
      windowed_fit: :func:`fit_windowed` on these windows (EOS alone with a rate per piece), or
        ``None`` (fitted here, from the global fit with ``time``).
      time: the clock's unit (``"eta_t"`` or ``"steps"``), used only when ``windowed_fit`` is
        ``None``.

    Returns:
      ``(verdicts, sigma)``: the list of :class:`WindowVerdict` and the noise scale σ.
    """
    if not edge_tol >= 0:
        raise FitInputError(f"edge_tol must be a non-negative fraction, got {edge_tol}.")
    idx_all = data.measured
    lam_all = data.sharpness
    sigma = noise_scale(lam_all[idx_all])
    eta_med = float(np.median(data.stepsize[idx_all]))
    bounds = window_bounds(data, windows)
    if windowed_fit is None:
        from eosmodel.fit._models import fit_eos_alone

        windowed_fit = fit_windowed(data, bounds, clock, fit_eos_alone(data, time=time))
    rates = _window_rates(windowed_fit, data, bounds, clock)
    pw_pred = windowed_fit.sharpness
    out = []
    for k, (lo, hi) in enumerate(bounds):
        idx = idx_all[(idx_all >= lo) & (idx_all < hi)]
        lam = lam_all[idx]
        eta = data.stepsize[idx]
        nl = lam * eta
        med_lam = float(np.median(np.abs(lam))) if idx.size else float("nan")
        rel_noise = sigma / med_lam if med_lam > 0 else float("inf")
        eos_bias, eos_rms = _rel_stats(lam, eos_pred[idx])
        pw_bias, pw_rms = _rel_stats(lam, pw_pred[idx])
        joint_rms = _rel_stats(lam, joint_pred[idx])[1] if joint_pred is not None else float("nan")
        off = abs(pw_bias) > edge_tol + 2 * rel_noise or pw_rms > 2 * edge_tol + 2 * rel_noise
        off_reason = (f"EOS alone with a free rate misses the sharpness: relative residuals mean "
                      f"{pw_bias:+.3f}, RMS {pw_rms:.3f}")
        gap, gse, growth, gse_g, follow, regime = (float("nan"),) * 5 + ("",)
        band = float("nan")
        if idx.size < MIN_PER_WINDOW or np.any(lam <= 0):
            verdict, reason = ((OFF_MODEL, off_reason) if off
                               else (EXPLAINED, "too few measurements to judge the edge"))
        else:
            t = clock[idx]
            gap, gse = edge_centre(nl - 2.0, t, sigma * eta_med)
            band = 2.0 * edge_tol + 2.0 * gse
            b, se = _ols_slope(t, np.log(lam))
            span = float(t[-1] - t[0])
            growth, gse_g = b * span, se * span
            follow, _ = _ols_slope(np.log(lam), np.log(nl))
            grows = growth > 3 * gse_g and growth > rel_noise
            falls = growth < -3 * gse_g and growth < -(edge_tol + 2 * rel_noise)
            if gap > band:
                regime, verdict = "above", ABOVE_CEILING
                reason = f"eta*lambda - 2 centred at {gap:+.3f} > band {band:.3f}"
            elif gap >= -band:
                regime, verdict = "edge", EXPLAINED
                reason = (f"hovers at the ceiling: eta*lambda - 2 centred at {gap:+.3f}, "
                          f"within +-{band:.3f}")
            elif grows and follow < follow_threshold:
                regime, verdict = "below", GROWING_BELOW_EDGE
                reason = (f"lambda grows (ln gain {growth:+.3f}) while eta*lambda stays below the edge "
                          f"(centre {gap:+.3f}, follow {follow:.2f})")
            elif falls:
                regime, verdict = "below", OFF_MODEL
                reason = f"lambda falls below the ceiling (ln gain {growth:+.3f})"
            elif off:
                regime, verdict, reason = "below", OFF_MODEL, off_reason
            else:
                regime, verdict = "below", EXPLAINED
                reason = (f"sharpening towards the ceiling (ln gain {growth:+.3f}, "
                          f"follow {follow:.2f}, "
                          f"residual RMS {pw_rms:.3f})")
        out.append(WindowVerdict(
            start_step=int(data.step[lo]), end_step=int(data.step[hi - 1]), n_measured=int(idx.size),
            verdict=verdict, median_gap=gap, gap_se=gse, regime=regime, growth=growth,
            growth_se=gse_g, follow=follow, eos_rel_bias=eos_bias, eos_rel_rms=eos_rms,
            rate=float(rates[k]), rate_rel_bias=pw_bias, rate_rel_rms=pw_rms,
            joint_rel_rms=joint_rms, tolerance=band, reason=reason,
        ))
    return out, sigma


#: Pieces of constant sharpening rate per verdict window in the residual test below the ceiling.
PIECES_PER_WINDOW = 4


def rate_pieces(data: FitData, bounds, per_window: int = PIECES_PER_WINDOW) -> list[tuple[int, int]]:
    """Each verdict window ``[lo, hi)`` cut into up to ``per_window`` pieces of equal numbers of
    measurements (the first piece starts at ``lo``), as index ranges covering the trace."""
    idx = data.measured
    out = []
    for lo, hi in bounds:
        sel = idx[(idx >= lo) & (idx < hi)]
        parts = [p for p in np.array_split(sel, max(1, min(per_window, sel.size))) if p.size]
        starts = [lo] + [int(p[0]) for p in parts[1:]]
        out += list(zip(starts, starts[1:] + [hi]))
    return out


def fit_windowed(data: FitData, bounds, clock: np.ndarray, start: Any,
                 per_window: int = PIECES_PER_WINDOW):
    """EOS alone with a sharpening rate of its own on each piece of each verdict window
    (:func:`rate_pieces`, :func:`eosmodel.fit.fit_eos_piecewise`), started from the global fit
    ``start`` (a :class:`~eosmodel.fit.ModelFit` of :func:`eosmodel.fit.fit_eos_alone`)."""
    from eosmodel.fit._models import fit_eos_piecewise

    return fit_eos_piecewise(data, rate_pieces(data, bounds, per_window), w=np.diff(clock), start=start)


def _window_rates(fit: Any, data: FitData, bounds, clock: np.ndarray) -> list[float]:
    """Mean rate of the piecewise fit over each window: ΔA/ΔE (A the rate-weighted clock)."""
    pieces = rate_pieces(data, bounds)
    out = []
    for lo, hi in bounds:
        num = sum(fit.params[f"a_{k}"] * (clock[b] - clock[a])
                  for k, (a, b) in enumerate(pieces) if lo <= a < hi)
        den = clock[hi] - clock[lo]
        out.append(float(num / den) if den > 0 else float("nan"))
    return out


def _rel_stats(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Mean and RMS of the relative residuals (y − pred)/|pred|."""
    if y.size == 0:
        return float("nan"), float("nan")
    rel = (y - pred) / np.where(pred != 0, np.abs(pred), 1.0)
    return float(np.mean(rel)), float(np.sqrt(np.mean(rel * rel)))


def overall_verdict(windows: Sequence[WindowVerdict]) -> str:
    """``"explained"`` when every window is, else ``"fails: kind (m/N windows), ..."``."""
    n = len(windows)
    counts = {v: sum(w.verdict == v for w in windows) for v in VERDICTS[1:]}
    failed = [f"{k} ({c}/{n} windows)" for k, c in counts.items() if c]
    return EXPLAINED if not failed else "fails: " + ", ".join(failed)
