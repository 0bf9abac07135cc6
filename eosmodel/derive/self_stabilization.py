"""The self-stabilisation map of Damian, Nichani and Lee: fixed points, period-2 orbit, flow.

    x_{t+1} = -(1 + eta y_t) x_t,      y_{t+1} = y_t + eta (alpha - beta x_t^2 / 2)

(x: displacement along the top eigenvector, y = lambda - 2/eta; docs/theory.md 4.1). Its fixed points
are (+-delta, -2/eta) with delta = sqrt(2 alpha / beta) (saddles); its period-2 orbit
(x, y) = (delta, 0) <-> (-delta, 0) is the edge of stability (eta*lambda = 2, |x| = delta). In
continuous time (tau = eta t, X = |x|, Y = y) the flow dX/dtau = X Y, dY/dtau = alpha - beta X^2/2
conserves Y^2/2 - alpha ln X + beta X^2/4.
"""

from __future__ import annotations

import functools

import sympy as sp

from eosmodel.derive._result import Result

x, y = sp.symbols("x y", real=True)
eta, alpha, beta = sp.symbols("eta alpha beta", positive=True)
X = sp.symbols("X", positive=True)
Y = sp.symbols("Y", real=True)
delta = sp.sqrt(2 * alpha / beta)


def damian_map() -> sp.Matrix:
    r"""The map :math:`F(x, y) = (-(1 + \eta y)x,\; y + \eta(\alpha - \beta x^2/2))`."""
    return sp.Matrix([-(1 + eta * y) * x, y + eta * (alpha - beta * x**2 / 2)])


def _compose(outer: sp.Matrix, inner: sp.Matrix) -> sp.Matrix:
    return outer.subs({x: inner[0], y: inner[1]}, simultaneous=True)


def jacobian() -> sp.Matrix:
    r"""The Jacobian :math:`DF = \begin{pmatrix} -(1+\eta y) & -\eta x \\ -\eta\beta x & 1\end{pmatrix}`."""
    return damian_map().jacobian([x, y])


@functools.cache
def fixed_points() -> list[tuple[sp.Expr, sp.Expr]]:
    r"""The fixed points of :math:`F`: :math:`(\pm\delta, -2/\eta)`, :math:`\delta = \sqrt{2\alpha/\beta}`.

    (:math:`x = 0` is not one: there :math:`y` grows by :math:`\eta\alpha > 0` each step.)
    """
    sols = sp.solve(list(damian_map() - sp.Matrix([x, y])), [x, y], dict=True)
    return sorted(((sp.simplify(s[x]), sp.simplify(s[y])) for s in sols), key=sp.default_sort_key)


@functools.cache
def fixed_point_multipliers() -> list[sp.Expr]:
    r"""The eigenvalues of :math:`DF` at the fixed points: :math:`1 \pm \eta\sqrt{2\alpha}` (saddles)."""
    px, py = fixed_points()[0]
    jac = jacobian().subs({x: px, y: py})
    return sorted((sp.simplify(v) for v in jac.eigenvals()), key=sp.default_sort_key)


@functools.cache
def period_two_points() -> list[tuple[sp.Expr, sp.Expr]]:
    r"""The points of period exactly 2 of :math:`F` (fixed points of :math:`F\circ F` that :math:`F` moves).

    Solved from :math:`F(F(p)) = p`. They are :math:`(\pm\delta, 0)` (the EOS orbit, for every
    :math:`\eta`) and four more points with :math:`y = (-\alpha\eta^2 - 2 \mp \sqrt{\alpha^2\eta^4 -
    4})/(2\eta)`, real only when :math:`\alpha\eta^2 \ge 2` (far from the EOS regime).
    """
    twice = _compose(damian_map(), damian_map())
    sols = sp.solve(list(twice - sp.Matrix([x, y])), [x, y], dict=True)
    fixed = set(fixed_points())
    points = [(sp.simplify(s[x]), sp.simplify(s[y])) for s in sols]
    return sorted((p for p in points if p not in fixed), key=sp.default_sort_key)


def eos_orbit() -> tuple[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]]:
    r"""The EOS period-2 orbit :math:`(\delta, 0) \to (-\delta, 0) \to (\delta, 0)`, checked against :func:`period_two_points`."""
    orbit = ((delta, sp.Integer(0)), (-delta, sp.Integer(0)))
    found = period_two_points()
    for point in orbit:
        assert any(sp.simplify(point[0] - q[0]) == 0 and sp.simplify(point[1] - q[1]) == 0 for q in found)
    return orbit


@functools.cache
def eos_orbit_multipliers() -> list[sp.Expr]:
    r"""The eigenvalues of :math:`D(F\circ F)` on the EOS orbit: :math:`1 - 2\alpha\eta^2 \pm 2 i \eta\sqrt{2\alpha}`.

    Their modulus is :math:`1 + 2\alpha\eta^2 > 1`: the orbit is a weakly repelling focus, around
    which GD cycles (a centre of the continuous flow, see :func:`conserved_quantity`).
    """
    (p1, p2) = eos_orbit()
    j1 = jacobian().subs({x: p1[0], y: p1[1]})
    j2 = jacobian().subs({x: p2[0], y: p2[1]})
    return sorted((sp.simplify(v) for v in (j2 * j1).eigenvals()), key=sp.default_sort_key)


@functools.cache
def flow() -> tuple[sp.Expr, sp.Expr]:
    r"""The continuous flow of the map in :math:`\tau = \eta t`, :math:`X = |x|`, :math:`Y = y`.

    One step multiplies :math:`|x|` by :math:`|1 + \eta y| = 1 + \eta y` (for :math:`\eta|y| < 1`)
    and adds :math:`\eta(\alpha - \beta x^2/2)` to :math:`y`; dividing the increments by the time
    step :math:`\eta` and letting :math:`\eta \to 0`:

    .. math:: \frac{dX}{d\tau} = XY, \qquad \frac{dY}{d\tau} = \alpha - \frac{\beta X^2}{2}.

    Returns:
      ``(dX/dtau, dY/dtau)`` as expressions in ``X, Y``.
    """
    step = damian_map().subs({x: X, y: Y})
    dx = sp.limit((sp.Abs(step[0]) - X) / eta, eta, 0)
    dy = sp.limit((step[1] - Y) / eta, eta, 0)
    return sp.simplify(dx), sp.simplify(dy)


def conserved_quantity() -> sp.Expr:
    r"""The first integral of the flow: :math:`C(X, Y) = Y^2/2 - \alpha\ln X + \beta X^2/4`."""
    return Y**2 / 2 - alpha * sp.log(X) + beta * X**2 / 4


@functools.cache
def conserved_derivative() -> sp.Expr:
    r""":math:`dC/d\tau = \partial_X C\,\dot X + \partial_Y C\,\dot Y` along :func:`flow`, simplified (it is 0)."""
    dx, dy = flow()
    q = conserved_quantity()
    return sp.simplify(sp.diff(q, X) * dx + sp.diff(q, Y) * dy)


def results() -> list[Result]:
    """The results of this module, for the rendered page."""
    (p1, p2) = eos_orbit()
    return [
        Result(
            key="self_stabilization.map",
            title="Self-stabilisation map: fixed points and the EOS orbit",
            statement=(
                r"The map has no fixed point with \(x = 0\) (\(y\) grows by \(\eta\alpha\)); its fixed "
                r"points \((\pm\delta, -2/\eta)\) are saddles. Its period-2 orbit \((\delta, 0) "
                r"\leftrightarrow (-\delta, 0)\), \(\delta = \sqrt{2\alpha/\beta}\), is the edge of "
                r"stability (\(\eta\lambda = 2\), \(|x| = \delta\)); the multipliers of \(F\circ F\) there "
                r"have modulus \(1 + 2\alpha\eta^2\), so GD cycles around it."
            ),
            equations=(
                (r"F(x, y)", damian_map()),
                (r"\text{fixed points}", sp.FiniteSet(*[sp.Tuple(*p) for p in fixed_points()])),
                (r"\text{eig}\,DF\ \text{at fixed points}", sp.FiniteSet(*fixed_point_multipliers())),
                (r"\text{period-2 points}", sp.FiniteSet(*[sp.Tuple(*p) for p in period_two_points()])),
                (r"\text{EOS orbit}", sp.Tuple(sp.Tuple(*p1), sp.Tuple(*p2))),
                (r"\text{eig}\,D(F\circ F)\ \text{on the EOS orbit}", sp.FiniteSet(*eos_orbit_multipliers())),
            ),
            reference="Damian, Nichani, Lee, arXiv:2209.15594",
        ),
        Result(
            key="self_stabilization.conserved",
            title="Self-stabilisation flow and its conserved quantity",
            statement=(
                r"In continuous time \(\tau = \eta t\) with \(X = |x|\), the flow is \(\dot X = XY\), "
                r"\(\dot Y = \alpha - \beta X^2/2\), and \(C = Y^2/2 - \alpha\ln X + \beta X^2/4\) is "
                r"conserved: its orbits are closed curves around \((\delta, 0)\)."
            ),
            equations=(
                (r"\left(\frac{dX}{d\tau}, \frac{dY}{d\tau}\right)", sp.Tuple(*flow())),
                (r"C(X, Y)", conserved_quantity()),
                (r"\frac{dC}{d\tau}", conserved_derivative()),
            ),
            reference="Damian, Nichani, Lee, arXiv:2209.15594",
        ),
    ]
