"""The normalised map of the one-datum, two-parameter second-order regression model (docs/theory.md 4.2).

With Q eigenvalues +-omega, E = z0 - 1/2 G^T Q^{-1} G and x = eta omega z, y = eta T - 2 (T = ||J||^2),
e = eta omega E, GD on theta is exactly

    x_{t+1} = -(1 + y_t) x_t + x_t^2 (x_t - e),    y_{t+1} = y_t + x_t^2 (y_t + 2) - 4 x_t (x_t - e).

Derived here from GD on theta; then its fixed points (the line x = 0, stable for -2 < y < 0, and
three isolated points), their Jacobians, and its period-2 orbits.
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

x, y, e = sp.symbols("x y e", real=True)
s, p = sp.symbols("s p", real=True)  # sum and product of the two x values of a period-2 orbit


def normalized_map() -> sp.Matrix:
    r"""The map :math:`F(x, y) = (-(1+y)x + x^2(x - e),\; y + x^2(y + 2) - 4x(x - e))`."""
    return sp.Matrix([-(1 + y) * x + x**2 * (x - e), y + x**2 * (y + 2) - 4 * x * (x - e)])


@functools.cache
def map_from_gd() -> tuple[sp.Expr, sp.Expr]:
    r"""Derives the map from one GD step on :math:`\theta` and returns the residuals (both 0).

    Model: :math:`z = z_0 + g^\top\theta + \tfrac12\omega(\theta_1^2 - \theta_2^2)`,
    :math:`J = g + Q\theta`, :math:`\theta' = \theta - \eta z J`. Computes
    :math:`x' = \eta\omega z(\theta')` and :math:`y' = \eta\lVert J(\theta')\rVert^2 - 2` and subtracts
    :func:`normalized_map` evaluated at :math:`(x, y, e)` of :math:`\theta`.

    Returns:
      ``(x' - F_x, y' - F_y)`` after expansion: two zeros.
    """
    th1, th2, g1, g2, z0 = sp.symbols("theta1 theta2 g1 g2 z0", real=True)
    eta, omega = sp.symbols("eta omega", positive=True)

    def residual(t1, t2):
        return z0 + g1 * t1 + g2 * t2 + omega * (t1**2 - t2**2) / 2

    def jac(t1, t2):
        return sp.Matrix([g1 + omega * t1, g2 - omega * t2])

    z = residual(th1, th2)
    j = jac(th1, th2)
    new = sp.Matrix([th1, th2]) - eta * z * j
    energy = z0 - (g1**2 - g2**2) / (2 * omega)
    values = {x: eta * omega * z, y: eta * (j.T * j)[0, 0] - 2, e: eta * omega * energy}
    predicted = normalized_map().subs(values, simultaneous=True)
    x_new = eta * omega * residual(new[0], new[1])
    j_new = jac(new[0], new[1])
    y_new = eta * (j_new.T * j_new)[0, 0] - 2
    return sp.expand(x_new - predicted[0]), sp.expand(y_new - predicted[1])


def jacobian() -> sp.Matrix:
    r"""The Jacobian :math:`DF(x, y)`."""
    return normalized_map().jacobian([x, y])


@functools.cache
def fixed_points() -> list[dict]:
    r"""The fixed points: the line :math:`x = 0` (every :math:`y`) and :math:`(e, -2)`, :math:`(2, 2 - 2e)`, :math:`(-2, 2 + 2e)`.

    Returns:
      sympy's solution dicts (``{x: 0}`` for the line).
    """
    return sp.solve(list(normalized_map() - sp.Matrix([x, y])), [x, y], dict=True)


@functools.cache
def fixed_point_multipliers() -> list[tuple[dict, list[sp.Expr]]]:
    r"""The eigenvalues of :math:`DF` at each fixed point.

    On the line :math:`x = 0` they are :math:`1` (along the line) and :math:`-(1 + y)`: the line is
    attracting exactly for :math:`-2 < y < 0` (i.e. :math:`0 < \eta T < 2`, the stability threshold).
    """
    out = []
    for point in fixed_points():
        jac = jacobian().subs(point)
        out.append((point, sorted((sp.simplify(v) for v in jac.eigenvals()), key=sp.default_sort_key)))
    return out


@functools.cache
def line_stability() -> sp.Set:
    r"""The :math:`y` for which the fixed point :math:`(0, y)` attracts transversally: :math:`|1 + y| < 1`, i.e. :math:`(-2, 0)`."""
    return sp.solve_univariate_inequality(sp.Abs(1 + y) < 1, y, relational=False)


def _orbit_polynomials() -> tuple[sp.Expr, sp.Expr]:
    """Period-2 conditions in the symmetric functions s = x1 + x2, p = x1 x2 (x1 != x2, both != 0).

    From the x-equation, y1 = x1 (x1 - e) - 1 - x2/x1 and y2 = x2 (x2 - e) - 1 - x1/x2; the two
    y-equations, added and subtracted (dividing out x1 x2 and x1 - x2), are symmetric in (x1, x2).
    """
    from sympy.polys.polyfuncs import symmetrize

    x1, x2 = sp.symbols("x1 x2")
    y1 = x1 * (x1 - e) - 1 - x2 / x1
    y2 = x2 * (x2 - e) - 1 - x1 / x2
    eq1 = sp.numer(sp.together(y2 - (y1 + x1**2 * (y1 + 2) - 4 * x1 * (x1 - e))))
    eq2 = sp.numer(sp.together(y1 - (y2 + x2**2 * (y2 + 2) - 4 * x2 * (x2 - e))))
    total = sp.cancel(sp.expand(eq1 + eq2) / (x1 * x2))
    diff = sp.cancel(sp.expand(eq1 - eq2) / (x1 - x2))
    polys = []
    for poly in (total, diff):
        sym, rest, defs = symmetrize(sp.expand(poly), [x1, x2], formal=True)
        assert rest == 0
        (s1, _), (s2, _) = defs
        polys.append(sp.expand(sym.subs({s1: s, s2: p})))
    return polys[0], polys[1]


@functools.cache
def period_two_families() -> list[tuple[sp.Expr, sp.Expr]]:
    r"""All period-2 orbits, as families :math:`(q(s) = 0,\; p = P(s))` for :math:`s = x_1 + x_2`, :math:`p = x_1 x_2`.

    :math:`x_1, x_2` are the roots of :math:`u^2 - s u + p`, and
    :math:`y_i = x_i(x_i - e) - 1 - x_j/x_i`. The orbit is real when :math:`s` is real and
    :math:`s^2 \ge 4p`. Found by eliminating :math:`p` (a resultant) and then solving for :math:`p`.

    Returns:
      ``(q, P)`` pairs: ``q`` a polynomial in ``s`` (and ``e``), ``P`` an expression in ``s, e``
      valid on the roots of ``q``.
    """
    q1, q2 = _orbit_polynomials()
    lead1, lead2 = sp.Poly(q1, p).coeff_monomial(p**2), sp.Poly(q2, p).coeff_monomial(p**2)
    linear = sp.expand(lead2 * q1 - lead1 * q2)  # both are quadratic in p: p^2 cancels
    assert sp.Poly(linear, p).degree() <= 1
    families = []
    for factor, _ in sp.factor_list(sp.resultant(q1, q2, p))[1]:
        if not factor.has(s):
            continue
        if sp.rem(linear, factor, s) == 0 or sp.Poly(sp.rem(linear, factor, s), p).degree() < 1:
            # the elimination degenerates on this factor: take the common roots in p directly
            (root,) = sp.solve(factor, s)
            common = sp.gcd(sp.Poly(q1.subs(s, root), p), sp.Poly(q2.subs(s, root), p))
            for value in sp.solve(common.as_expr(), p):
                if value != 0:  # p = 0 means x1 x2 = 0, excluded
                    families.append((factor, sp.simplify(value)))
            continue
        (value,) = sp.solve(linear, p)
        num, den = sp.fraction(sp.factor(value))
        num_r = sp.factor(sp.rem(sp.expand(num), factor, s))
        den_r = sp.factor(sp.rem(sp.expand(den), factor, s))
        families.append((factor, sp.cancel(num_r / den_r)))
    return families


def period_two_orbits(e_value) -> list[tuple[tuple, tuple]]:
    r"""The real period-2 orbits :math:`((x_1, y_1), (x_2, y_2))` of the map at a given :math:`e`.

    Args:
      e_value: a number (exact values such as ``sympy.Rational(1)`` keep the roots exact).

    Returns:
      A list of orbits with sympy-number entries (real, :math:`x_1 < x_2`, both non-zero).
    """
    e_num = sp.nsimplify(e_value)
    orbits = []
    for factor, pexpr in period_two_families():
        for s_root in sp.Poly(factor.subs(e, e_num), s).all_roots():
            if not s_root.is_real:
                continue
            p_val = sp.simplify(pexpr.subs({e: e_num, s: s_root}))
            disc = sp.simplify(s_root**2 - 4 * p_val)
            if not (disc.is_positive):
                continue
            x1 = sp.simplify((s_root - sp.sqrt(disc)) / 2)
            x2 = sp.simplify((s_root + sp.sqrt(disc)) / 2)
            if x1 == 0 or x2 == 0:
                continue
            y1 = sp.simplify(x1 * (x1 - e_num) - 1 - x2 / x1)
            y2 = sp.simplify(x2 * (x2 - e_num) - 1 - x1 / x2)
            orbits.append(((x1, y1), (x2, y2)))
    return orbits


def sqrt2_orbit() -> tuple[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]]:
    r"""The orbit that exists for every :math:`e`: :math:`(\sqrt2, 2 - \sqrt2 e) \leftrightarrow (-\sqrt2, 2 + \sqrt2 e)`.

    It is the family :math:`s = 0`, :math:`p = -2` of :func:`period_two_families`; checked here by
    applying the map.
    """
    r2 = sp.sqrt(2)
    orbit = ((r2, 2 - r2 * e), (-r2, 2 + r2 * e))
    fmap = normalized_map()
    for a, b in (orbit, orbit[::-1]):
        image = fmap.subs({x: a[0], y: a[1]}, simultaneous=True)
        assert sp.expand(image[0] - b[0]) == 0 and sp.expand(image[1] - b[1]) == 0
    return orbit


@functools.cache
def sqrt2_orbit_multipliers() -> list[sp.Expr]:
    r"""The eigenvalues of :math:`D(F\circ F)` on :func:`sqrt2_orbit`."""
    (p1, p2) = sqrt2_orbit()
    j1 = jacobian().subs({x: p1[0], y: p1[1]})
    j2 = jacobian().subs({x: p2[0], y: p2[1]})
    return sorted((sp.simplify(v) for v in (j2 * j1).eigenvals()), key=sp.default_sort_key)


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    residuals = map_from_gd()
    fams = period_two_families()
    return [
        Result(
            key="second_order.map",
            title="Second-order regression: the normalised map",
            statement=(
                r"For one datum, two parameters and \(Q\) with eigenvalues \(\pm\omega\), GD on "
                r"\(\theta\) gives exactly the map \(F\) in \(x = \eta\omega z\), \(y = \eta T - 2\), "
                r"\(e = \eta\omega E\) (the symbolic residuals of the derivation vanish)."
            ),
            equations=(
                (r"F(x, y)", normalized_map()),
                (r"(x' - F_x,\ y' - F_y)", sp.Tuple(*residuals)),
            ),
            reference="Agarwala, Pedregosa, Pennington, arXiv:2210.04860",
        ),
        Result(
            key="second_order.fixed_points",
            title="Second-order regression: fixed points and period-2 orbits",
            statement=(
                r"Every point of the line \(x = 0\) is fixed, with multipliers \(1\) and \(-(1+y)\): "
                r"it attracts for \(-2 < y < 0\) (\(\eta T < 2\)). The other fixed points are "
                r"\((e, -2)\), \((2, 2-2e)\), \((-2, 2+2e)\). Period-2 orbits are given by "
                r"\(s = x_1 + x_2\), \(p = x_1 x_2\) on the families below, among them the orbit "
                r"\((\sqrt2, 2-\sqrt2 e) \leftrightarrow (-\sqrt2, 2+\sqrt2 e)\) for every \(e\)."
            ),
            equations=(
                (r"DF", jacobian()),
                (
                    r"\text{fixed points}",
                    sp.FiniteSet(*[sp.Tuple(pt.get(x, x), pt.get(y, y)) for pt in fixed_points()]),
                ),
                (r"\{y : (0, y)\ \text{attracts}\}", line_stability()),
                (
                    r"\text{period-2 families } (q(s) = 0,\ p)",
                    sp.FiniteSet(*[sp.Tuple(sp.Eq(q, 0), sp.Eq(p, v)) for q, v in fams]),
                ),
                (r"\text{orbit for every } e", sp.Tuple(*[sp.Tuple(*pt) for pt in sqrt2_orbit()])),
                (r"\text{eig}\,D(F\circ F)\ \text{on it}", sp.FiniteSet(*sqrt2_orbit_multipliers())),
            ),
            reference="Agarwala, Pedregosa, Pennington, arXiv:2210.04860",
        ),
    ]
