"""The edge-of-stability minimum of Zhu et al.'s function f(a, b) = 1/4 (a^2 b^2 - 1)^2 (docs/theory.md 4.4).

On the minimum ab = 1 the Hessian has eigenvalues 0 and 2(a^2 + b^2); GD with stepsize eta settles
where this equals 2/eta: a^2 + b^2 = 1/eta, i.e. (c, d) = ((eta^-2 - 4)^(1/4), 1) with
c = sqrt(a^2 - b^2), d = ab.
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

a, b = sp.symbols("a b", positive=True)
eta = sp.symbols("eta", positive=True)


def zhu_loss() -> sp.Expr:
    r""":math:`f(a, b) = \tfrac14(a^2 b^2 - 1)^2`."""
    return (a**2 * b**2 - 1) ** 2 / 4


@functools.cache
def hessian_eigenvalues_on_minimum() -> list[sp.Expr]:
    r"""The Hessian eigenvalues on the minimum :math:`b = 1/a`: :math:`0` and :math:`2(a^2 + b^2) = 2(a^2 + a^{-2})`."""
    hess = sp.hessian(zhu_loss(), (a, b)).subs(b, 1 / a)
    return sorted((sp.simplify(v) for v in hess.eigenvals()), key=sp.default_sort_key)


@functools.cache
def eos_norm() -> sp.Expr:
    r"""The squared norm of the EOS minimum: sharpness :math:`2(a^2+b^2) = 2/\eta` gives :math:`a^2 + b^2 = 1/\eta`."""
    norm_sq = sp.symbols("N", positive=True)  # N = a^2 + b^2
    top = max(hessian_eigenvalues_on_minimum(), key=lambda v: v.subs(a, 2))
    assert sp.simplify(top - 2 * (a**2 + 1 / a**2)) == 0
    (sol,) = sp.solve(sp.Eq(2 * norm_sq, 2 / eta), norm_sq)
    return sol


@functools.cache
def eos_minimum_cd() -> tuple[sp.Expr, sp.Expr]:
    r"""The EOS minimum in :math:`(c, d) = (\sqrt{a^2 - b^2}, ab)`: :math:`((\eta^{-2} - 4)^{1/4}, 1)`.

    Uses :math:`c^4 = (a^2 - b^2)^2 = (a^2 + b^2)^2 - 4a^2b^2` with :math:`ab = d = 1` and
    :math:`a^2 + b^2 =` :func:`eos_norm` (real for :math:`\eta \le 1/2`, where :math:`2/\eta \ge 4`
    is above the flattest minimum's sharpness).
    """
    d_val = sp.Integer(1)
    c4 = sp.expand(eos_norm() ** 2 - 4 * d_val**2)
    c_val = sp.Pow(c4, sp.Rational(1, 4))  # the non-negative real fourth root for eta <= 1/2
    assert sp.simplify(c_val**4 - c4) == 0
    return c_val, d_val


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    c_val, d_val = eos_minimum_cd()
    return [
        Result(
            key="zhu.eos_minimum",
            title="Zhu's function: the edge-of-stability minimum",
            statement=(
                r"On the minimum \(ab = 1\) the sharpness is \(2(a^2 + b^2)\). GD with stepsize "
                r"\(\eta \le 1/2\) started beyond it settles where the sharpness is \(2/\eta\): "
                r"\(a^2 + b^2 = 1/\eta\), i.e. \((c, d) = ((\eta^{-2} - 4)^{1/4}, 1)\)."
            ),
            equations=(
                (r"f(a, b)", zhu_loss()),
                (r"\text{eig}\,\nabla^2 f\,|_{b = 1/a}", sp.FiniteSet(*hessian_eigenvalues_on_minimum())),
                (r"a^2 + b^2", eos_norm()),
                (r"(c, d)", sp.Tuple(c_val, d_val)),
            ),
            reference="Zhu et al., arXiv:2210.03294",
        )
    ]
