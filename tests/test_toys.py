"""Tests of eosmodel.toys: closed forms against autodiff, exact reduced maps against GD, known results."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from eosmodel import toys
from eosmodel.toys._base import dense_top_eigenvalue


def _gd(loss, params, batch, stepsize, steps):
    """`steps` GD steps with a fixed stepsize, returning the parameters after each step (scan)."""
    grad = jax.grad(loss)

    def step(p, _):
        new = jax.tree.map(lambda a, g: a - stepsize * g, p, grad(p, batch))
        return new, new

    return jax.lax.scan(step, params, None, length=steps)[1]


def _gd_eager(loss, params, batch, stepsize, steps):
    """Short GD runs op by op (no compilation: cheap for the many small toys hypothesis draws)."""
    grad = jax.grad(loss)
    out = [params]
    for _ in range(steps):
        out.append(jax.tree.map(lambda a, g: a - stepsize * g, out[-1], grad(out[-1], batch)))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *out)


FEW = settings(max_examples=8)


def _all_toys():
    key = jax.random.key(7)
    return [
        toys.quadratic([3.0, 1.0, -0.5]),
        toys.quadratic([2.0, 0.5, 0.1], key=key),
        toys.second_order_regression(3, 5, key=key),
        toys.second_order_regression_1d(2.0, 0.3, (0.7, -0.4)),
        toys.uv(6, 0.5),
        toys.zhu(init_radius=0.3),
        toys.self_stabilization(1.0, 2.0, 3.0),
        toys.self_stabilization(1.0, 2.0, 3.0, bulk_eigenvalues=[0.5, 4.0], sharpening_limit=9.0),
        toys.two_layer_net("tanh", 6, key=key, num_data=10, input_dim=3, output_dim=2),
        toys.two_layer_net("relu", 5, key=key, num_data=8, input_dim=3, output_dim=3, loss="cross_entropy"),
    ]


def _perturbed_init(toy, key):
    """A generic point: init plus a perturbation (moves x, s of the self-stabilisation toy off init)."""
    params = toy.init(key)
    noise_key = jax.random.fold_in(key, 1)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(noise_key, len(leaves))
    leaves = [p + 0.3 * jax.random.normal(k, jnp.shape(p), p.dtype) for p, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, leaves)


# ------------------------------------------------------------------------------------------
# the common contract


@pytest.mark.parametrize("toy", [t for t in _all_toys() if t.name != "two_layer_net"], ids=lambda t: t.name)
def test_closed_form_sharpness_is_top_hessian_eigenvalue(toy, x64):
    params = _perturbed_init(toy, jax.random.key(0))
    both = jax.jit(lambda p: (toy.sharpness(p), dense_top_eigenvalue(toy.loss, p, toy.batch)))
    exact, dense = (float(v) for v in both(params))
    assert exact == pytest.approx(dense, rel=1e-9, abs=1e-9)


def test_two_layer_sharpness_against_hessian_vector_products(x64):
    """The dense sharpness (jacfwd of jacrev) against the matrix of forward-over-reverse HVPs."""
    from jax.flatten_util import ravel_pytree

    toy = toys.two_layer_net("tanh", 4, key=jax.random.key(5), num_data=6, input_dim=2, output_dim=2)
    params = toy.init(jax.random.key(6))
    flat, unravel = ravel_pytree(params)

    def hvp(v):
        grad = jax.grad(lambda w: toy.loss(unravel(w), toy.batch))
        return jax.jvp(grad, (flat,), (v,))[1]

    hess, sharpness = jax.jit(lambda: (jax.vmap(hvp)(jnp.eye(flat.size)), toy.sharpness(params)))()
    hess = np.asarray(hess)
    assert np.abs(hess - hess.T).max() < 1e-12
    assert float(sharpness) == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-10)


@pytest.mark.parametrize("toy", _all_toys(), ids=lambda t: t.name)
def test_loss_dtype_follows_params_and_hyper_is_json(toy):
    json.dumps(toy.hyper)
    params32 = toy.init(jax.random.key(0))
    value32 = jax.jit(toy.loss)(params32, toy.batch)
    assert value32.dtype == jnp.float32 and value32.shape == ()
    with jax.enable_x64(True):
        params64 = toy.init(jax.random.key(0))
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params64))
        # float32 and float64 initialisations draw the same values
        for a, b in zip(jax.tree.leaves(params32), jax.tree.leaves(params64)):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b), rtol=1e-6, atol=1e-7)
        value64 = toy.loss(params64, toy.batch)
        assert value64.dtype == jnp.float64
        np.testing.assert_allclose(float(value32), float(value64), rtol=1e-5, atol=1e-6)
        assert jax.eval_shape(toy.sharpness, params64).dtype == jnp.float64


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: toys.quadratic([]), "eigenvalues"),
        (lambda: toys.quadratic([1.0, float("nan")]), "eigenvalues"),
        (lambda: toys.quadratic([1.0], init_scale=-1.0), "init_scale"),
        (lambda: toys.quadratic([1.0], key=3), "key"),
        (lambda: toys.second_order_regression(0, 2, key=jax.random.key(0)), "num_data"),
        (lambda: toys.second_order_regression(2, 2, key=None), "key"),
        (lambda: toys.second_order_regression_1d(0.0, 1.0), "omega"),
        (lambda: toys.second_order_regression_1d(1.0, 1.0, g=(1.0,)), "g"),
        (lambda: toys.uv(0), "width"),
        (lambda: toys.uv(3, float("inf")), "target"),
        (lambda: toys.zhu(init_center=(1.0, 2.0, 3.0)), "init_center"),
        (lambda: toys.zhu(init_radius=-0.1), "init_radius"),
        (lambda: toys.self_stabilization(0.0, 1.0, 1.0), "alpha"),
        (lambda: toys.self_stabilization(1.0, -1.0, 1.0), "beta"),
        (lambda: toys.self_stabilization(1.0, 1.0, 1.0, sharpening_limit=0.5), "sharpening_limit"),
        (lambda: toys.self_stabilization(1.0, 1.0, 1.0, bulk_eigenvalues=[1.0, 0.0]), "bulk_eigenvalues"),
        (lambda: toys.two_layer_net("gelu", 4, key=jax.random.key(0)), "activation"),
        (lambda: toys.two_layer_net("tanh", 4, key=jax.random.key(0), loss="hinge"), "loss"),
        (lambda: toys.two_layer_net("tanh", 4, key=jax.random.key(0), loss="cross_entropy"), "output_dim"),
        (lambda: toys.two_layer_net("tanh", 0, key=jax.random.key(0)), "width"),
    ],
)
def test_bad_arguments_raise_naming_the_parameter(build, name):
    with pytest.raises(ValueError, match=name):
        build()


# ------------------------------------------------------------------------------------------
# quadratic


@given(st.lists(st.floats(0.05, 20.0), min_size=4, max_size=4), st.integers(0, 2**16))
@FEW
def test_quadratic_hessian_has_the_requested_spectrum(eigenvalues, seed):
    toy = toys.quadratic(eigenvalues, key=jax.random.key(seed))
    hess = toys.quadratic_hessian(toy)
    np.testing.assert_allclose(np.linalg.eigvalsh(hess), np.sort(eigenvalues), rtol=1e-9, atol=1e-9)


@given(
    st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3),
    st.floats(0.1, 50.0),
    st.floats(0.05, 0.5),
    st.booleans(),
    st.integers(0, 2**16),
)
@FEW
def test_quadratic_gd_diverges_iff_eta_lambda_max_above_two(rel_bulk, lam_max, margin, above, seed):
    """GD on a (rotated) quadratic diverges exactly when eta * lambda_max > 2."""
    eigenvalues = [lam_max] + [lam_max * r for r in rel_bulk]
    toy = toys.quadratic(eigenvalues, key=jax.random.key(seed))
    eta = (2.0 + (margin if above else -margin)) / lam_max
    with jax.enable_x64(True):
        _, vecs = np.linalg.eigh(toys.quadratic_hessian(toy))
        w0 = jnp.asarray(vecs.sum(axis=1))  # unit weight on every eigenvector
        grad = jax.jit(jax.grad(toy.loss))
        final = w0
        for _ in range(100):
            final = final - eta * grad(final, None)
        ratio = float(jnp.linalg.norm(final) / jnp.linalg.norm(w0))
    if above:
        assert ratio > 10.0  # |1 - eta lambda_max|^100 >= 1.05^100 > 100 on a unit component
    else:
        assert ratio < 1.0


# ------------------------------------------------------------------------------------------
# self-stabilisation


@given(
    st.floats(0.1, 5.0),
    st.floats(0.1, 10.0),
    st.floats(0.5, 20.0),
    st.floats(0.5, 2.5),
    st.floats(-1.0, 1.0),
)
@FEW
def test_self_stabilization_gd_is_the_damian_map(alpha, beta, lambda0, eta_lambda0, x0):
    """GD on L(x, s) gives x' = (1 - eta lambda) x and lambda' = lambda + eta (alpha - beta x^2/2) exactly."""
    eta = eta_lambda0 / lambda0
    with jax.enable_x64(True):
        toy = toys.self_stabilization(alpha, beta, lambda0, init_x=x0)
        params = toy.init(jax.random.key(0))
        traj = _gd_eager(toy.loss, params, None, eta, 20)
        xs, lams = (np.asarray(v) for v in toys.self_stabilization_state(toy, traj))
    assert xs[0] == x0 and lams[0] == lambda0
    for t in range(20):  # one step of the map at a time: no amplification of rounding errors
        x, lam = xs[t], lams[t]
        if not (np.isfinite(x) and abs(x) < 1e3):
            break
        assert xs[t + 1] == pytest.approx((1.0 - eta * lam) * x, rel=1e-12, abs=1e-12 * (1 + abs(x)))
        scale = 1 + abs(lam) + eta * (alpha + beta * x**2)
        assert lams[t + 1] == pytest.approx(lam + eta * (alpha - beta * x**2 / 2.0), rel=1e-12, abs=1e-13 * scale)


def test_self_stabilization_bounded_variant(x64):
    """With a sharpening limit and a bulk: the stated lambda update, a decoupled bulk, loss >= 0, min 0."""
    alpha, beta, lambda0, limit, mus = 2.0, 3.0, 4.0, 10.0, np.array([0.5, 2.0])
    toy = toys.self_stabilization(alpha, beta, lambda0, bulk_eigenvalues=mus, sharpening_limit=limit)
    eta = 0.15
    params = toys.self_stabilization_params(toy, 0.3, 5.0, z=jnp.array([1.0, -2.0]))
    new = _gd(toy.loss, params, None, eta, 1)
    new = jax.tree.map(lambda a: a[0], new)
    x, lam = toys.self_stabilization_state(toy, params)
    x1, lam1 = toys.self_stabilization_state(toy, new)
    assert float(x1) == pytest.approx((1 - eta * 5.0) * 0.3, abs=1e-14)
    expected = 5.0 + eta * (alpha * (limit - 5.0) / (limit - lambda0) - beta * 0.3**2 / 2)
    assert float(lam1) == pytest.approx(expected, abs=1e-13)
    np.testing.assert_allclose(new["z"], (1 - eta * mus) * np.array([1.0, -2.0]), atol=1e-14)
    # bounded below by 0 wherever lambda >= 0, with minimum 0 at x = 0, lambda = limit, z = 0
    optimum = toys.self_stabilization_params(toy, 0.0, limit, z=jnp.zeros(2))
    assert float(toy.loss(optimum, None)) == pytest.approx(0.0, abs=1e-14)
    grid = [toys.self_stabilization_params(toy, x, lam, z=jnp.array([0.1, 0.0])) for x in (-2, 0.5, 3) for lam in (0, 3, 12, 30)]
    assert min(float(toy.loss(p, None)) for p in grid) >= 0.0
    # the exact model is unbounded below along s
    exact = toys.self_stabilization(alpha, beta, lambda0)
    assert float(exact.loss(toys.self_stabilization_params(exact, 0.0, 1e3), None)) < -100.0


# ------------------------------------------------------------------------------------------
# uv model


def test_uv_exact_f_lambda_map_matches_gd(x64):
    width, target, eta = 7, 0.4, 0.9
    toy = toys.uv(width, target)
    params = toy.init(jax.random.key(3))
    traj = _gd(toy.loss, params, None, eta, 12)
    f_gd = np.concatenate([[float(toys.uv_output(params))], np.asarray(toys.uv_output(traj))])
    lam_gd = np.concatenate([[float(toys.uv_lambda(params))], np.asarray(toys.uv_lambda(traj))])
    u, v = np.asarray(params["u"]), np.asarray(params["v"])
    assert lam_gd[0] == pytest.approx((u @ u + v @ v) / width, rel=1e-14)
    f, lam = f_gd[0], lam_gd[0]
    for t in range(12):
        r = f - target
        f, lam = (
            f - eta * lam * r + eta**2 * r**2 * f / width,
            lam - 4 * eta * r * f / width + eta**2 * r**2 * lam / width,
        )
        assert f_gd[t + 1] == pytest.approx(f, rel=1e-11, abs=1e-12)
        assert lam_gd[t + 1] == pytest.approx(lam, rel=1e-11, abs=1e-12)


@given(st.sampled_from([1, 6]), st.floats(-2.0, 2.0), st.integers(0, 2**16))
@FEW
def test_uv_sharpness_equals_lambda_at_zero_residual(width, target, seed):
    toy = toys.uv(width, target)
    with jax.enable_x64(True):
        u = jax.random.normal(jax.random.key(seed), (width,)) + 0.5
        v = u * target * np.sqrt(width) / jnp.sum(u**2)  # u.v / sqrt(n) = target
        params = {"u": u, "v": v}
        assert float(toys.uv_residual(params, target)) == pytest.approx(0.0, abs=1e-12)
        assert float(toy.sharpness(params)) == pytest.approx(float(toys.uv_lambda(params)), rel=1e-12)


def test_uv_catapult_between_two_and_four_over_lambda0(x64):
    """2/lambda0 < eta < 4/lambda0: the loss spikes, lambda ends below 2/eta, GD converges; beyond: diverges."""
    toy = toys.uv(200, 0.0)
    params = toy.init(jax.random.key(0))
    lam0 = float(toys.uv_lambda(params))
    loss0 = float(toy.loss(params, None))
    factors = jnp.array([1.5, 2.5, 3.0, 3.5, 4.5, 5.0])

    def run(eta):
        traj = _gd(toy.loss, params, None, eta, 400)
        return jax.vmap(toy.loss, in_axes=(0, None))(traj, None), toys.uv_lambda(jax.tree.map(lambda a: a[-1], traj))

    losses, lam_final = jax.jit(jax.vmap(run))(factors / lam0)
    losses, lam_final = np.asarray(losses), np.asarray(lam_final)
    for k, factor in enumerate(np.asarray(factors)):
        eta = factor / lam0
        if factor < 2:
            assert np.all(np.diff(losses[k]) <= 1e-25) and losses[k, -1] < 1e-20
        elif factor < 4:
            assert losses[k].max() > 10 * loss0  # the spike
            assert losses[k, -1] < 1e-20  # then convergence
            assert lam_final[k] < lam0 and eta * lam_final[k] < 2.0  # at a flatter point
        else:
            assert not np.isfinite(losses[k, -1]) or losses[k, -1] > 1e6 * loss0


# ------------------------------------------------------------------------------------------
# second-order regression


@given(st.floats(0.5, 3.0), st.floats(-1.0, 1.0), st.floats(0.05, 0.3), st.integers(0, 2**16))
@FEW
def test_second_order_1d_normalized_map_matches_gd(omega, z0, eta, seed):
    """GD on theta follows x' = -(1+y)x + x^2(x-e), y' = y + x^2(y+2) - 4x(x-e) exactly."""
    with jax.enable_x64(True):
        toy = toys.second_order_regression_1d(omega, z0, (0.8, -0.3), init_scale=0.5)
        theta = toy.init(jax.random.key(seed))
        traj = _gd_eager(toy.loss, theta, None, eta, 8)
        xs, ys, es = (np.asarray(v) for v in toys.second_order_1d_normalized(toy, traj, eta))
    e = es[0]
    assert e == pytest.approx(eta * omega * toys.second_order_1d_energy(toy), rel=1e-14)
    for t in range(8):
        x, y = xs[t], ys[t]
        assert xs[t + 1] == pytest.approx(-(1 + y) * x + x**2 * (x - e), rel=1e-10, abs=1e-12)
        assert ys[t + 1] == pytest.approx(y + x**2 * (y + 2) - 4 * x * (x - e), rel=1e-10, abs=1e-12)


@given(st.floats(-1.5, 1.5), st.floats(-1.5, 1.0))
@FEW
def test_second_order_1d_params_inverts_normalized(x, y):
    eta, omega, e = 0.2, 1.5, 0.4
    g = (1.0, 0.5)
    z0 = e / (eta * omega) + (g[0] ** 2 - g[1] ** 2) / (2 * omega)
    toy = toys.second_order_regression_1d(omega, z0, g)
    with jax.enable_x64(True):
        theta = toys.second_order_1d_params(toy, x, y, eta)
        xb, yb, eb = toys.second_order_1d_normalized(toy, theta, eta)
        feasible = abs(2 * (x / (eta * omega) - e / (eta * omega)) / omega) <= (y + 2) / (eta * omega**2)
        if feasible:
            assert (float(xb), float(yb), float(eb)) == pytest.approx((x, y, e), abs=1e-10)
        else:
            assert bool(jnp.any(jnp.isnan(theta)))


def test_second_order_1d_settles_near_the_edge_for_e_equal_one(x64):
    """e = 1, x0 in [0.6, 1], y0 < 0: y rises from below and then stays near 0 (docs/theory.md 4.2)."""
    eta, omega, g = 0.1, 2.0, (1.0, 0.5)
    z0 = 1.0 / (eta * omega) + (g[0] ** 2 - g[1] ** 2) / (2 * omega)
    toy = toys.second_order_regression_1d(omega, z0, g)
    for x0 in (0.6, 0.8):
        theta = toys.second_order_1d_params(toy, x0, -1.0, eta)
        traj = _gd(toy.loss, theta, None, eta, 2000)
        _, ys, es = toys.second_order_1d_normalized(toy, traj, eta)
        assert float(es[0]) == pytest.approx(1.0, rel=1e-12)
        tail = np.asarray(ys[-500:])
        assert np.max(np.abs(tail)) < 0.1 and abs(tail.mean()) < 0.01


def test_second_order_regression_loss_is_half_squared_quadratic_residuals(x64):
    """Along any line the loss is a polynomial of degree 4 (residuals quadratic in theta)."""
    toy = toys.second_order_regression(4, 6, key=jax.random.key(1), quadratic_scale=2.0)
    theta = toy.init(jax.random.key(2))
    direction = jax.random.normal(jax.random.key(3), (6,))
    ts = np.linspace(-2.0, 2.0, 9)
    line = jax.jit(jax.vmap(lambda t: toy.loss(theta + t * direction, None)))
    values = np.asarray(line(jnp.asarray(ts)))
    coeffs = np.polyfit(ts, values, 4)
    np.testing.assert_allclose(np.polyval(coeffs, ts), values, rtol=1e-9, atol=1e-9)
    assert abs(coeffs[0]) > 1e-3  # genuinely quartic: Q is non-zero
    hess, sharpness = jax.jit(lambda p: (jax.hessian(toy.loss)(p, None), toy.sharpness(p)))(theta)
    assert np.linalg.eigvalsh(np.asarray(hess))[-1] == pytest.approx(float(sharpness), rel=1e-10)


# ------------------------------------------------------------------------------------------
# Zhu's function


def test_zhu_minima_and_gradient(x64):
    toy = toys.zhu()
    for a in (0.5, 1.0, 2.0):
        params = jnp.array([a, 1.0 / a])
        assert float(toy.loss(params, None)) == 0.0
        assert float(toy.sharpness(params)) == pytest.approx(2 * (a**2 + 1 / a**2), rel=1e-12)
    p = jnp.array([1.3, -0.7])
    a, b = 1.3, -0.7
    m = a**2 * b**2 - 1
    np.testing.assert_allclose(jax.grad(toy.loss)(p, None), [m * a * b**2, m * a**2 * b], rtol=1e-12)


@pytest.mark.parametrize("eta", [0.2, 0.25])
def test_zhu_gd_settles_at_sharpness_two_over_eta(eta, x64):
    toy = toys.zhu()  # gradient flow from the default start ends at sharpness 12.6 > 2/eta
    params = toy.init(jax.random.key(0))
    final = _gd(toy.loss, params, None, eta, 20000)[-1]
    assert eta * float(toy.sharpness(final)) == pytest.approx(2.0, rel=0.02)
    assert float(jnp.sum(final**2)) == pytest.approx(1 / eta, rel=0.02)
    c, d = toys.zhu_cd(final)
    assert abs(float(d)) == pytest.approx(1.0, abs=1e-6)
    assert float(c) == pytest.approx((eta**-2 - 4) ** 0.25, rel=0.02)


# ------------------------------------------------------------------------------------------
# two-layer networks


def test_two_layer_mse_convention_and_chunking(x64):
    toy = toys.two_layer_net("tanh", 5, key=jax.random.key(0), num_data=12, input_dim=3, output_dim=2)
    params = toy.init(jax.random.key(1))
    loss = jax.jit(toy.loss)
    x, y = (np.asarray(a, np.float64) for a in toy.batch)
    out = np.tanh(x @ np.asarray(params["w1"]) + np.asarray(params["b1"])) @ np.asarray(params["w2"]) + np.asarray(params["b2"])
    expected = np.mean(0.5 * np.sum((out - y) ** 2, axis=1))
    assert float(loss(params, toy.batch)) == pytest.approx(expected, rel=1e-12)
    # a mean over examples: equal-size chunks average to the full loss
    halves = [jax.tree.map(lambda a: a[i * 6 : (i + 1) * 6], toy.batch) for i in range(2)]
    assert np.mean([float(loss(params, h)) for h in halves]) == pytest.approx(expected, rel=1e-12)
    # standardised teacher targets, reproducible from the key
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-5)
    again = toys.two_layer_net("tanh", 5, key=jax.random.key(0), num_data=12, input_dim=3, output_dim=2)
    np.testing.assert_array_equal(np.asarray(again.batch[1]), np.asarray(toy.batch[1]))


def test_two_layer_cross_entropy(x64):
    toy = toys.two_layer_net("relu", 4, key=jax.random.key(2), num_data=9, input_dim=2, output_dim=3, loss="cross_entropy")
    params = toy.init(jax.random.key(3))
    x, y = (np.asarray(a, np.float64) for a in toy.batch)
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    hidden = np.maximum(x @ np.asarray(params["w1"]) + np.asarray(params["b1"]), 0.0)
    logits = hidden @ np.asarray(params["w2"]) + np.asarray(params["b2"])
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    value = jax.jit(toy.loss)(params, toy.batch)
    assert float(value) == pytest.approx(-np.mean(np.sum(y * logp, axis=1)), rel=1e-12)
