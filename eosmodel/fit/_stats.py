"""Statistics for fits whose residuals are autocorrelated: HAC covariances, effective sample
sizes, and the nested-model test (docs/theory.md §5.4).

At the edge of stability the measured sharpness flips with period 2 and wanders with the
oscillation's slow cycles, so consecutive residuals of any smooth model are correlated. Ordinary
least-squares standard errors then shrink like 1/√n with the sampling rate although the
information does not grow: a fit sampled every step would look far more certain than the same run
sampled every 50 steps. Everything here accounts for it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def newey_west_bandwidth(n: int) -> int:
    """Lag truncation L = max(2, ⌊4(n/100)^{2/9}⌋) of the Newey–West estimator (at least 2, so a
    period-2 oscillation is inside the window)."""
    return max(2, int(4.0 * (max(n, 1) / 100.0) ** (2.0 / 9.0)))


def hac_covariance(jac: np.ndarray, resid: np.ndarray, lags: int | None = None) -> np.ndarray:
    """Newey–West (Bartlett kernel) sandwich covariance of least-squares estimates.

    Math: with J the n×k Jacobian of the residuals at the optimum and r the residuals,

        cov = (JᵀJ)⁻¹ · Ω · (JᵀJ)⁻¹,   Ω = Σ_{ℓ=−L}^{L} (1 − |ℓ|/(L+1)) Σ_j r_j r_{j+ℓ} J_jᵀ J_{j+ℓ},

    consistent under heteroscedastic, autocorrelated residuals (Newey & West 1987). Parameters
    that J does not see (a zero column) or a singular JᵀJ give ``inf`` variances.

    Args:
      jac: (n, k) Jacobian of the residuals.
      resid: (n,) residuals at the optimum.
      lags: L, or ``None`` for :func:`newey_west_bandwidth`.

    Returns:
      (k, k) covariance; ``inf`` on the diagonal of unidentified parameters.
    """
    n, k = jac.shape
    lags = newey_west_bandwidth(n) if lags is None else int(lags)
    scale = np.sqrt((jac * jac).sum(axis=0))
    seen = scale > 0
    cov = np.full((k, k), np.nan)
    np.fill_diagonal(cov, np.inf)
    if not seen.any():
        return cov
    js = jac[:, seen] / scale[seen]
    jtj = js.T @ js
    if not np.linalg.cond(jtj) < 1e12:
        return cov
    u = js * resid[:, None]  # scores
    omega = u.T @ u
    for lag in range(1, min(lags, n - 1) + 1):
        g = u[lag:].T @ u[:-lag]
        omega += (1.0 - lag / (lags + 1.0)) * (g + g.T)
    inv = np.linalg.inv(jtj)
    dof = n / max(n - int(seen.sum()), 1)  # small-sample correction, as s² uses n − k
    cov[np.ix_(seen, seen)] = dof * (inv @ omega @ inv) / np.outer(scale[seen], scale[seen])
    return cov


def effective_size(resid: np.ndarray) -> tuple[float, float]:
    """Effective number of independent residuals n_eff = n(1 − ρ)/(1 + ρ) and ρ.

    ρ is the larger of the lag-1 and lag-2 autocorrelations of the residuals, clipped to [0, 0.99]
    (an AR(1) approximation; lag 2 because a period-2 oscillation makes lag-1 negative while
    lag-2 carries the slow correlation).
    """
    r = np.asarray(resid, dtype=np.float64)
    n = r.size
    if n < 4:
        return float(n), 0.0
    rc = r - r.mean()
    den = float(rc @ rc)
    if den <= 0:
        return float(n), 0.0
    rho1 = float(rc[1:] @ rc[:-1]) / den
    rho2 = float(rc[2:] @ rc[:-2]) / den
    rho = min(max(rho1, math.copysign(math.sqrt(abs(rho2)), rho2), 0.0), 0.99)
    return max(2.0, n * (1.0 - rho) / (1.0 + rho)), rho


def nested_test(rss_small: float, rss_big: float, k_small: int, k_big: int, n_eff: float,
                *, min_effect: float = 0.05, level: float = 0.01) -> dict:
    """Likelihood-ratio test of a model against the smaller model nested in it, with n_eff.

    Math: LR = n_eff·ln(RSS₀/RSS₁) ~ χ²(k₁ − k₀) under the small model (Gaussian residuals,
    n_eff independent ones); BIC_eff = n_eff·ln(RSS/n) + k·ln n_eff for each; the effect size
    1 − RSS₁/RSS₀ is the fraction of the small model's residual variance the extra terms explain.
    The big model is preferred only if p < ``level``, ΔBIC_eff < 0 and the effect size is at
    least ``min_effect``: significance alone is not enough when n is large.

    Returns:
      dict with ``lr``, ``df``, ``p_value``, ``effect``, ``delta_bic_eff``, ``n_eff``,
      ``preferred`` (``"joint"`` or ``"eos_alone"``).
    """
    floor = 1e-300
    rss0, rss1 = max(rss_small, floor), max(min(rss_big, rss_small), floor)
    df = k_big - k_small
    lr = n_eff * math.log(rss0 / rss1)
    p = float(stats.chi2.sf(lr, df)) if df > 0 else 1.0
    effect = 1.0 - rss1 / rss0
    dbic = df * math.log(max(n_eff, 2.0)) - lr
    preferred = "joint" if (p < level and dbic < 0 and effect >= min_effect) else "eos_alone"
    return {"lr": lr, "df": df, "p_value": p, "effect": effect, "delta_bic_eff": dbic,
            "n_eff": n_eff, "preferred": preferred}
