"""The catapult thresholds of the uv model, 2/lambda_0 and 4/lambda_0 (docs/theory.md 4.3).

GD on f = u.v / sqrt(n), loss 1/2 (f - y)^2, is exactly a map of (f, lambda), lambda =
(|u|^2 + |v|^2)/n. Linearised at small r = f - y, r_{t+1} = (1 - eta lambda) r_t: the residual grows
iff eta > 2/lambda. Once |r| >> |y| (f ~ r; exact for y = 0), lambda_{t+1} - lambda_t =
(eta r^2 / n)(eta lambda - 4): the sharpness drops (the catapult) iff eta < 4/lambda, and grows with
the residual (divergence) beyond.
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

eta, n, lam = sp.symbols("eta n lambda", positive=True)
f, r, target = sp.symbols("f r y", real=True)


@functools.cache
def uv_map() -> tuple[sp.Expr, sp.Expr]:
    r"""The exact GD map of :math:`(f, \lambda)`, derived from the GD step on :math:`(u, v)`.

    With :math:`a = \lVert u\rVert^2`, :math:`b = \lVert v\rVert^2`, :math:`m = u^\top v`:
    :math:`u' = u - \eta r v/\sqrt n`, :math:`v' = v - \eta r u/\sqrt n`, hence
    :math:`m' = m - \eta r(a + b)/\sqrt n + \eta^2 r^2 m/n` and
    :math:`a' + b' = a + b - 4\eta r m/\sqrt n + \eta^2 r^2 (a + b)/n`. Substituting
    :math:`f = m/\sqrt n`, :math:`\lambda = (a + b)/n`:

    .. math::

        f' = f - \eta\lambda r + \eta^2 r^2 f/n, \qquad
        \lambda' = \lambda - 4\eta r f/n + \eta^2 r^2 \lambda/n.

    Returns:
      ``(f', lambda')`` in the symbols ``f, r, lambda, eta, n``.
    """
    a, b, m = sp.symbols("a b m", positive=True)
    # Inner products after the step, from bilinearity.
    m_new = m - eta * r * (a + b) / sp.sqrt(n) + eta**2 * r**2 * m / n
    a_new = a - 2 * eta * r * m / sp.sqrt(n) + eta**2 * r**2 * b / n
    b_new = b - 2 * eta * r * m / sp.sqrt(n) + eta**2 * r**2 * a / n
    f_new = m_new / sp.sqrt(n)
    lam_new = (a_new + b_new) / n
    # Express in (f, lambda): m = f sqrt(n), a + b = lambda n (a, b enter only through a + b).
    to_f = {m: f * sp.sqrt(n)}
    f_new = sp.expand(f_new.subs(to_f)).subs(a + b, lam * n)
    lam_new = sp.expand(lam_new.subs(to_f))
    f_new = sp.expand(sp.expand(f_new).subs(b, lam * n - a))
    lam_new = sp.expand(lam_new.subs(b, lam * n - a))
    assert not f_new.has(a) and not lam_new.has(a)
    return f_new, lam_new


@functools.cache
def residual_multiplier() -> sp.Expr:
    r"""The linearisation of :math:`r' = f' - y` at :math:`r = 0`: :math:`\partial r'/\partial r = 1 - \eta\lambda`."""
    f_new, _ = uv_map()
    r_new = f_new.subs(f, target + r) - target
    return sp.simplify(sp.diff(r_new, r).subs(r, 0))


@functools.cache
def sharpness_change_large_residual() -> sp.Expr:
    r""":math:`\lambda' - \lambda` with :math:`f = r` (exact for :math:`y = 0`): :math:`\eta r^2(\eta\lambda - 4)/n`."""
    _, lam_new = uv_map()
    return sp.factor(lam_new.subs(f, r) - lam)


@functools.cache
def catapult_thresholds() -> tuple[sp.Expr, sp.Expr]:
    r"""The thresholds :math:`(2/\lambda_0, 4/\lambda_0)`.

    The first solves :math:`|1 - \eta\lambda| = 1` (:func:`residual_multiplier`, non-zero root): the
    residual grows beyond it. The second is the root in :math:`\eta` of
    :func:`sharpness_change_large_residual`: below it a large residual makes the sharpness drop
    (catapult, then convergence), above it the sharpness grows with the residual (divergence).
    """
    growth = [root for root in sp.solve(sp.Eq(sp.Abs(residual_multiplier()), 1), eta) if root != 0]
    (first,) = growth
    (second,) = sp.solve(sp.Eq(sharpness_change_large_residual(), 0), eta)
    lam0 = sp.symbols("lambda_0", positive=True)
    return first.subs(lam, lam0), second.subs(lam, lam0)


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    f_new, lam_new = uv_map()
    low, high = catapult_thresholds()
    return [
        Result(
            key="uv.catapult",
            title="uv model: the exact map and the catapult thresholds",
            statement=(
                r"GD on \(f = u^\top v/\sqrt n\) is exactly a map of \((f, \lambda)\). The residual is "
                r"unstable for \(\eta > 2/\lambda_0\); once it is large the sharpness changes by "
                r"\(\eta r^2(\eta\lambda - 4)/n\): it drops for \(\eta < 4/\lambda_0\) (catapult, then "
                r"convergence at a flatter point) and grows beyond (divergence)."
            ),
            equations=(
                (r"f_{t+1}", f_new),
                (r"\lambda_{t+1}", lam_new),
                (r"\partial r_{t+1}/\partial r_t\,|_{r=0}", residual_multiplier()),
                (r"\lambda_{t+1} - \lambda_t\,|_{f = r}", sharpness_change_large_residual()),
                (r"(\eta_{\text{catapult}}, \eta_{\text{diverge}})", sp.Tuple(low, high)),
            ),
            reference="Lewkowycz et al., arXiv:2003.02218",
        )
    ]
