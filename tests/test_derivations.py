"""Tests of eosmodel.derive (the derivations, also importable as derivations/ in a checkout): each symbolic result against a direct simulation of what it describes."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import sympy as sp
from hypothesis import given

from eosmodel.derive import all_results, armijo, growth, polyak, second_order, self_stabilization, stability, uv, zhu
from eosmodel.derive.render import render_page

# ------------------------------------------------------------------------------------------
# Armijo


@given(
    st.lists(st.floats(0.1, 10.0), min_size=2, max_size=5),
    st.floats(0.05, 0.6),
    st.integers(0, 2**16),
)
def test_armijo_backtracking_accepts_the_largest_grid_step_below_the_bound(spectrum, c, seed):
    """Backtracking from eta0 with factor 0.8 accepts exactly the first trial <= 2(1-c)|g|^2/g'Hg."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(spectrum), len(spectrum))))
    hess = q @ np.diag(spectrum) @ q.T
    w = rng.normal(size=len(spectrum))
    g = hess @ w

    def f(v):
        return 0.5 * v @ hess @ v

    bound = float(armijo.quadratic_bound().subs({armijo.c: c, armijo.g2: g @ g, armijo.gHg: g @ hess @ g}))
    trials = 4.0 / min(spectrum) * 0.8 ** np.arange(80)
    accepted = next(eta for eta in trials if f(w - eta * g) <= f(w) - c * eta * (g @ g))
    expected = next(eta for eta in trials if eta <= bound * (1 + 1e-12))
    assert accepted == pytest.approx(expected, rel=1e-9)


def test_armijo_one_dimensional_bound_is_tight():
    lam, c, w = 3.0, 0.1, 1.7
    bound = float(armijo.one_dimensional_bound().subs({armijo.lam: lam, armijo.c: c}))
    assert bound == pytest.approx(2 * (1 - c) / lam, rel=1e-15)

    def holds(eta):
        return 0.5 * lam * (w - eta * lam * w) ** 2 <= 0.5 * lam * w**2 - c * eta * (lam * w) ** 2

    assert holds(bound * (1 - 1e-9)) and not holds(bound * (1 + 1e-9))


# ------------------------------------------------------------------------------------------
# Polyak


@given(st.floats(0.01, 100.0), st.floats(0.05, 2.0), st.floats(-10.0, 10.0).filter(lambda v: abs(v) > 1e-3))
def test_polyak_one_dimensional_stepsize(lam, c, w):
    f, g = 0.5 * lam * w**2, lam * w
    formula = float(polyak.one_dimensional_stepsize().subs({polyak.lam: lam, polyak.c: c}))
    assert f / (c * g**2) == pytest.approx(formula, rel=1e-12)
    assert formula == pytest.approx(1 / (2 * c * lam), rel=1e-15)


@given(st.lists(st.floats(0.01, 10.0), min_size=3, max_size=3), st.integers(0, 2**16), st.floats(0.05, 1.0))
def test_polyak_multidimensional_step_and_its_lower_bound(spectrum, seed, c):
    lams = sorted(spectrum, reverse=True)
    w = np.random.default_rng(seed).normal(size=3)
    f = 0.5 * np.sum(np.array(lams) * w**2)
    g2 = np.sum((np.array(lams) * w) ** 2)
    simulated = f / (c * g2)
    symbols_l, symbols_w = polyak.spectrum_symbols(3)
    values = {polyak.c: c, **dict(zip(symbols_l, lams)), **dict(zip(symbols_w, w))}
    assert float(polyak.quadratic_stepsize(3).subs(values)) == pytest.approx(simulated, rel=1e-10)
    gap = float(polyak.lower_bound_gap(3).subs(values))
    assert gap == pytest.approx(simulated - 1 / (2 * c * lams[0]), rel=1e-8, abs=1e-12)
    assert gap >= 0.0 and simulated >= 1 / (2 * c * lams[0]) * (1 - 1e-12)


# ------------------------------------------------------------------------------------------
# stability threshold


def test_stability_interval_and_gd_on_a_quadratic():
    lam = 5.0
    assert stability.stable_stepsizes() == sp.Interval.open(0, 2 / stability.lam)
    eta_star = float(stability.threshold().subs(stability.lam, lam))
    multiplier = sp.lambdify((stability.eta, stability.lam), stability.gd_multiplier())
    for factor, stable in ((0.99, True), (1.01, False), (0.5, True), (2.5, False)):
        eta = factor * eta_star
        x = 1.0
        for _ in range(200):
            x = x - eta * lam * x  # GD on lam x^2 / 2
        assert x == pytest.approx(multiplier(eta, lam) ** 200, rel=1e-9)
        assert (abs(x) < 1.0) == stable


# ------------------------------------------------------------------------------------------
# self-stabilisation map

ALPHA, BETA, ETA = 1.3, 2.1, 0.05


def _damian_step(x, y, eta=ETA, alpha=ALPHA, beta=BETA):
    return -(1 + eta * y) * x, y + eta * (alpha - beta * x**2 / 2)


def _subs(expr, eta=ETA, alpha=ALPHA, beta=BETA):
    ss = self_stabilization
    return complex(sp.N(expr.subs({ss.eta: eta, ss.alpha: alpha, ss.beta: beta}), 30))


def test_self_stabilization_fixed_points_and_eos_orbit():
    delta = math.sqrt(2 * ALPHA / BETA)
    fixed = [(_subs(px).real, _subs(py).real) for px, py in self_stabilization.fixed_points()]
    assert np.array(sorted(fixed)) == pytest.approx(np.array([(-delta, -2 / ETA), (delta, -2 / ETA)]))
    for px, py in fixed:
        assert _damian_step(px, py) == pytest.approx((px, py), abs=1e-12)
    (p1, p2) = [(_subs(a).real, _subs(b).real) for a, b in self_stabilization.eos_orbit()]
    assert p1 == pytest.approx((delta, 0.0)) and p2 == pytest.approx((-delta, 0.0))
    assert _damian_step(*p1) == pytest.approx(p2, abs=1e-12)
    assert _damian_step(*p2) == pytest.approx(p1, abs=1e-12)


def _numeric_jacobian(fn, point, h=1e-6):
    cols = []
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        cols.append((np.array(fn(*(np.array(point) + e))) - np.array(fn(*(np.array(point) - e)))) / (2 * h))
    return np.stack(cols, axis=1)


def test_self_stabilization_multipliers_against_finite_differences():
    delta = math.sqrt(2 * ALPHA / BETA)
    jac_fixed = _numeric_jacobian(_damian_step, (delta, -2 / ETA))
    predicted = sorted(_subs(v).real for v in self_stabilization.fixed_point_multipliers())
    assert sorted(np.linalg.eigvals(jac_fixed).real) == pytest.approx(predicted, rel=1e-6)

    def twice(x, y):
        return _damian_step(*_damian_step(x, y))

    eig = np.linalg.eigvals(_numeric_jacobian(twice, (delta, 0.0)))
    predicted = [_subs(v) for v in self_stabilization.eos_orbit_multipliers()]
    assert sorted(eig, key=lambda z: z.imag) == pytest.approx(sorted(predicted, key=lambda z: z.imag), rel=1e-6)
    assert abs(eig[0]) == pytest.approx(1 + 2 * ALPHA * ETA**2, rel=1e-6)  # weakly repelling


def test_self_stabilization_all_period_two_points():
    """Every point returned has period exactly 2 (checked where the extra orbits are real)."""
    eta = 1.5  # alpha eta^2 >= 2: the four extra points are real
    points = [(_subs(a, eta=eta), _subs(b, eta=eta)) for a, b in self_stabilization.period_two_points()]
    assert len(points) == 6
    for px, py in points:
        assert abs(px.imag) < 1e-12 and abs(py.imag) < 1e-12
        once = _damian_step(px.real, py.real, eta=eta)
        assert once != pytest.approx((px.real, py.real), abs=1e-6)
        assert _damian_step(*once, eta=eta) == pytest.approx((px.real, py.real), abs=1e-9)


def test_self_stabilization_fixed_eta_oscillates_at_the_edge():
    """Known result: with a fixed eta the map cycles around (delta, 0): mean(y) ~ 0, rms(x) ~ delta.

    Over a cycle of the flow, mean(Y) = mean(d ln X / dtau) = 0 and mean(X^2) = 2 alpha / beta =
    delta^2 (from dY/dtau = alpha - beta X^2 / 2). The discrete orbit is weakly repelling (multipliers
    of modulus 1 + 2 alpha eta^2 per two steps), so the run spans ~10 cycles at a small eta.
    """
    eta = 0.01
    delta = math.sqrt(2 * ALPHA / BETA)
    x, y = 0.6 * delta, 0.0
    xs, ys = [], []
    for _ in range(4000):
        x, y = _damian_step(x, y, eta=eta)
        xs.append(x)
        ys.append(y)
    xs, ys = np.array(xs), np.array(ys)
    assert np.ptp(ys) > 0.5  # it oscillates
    assert abs(np.mean(ys)) < 0.05 * np.ptp(ys)  # eta * lambda averages 2
    assert np.sqrt(np.mean(xs**2)) == pytest.approx(delta, rel=0.05)
    assert np.all(np.sign(xs[1:]) != np.sign(xs[:-1]))  # x flips sign every step


def test_conserved_quantity_is_conserved():
    from scipy.integrate import solve_ivp

    ss = self_stabilization
    assert ss.flow() == (ss.X * ss.Y, ss.alpha - ss.beta * ss.X**2 / 2)
    assert ss.conserved_derivative() == 0
    values = {ss.alpha: ALPHA, ss.beta: BETA}
    rhs = sp.lambdify((ss.X, ss.Y), sp.Matrix(ss.flow()).subs(values), "numpy")
    q = sp.lambdify((ss.X, ss.Y), ss.conserved_quantity().subs(values), "numpy")
    sol = solve_ivp(lambda t, z: np.ravel(rhs(*z)), (0.0, 20.0), [0.3, -0.4], rtol=1e-11, atol=1e-12, dense_output=True)
    xs, ys = sol.sol(np.linspace(0.0, 20.0, 400))
    assert np.ptp(q(xs, ys)) < 1e-8
    assert np.ptp(ys) > 0.5  # the orbit moves: the check is not vacuous
    # the discrete map conserves it up to O(eta) over a cycle (it drifts by O(eta) per cycle)
    x, y, qs = 0.3, -0.4, []
    for _ in range(int(10 / 0.001)):
        x, y = _damian_step(x, y, eta=0.001)
        qs.append(q(abs(x), y))
    assert np.ptp(qs) < 0.02 * np.ptp(ys)


# ------------------------------------------------------------------------------------------
# oracle tuner growth law


def test_oracle_growth_law_against_the_map():
    sigma, alpha, beta, lam0 = 1.5, 0.7, 3.0, 2.0
    law = sp.lambdify(growth.t, growth.growth_law().subs({growth.sigma: sigma, growth.alpha: alpha, growth.lam0: lam0}))
    increment = sp.lambdify(growth.lam_t, growth.squared_increment().subs({growth.sigma: sigma, growth.alpha: alpha}))
    # the joint map of docs/theory.md 5 with eta_t = sigma / lambda_t: x decays, lambda follows the law
    x, lam = 0.05, lam0
    for _ in range(20000):
        eta = sigma / lam
        x, lam = (1 - eta * lam) * x, lam + eta * (alpha - beta * x**2 / 2)
    assert abs(x) < 1e-100
    assert lam == pytest.approx(law(20000), rel=0.01)
    assert lam != pytest.approx(law(20000 * 1.05), rel=0.01)  # the check resolves the growth rate
    # without oscillation the telescoped identity is exact: lam_T^2 = lam_0^2 + 2 sigma alpha T + sum
    lam_a, sum_corr = lam0, 0.0
    for _ in range(1000):
        sum_corr += increment(lam_a) - 2 * sigma * alpha
        lam_a = lam_a + sigma * alpha / lam_a
    assert lam_a**2 == pytest.approx(lam0**2 + 2 * sigma * alpha * 1000 + sum_corr, rel=1e-12)


# ------------------------------------------------------------------------------------------
# second-order regression normalised map


def _sor_step(x, y, e):
    return -(1 + y) * x + x**2 * (x - e), y + x**2 * (y + 2) - 4 * x * (x - e)


def test_second_order_map_is_derived_from_gd():
    assert second_order.map_from_gd() == (0, 0)
    fmap = sp.lambdify((second_order.x, second_order.y, second_order.e), second_order.normalized_map())
    rng = np.random.default_rng(0)
    for x, y, e in rng.normal(size=(5, 3)):
        assert np.ravel(fmap(x, y, e)) == pytest.approx(_sor_step(x, y, e), rel=1e-12)


def test_second_order_fixed_points_and_line_stability():
    e = 0.7
    points = second_order.fixed_points()
    assert {second_order.x: 0} in points
    for point in points:
        if second_order.y not in point:
            continue
        px, py = (float(point[v].subs(second_order.e, e)) for v in (second_order.x, second_order.y))
        assert _sor_step(px, py, e) == pytest.approx((px, py), abs=1e-12)
    assert second_order.line_stability() == sp.Interval.open(-2, 0)
    for y0, stable in ((-1.5, True), (-0.3, True), (0.2, False), (-2.2, False)):
        x, y = 1e-6, y0
        for _ in range(20):  # the linear phase: x stays small, y barely moves
            x, y = _sor_step(x, y, e)
        assert (abs(x) < 1e-6) == stable


@pytest.mark.parametrize("e_value", [1, 5])
def test_second_order_period_two_orbits(e_value):
    orbits = second_order.period_two_orbits(e_value)
    assert len(orbits) >= 3
    for (x1, y1), (x2, y2) in orbits:
        p1, p2 = (float(x1), float(y1)), (float(x2), float(y2))
        assert _sor_step(*p1, e_value) == pytest.approx(p2, rel=1e-9, abs=1e-9)
        assert _sor_step(*p2, e_value) == pytest.approx(p1, rel=1e-9, abs=1e-9)
        assert p1 != pytest.approx(p2)


def test_second_order_sqrt2_orbit_multipliers():
    e = 0.4
    (p1, p2) = [(float(a.subs(second_order.e, e)), float(b.subs(second_order.e, e))) for a, b in second_order.sqrt2_orbit()]

    def twice(x, y):
        return _sor_step(*_sor_step(x, y, e), e)

    eig = np.sort(np.linalg.eigvals(_numeric_jacobian(twice, p1)).real)
    predicted = sorted(float(v.subs(second_order.e, e)) for v in second_order.sqrt2_orbit_multipliers())
    assert eig == pytest.approx(predicted, rel=1e-6)


# ------------------------------------------------------------------------------------------
# uv catapult


def test_uv_map_and_thresholds_against_gd():
    rng = np.random.default_rng(1)
    n, eta, target = 50, 0.7, 0.0
    u, v = rng.normal(size=n), rng.normal(size=n)
    f_new, lam_new = (
        sp.lambdify((uv.f, uv.r, uv.lam, uv.eta, uv.n), expr) for expr in uv.uv_map()
    )
    change = sp.lambdify((uv.r, uv.lam, uv.eta, uv.n), uv.sharpness_change_large_residual())
    for _ in range(5):
        f, lam = u @ v / np.sqrt(n), (u @ u + v @ v) / n
        r = f - target
        u, v = u - eta * r * v / np.sqrt(n), v - eta * r * u / np.sqrt(n)  # GD on (u, v)
        f1, lam1 = u @ v / np.sqrt(n), (u @ u + v @ v) / n
        assert f1 == pytest.approx(f_new(f, r, lam, eta, n), rel=1e-12)
        assert lam1 == pytest.approx(lam_new(f, r, lam, eta, n), rel=1e-12)
        assert lam1 - lam == pytest.approx(change(r, lam, eta, n), rel=1e-9)  # y = 0: f = r
    low, high = uv.catapult_thresholds()
    lam0 = sp.symbols("lambda_0", positive=True)
    assert (low, high) == (2 / lam0, 4 / lam0)
    # the small-residual multiplier: r' / r -> 1 - eta lambda
    mult = float(uv.residual_multiplier().subs({uv.eta: 0.3, uv.lam: 2.0}))
    f, lam, r = 1.0 + 1e-9, 2.0, 1e-9
    r1 = f_new(f, r, lam, 0.3, n) - 1.0
    assert r1 / r == pytest.approx(mult, rel=1e-6)


# ------------------------------------------------------------------------------------------
# Zhu


def test_zhu_eos_minimum_against_gd():
    a_s, b_s, eta_s = zhu.a, zhu.b, zhu.eta
    hess = sp.lambdify((a_s, b_s), sp.hessian(zhu.zhu_loss(), (a_s, b_s)))
    eig = np.linalg.eigvalsh(np.array(hess(1.7, 1 / 1.7), dtype=float))
    predicted = sorted(float(v.subs(a_s, 1.7)) for v in zhu.hessian_eigenvalues_on_minimum())
    assert eig == pytest.approx(predicted, abs=1e-10)
    eta = 0.2
    a, b = 2.5, 0.5
    for _ in range(20000):
        m = a * a * b * b - 1
        a, b = a - eta * m * a * b * b, b - eta * m * a * a * b
    assert a * a + b * b == pytest.approx(float(zhu.eos_norm().subs(eta_s, eta)), rel=0.02)
    c_val, d_val = zhu.eos_minimum_cd()
    assert math.sqrt(a * a - b * b) == pytest.approx(float(c_val.subs(eta_s, eta)), rel=0.02)
    assert a * b == pytest.approx(float(d_val), abs=1e-6)


# ------------------------------------------------------------------------------------------
# the rendered page and the CLI


def test_render_page_contains_every_result(tmp_path):
    path = render_page(tmp_path / "sub" / "derivations.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "mathjax" in text.lower()
    results = all_results()
    assert len(results) >= 10
    import html

    for result in results:
        assert f'id="{result.key}"' in text
        assert html.escape(result.title) in text
        for label, expr in result.equations:
            latex = expr if isinstance(expr, str) else sp.latex(expr)
            assert html.escape(latex) in text
            assert html.escape(label) in text


def test_eosmodel_derive_command(tmp_path, capsys):
    import argparse

    from eosmodel.cli import _derive

    parser = argparse.ArgumentParser(prog="eosmodel")
    _derive.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "page.html"
    args = parser.parse_args(["derive", "--out", str(out)])
    assert args.func is _derive.run and args.func(args) == 0
    assert out.is_file() and "Zhu" in out.read_text(encoding="utf-8")
    assert str(out) in capsys.readouterr().out
