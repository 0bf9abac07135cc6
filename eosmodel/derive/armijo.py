"""Armijo's sufficient-decrease condition on a quadratic: the largest accepted stepsize.

For f(w) = 1/2 w^T H w, g = H w, the Armijo condition f(w - eta g) <= f(w) - c eta ||g||^2 holds
exactly for 0 < eta <= 2 (1 - c) ||g||^2 / (g^T H g); in one dimension (or once g aligns with the
top eigenvector) this is eta <= 2 (1 - c) / lambda < 2 / lambda (docs/theory.md 3.1).
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

eta, c, lam = sp.symbols("eta c lambda", positive=True)
g2, gHg = sp.symbols(r"\|g\|^2 g^{\top}Hg", positive=True)


@functools.cache
def quadratic_decrease() -> sp.Expr:
    r"""The exact change :math:`f(w - \eta g) - f(w) = -\eta\lVert g\rVert^2 + \tfrac12\eta^2 g^\top H g`.

    Derived with a generic symmetric 2x2 :math:`H` and :math:`w` (the identity is dimension-free),
    then written in the symbols ``g2`` = :math:`\lVert g\rVert^2`, ``gHg`` = :math:`g^\top H g`.

    Returns:
      The sympy expression in ``eta, g2, gHg``.

    Raises:
      AssertionError: if the generic computation disagrees with the returned form (cannot happen
        unless sympy is broken).
    """
    h11, h12, h22, w1, w2 = sp.symbols("h11 h12 h22 w1 w2", real=True)
    hess = sp.Matrix([[h11, h12], [h12, h22]])
    w = sp.Matrix([w1, w2])

    def f(v):
        return (v.T * hess * v)[0, 0] / 2

    g = hess * w
    change = sp.expand(f(w - eta * g) - f(w))
    claimed = -eta * (g.T * g)[0, 0] + eta**2 * (g.T * hess * g)[0, 0] / 2
    assert sp.expand(change - claimed) == 0
    return -eta * g2 + eta**2 * gHg / 2


@functools.cache
def quadratic_bound() -> sp.Expr:
    r"""The largest Armijo-accepted stepsize on a quadratic: :math:`\eta_{\max} = 2(1-c)\lVert g\rVert^2/(g^\top H g)`.

    Solves :math:`f(w - \eta g) - f(w) + c\,\eta\lVert g\rVert^2 = 0` for its non-zero root; the
    left side is a convex parabola in :math:`\eta` vanishing at 0, so the condition holds exactly on
    :math:`[0, \eta_{\max}]`.

    Returns:
      The sympy expression in ``c, g2, gHg``.
    """
    roots = sp.solve(sp.Eq(quadratic_decrease() + c * eta * g2, 0), eta)
    (root,) = [r for r in roots if r != 0]
    return sp.simplify(root)


@functools.cache
def one_dimensional_bound() -> sp.Expr:
    r"""The 1-D (or top-eigenvector-aligned) bound :math:`\eta_{\max} = 2(1 - c)/\lambda`.

    Substitutes :math:`g = \lambda w`: :math:`\lVert g\rVert^2 = \lambda^2 w^2`,
    :math:`g^\top H g = \lambda^3 w^2` into :func:`quadratic_bound`.
    """
    w = sp.symbols("w", positive=True)
    return sp.simplify(quadratic_bound().subs({g2: lam**2 * w**2, gHg: lam**3 * w**2}))


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    return [
        Result(
            key="armijo.quadratic_bound",
            title="Armijo on a quadratic",
            statement=(
                r"On \(f(w) = \tfrac12 w^\top H w\), \(f(w - \eta g) - f(w)\) is exactly a parabola in "
                r"\(\eta\), so the sufficient-decrease condition \(f(w-\eta g) \le f(w) - c\,\eta\|g\|^2\) "
                r"holds exactly for \(0 < \eta \le \eta_{\max}\). Aligned with the top eigenvector the "
                r"bound is \(2(1-c)/\lambda < 2/\lambda\): Armijo never lets the top direction oscillate."
            ),
            equations=(
                (r"f(w-\eta g) - f(w)", quadratic_decrease()),
                (r"\eta_{\max}", quadratic_bound()),
                (r"\eta_{\max}\ (\text{1-D})", one_dimensional_bound()),
            ),
            reference="Armijo 1966; Vaswani et al., arXiv:1905.09997",
        )
    ]
