"""The stability threshold of GD on a quadratic: eta * lambda < 2 (docs/theory.md 1)."""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

eta, lam = sp.symbols("eta lambda", positive=True)
x = sp.symbols("x", real=True)


@functools.cache
def gd_multiplier() -> sp.Expr:
    r"""The GD multiplier on :math:`\tfrac12\lambda x^2`: :math:`x - \eta\,\partial_x(\tfrac12\lambda x^2) = (1 - \eta\lambda)x`."""
    update = x - eta * sp.diff(lam * x**2 / 2, x)
    return sp.simplify(update / x)


@functools.cache
def stable_stepsizes() -> sp.Set:
    r"""The stepsizes with :math:`|1 - \eta\lambda| < 1` for :math:`\lambda > 0`: the interval :math:`(0, 2/\lambda)`.

    Returns:
      A sympy ``Interval`` in :math:`\eta` (open at both ends).
    """
    condition = sp.Abs(gd_multiplier()) < 1
    # eta is declared positive, so the solution is already restricted to eta > 0.
    return sp.solve_univariate_inequality(condition, eta, relational=False)


@functools.cache
def threshold() -> sp.Expr:
    r"""The stability threshold :math:`\eta^* = 2/\lambda` (the right end of :func:`stable_stepsizes`)."""
    return stable_stepsizes().sup


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    return [
        Result(
            key="stability.threshold",
            title="GD stability threshold on a quadratic",
            statement=(
                r"GD multiplies the coordinate along an eigenvector of eigenvalue \(\lambda > 0\) by "
                r"\(1 - \eta\lambda\); it converges iff \(0 < \eta\lambda < 2\) and diverges "
                r"geometrically when \(\eta\lambda > 2\). The normalised sharpness \(\eta\lambda\) "
                r"is 2 at the edge of stability."
            ),
            equations=(
                (r"x_{t+1}/x_t", gd_multiplier()),
                (r"\{\eta : |1-\eta\lambda| < 1\}", stable_stepsizes()),
                (r"\eta^*", threshold()),
            ),
            reference="Cohen et al., arXiv:2103.00065",
        )
    ]
