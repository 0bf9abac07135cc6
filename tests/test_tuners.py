"""Mathematical contracts of the tuners (docs/theory.md §3) and their configs.

The property tests run eagerly under ``jax.disable_jit()``: every hypothesis example builds a
tuner with new hyperparameters (constants of the jaxpr), so jitting would compile once per
example; eager primitives are compiled once per shape. The jitted code paths are checked in
``test_tuner_contract.py`` and by the reference comparisons below.
"""

import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eosmodel.tuners import (
    PRESET_ARGUMENTS,
    PRESETS,
    STATUS_BELOW_F_STAR,
    STATUS_DEGENERATE,
    STATUS_LINESEARCH_FAILED,
    STATUS_NONFINITE_TRIAL,
    STATUS_OK,
    STATUS_ZERO_GRADIENT,
    TUNERS,
    armijo,
    cdat,
    constant,
    make_tuner,
    polyak,
    read_diagnostics,
    tuner_config,
)

# ----------------------------------------------------------------------------------------------
# Random quadratics f(w) = ½ wᵀHw with H = Q diag(λ) Qᵀ (SPD), drawn by hypothesis.
# ----------------------------------------------------------------------------------------------

log_uniform = st.floats(-2.0, 2.0).map(lambda e: 10.0**e)


@st.composite
def quadratics(draw):
    dim = draw(st.integers(1, 4))
    eigenvalues = np.array(draw(st.lists(log_uniform, min_size=dim, max_size=dim)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    hessian = (q * eigenvalues) @ q.T
    w = rng.normal(size=dim) * draw(log_uniform)
    return hessian, w


def _quadratic(hessian):
    # Keeps the numpy matrix: converted at call time, inside the caller's x64 context.
    return lambda w: 0.5 * w @ (jnp.asarray(hessian) @ w)


def _one_step(opt, f, w, **kw):
    """One update from a fresh state at w (default float dtype); returns (update, state, value, grad)."""
    w = jnp.asarray(w, dtype=jnp.result_type(float))
    value, grad = jax.value_and_grad(f)(w)
    updates, state = opt.update(grad, opt.init(w), w, value=value, value_fn=f, **kw)
    return np.asarray(updates), state, float(value), np.asarray(grad)


# ----------------------------------------------------------------------------------------------
# Armijo
# ----------------------------------------------------------------------------------------------


@given(
    problem=quadratics(),
    c=st.floats(0.01, 0.9),
    beta=st.floats(0.2, 0.8),
    eta_max=st.floats(-2.0, 1.0).map(lambda e: 10.0**e),
)
def test_armijo_on_quadratics_accepts_the_largest_grid_step_below_the_bound(problem, c, beta, eta_max):
    """On a quadratic the condition is η ≤ 2(1−c)‖g‖²/(gᵀHg): accepted η lies in [β·bound, bound]."""
    hessian, w = problem
    f = _quadratic(hessian)
    opt = armijo(c=c, decrease_factor=beta, max_stepsize=eta_max, max_trials=100)
    with jax.enable_x64(True), jax.disable_jit():
        updates, state, value, g = _one_step(opt, f, w)
        eta = float(state.stepsize)
        assert not bool(state.info.failed) and not bool(state.info.skipped)
        np.testing.assert_allclose(updates, -eta * g, rtol=1e-15)
        # Sufficient decrease, recomputed from the returned step.
        gg = float(g @ g)
        new_value = float(f(jnp.asarray(w) - eta * g))
        assert new_value <= value - c * eta * gg + 1e-12 * abs(value)
    bound = 2 * (1 - c) * gg / float(g @ hessian @ g)
    assert eta <= bound * (1 + 1e-7)
    eta0 = float(state.info.initial_stepsize)
    assert eta0 == pytest.approx(eta_max, rel=1e-15)  # t = 0 starts at η_max
    if eta0 > bound * (1 + 1e-7):
        assert eta >= beta * bound * (1 - 1e-7)
        assert int(state.info.num_trials) == 1 + round(math.log(eta / eta0) / math.log(beta))
    elif eta0 < bound * (1 - 1e-7):
        assert eta == pytest.approx(eta0, rel=1e-15) and int(state.info.num_trials) == 1


@given(
    problem=quadratics(),
    quartic=st.sampled_from([0.0, 0.3, 2.0]),
    c=st.floats(0.01, 0.9),
    beta=st.floats(0.1, 0.9),
    gamma=st.floats(1.0, 3.0),
    eta_max=st.floats(-2.0, 1.5).map(lambda e: 10.0**e),
    max_trials=st.integers(1, 12),
)
def test_armijo_accepts_exactly_the_stepsizes_of_optax_backtracking(problem, quartic, c, beta, gamma, eta_max,
                                                                    max_trials):
    """The rule's while loop (written on a scalar trial function so that reduced maps can run it)
    accepts bit for bit the stepsizes of ``optax.scale_by_backtracking_linesearch`` configured as
    the transformation documents (slope_rtol = c, atol = rtol = 0, m − 1 backtracking steps, the
    stored rate started at η_max), over several steps, failed searches included, on quadratics
    and on quadratics plus a quartic."""
    hessian, w = problem

    def f(v):
        return 0.5 * v @ (jnp.asarray(hessian) @ v) + 0.25 * quartic * jnp.sum(v**4)

    ours = armijo(c=c, decrease_factor=beta, increase_factor=gamma, max_stepsize=eta_max, max_trials=max_trials)
    theirs = optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=max_trials - 1, slope_rtol=c, decrease_factor=beta, increase_factor=gamma,
        max_learning_rate=eta_max, atol=0.0, rtol=0.0, store_grad=False,
    )
    with jax.enable_x64(True), jax.disable_jit():
        w = jnp.asarray(w)
        state, ref = ours.init(w), theirs.init(w)
        ref = ref._replace(learning_rate=jnp.asarray(eta_max))
        v = w
        for _ in range(4):
            value, g = jax.value_and_grad(f)(w)
            u, state = ours.update(g, state, w, value=value, value_fn=f)
            u_ref, ref = theirs.update(-g, ref, v, value=value, grad=g, value_fn=f)
            assert float(state.stepsize) == float(ref.learning_rate)
            assert int(state.info.num_trials) == int(ref.info.num_linesearch_steps)
            assert bool(state.info.failed) == bool(ref.info.decrease_error > 0)
            np.testing.assert_array_equal(u, u_ref)
            w = v = w + u


def _reference_armijo(f, grad_f, w, steps, *, c, beta, gamma, eta_max, max_trials, on_failure, init_rule):
    """Independent plain-numpy Armijo backtracking (docs/theory.md §3.1), step by step."""
    records, previous = [], None
    for _ in range(steps):
        value, g = f(w), grad_f(w)
        gg = g @ g
        eta0 = eta_max if previous is None or init_rule == "max" else min(gamma * previous, eta_max)
        eta, passed = eta0, False
        for trial in range(1, max_trials + 1):
            if trial > 1:
                eta = eta * beta
            if f(w - eta * g) <= value - c * eta * gg:
                passed = True
                break
        previous = eta
        taken = eta if passed or on_failure == "smallest" else 0.0
        w = w - taken * g
        records.append((eta0, taken, trial, not passed))
    return records, w


@pytest.mark.parametrize(
    ("on_failure", "init_rule", "eta_max", "max_trials"),
    [("smallest", "increase", 5.0, 4), ("skip", "increase", 5.0, 4), ("smallest", "max", 1.0, 3), ("skip", "max", 1.0, 3)],
)
def test_armijo_matches_an_independent_reference_over_many_steps(on_failure, init_rule, eta_max, max_trials, x64):
    """The optax-based wrapper (jitted) equals a plain implementation of the formula, failures included."""
    a = np.array([[3.0, 1.0], [1.0, 0.5]])

    def f_np(w):
        return 0.25 * np.sum(w**4) + 0.5 * w @ a @ w

    def grad_np(w):
        return w**3 + a @ w

    def f(w):
        return 0.25 * jnp.sum(w**4) + 0.5 * w @ (jnp.asarray(a) @ w)

    hyper = dict(c=0.3, decrease_factor=0.5, increase_factor=1.7, max_stepsize=eta_max, max_trials=max_trials)
    opt = armijo(**hyper, on_failure=on_failure, init_rule=init_rule)
    w0 = np.array([1.5, -2.0])
    steps = 12
    expected, w_ref = _reference_armijo(
        f_np, grad_np, w0, steps, c=0.3, beta=0.5, gamma=1.7, eta_max=eta_max, max_trials=max_trials,
        on_failure=on_failure, init_rule=init_rule,
    )

    def body(carry, _):
        w, state = carry
        value, g = jax.value_and_grad(f)(w)
        updates, state = opt.update(g, state, w, value=value, value_fn=f)
        info = state.info
        return (w + updates, state), (info.initial_stepsize, state.stepsize, info.num_trials, info.failed)

    w = jnp.asarray(w0)
    (w_final, _), got = jax.jit(lambda w, s: jax.lax.scan(body, (w, s), None, length=steps))(w, opt.init(w))
    eta0, taken, trials, failed = (np.asarray(x) for x in got)
    ref = np.array(expected, dtype=float)
    assert failed.any(), "the scenario should exercise failed searches"
    np.testing.assert_allclose(eta0, ref[:, 0], rtol=1e-13)
    np.testing.assert_allclose(taken, ref[:, 1], rtol=1e-13)
    np.testing.assert_array_equal(trials, ref[:, 2])
    np.testing.assert_array_equal(failed, ref[:, 3].astype(bool))
    np.testing.assert_allclose(w_final, w_ref, rtol=1e-12)


@pytest.mark.parametrize("on_failure", ["smallest", "skip"])
def test_armijo_failure_policy_and_trial_budget(on_failure, x64):
    """max_trials = 2 evaluates exactly 2 trials; the policy decides the step; memory is the smallest trial."""
    f = lambda w: 0.5 * jnp.sum(w**2)  # noqa: E731  bound 2(1−c)/λ = 1
    opt = armijo(c=0.5, decrease_factor=0.5, increase_factor=1.5, max_stepsize=10.0, max_trials=2,
                 on_failure=on_failure)
    with jax.disable_jit():
        updates, state, _, g = _one_step(opt, f, [1.0])
        assert int(state.info.num_trials) == 2 and bool(state.info.failed)
        assert state.stepsize.dtype == jnp.float64  # the stepsize follows the dtype of params
        assert int(state.info.status) == STATUS_LINESEARCH_FAILED
        if on_failure == "smallest":
            assert float(state.stepsize) == 5.0 and not bool(state.info.skipped)
            np.testing.assert_array_equal(updates, -5.0 * g)
        else:
            assert float(state.stepsize) == 0.0 and bool(state.info.skipped)
            np.testing.assert_array_equal(updates, 0.0)
        w = jnp.array([0.1])
        _, state2 = opt.update(w, state, w, value=f(w), value_fn=f)
        assert float(state2.info.initial_stepsize) == pytest.approx(min(1.5 * 5.0, 10.0))


def test_armijo_nonfinite_last_trial_takes_no_step_and_keeps_memory(x64):
    """optax stores lr = 0 when the last trial is NaN (every later guess would be 0); the wrapper does not."""
    f = lambda w: jnp.where(jnp.abs(w[0]) > 2.0, jnp.nan, 0.5 * w[0] ** 2)  # noqa: E731
    opt = armijo(c=0.1, decrease_factor=0.5, increase_factor=1.5, max_stepsize=10.0, max_trials=2)
    with jax.disable_jit():
        updates, state, _, _ = _one_step(opt, f, [1.0])  # trials 10 and 5 both land on NaN
        assert bool(state.info.skipped) and int(state.info.status) == STATUS_NONFINITE_TRIAL
        np.testing.assert_array_equal(updates, 0.0)
        assert float(state.rule_state.memory) == 5.0
        w = jnp.array([1.0])
        _, state2 = opt.update(w, state, w, value=f(w), value_fn=f)
        assert float(state2.info.initial_stepsize) == 7.5  # γ·5, not γ·0


def test_armijo_first_guess_is_max_stepsize_for_any_increase_factor(x64):
    """η₀ = η_max at t = 0 even when γ·1 < η_max (optax alone would start at min(γ, η_max))."""
    opt = make_tuner({"preset": "armijo-vaswani", "batch_size": 128, "n": 50_000})
    f = lambda w: 0.005 * jnp.sum(w**2)  # noqa: E731  bound 2(1−c)/λ = 180 > η_max
    with jax.disable_jit():
        _, state, _, _ = _one_step(opt, f, [1.0, 1.0])
    assert float(state.info.initial_stepsize) == 10.0 == float(state.stepsize)


# ----------------------------------------------------------------------------------------------
# Polyak SPS_max
# ----------------------------------------------------------------------------------------------


@given(problem=quadratics(), c=st.floats(0.05, 2.0), gamma_max=log_uniform)
def test_polyak_equals_its_formula_and_bounds_on_quadratics(problem, c, gamma_max):
    hessian, w = problem
    f = _quadratic(hessian)
    opt = polyak(c=c, max_stepsize=gamma_max)
    with jax.enable_x64(True), jax.disable_jit():
        updates, state, value, g = _one_step(opt, f, w)
    gg = float(g @ g)
    ratio = value / (c * gg)
    eta = float(state.stepsize)
    np.testing.assert_allclose(float(state.info.ratio), ratio, rtol=1e-12)
    assert float(state.info.cap) == gamma_max
    np.testing.assert_allclose(eta, min(ratio, gamma_max), rtol=1e-12)
    np.testing.assert_allclose(updates, -eta * g, rtol=1e-15)
    assert eta <= gamma_max
    lipschitz = float(np.linalg.eigvalsh(hessian)[-1])
    assert eta >= min(gamma_max, 1 / (2 * c * lipschitz)) * (1 - 1e-12)


@given(lam=log_uniform, c=st.floats(0.05, 2.0), gamma_max=log_uniform, w=st.floats(0.01, 100.0))
def test_polyak_on_one_dimensional_quadratic(lam, c, gamma_max, w):
    """docs/theory.md §6: SPS_max on ½λw² gives η = min(1/(2cλ), γ_max)."""
    opt = polyak(c=c, max_stepsize=gamma_max)
    with jax.enable_x64(True), jax.disable_jit():
        _, state, _, _ = _one_step(opt, lambda v: 0.5 * lam * jnp.sum(v**2), [w])
    np.testing.assert_allclose(float(state.stepsize), min(1 / (2 * c * lam), gamma_max), rtol=1e-12)


@given(problem=quadratics(), c=st.floats(0.05, 2.0), gamma_max=log_uniform, gap=st.floats(0.0, 1.0))
def test_polyak_equals_optax_polyak_sgd_with_scaling_c(problem, c, gamma_max, gap):
    """SPS_max(c, γ_max, f*) is optax.polyak_sgd(scaling=c, max_learning_rate=γ_max/c, f_min=f*).

    optax 0.2.8 chains sgd(scaling) (u = −s·g) before scale_by_polyak, which measures ‖u‖² = s²‖g‖²:
    the step is −s·min(gap/(s²‖g‖²), m)·g = −min(gap/(s‖g‖²), s·m)·g, so s plays the role of c.
    """
    hessian, w = problem
    f = _quadratic(hessian)
    with jax.enable_x64(True), jax.disable_jit():
        w = jnp.asarray(w)
        value, g = jax.value_and_grad(f)(w)
        f_star = float(value) * gap - 1.0 * (1 - gap)  # anywhere in [−1, f(w)]
        opt = polyak(c=c, max_stepsize=gamma_max, f_star=f_star)
        ours, _ = opt.update(g, opt.init(w), w, value=value)
        reference = optax.polyak_sgd(scaling=c, max_learning_rate=gamma_max / c, f_min=f_star)
        theirs, _ = reference.update(g, reference.init(w), w, value=value)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-300)


def test_optax_polyak_sgd_scaling_is_not_one_over_c(x64):
    """Canary: the tempting mapping scaling = 1/c, max_learning_rate = c·γ_max is wrong in optax 0.2.8."""
    c, gamma_max, w = 0.5, 10.0, jnp.array([1.0])  # f = ½w²: SPS_max gives min(1/(2c), γ_max) = 1
    value, g = 0.5, w
    naive = optax.polyak_sgd(scaling=1 / c, max_learning_rate=c * gamma_max)
    naive_update, _ = naive.update(g, naive.init(w), w, value=value)
    opt = polyak(c=c, max_stepsize=gamma_max)
    ours, _ = opt.update(g, opt.init(w), w, value=value)
    assert float(ours[0]) == -1.0
    assert float(naive_update[0]) == -0.25  # min(gap/(s‖g‖²), s·m) with s = 2


def test_polyak_guards_never_ascend(x64):
    f = lambda w: 0.5 * jnp.sum(w**2)  # noqa: E731
    with jax.disable_jit():
        # f(w) = 0.5 < f* = 1: no step (plain SPS would step uphill).
        updates, state, _, _ = _one_step(polyak(f_star=1.0), f, [1.0])
        np.testing.assert_array_equal(updates, 0.0)
        assert bool(state.info.skipped) and int(state.info.status) == STATUS_BELOW_F_STAR
        assert float(state.info.ratio) < 0 and float(state.stepsize) == 0.0
        # Zero gradient (and a gradient below the eps threshold).
        updates, state, _, _ = _one_step(polyak(), f, [0.0])
        assert bool(state.info.skipped) and int(state.info.status) == STATUS_ZERO_GRADIENT
        np.testing.assert_array_equal(updates, 0.0)
        _, state, _, _ = _one_step(polyak(eps=1e-6), f, [1e-4])
        assert int(state.info.status) == STATUS_ZERO_GRADIENT
        _, state, _, _ = _one_step(polyak(eps=1e-6), f, [1e-2])
        assert int(state.info.status) == STATUS_OK and float(state.stepsize) == 1.0


def test_polyak_smoothed_cap_follows_its_recursion(x64):
    """Γ_t = min(τ·η_{t−1}, γ_max), Γ_0 = γ_max, and η_t = min(ratio_t, Γ_t), on ¼w⁴ where the ratio grows."""
    tau, gamma_max, c = 1.2, 5.0, 0.5
    opt = polyak(c=c, max_stepsize=gamma_max, smooth_cap=tau)
    f = lambda w: 0.25 * jnp.sum(w**4)  # noqa: E731  ratio = 1/(4c w²)
    w = jnp.array([1.0])
    state = opt.init(w)
    previous, binding = None, 0
    with jax.disable_jit():
        for _ in range(15):
            value, g = jax.value_and_grad(f)(w)
            updates, state = opt.update(g, state, w, value=value)
            cap = gamma_max if previous is None else min(tau * previous, gamma_max)
            ratio = float(value) / (c * float(g @ g))
            assert float(state.info.cap) == pytest.approx(cap, rel=1e-14)
            assert float(state.stepsize) == pytest.approx(min(ratio, cap), rel=1e-14)
            binding += ratio > cap
            previous = float(state.stepsize)
            w = w + updates
    assert binding >= 5, "the scenario should exercise the smoothed cap"


# ----------------------------------------------------------------------------------------------
# CDAT
# ----------------------------------------------------------------------------------------------


@given(problem=quadratics(), sigma=st.floats(0.1, 3.0))
def test_cdat_on_quadratics_is_the_scaled_exact_line_minimiser(problem, sigma):
    """σ = 1: η = gᵀg/gᵀHg minimises f along −g; η scales with σ; σ = 2 returns to the same level."""
    hessian, w = problem
    f = _quadratic(hessian)
    with jax.enable_x64(True), jax.disable_jit():
        _, state, value, g = _one_step(cdat(sigma=1.0), f, w)
        _, state_sigma, _, _ = _one_step(cdat(sigma=sigma), f, w)
        _, state_edge, _, _ = _one_step(cdat(sigma=2.0), f, w)
        eta = float(state.stepsize)
        np.testing.assert_allclose(eta, (g @ g) / (g @ hessian @ g), rtol=1e-10)
        np.testing.assert_allclose(float(state.info.numerator), g @ g, rtol=1e-12)
        np.testing.assert_allclose(float(state.info.denominator), g @ hessian @ g, rtol=1e-10)
        along = lambda t: float(f(jnp.asarray(w) - t * g))  # noqa: E731
        for t in eta * np.array([0.5, 0.9, 0.999, 1.001, 1.1, 1.5]):
            assert along(eta) <= along(t) + 1e-12 * abs(value)
        np.testing.assert_allclose(float(state_sigma.stepsize), sigma * eta, rtol=1e-12)
        np.testing.assert_allclose(along(float(state_edge.stepsize)), value, rtol=1e-8, atol=1e-300)


def test_cdat_hvp_matches_the_dense_hessian_on_a_network(x64):
    """The denominator is |uᵀHu| with H the dense Hessian of a 2-layer tanh network (u = −g)."""
    x = jax.random.normal(jax.random.key(0), (6, 2), dtype=jnp.float64)
    y = jnp.sin(x[:, 0])

    def f(theta):
        w1, w2 = theta[:6].reshape(2, 3), theta[6:]
        return 0.5 * jnp.mean((jnp.tanh(x @ w1) @ w2 - y) ** 2)

    theta = jax.random.normal(jax.random.key(1), (9,), dtype=jnp.float64)
    opt = cdat(sigma=1.5, eps=1e-3)

    @jax.jit  # one compile (eagerly, every primitive of the network would compile on its own)
    def run(theta):
        g = jax.grad(f)(theta)
        _, state = opt.update(g, opt.init(theta), theta, value_fn=f)
        return state, g, jax.hessian(f)(theta)

    state, g, hessian = run(theta)
    g, hessian = np.asarray(g), np.asarray(hessian)
    np.testing.assert_allclose(float(state.info.denominator), abs(g @ hessian @ g) + 1e-3, rtol=1e-10)
    np.testing.assert_allclose(float(state.stepsize), 1.5 * (g @ g) / (abs(g @ hessian @ g) + 1e-3), rtol=1e-10)


def test_cdat_negative_curvature_and_non_descent_directions(x64):
    f = lambda w: jnp.sum(-0.5 * w**2 + 0.25 * w**4)  # noqa: E731  at w = 0.5: g = −0.375, H = −0.25
    with jax.disable_jit():
        _, state, _, _ = _one_step(cdat(sigma=1.0), f, [0.5])
        np.testing.assert_allclose(float(state.stepsize), 0.375**2 / (0.25 * 0.375**2), rtol=1e-12)
        # Direction d = −g (u = g, an ascent direction): max(−gᵀu, 0) = 0, so η = 0.
        w = jnp.array([0.5])
        g = jax.grad(f)(w)
        updates, state = cdat().update(-g, cdat().init(w), w, grad=g, value_fn=f)
        assert float(state.info.numerator) == 0.0 and float(state.stepsize) == 0.0
        np.testing.assert_array_equal(np.asarray(updates), 0.0)


def test_cdat_zero_curvature_guard(x64):
    with jax.disable_jit():
        _, state, _, _ = _one_step(cdat(), lambda w: jnp.sum(w), [1.0])  # linear: uᵀHu = 0
        assert bool(state.info.skipped) and int(state.info.status) == STATUS_DEGENERATE
        _, state, _, _ = _one_step(cdat(sigma=2.0, eps=0.5), lambda w: jnp.sum(w), [1.0])
        assert int(state.info.status) == STATUS_OK and float(state.stepsize) == pytest.approx(4.0)


def test_cdat_ema_is_the_debiased_moving_average_ratio(x64):
    rho, sigma = 0.7, 2.0
    opt = cdat(sigma=sigma, ema=rho)
    f = lambda w: jnp.sum(0.25 * w**4 + 0.5 * w**2)  # noqa: E731
    w = jnp.array([1.0, -0.5])
    state = opt.init(w)
    m = v = 0.0
    with jax.disable_jit():
        for t in range(1, 6):
            value, g = jax.value_and_grad(f)(w)
            hessian = np.diag(3 * np.asarray(w) ** 2 + 1)
            num, curv = float(g @ g), abs(float(g @ hessian @ g))
            updates, state = opt.update(g, state, w, value=value, value_fn=f)
            m, v = rho * m + (1 - rho) * num, rho * v + (1 - rho) * curv
            debias = 1 - rho**t
            np.testing.assert_allclose(float(state.info.numerator), m / debias, rtol=1e-12)
            np.testing.assert_allclose(float(state.info.denominator), v / debias, rtol=1e-12)
            np.testing.assert_allclose(float(state.stepsize), sigma * m / v, rtol=1e-12)
            if t == 1:  # debiasing: the first step is the raw ratio
                np.testing.assert_allclose(float(state.stepsize), sigma * num / curv, rtol=1e-12)
            w = w + 0.3 * updates  # move somewhere else (any trajectory will do)
    assert int(state.rule_state.count) == 5


# ----------------------------------------------------------------------------------------------
# Construction errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (constant, {"stepsize": 0.0}, r"stepsize must be a finite number > 0"),
        (constant, {"stepsize": float("inf")}, r"stepsize must be a finite number > 0"),
        (constant, {"stepsize": "fast"}, r"stepsize must be a real number"),
        (armijo, {"c": 0.0}, r"c must lie in \(0, 1\)"),
        (armijo, {"c": 1.0}, r"c must lie in \(0, 1\)"),
        (armijo, {"decrease_factor": 1.0}, r"decrease_factor must lie in \(0, 1\)"),
        (armijo, {"decrease_factor": 0.0}, r"decrease_factor must lie in \(0, 1\)"),
        (armijo, {"increase_factor": 0.9}, r"increase_factor must be a finite number >= 1"),
        (armijo, {"max_stepsize": -1.0}, r"max_stepsize must be a finite number > 0"),
        (armijo, {"max_trials": 0}, r"max_trials must be an integer >= 1"),
        (armijo, {"max_trials": 2.5}, r"max_trials must be an integer >= 1"),
        (armijo, {"on_failure": "panic"}, r"on_failure must be one of \['smallest', 'skip'\]"),
        (armijo, {"init_rule": "reset"}, r"init_rule must be one of \['increase', 'max'\]"),
        (polyak, {"c": 0.0}, r"c must be a finite number > 0"),
        (polyak, {"max_stepsize": 0.0}, r"max_stepsize must be a finite number > 0"),
        (polyak, {"f_star": float("nan")}, r"f_star must be a real number"),
        (polyak, {"smooth_cap": 0.5}, r"smooth_cap must be a finite number >= 1"),
        (polyak, {"eps": -1e-8}, r"eps must be a finite number >= 0"),
        (cdat, {"sigma": 0.0}, r"sigma must be a finite number > 0"),
        (cdat, {"eps": -1.0}, r"eps must be a finite number >= 0"),
        (cdat, {"ema": 1.0}, r"ema must lie in \[0, 1\)"),
        (cdat, {"ema": -0.1}, r"ema must lie in \[0, 1\)"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


# ----------------------------------------------------------------------------------------------
# Presets and configs
# ----------------------------------------------------------------------------------------------

PRESET_ARGS = {"armijo-vaswani": {"batch_size": 128, "n": 50_000}}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_config_is_complete_json_and_round_trips(preset, x64):
    args = PRESET_ARGS.get(preset, {})
    config = tuner_config(preset, **args)
    assert json.loads(json.dumps(config)) == config
    name = config["name"]
    hyper = {k: v for k, v in config.items() if k not in ("name", "preset", "preset_args")}
    assert set(hyper) == set(inspect.signature(TUNERS[name]).parameters)
    for key, value in PRESETS[preset].items():
        assert config[key] == value
    assert config["preset"] == preset and config.get("preset_args", {}) == args
    # Idempotent: completing the complete config changes nothing.
    assert tuner_config(name, **hyper) == {"name": name, **hyper}
    # make_tuner(config) is the factory called with the config's hyperparameters.
    f = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * w**2)  # noqa: E731
    w = jnp.array([1.0, -1.0])
    with jax.disable_jit():
        built = [make_tuner(config), make_tuner(json.loads(json.dumps(config))),
                 make_tuner({"preset": preset, **args}), TUNERS[name](**hyper)]
        steps = [_one_step(opt, f, w)[1] for opt in built]
    for state in steps[1:]:
        assert float(state.stepsize) == float(steps[0].stepsize) > 0
        assert read_diagnostics(state).keys() == read_diagnostics(steps[0]).keys()


def test_vaswani_preset_derives_its_increase_factor():
    config = tuner_config("armijo-vaswani", batch_size=128, n=50_000)
    assert config["increase_factor"] == 2.0 ** (128 / 50_000)
    assert (config["c"], config["decrease_factor"], config["max_stepsize"]) == (0.1, 0.9, 10.0)
    assert set(PRESET_ARGUMENTS["armijo-vaswani"]) == {"batch_size", "n"}
    with pytest.raises(ValueError, match="needs n"):
        tuner_config("armijo-vaswani", batch_size=128)
    with pytest.raises(ValueError, match="needs batch_size"):
        make_tuner({"preset": "armijo-vaswani"})
    with pytest.raises(ValueError, match="batch_size must be <= n"):
        tuner_config("armijo-vaswani", batch_size=10, n=5)


def test_config_overrides_and_errors():
    config = tuner_config("armijo-jax", c=0.2, max_trials=7)
    assert config["c"] == 0.2 and config["max_trials"] == 7 and config["preset"] == "armijo-jax"
    assert tuner_config("constant", stepsize=np.float32(0.5))["stepsize"] == 0.5
    with pytest.raises(ValueError, match="name_or_preset must be"):
        tuner_config("adam")
    with pytest.raises(ValueError, match="needs the hyperparameter stepsize"):
        tuner_config("constant")
    with pytest.raises(TypeError, match="'learning_rate'"):
        tuner_config("constant", learning_rate=0.1)
    with pytest.raises(TypeError, match="'batch_size'"):
        make_tuner({"name": "armijo", "batch_size": 3})
    with pytest.raises(ValueError, match="c must lie"):
        tuner_config("armijo-jax", c=2.0)
    with pytest.raises(ValueError, match="'name'.*'preset'"):
        make_tuner({"c": 0.1})
    with pytest.raises(ValueError, match="does not describe tuner"):
        make_tuner({"name": "armijo", "preset": "sps-0.5"})
    with pytest.raises(ValueError, match="name must be one of"):
        make_tuner({"name": "adam"})
    with pytest.raises(TypeError, match="config must be a mapping"):
        make_tuner("armijo-jax")


def test_each_tuner_is_defined_once():
    """The optax factory takes exactly its rule's hyperparameters, with the rule's defaults (the
    rule class is the definition; tuner_config reads its defaults from there)."""
    from eosmodel.tuners import STEPSIZE_RULES, oracle

    factories = {**TUNERS, "oracle": oracle}
    assert set(factories) == set(STEPSIZE_RULES)
    for name, rule in STEPSIZE_RULES.items():
        ours = inspect.signature(factories[name]).parameters
        theirs = inspect.signature(rule).parameters
        assert list(ours) == list(theirs), name
        assert [p.default for p in ours.values()] == [p.default for p in theirs.values()], name
        assert set(tuner_config(name, **({"stepsize": 0.1} if name == "constant" else {}))) == {"name", *theirs}


@pytest.mark.parametrize("name,key", [("constant", "stepsize"), ("armijo", "c"), ("polyak", "max_stepsize"),
                                      ("cdat", "sigma"), ("oracle", "sigma")])
@pytest.mark.parametrize("bad", [True, "0.1"])
def test_booleans_and_strings_are_not_numbers(name, key, bad):
    """stepsize = true would train at 1.0 if bools were numbers; "0.1" is refused, not parsed, as
    the config schema of eosmodel.train refuses it."""
    from eosmodel.tuners import tuner_config

    with pytest.raises(ValueError, match=f"{key} must be a real number"):
        tuner_config(name, **{key: bad})
