"""The open-loop joint model, which nests "EOS alone" (docs/theory.md §5.2).

EOS alone (docs/theory.md §5.1) and the joint model share one closed form: EOS alone is the joint
model with its four extra terms at zero, computed by the same function, so the nesting is exact
(not approximate) and the likelihood-ratio comparison of :mod:`eosmodel.fit._stats` is valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from eosmodel.fit._data import FitData

#: Parameters of the joint model in the order of the Jacobian columns.
JOINT_PARAMS = ("lambda0", "alpha", "kappa", "beta", "edge", "zeta")
#: EOS alone is the joint model with these at zero.
EXTRA_PARAMS = ("kappa", "beta", "edge", "zeta")


def clock(w: np.ndarray) -> np.ndarray:
    """E_t = Σ_{s<t} w_s for t = 0..n (length n + 1)."""
    out = np.empty(w.size + 1)
    out[0] = 0.0
    np.cumsum(w, out=out[1:])
    return out


@dataclass(frozen=True)
class JointPath:
    """λ̂_t of the joint model at every step, and what its Jacobian needs."""

    lam: np.ndarray  # the model's measured sharpness λ̂_t = λ_t + ζ q_t
    centre: np.ndarray  # λ_t, the sharpness of the orbit's centre
    clipped: np.ndarray  # bool: the ceiling binds at t (through s*_t)
    arg: np.ndarray  # s*_t, the step whose ceiling binds


def joint_path(stepsize: np.ndarray, w: np.ndarray, q: np.ndarray | None, lambda0: float,
               alpha: float, kappa: float = 0.0, beta: float = 0.0, edge: float = 0.0,
               zeta: float = 0.0, *, jacobian: bool = False) -> JointPath:
    """The joint model's sharpness at every step, in closed form (O(n), no loop over steps).

    Math (docs/theory.md §5.2), with η_t the measured stepsize, w_t the clock increment (η_t, or
    1 per step; 0 at a skipped step), E_t = Σ_{s<t} w_s, q_t the oscillation observable (≈ x_t²):

        λ_{t+1} = min( λ_t + w_t·(α·e^{−κE_t} − ½β·q_t),  (2 + y*)/η_{t+1} ),   λ̂_t = λ_t + ζ·q_t,

    (the ceiling binds on λ_t from t = 1 on; λ₀ may start above it). With A_t = Σ_{s<t} w_s(α
    e^{−κE_s} − ½βq_s) and u_t = λ_t − A_t the recursion is u_{t+1} = min(u_t, C_{t+1} − A_{t+1}),
    C_t = (2 + y*)/η_t (∞ where η_t = 0), so

        λ_t = A_t + min(λ₀, min_{1≤s≤t}(C_s − A_s)).

    EOS alone is κ = β = y* = ζ = 0: λ_{t+1} = min(λ_t + a·w_t, 2/η_{t+1}), the ceiling tested
    on the same η_tλ_t as the verdicts.

    Args:
      stepsize: η_t ≥ 0, shape (n,). w: clock increments, shape (n,). q: q_t ≥ 0 or ``None``
        (no oscillation observable: β and ζ do not act). lambda0 … zeta: the parameters.
      jacobian: also locate the binding ceilings (``clipped``, ``arg``), which
        :func:`joint_jacobian` needs; otherwise they are ``None``.

    Returns:
      :class:`JointPath`.
    """
    n = stepsize.size
    if kappa:
        drive = alpha * w * np.exp(-kappa * clock(w)[:-1])
    else:
        drive = alpha * w
    if q is not None and beta:
        drive = drive - 0.5 * beta * (w * q)
    a = clock(drive)[:n]
    m = inverse_stepsize(stepsize) * (2.0 + edge) - a
    run = np.minimum.accumulate(m)
    centre = a + np.minimum(lambda0, run)
    lam = centre + zeta * q if (q is not None and zeta) else centre
    if not jacobian:
        return JointPath(lam=lam, centre=centre, clipped=None, arg=None)
    arg = np.maximum.accumulate(np.where(m <= run, np.arange(n), 0))
    return JointPath(lam=lam, centre=centre, clipped=run < lambda0, arg=arg)


def inverse_stepsize(stepsize: np.ndarray) -> np.ndarray:
    """1/η_t for the ceilings C_t = (2 + y*)/η_t: ∞ where η_t = 0 (a skipped step has no ceiling)
    and at t = 0 (λ₀ may start above the ceiling)."""
    with np.errstate(divide="ignore"):
        inv = np.where(stepsize > 0, 1.0 / np.where(stepsize > 0, stepsize, 1.0), np.inf)
    inv[0] = np.inf
    return inv


def joint_jacobian(stepsize, w, q, theta, path: JointPath, idx: np.ndarray,
                   names=JOINT_PARAMS) -> np.ndarray:
    """∂λ̂_{t_j}/∂θ at the measured steps t_j, exact almost everywhere (the model is piecewise
    smooth: where the ceiling of step s* binds, λ_t = C_{s*} + A_t − A_{s*})."""
    lam0, alpha, kappa, beta, edge, zeta = theta
    n = stepsize.size
    e = clock(w)
    decay = np.exp(-kappa * e[:-1])
    clipped, arg = path.clipped[idx], path.arg[idx]
    cols = {}

    def through_a(da_all):  # ∂A_t − [clipped] ∂A_{s*}
        da = clock(da_all)[:n]
        return da[idx] - np.where(clipped, da[arg], 0.0)

    cols["lambda0"] = np.where(clipped, 0.0, 1.0)
    cols["alpha"] = through_a(w * decay)
    cols["kappa"] = through_a(-w * alpha * e[:-1] * decay)
    qq = np.zeros(n) if q is None else q
    cols["beta"] = through_a(-0.5 * w * qq)
    eta_arg = stepsize[arg]
    cols["edge"] = np.where(clipped, 1.0 / np.where(eta_arg > 0, eta_arg, np.inf), 0.0)
    cols["zeta"] = qq[idx]
    return np.stack([cols[k] for k in names], axis=1)


def loss_energy(loss: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The oscillation energy e_t = f_t − T_t ≥ 0 and the smooth trend T_t of the loss.

    T_t is the lower envelope of the loss (running minimum over ``window`` steps, then a running
    mean over the same window): the loss carries ½λx² over its smooth trend, so e_t ≈ ½λ_t x_t²
    above the orbit's smallest excess within the window (docs/theory.md §5.3).
    """
    win = max(3, int(window)) | 1
    trend = ndimage.uniform_filter1d(ndimage.minimum_filter1d(loss, win, mode="nearest"), win,
                                     mode="nearest")
    return np.maximum(loss - trend, 0.0), trend


def oscillation_regressor(data: FitData, window: int) -> tuple[np.ndarray | None, str]:
    """q_t ≈ x_t², the joint model's oscillation regressor, built without the measured λ̂_t.

    * column ``x`` (toy simulations): q_t = x_t², exact;
    * column ``loss``: q_t = 2e_t/λ̄ with e_t from :func:`loss_energy` and λ̄ the median of the
      measured sharpness, one constant for the whole trace. (Dividing by the per-step measured
      λ̂_t, as x² = 2e/λ would suggest, puts the fitted quantity inside its own regressor and biases
      β; a constant scale only rescales β and ζ, which are reported per unit of x².)
    * neither: ``(None, "none")``; β and ζ are then not part of the model.
    """
    if data.x is not None:
        return data.x ** 2, "x"
    if data.loss is None:
        return None, "none"
    e, _ = loss_energy(data.loss, window)
    lam_bar = float(np.median(data.sharpness[data.measured]))
    return 2.0 * e / max(lam_bar, 1e-300), "loss"


def fit_joint_path(stepsize, w, q, idx, y, start: np.ndarray, free: tuple[str, ...],
                   lower: dict, upper: dict, starts_extra=()) -> tuple[np.ndarray, optimize.OptimizeResult]:
    """Least squares of λ̂ on the measured steps over the ``free`` parameters (others fixed at
    ``start``), trust region with the exact Jacobian; multi-start from ``start`` and each of
    ``starts_extra`` (dicts of overrides); returns the best θ (all six) and its solution."""
    pos = [JOINT_PARAMS.index(k) for k in free]

    def full(x):
        th = start.copy()
        th[pos] = x
        return th

    def resid(x):
        th = full(x)
        return joint_path(stepsize, w, q, *th).lam[idx] - y

    def jac(x):
        th = full(x)
        path = joint_path(stepsize, w, q, *th, jacobian=True)
        return joint_jacobian(stepsize, w, q, th, path, idx, names=free)

    lb = np.array([lower.get(k, -np.inf) for k in free])
    ub = np.array([upper.get(k, np.inf) for k in free])
    candidates = []
    for extra in ({}, *starts_extra):
        th0 = start.copy()
        for k, v in extra.items():
            th0[JOINT_PARAMS.index(k)] = v
        x0 = np.clip(th0[pos], lb, ub)
        r = resid(x0)
        candidates.append((float(r @ r) if np.all(np.isfinite(r)) else np.inf, len(candidates), x0))
    # Refine from the two best starts only (each refinement is monotone, so the result is never
    # worse than the best start, in particular than the nested EOS-alone start).
    best = None
    for _, _, x0 in sorted(candidates, key=lambda c: c[:2])[:2]:
        sol = optimize.least_squares(resid, x0, jac=jac, bounds=(lb, ub), method="trf",
                                     x_scale="jac", max_nfev=100)
        if best is None or sol.cost < best.cost:
            best = sol
    return full(best.x), best


def smoother_r2(y: np.ndarray, width: int = 9) -> float:
    """R² of a running median of the measured sharpness (``width`` measurements): how much of
    its variance any smooth trend can explain. On runs above the edge most of the variance is the
    orbit's fluctuation, which no deterministic trend model predicts; this is the reference for
    the models' R²."""
    if y.size < 3:
        return float("nan")
    sm = ndimage.median_filter(y, size=min(width, y.size) | 1, mode="nearest")
    tss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - sm) ** 2).sum()) / tss if tss > 0 else float("nan")


