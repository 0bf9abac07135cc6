"""The Polyak stepsize SPS_max on quadratics (docs/theory.md 3.2).

eta = (f(w) - f*) / (c ||g||^2) with f* = 0. On f = 1/2 lambda w^2 it is 1/(2 c lambda) (so
eta*lambda = 1/(2c)); on a multi-dimensional quadratic with non-negative spectrum it is
sum(lambda_i w_i^2) / (2 c sum(lambda_i^2 w_i^2)) >= 1/(2 c lambda_max).
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

c, lam, w = sp.symbols("c lambda w", positive=True)


@functools.cache
def one_dimensional_stepsize() -> sp.Expr:
    r"""SPS on :math:`f = \tfrac12\lambda w^2`, :math:`f^* = 0`: :math:`\eta = f/(c f'^2) = 1/(2c\lambda)`."""
    f = lam * w**2 / 2
    g = sp.diff(f, w)
    return sp.simplify(f / (c * g**2))


def spectrum_symbols(dim: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """The eigenvalues ``lambda_1..lambda_dim`` (lambda_1 the largest) and coordinates ``w_1..w_dim``."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}; pass a positive dimension.")
    lams = sp.symbols(f"lambda_1:{dim + 1}", positive=True)
    ws = sp.symbols(f"w_1:{dim + 1}", real=True)
    return lams, ws


@functools.cache
def quadratic_stepsize(dim: int = 3) -> sp.Expr:
    r"""SPS on :math:`f = \tfrac12\sum_i\lambda_i w_i^2` (eigenbasis): :math:`\eta = \sum\lambda_i w_i^2/(2c\sum\lambda_i^2 w_i^2)`.

    Derived from :math:`f/(c\lVert\nabla f\rVert^2)` in ``dim`` dimensions.
    """
    lams, ws = spectrum_symbols(dim)
    f = sum(li * wi**2 for li, wi in zip(lams, ws)) / 2
    grad_sq = sum(sp.diff(f, wi) ** 2 for wi in ws)
    return sp.simplify(f / (c * grad_sq))


@functools.cache
def lower_bound_gap(dim: int = 3) -> sp.Expr:
    r"""The gap :math:`\eta - 1/(2c\lambda_1) = \sum_i \lambda_i w_i^2 (\lambda_1 - \lambda_i) / (2c\lambda_1\sum_i\lambda_i^2 w_i^2)`.

    Every term of the numerator is :math:`\ge 0` when :math:`\lambda_1 = \lambda_{\max}` and the
    spectrum is non-negative, which proves :math:`\eta \ge 1/(2c\lambda_{\max})`, with equality iff
    :math:`w` lies in the top eigenspace.

    Returns:
      The gap written in the non-negative form above (checked equal to the raw difference).
    """
    lams, ws = spectrum_symbols(dim)
    raw = quadratic_stepsize(dim) - 1 / (2 * c * lams[0])
    numerator = sum(li * wi**2 * (lams[0] - li) for li, wi in zip(lams, ws))
    denominator = 2 * c * lams[0] * sum(li**2 * wi**2 for li, wi in zip(lams, ws))
    form = numerator / denominator
    assert sp.simplify(raw - form) == 0
    return form


def lower_bound() -> sp.Expr:
    r"""The lower bound :math:`1/(2c\lambda_{\max})` of the SPS stepsize on a PSD quadratic."""
    lam_max = sp.symbols(r"lambda_max", positive=True)
    return 1 / (2 * c * lam_max)


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    return [
        Result(
            key="polyak.one_dimensional",
            title="Polyak (SPS) on a 1-D quadratic",
            statement=(
                r"With \(f^* = 0\) the Polyak step on \(\tfrac12\lambda w^2\) does not depend on \(w\): "
                r"\(\eta\lambda = 1/(2c)\), equal to 1 at \(c = 1/2\) and above the stability "
                r"threshold 2 for \(c < 1/4\); SPS_max caps it at \(\gamma_{\max}\)."
            ),
            equations=((r"\eta", one_dimensional_stepsize()),),
            reference="Loizou et al., arXiv:2002.10542",
        ),
        Result(
            key="polyak.lower_bound",
            title="Polyak (SPS) on a multi-dimensional quadratic",
            statement=(
                r"On a PSD quadratic the Polyak step is at least \(1/(2c\lambda_{\max})\): the gap is a "
                r"sum of non-negative terms. When the loss sits in low-curvature directions Polyak "
                r"steps far beyond \(2/\lambda_{\max}\)."
            ),
            equations=(
                (r"\eta", quadratic_stepsize(3)),
                (r"\eta - \frac{1}{2c\lambda_1}", lower_bound_gap(3)),
                (r"\eta \ge", lower_bound()),
            ),
            reference="Loizou et al., arXiv:2002.10542",
        ),
    ]
