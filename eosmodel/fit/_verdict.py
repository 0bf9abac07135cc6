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

#: Fewest sharpness measurements in a verdict window.
MIN_PER_WINDOW = 3


@dataclass(frozen=True)
class WindowVerdict:
    """The verdict on one window of steps ``[start_step, end_step]``.

    Attributes:
      start_step, end_step: the window's first and last step (inclusive).
      n_measured: sharpness measurements in it.
      verdict: one of :data:`VERDICTS`.
      median_gap: median of η_tλ̂_t − 2 over the window's measurements (y of science.md §1).
      growth: ln(λ̂) gained over the window (OLS slope against the clock × the window's span), and
        ``growth_se`` its standard error.
      follow: d ln(ηλ̂)/d ln λ̂ (OLS): 1 when η is fixed, 0 when the tuner holds ηλ constant.
      eos_rel_bias, eos_rel_rms: mean and RMS of (λ̂ − λ_EOS)/λ_EOS, the EOS-alone residuals.
      joint_rel_rms: the same for the joint model (NaN when it was not fitted).
      tolerance: the band b on ηλ̂ − 2: 2·``edge_tol`` + 2·(noise of ηλ̂).
    """

    start_step: int
    end_step: int
    n_measured: int
    verdict: str
    median_gap: float
    growth: float
    growth_se: float
    follow: float
    eos_rel_bias: float
    eos_rel_rms: float
    joint_rel_rms: float
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                for k, v in asdict(self).items()}


def noise_scale(values: np.ndarray) -> float:
    """Robust noise scale of a slowly varying measured series: 1.4826·MAD(Δv)/√2.

    Differences remove the trend; the median absolute deviation ignores the rare jumps (catapults,
    the ceiling being met). For i.i.d. Gaussian noise of std σ on a smooth series it returns ≈ σ.
    """
    d = np.diff(np.asarray(values, dtype=np.float64))
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


def window_verdicts(
    data: FitData,
    eos_pred: np.ndarray,
    joint_pred: np.ndarray | None,
    clock: np.ndarray,
    *,
    windows: int | Sequence[int] = 8,
    edge_tol: float = 0.05,
    follow_threshold: float = 0.5,
) -> tuple[list[WindowVerdict], float]:
    """Decide, window by window, whether "EOS alone" explains the measured sharpness.

    Math. Noise: σ = :func:`noise_scale` of the measured λ̂; the band on ηλ̂ is
    b = 2·``edge_tol`` + 2σ·median(η) (``edge_tol`` is relative to the ceiling 2/η). In each window, with y_j = η_{t_j}λ̂_{t_j} − 2:

    * **above ceiling** if median(y_j) > b: the sharpness stays above 2/η_t beyond noise, which
      EOS alone (λ ≤ 2/η after the first step) forbids;
    * **growing below edge** if median(y_j) < −b, ln λ̂ grows significantly (the OLS slope of
      ln λ̂ against the clock E_t, times the window's span, G > 3·se(G) and G > σ/median λ̂), and
      ηλ̂ does not follow λ̂ (d ln(ηλ̂)/d ln λ̂ < ``follow_threshold``): the stepsize shrinks as the
      sharpness grows, so the ceiling recedes and is never met (the σ/λ oracle with σ < 2, Armijo;
      science.md §4.1). Under a fixed η the progressive-sharpening phase has this ratio 1 and is
      not flagged;
    * **off model** if neither, and the EOS-alone relative residuals r_j = (λ̂ − λ_EOS)/λ_EOS are
      off systematically, |mean r_j| > ``edge_tol`` + 2σ/median λ̂, or oscillate more than
      hovering at the edge allows, RMS r_j > 2·``edge_tol`` + 2σ/median λ̂ (e.g. a sharpness drop
      after a catapult, or an orbit far wider than a few percent);
    * **explained** otherwise.

    Args:
      data: validated arrays.
      eos_pred: EOS-alone λ_t at every step.
      joint_pred: joint-model λ_t at every step or ``None``.
      clock: E_t (length n + 1), the clock the models used.
      windows: a count (default 8) or start steps (see :func:`window_bounds`).
      edge_tol: relative tolerance on ηλ around 2 (default 0.05: "within a few percent of 2/η",
        science.md §6).
      follow_threshold: the ratio d ln(ηλ)/d ln λ below which the tuner is said to hold ηλ.

    Returns:
      ``(verdicts, sigma)``: the list of :class:`WindowVerdict` and the noise scale σ.
    """
    if not edge_tol >= 0:
        raise FitInputError(f"edge_tol must be a non-negative fraction, got {edge_tol}.")
    idx_all = data.measured
    lam_all = data.sharpness
    sigma = noise_scale(lam_all[idx_all])
    band = 2.0 * edge_tol + 2.0 * sigma * float(np.median(data.stepsize[idx_all]))
    out = []
    for lo, hi in window_bounds(data, windows):
        idx = idx_all[(idx_all >= lo) & (idx_all < hi)]
        lam = lam_all[idx]
        eta = data.stepsize[idx]
        nl = lam * eta
        med_lam = float(np.median(np.abs(lam))) if idx.size else float("nan")
        rel_noise = sigma / med_lam if med_lam > 0 else float("inf")
        eos_bias, eos_rms = _rel_stats(lam, eos_pred[idx])
        joint_rms = _rel_stats(lam, joint_pred[idx])[1] if joint_pred is not None else float("nan")
        off = abs(eos_bias) > edge_tol + 2 * rel_noise or eos_rms > 2 * edge_tol + 2 * rel_noise
        if idx.size < MIN_PER_WINDOW or np.any(lam <= 0):
            gap, growth, gse, follow = float("nan"), float("nan"), float("nan"), float("nan")
            verdict = OFF_MODEL if off else EXPLAINED
        else:
            gap = float(np.median(nl - 2.0))
            t = clock[idx]
            b, se = _ols_slope(t, np.log(lam))
            span = float(t[-1] - t[0])
            growth, gse = b * span, se * span
            follow, _ = _ols_slope(np.log(lam), np.log(nl))
            grows = growth > 3 * gse and growth > rel_noise
            if gap > band:
                verdict = ABOVE_CEILING
            elif gap < -band and grows and follow < follow_threshold:
                verdict = GROWING_BELOW_EDGE
            elif off:
                verdict = OFF_MODEL
            else:
                verdict = EXPLAINED
        out.append(WindowVerdict(
            start_step=int(data.step[lo]), end_step=int(data.step[hi - 1]), n_measured=int(idx.size),
            verdict=verdict, median_gap=gap, growth=growth, growth_se=gse, follow=follow,
            eos_rel_bias=eos_bias, eos_rel_rms=eos_rms, joint_rel_rms=joint_rms, tolerance=band,
        ))
    return out, sigma


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
