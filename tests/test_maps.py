"""Reduced maps (eosmodel/toys/_maps.py) against GD and the real tuners on their toys' parameters."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eosmodel.dynamics import simulate, simulate_map
from eosmodel.sharpness import hvp
from eosmodel.toys import (
    SecondOrderModel,
    SelfStabilizationModel,
    SelfStabilizationState,
    UVModel,
    UVState,
    armijo_rule,
    cdat_rule,
    constant_rule,
    map_rule,
    oracle_rule,
    polyak_rule,
    second_order_1d_energy,
    second_order_normalized_step,
    second_order_regression_1d,
    self_stabilization,
    uv,
)
from eosmodel.tuners import TUNERS, oracle, tuner_config

finite = dict(allow_nan=False, allow_infinity=False)


def in_x64(fn):
    """Run a hypothesis test body in float64 (function-scoped fixtures do not mix with @given)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


def _tree_norm_sq(tree):
    return sum(jnp.vdot(a, a) for a in jax.tree.leaves(tree))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _protocol_vs_autodiff(toy, model, state_of, params, eta):
    """(reduced, exact) pairs for loss, ‖g‖², gᵀHg, the GD step and λ_max, computed on params."""
    f = lambda p: toy.loss(p, None)  # noqa: E731
    s = state_of(params)
    g = jax.grad(f)(params)
    hg = hvp(toy.loss, params, None, g)
    stepped = jax.tree.map(lambda w, d: w - eta * d, params, g)
    s_next = state_of(stepped)
    pairs = {
        "loss": (model.loss(s), f(params)),
        "grad_norm_sq": (model.grad_norm_sq(s), _tree_norm_sq(g)),
        "curvature": (model.curvature(s), sum(jnp.vdot(a, b) for a, b in
                                              zip(jax.tree.leaves(g), jax.tree.leaves(hg)))),
    }
    for name, (a, b) in zip(s_next._fields, zip(model.step(s, eta), s_next)):
        if a is not None:
            pairs[f"step_{name}"] = (a, b)
    if toy.sharpness is not None and toy.name != "uv":  # uv: λ_max is not a function of (f, λ)
        pairs["top_eigenvalue"] = (model.top_eigenvalue(s), toy.sharpness(params))
    return pairs


def _assert_pairs(pairs, rtol=1e-11):
    for name, (a, b) in pairs.items():
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * (1 + np.max(np.abs(b))),
                                   err_msg=name)


SELF_STAB_TOYS = {
    name: self_stabilization(alpha=0.7, beta=2.5, lambda0=2.0, **kw)
    for name, kw in {
        "exact": dict(),
        "limit": dict(sharpening_limit=7.0),
        "limit_bulk": dict(sharpening_limit=9.0, bulk_eigenvalues=[0.5, 3.0]),
    }.items()
}
SELF_STAB_MODELS = {name: SelfStabilizationModel.from_toy(toy) for name, toy in SELF_STAB_TOYS.items()}
UV_TOY = uv(4, 0.3)
SECOND_ORDER_TOY = second_order_regression_1d(1.3, 0.4, g=(0.8, -0.3))


def _second_order_state(params):
    return SecondOrderModel.state_from_params(SECOND_ORDER_TOY, params)


@pytest.mark.parametrize("variant", sorted(SELF_STAB_TOYS))
@given(x=st.floats(-2, 2, **finite), s=st.floats(-1.5, 1.5, **finite),
       z=st.floats(-2, 2, **finite), eta=st.floats(0.01, 1.5, **finite))
@in_x64
def test_self_stabilization_protocol_matches_autodiff(variant, x, s, z, eta):
    toy, model = SELF_STAB_TOYS[variant], SELF_STAB_MODELS[variant]
    params = {"x": jnp.asarray(x), "s": jnp.asarray(s)}
    if toy.hyper["bulk_eigenvalues"] is not None:
        params["z"] = jnp.asarray([z, -0.5 * z + 0.3])
    _assert_pairs(_protocol_vs_autodiff(toy, model, model.state_from_params, params, eta))


@given(seed=st.integers(0, 10_000), eta=st.floats(0.01, 1.5, **finite))
@in_x64
def test_uv_protocol_matches_autodiff(seed, eta):
    params = UV_TOY.init(jax.random.key(seed))
    model = UVModel.from_toy(UV_TOY)
    _assert_pairs(_protocol_vs_autodiff(UV_TOY, model, UVModel.state_from_params, params, eta))


@given(t1=st.floats(-2, 2, **finite), t2=st.floats(-2, 2, **finite),
       eta=st.floats(0.01, 1.0, **finite))
@in_x64
def test_second_order_protocol_matches_autodiff(t1, t2, eta):
    model = SecondOrderModel.from_toy(SECOND_ORDER_TOY)
    assert model.energy == pytest.approx(second_order_1d_energy(SECOND_ORDER_TOY), rel=1e-14)
    params = jnp.asarray([t1, t2])
    _assert_pairs(_protocol_vs_autodiff(SECOND_ORDER_TOY, model, _second_order_state, params, eta))


@given(t1=st.floats(-1.5, 1.5, **finite), t2=st.floats(-1.5, 1.5, **finite),
       eta=st.floats(0.05, 1.0, **finite))
@in_x64
def test_second_order_normalized_map_is_gd(t1, t2, eta):
    """x = ηωz, y = ηT − 2, e = ηωE follow docs/theory.md §4.2 exactly under GD on θ (5 steps)."""
    toy, omega = SECOND_ORDER_TOY, SECOND_ORDER_TOY.hyper["omega"]
    e = eta * omega * second_order_1d_energy(toy)
    pred, gd = _normalized_vs_gd(jnp.asarray([t1, t2]), eta, e)
    for (xp, yp), (xg, yg) in zip(np.asarray(pred), np.asarray(gd)):
        if not (abs(xg) < 10 and abs(yg) < 10):
            break
        np.testing.assert_allclose([xp, yp], [xg, yg], rtol=1e-10, atol=1e-10 * (1 + abs(xg)))


@jax.jit
def _normalized_vs_gd(theta, eta, e):
    omega = SECOND_ORDER_TOY.hyper["omega"]

    def normalized(th):
        s = _second_order_state(th)
        return eta * omega * s.z, eta * s.ntk - 2.0

    def body(th, _):
        pred = jnp.stack(second_order_normalized_step(*normalized(th), e))
        th = th - eta * jax.grad(SECOND_ORDER_TOY.loss)(th, None)
        return th, (pred, jnp.stack(normalized(th)))

    _, (pred, gd) = jax.lax.scan(body, theta, None, length=5)
    return pred, gd


def test_self_stabilization_map_is_damian_map():
    """(x, λ) form equals Damian et al.'s (x, y = λ − 2/η) form at a fixed η."""
    a, b, eta = 0.8, 3.0, 0.1
    model = SelfStabilizationModel(alpha=a, beta=b)
    s = SelfStabilizationState(x=jnp.float32(0.3), lam=jnp.float32(2 / eta + 0.7))
    y = float(s.lam) - 2 / eta
    x = float(s.x)
    s1 = model.step(s, eta)
    assert float(s1.x) == pytest.approx(-(1 + eta * y) * x, rel=1e-5)
    assert float(s1.lam) - 2 / eta == pytest.approx(y + eta * (a - b * x * x / 2), rel=1e-4)


# ----------------------------------------------------------------------------------------------
# Reduced tuner rules == the real tuners on the toy's parameters (trajectories, float64).
# ----------------------------------------------------------------------------------------------


def _compare_traces(real, reduced, coords, steps):
    """Columns agree to ~1e-12 while the loss is above the roundoff floor (|f| > 1e-20)."""
    assert real.config["diverged"] == reduced.config["diverged"]
    n = min(len(real), len(reduced), steps)
    live = np.abs(real["loss"][:n]) > 1e-20
    n = int(np.argmin(live)) if not live.all() else n
    assert n >= 10, "comparison window too short: pick a slower-converging case"
    tuner_cols = [c for c in real.names if c.startswith("tuner_")]
    assert set(tuner_cols) <= set(reduced.names)
    for col in ["loss", "grad_norm_sq", "stepsize", *coords, *tuner_cols]:
        a, b = real[col][:n], reduced[col][:n]
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-11 * (1 + np.max(np.abs(a))),
                                   err_msg=col)


SELF_STAB_TUNERS = [
    pytest.param(tuner_config("constant", stepsize=0.3), id="constant", marks=pytest.mark.slow),
    pytest.param(tuner_config("armijo-jax"), id="armijo"),
    pytest.param(tuner_config("armijo", c=0.5, max_trials=3, on_failure="skip", max_stepsize=5.0),
                 id="armijo-failing", marks=pytest.mark.slow),
    pytest.param(tuner_config("polyak", c=0.3, max_stepsize=2.0, smooth_cap=1.1), id="polyak"),
    pytest.param(tuner_config("cdat", sigma=1.8, ema=0.9), id="cdat"),
]


@pytest.mark.parametrize("config", SELF_STAB_TUNERS)
def test_self_stabilization_rules_equal_real_tuners(x64, config):
    toy = self_stabilization(alpha=1.0, beta=2.0, lambda0=1.5, sharpening_limit=20.0,
                             bulk_eigenvalues=[0.5, 1.0], init_x=0.1)
    model = SelfStabilizationModel.from_toy(toy)
    params = toy.init(jax.random.key(1))
    real = simulate(toy, config, 40, key=jax.random.key(0), params=params)
    reduced = simulate_map(model, map_rule(config), model.state_from_params(params), 40)
    _compare_traces(real, reduced, ["x", "lam", "sharpness"], 40)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(tuner_config("armijo-jax"), id="armijo"),
        pytest.param(tuner_config("polyak", c=2.0, max_stepsize=2.0), id="polyak",
                     marks=pytest.mark.slow),
        pytest.param(tuner_config("cdat", sigma=1.5), id="cdat", marks=pytest.mark.slow),
    ],
)
def test_uv_rules_equal_real_tuners(x64, config):
    toy = uv(5, 0.5)
    params = toy.init(jax.random.key(1))
    real = simulate(toy, config, 40, key=jax.random.key(0), params=params, sharpness=None)
    reduced = simulate_map(UVModel.from_toy(toy), map_rule(config),
                           UVModel.state_from_params(params), 40)
    _compare_traces(real, reduced, ["f", "lam"], 40)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [tuner_config("constant", stepsize=0.7), tuner_config("armijo-jax"),
     tuner_config("polyak", c=2.0, max_stepsize=2.0), tuner_config("cdat", sigma=2.0)],
    ids=lambda c: c["name"],
)
def test_second_order_rules_equal_real_tuners(x64, config):
    toy = second_order_regression_1d(1.0, 0.8)
    params = toy.init(jax.random.key(1))
    real = simulate(toy, config, 40, key=jax.random.key(0), params=params)
    reduced = simulate_map(SecondOrderModel.from_toy(toy), map_rule(config),
                           SecondOrderModel.state_from_params(toy, params), 40)
    _compare_traces(real, reduced, ["z", "ntk", "sharpness"], 40)


# ----------------------------------------------------------------------------------------------
# Rule contracts on their own.
# ----------------------------------------------------------------------------------------------


# UVModel with n → ∞ is GD on the quadratic ½λ(f − y)² of the output (λ frozen): the rank-one
# quadratic of curvature λ on which docs/theory.md §6 states the tuners' closed forms.
QUADRATIC = UVModel(target=0.0, width=1e300)


@jax.jit
def _armijo_on_quadratic(c, s):
    rule = armijo_rule(c=c, max_stepsize=10.0, max_trials=80)  # traced c: one compilation
    return rule.update(QUADRATIC, s, rule.init(QUADRATIC, s))


@jax.jit
def _polyak_on_quadratic(c, cap, s):
    rule = polyak_rule(c=c, max_stepsize=cap)
    return rule.update(QUADRATIC, s, rule.init(QUADRATIC, s))


@given(c=st.floats(0.05, 0.9, **finite), lam=st.floats(0.1, 50, **finite),
       f=st.floats(-3, 3, **finite).filter(lambda v: abs(v) > 1e-3))
@in_x64
def test_armijo_rule_sufficient_decrease_and_quadratic_bound(c, lam, f):
    """Accepted η passes Armijo, the previous trial did not, and η ≤ 2(1 − c)‖g‖²/gᵀHg."""
    s = UVState(f=jnp.asarray(f), lam=jnp.asarray(lam))
    eta, _, diag = _armijo_on_quadratic(c, s)
    assert not bool(diag["failed"])
    f0, g2 = QUADRATIC.loss(s), QUADRATIC.grad_norm_sq(s)
    assert float(QUADRATIC.loss(QUADRATIC.step(s, eta))) <= float(f0 - c * eta * g2)
    bound = 2 * (1 - c) * float(g2) / float(QUADRATIC.curvature(s))
    assert bound == pytest.approx(2 * (1 - c) / lam, rel=1e-12)
    assert float(eta) <= bound * (1 + 1e-12)
    assert float(eta) >= 0.8 * bound * (1 - 1e-12) or int(diag["num_trials"]) == 1
    if int(diag["num_trials"]) > 1:
        prev = float(eta) / 0.8
        assert float(QUADRATIC.loss(QUADRATIC.step(s, prev))) > float(f0 - c * prev * g2)


@given(c=st.floats(0.05, 2.0, **finite), lam=st.floats(0.1, 50, **finite),
       cap=st.floats(0.01, 10, **finite))
@in_x64
def test_polyak_rule_on_quadratic(c, lam, cap):
    """SPS_max on ½λw² with f* = 0: η = min(1/(2cλ), γ_max) (docs/theory.md §6)."""
    s = UVState(f=jnp.asarray(0.7), lam=jnp.asarray(lam))
    eta, _, diag = _polyak_on_quadratic(c, cap, s)
    assert float(eta) == pytest.approx(min(1 / (2 * c * lam), cap), rel=1e-12)
    assert bool(diag["cap"] >= eta) and int(diag["status"]) == 0


def test_cdat_rule_is_sigma_over_lambda_on_quadratic(x64):
    """On ½λx² CDAT gives η = σ/λ (gᵀg/gᵀHg = 1/λ)."""
    s = UVState(f=jnp.asarray(0.3), lam=jnp.asarray(5.0))
    for sigma in (1.0, 2.0):
        rule = cdat_rule(sigma=sigma)
        eta, _, _ = rule(QUADRATIC, s, rule.init(QUADRATIC, s))
        assert float(eta) == pytest.approx(sigma / 5.0, rel=1e-12)


def test_oracle_rule_and_skips():
    model = SelfStabilizationModel()
    s = SelfStabilizationState(x=jnp.asarray([0.1, 0.1]), lam=jnp.asarray([4.0, -1.0]))
    eta, _, diag = oracle_rule(1.5)(model, s, ())
    np.testing.assert_allclose(eta, [1.5 / 4.0, 0.0], rtol=1e-6)
    assert diag["skipped"].tolist() == [False, True]


def test_rules_skip_non_finite_state():
    model = SelfStabilizationModel()
    s = SelfStabilizationState(x=jnp.asarray(jnp.nan), lam=jnp.asarray(3.0))
    for rule in (constant_rule(0.1), armijo_rule(), polyak_rule(), cdat_rule()):
        eta, _, diag = rule(model, s, rule.init(model, s))
        assert float(eta) == 0.0 and bool(diag["skipped"]) and int(diag["status"]) == 1, rule.name


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: constant_rule(0.0), "stepsize must be a finite number > 0"),
        (lambda: oracle_rule(-1.0), "sigma must be a finite number > 0"),
        (lambda: armijo_rule(c=1.5), r"c must lie in \(0, 1\)"),
        (lambda: armijo_rule(max_trials=0), "max_trials must be an integer"),
        (lambda: polyak_rule(c=0.0), "c must be a finite number > 0"),
        (lambda: cdat_rule(eps=-1.0), "eps must be a finite number >= 0"),
        (lambda: cdat_rule(ema=1.0), r"ema must lie in \[0, 1\)"),
        (lambda: map_rule("nope"), "name_or_preset must be a tuner name"),
        (lambda: map_rule({"name": "nope"}), "name must be one of"),
        (lambda: map_rule("polyak", gamma=1.0), "bad hyperparameters for rule 'polyak'.*'gamma'"),
        (lambda: armijo_rule(0.1, c=0.2), "both by position and by name"),
    ],
)
def test_rule_validation_messages(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_map_rule_accepts_tuner_configs():
    rule = map_rule(tuner_config("sps-0.5"))
    assert rule.name == "polyak" and rule.hyper["c"] == 0.5
    assert map_rule("sps-0.5").hyper == rule.hyper == {k: v for k, v in tuner_config("sps-0.5").items()
                                                       if k not in ("name", "preset")}
    assert map_rule("oracle", sigma=1.5).hyper == {"sigma": 1.5, "exact": False}
    # The defaults are the tuner's (one definition): the oracle's σ = 2, Armijo's c = 0.1, ...
    assert oracle_rule().hyper["sigma"] == tuner_config("oracle")["sigma"] == 2.0
    assert {k: v for k, v in armijo_rule(0.2).hyper.items()} == {
        k: v for k, v in tuner_config("armijo", c=0.2).items() if k != "name"}
    assert constant_rule(0.1, guard=False).hyper == {"stepsize": 0.1, "guard": False}


def test_from_toy_rejects_other_toys():
    with pytest.raises(ValueError, match="self_stabilization"):
        SelfStabilizationModel.from_toy(uv(3))


def test_float32_and_float64_dtypes_follow_the_state():
    model = SelfStabilizationModel(alpha=1.0, beta=2.0)
    s32 = SelfStabilizationState(x=jnp.float32(0.1), lam=jnp.float32(3.0))
    assert model.step(s32, 0.1).x.dtype == jnp.float32
    assert model.loss(s32).dtype == jnp.float32
    with jax.enable_x64(True):
        s64 = SelfStabilizationState(x=jnp.float64(0.1), lam=jnp.float64(3.0))
        assert model.step(s64, 0.1).lam.dtype == jnp.float64
        assert math.isclose(float(model.step(s64, 0.1).x), (1 - 0.3) * 0.1, rel_tol=1e-15)


# ----------------------------------------------------------------------------------------------
# One definition per tuner: the optax transformation on the toy's parameters and the map rule on
# the reduced state call the same rule (eosmodel.tuners.STEPSIZE_RULES), with random states and
# random, traced hyperparameters (one compilation per tuner and static variant).
# ----------------------------------------------------------------------------------------------

AGREE_TOY = self_stabilization(alpha=1.0, beta=2.0, lambda0=1.5, sharpening_limit=20.0,
                               bulk_eigenvalues=[0.5, 1.0])
AGREE_MODEL = SelfStabilizationModel.from_toy(AGREE_TOY)

unit = dict(allow_nan=False, allow_infinity=False)
AGREE_HYPER = {  # name -> (static settings, hypothesis strategies of the numeric ones)
    "constant": ({}, {"stepsize": st.floats(0.01, 1.0, **unit)}),
    "oracle": ({}, {"sigma": st.floats(0.1, 3.0, **unit)}),
    "armijo": ({"on_failure": "smallest", "init_rule": "increase"},
               {"c": st.floats(0.01, 0.9), "decrease_factor": st.floats(0.1, 0.9),
                "increase_factor": st.floats(1.0, 3.0), "max_stepsize": st.floats(0.05, 5.0),
                "max_trials": st.integers(1, 20)}),
    "armijo-skip-max": ({"on_failure": "skip", "init_rule": "max"},
                        {"c": st.floats(0.01, 0.9), "decrease_factor": st.floats(0.1, 0.9),
                         "max_stepsize": st.floats(0.05, 5.0), "max_trials": st.integers(1, 6)}),
    "polyak": ({}, {"c": st.floats(0.05, 2.0), "f_star": st.floats(-1.0, -0.01),
                    "max_stepsize": st.floats(0.05, 5.0), "eps": st.floats(0.0, 1e-3)}),
    "polyak-smooth": ({}, {"c": st.floats(0.05, 2.0), "max_stepsize": st.floats(0.05, 5.0),
                           "smooth_cap": st.floats(1.0, 1.5)}),
    "cdat": ({}, {"sigma": st.floats(0.1, 3.0), "eps": st.floats(0.0, 1e-3)}),
    "cdat-ema": ({}, {"sigma": st.floats(0.1, 3.0), "ema": st.floats(0.0, 0.95)}),
}


@functools.partial(jax.jit, static_argnames=("name", "static"))
def _both_uses(params, hyper, *, name, static):
    """Three steps of the optax transformation on the toy's parameters and of the map rule on the
    reduced state: per step (η, info, reduced state) of each."""
    tuner = name.split("-")[0]
    hyper = {**hyper, **dict(static)}
    opt = (oracle if tuner == "oracle" else TUNERS[tuner])(**hyper)  # traced hyperparameters
    rule = map_rule(tuner, **hyper, **({"exact": True} if tuner == "oracle" else {}))
    f = lambda p: AGREE_TOY.loss(p, None)  # noqa: E731
    state, s = opt.init(params), AGREE_MODEL.state_from_params(params)
    rs = rule.init(AGREE_MODEL, s)
    out = []
    for _ in range(3):
        value, grad = jax.value_and_grad(f)(params)
        extra = {"sharpness": AGREE_TOY.sharpness(params)} if tuner == "oracle" else {}
        updates, state = opt.update(grad, state, params, value=value, value_fn=f, **extra)
        params = jax.tree.map(lambda w, u: w + u, params, updates)
        eta, rs, diag = rule.update(AGREE_MODEL, s, rs)
        s = AGREE_MODEL.step(s, eta)
        out.append(((state.stepsize, state.info._asdict(), AGREE_MODEL.state_from_params(params)),
                     (eta, diag, s)))
    return out


@pytest.mark.parametrize("name", sorted(AGREE_HYPER))
@given(data=st.data(), x=st.floats(-1.5, 1.5, **unit), s=st.floats(-1.0, 1.0, **unit),
       z=st.lists(st.floats(-1.0, 1.0, **unit), min_size=2, max_size=2))
@in_x64
def test_optax_tuner_and_map_rule_agree(name, data, x, s, z):
    static, strategies = AGREE_HYPER[name]
    hyper = {k: data.draw(v, label=k) for k, v in strategies.items()}
    traced = {k: (jnp.asarray(v, jnp.int32) if isinstance(v, int) else jnp.asarray(v, jnp.float64))
              for k, v in hyper.items()}
    params = {"x": jnp.asarray(x), "s": jnp.asarray(s), "z": jnp.asarray(z)}
    steps = _both_uses(params, traced, name=name, static=tuple(sorted(static.items())))
    for t, ((eta, info, state), (eta_map, diag, state_map)) in enumerate(steps):
        assert set(info) == set(diag)
        np.testing.assert_allclose(eta_map, eta, rtol=1e-12, atol=1e-300, err_msg=f"eta, step {t}")
        for key in info:
            a, b = np.asarray(info[key]), np.asarray(diag[key])
            assert a.dtype == b.dtype, key
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-300, err_msg=f"{key}, step {t}")
        for a, b in zip(state, state_map):
            np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13, err_msg=f"state, step {t}")
