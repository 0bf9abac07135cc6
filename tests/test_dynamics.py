"""The simulator and sweeps reproduce the known toy results of docs/theory.md §6."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eosmodel.dynamics import SweepResult, plot_bifurcation, plot_phase_diagram, simulate, simulate_map, sweep
from eosmodel.toys import (
    SelfStabilizationModel,
    SelfStabilizationState,
    constant_rule,
    map_rule,
    oracle_rule,
    quadratic,
    second_order_regression_1d,
    self_stabilization,
    two_layer_net,
    uv,
    uv_lambda,
    zhu,
)
from eosmodel.trace import load_trace
from eosmodel.tuners import constant, tuner_config

# ----------------------------------------------------------------------------------------------
# Self-stabilisation map (Damian et al.), docs/theory.md §4.1 and §6.
# ----------------------------------------------------------------------------------------------


def test_fixed_stepsize_self_stabilization_orbit(x64):
    """Fixed η: ηλ averages 2 and rms(x) is within 10% of δ = √(2α/β); the continuous-time
    invariant Y²/2 − α ln X + βX²/4 (τ = ηt) drifts by less than 10% over the run."""
    alpha, beta, eta, steps = 1.0, 1.0, 0.005, 4000
    delta = np.sqrt(2 * alpha / beta)
    model = SelfStabilizationModel(alpha=alpha, beta=beta, lambda0=2 / eta)
    tr = simulate_map(model, constant_rule(eta), SelfStabilizationState(x=1.2 * delta, lam=2 / eta),
                      steps)
    assert not tr.config["diverged"]
    late = slice(steps // 2, None)
    assert np.mean(eta * tr["lam"][late]) == pytest.approx(2.0, abs=2e-3)
    assert np.sqrt(np.mean(tr["x"][late] ** 2)) == pytest.approx(delta, rel=0.1)
    x, y = np.abs(tr["x"]), tr["lam"] - 2 / eta
    invariant = y**2 / 2 - alpha * np.log(x) + beta * x**2 / 4
    assert np.ptp(invariant) < 0.1 * abs(invariant[0])
    # ηλ crosses 2 back and forth (it oscillates around the edge, not settling)
    assert np.mean(np.abs(np.diff(np.sign(eta * tr["lam"] - 2))) > 0) > 0.002


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_oracle_tuner_sharpness_growth_law(x64, sigma):
    """η_t = σ/λ_t (σ < 2): x decays and λ_t = √(λ₀² + 2σαt) to within discretisation."""
    alpha, lam0, steps = 0.5, 1.0, 3000
    model = SelfStabilizationModel(alpha=alpha, beta=1.0, lambda0=lam0)
    tr = simulate_map(model, oracle_rule(sigma), SelfStabilizationState(x=0.01, lam=lam0), steps)
    t = tr["step"]
    law = np.sqrt(lam0**2 + 2 * sigma * alpha * t)
    # Discretisation: λ_{t+1}² = λ_t² + 2σα + (σα/λ_t)² − σβx_t²(…), so with x → 0 the excess
    # λ_t² − law_t² lies in [0, Σ_k (σα)²/(λ₀² + 2σαk)] ⊂ [0, (σα)²/λ₀² + (σα/2)ln(1 + 2σαt/λ₀²)].
    excess = tr["lam"] ** 2 - law**2
    bound = (sigma * alpha) ** 2 / lam0**2 + 0.5 * sigma * alpha * np.log1p(2 * sigma * alpha * t / lam0**2)
    assert np.all(excess >= -1e-3) and np.all(excess <= bound + 1e-9)
    assert tr["lam"][-1] / law[-1] - 1 < 5e-3
    np.testing.assert_allclose(tr["stepsize"] * tr["lam"], sigma, rtol=1e-12)
    assert abs(tr["x"][-1]) < 1e-6  # |1 − σ| < 1: the oscillation dies, nothing stabilises λ


def test_sweep_agrees_with_simulate_map():
    """The vmapped sweep runs the same map: its summaries equal those of simulate_map's trace."""
    fixed = {"alpha": 1.0, "beta": 1.0, "lambda0": 18.0, "init_x": 0.5}
    etas = np.array([0.08, 0.1, 0.105])
    res = sweep("self_stabilization", "constant", {"eta": etas}, steps=600, fixed=fixed,
                window=300, record_last=16)
    for i, eta in enumerate(etas):
        model = SelfStabilizationModel(alpha=1.0, beta=1.0, lambda0=18.0)
        tr = simulate_map(model, constant_rule(float(np.float32(eta))),
                          SelfStabilizationState(x=jnp.float32(0.5), lam=jnp.float32(18.0)), 600)
        assert bool(res["diverged"][i]) == tr.config["diverged"]
        if tr.config["diverged"]:
            # simulate_map also stops one step earlier when the loss overflows before the state
            assert abs(int(res["diverged_at"][i]) - tr.config["diverged_at"]) <= 1
            continue
        ns = tr["stepsize"] * tr["lam"]  # the sweep's ηλ uses the map's λ
        assert res["mean_normalized_sharpness"][i] == pytest.approx(ns[300:].mean(), rel=1e-4)
        np.testing.assert_allclose(res["late_normalized_sharpness"][i], ns[-16:], rtol=1e-4)
        assert res["rms_coordinate"][i] == pytest.approx(np.sqrt(np.mean(tr["x"][300:] ** 2)),
                                                         rel=1e-3)


def test_sweep_phase_diagram_records_divergence_without_crashing(tmp_path):
    """A grid of (η, λ₀) mixing stable EOS orbits and diverging runs: flags per trajectory."""
    grid = {"eta": np.linspace(0.02, 1.0, 6), "lambda0": np.array([0.5, 1.9, 40.0])}
    res = sweep("self_stabilization", "constant", grid,
                fixed={"alpha": 1.0, "beta": 1.0, "init_x": 0.3}, steps=800)
    assert res.shape == (6, 3)
    div = res["diverged"]
    assert div.any() and not div.all()
    # λ₀ = 40 with η = 1 starts at ηλ₀ = 40 ≫ 2: immediately unstable
    assert div[-1, -1] and 0 <= res["diverged_at"][-1, -1] < 20
    assert np.all(np.isnan(res["mean_normalized_sharpness"][div]))
    assert np.all(res["diverged_at"][~div] == -1)
    assert np.all(np.isfinite(res["mean_normalized_sharpness"][~div]))
    res.save(tmp_path / "sw")
    back = SweepResult.load(tmp_path / "sw")
    assert back.axes == res.axes and back.shape == res.shape
    np.testing.assert_array_equal(back["diverged"], div)
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["config"]["rule"] == "constant"
    plot_phase_diagram(res, path=tmp_path / "phase.png")
    assert (tmp_path / "phase.png").stat().st_size > 1000


def test_bifurcation_diagram_oracle_period_doubling(tmp_path):
    """Oracle η = σ/λ: ηλ ≡ σ (one point per σ) while σ < 2; figure written."""
    sigmas = np.linspace(0.5, 1.9, 8)
    res = sweep("self_stabilization", "oracle", {"sigma": sigmas}, steps=400,
                fixed={"alpha": 1.0, "beta": 1.0, "lambda0": 1.0}, record_last=32)
    late = res["late_normalized_sharpness"]
    assert late.shape == (8, 32)
    np.testing.assert_allclose(late, np.repeat(sigmas[:, None], 32, axis=1), rtol=1e-5)
    plot_bifurcation(res, path=tmp_path / "bif.png")
    assert (tmp_path / "bif.png").stat().st_size > 1000


def test_sweep_with_seeds_and_rules_in_the_loop():
    """Seeds perturb initial conditions reproducibly; Armijo/Polyak/CDAT run inside vmap."""
    key = jax.random.key(3)
    fixed = {"alpha": 1.0, "beta": 1.0, "lambda0": 2.0, "init_noise": 0.1, "sharpening_limit": 30.0}
    a = sweep("self_stabilization", "polyak", {"seed": [0, 1, 2], "c": [0.6, 0.9]}, steps=200,
              fixed=fixed, key=key)
    b = sweep("self_stabilization", "polyak", {"seed": [0, 1, 2], "c": [0.6, 0.9]}, steps=200,
              fixed=fixed, key=key)
    np.testing.assert_array_equal(a["rms_coordinate"], b["rms_coordinate"])
    assert np.unique(a["rms_coordinate"][:, 0]).size == 3  # the seeds differ
    for rule, param in (("armijo", "c"), ("cdat", "sigma")):
        r = sweep("self_stabilization", rule, {param: [0.2, 0.5] if rule == "armijo" else [1.0, 2.0]},
                  steps=200, fixed={"alpha": 1.0, "beta": 1.0, "lambda0": 2.0})
        assert r.shape == (2,) and np.all(np.isfinite(r["mean_stepsize"]) | r["diverged"])


_SWEEP_MODEL = dict(alpha=1.0, beta=1.0, lambda0=2.0, sharpening_limit=30.0)


@functools.partial(jax.jit, static_argnames=("rule", "param", "steps"))
def _map_run(value, *, rule, param, steps):
    """(η_{T−1}, λ_T) of one reduced-map run with the rule's ``param`` = ``value`` (traced: one
    compilation for all values), started as the sweep starts (x = 0.01, λ = λ₀)."""
    model = SelfStabilizationModel(**_SWEEP_MODEL)
    r = map_rule(rule, **{param: value})
    s = SelfStabilizationState(x=jnp.asarray(0.01, value.dtype), lam=jnp.asarray(2.0, value.dtype))

    def body(carry, _):
        s, rs = carry
        eta, rs, _ = r.update(model, s, rs)
        return (model.step(s, eta), rs), eta

    (s, _), etas = jax.lax.scan(body, (s, r.init(model, s)), None, length=steps)
    return etas[-1], s.lam


@pytest.mark.parametrize(
    "rule, param, values",
    [
        ("armijo", "c", [0.05, 0.3, 0.7]),
        ("armijo", "decrease_factor", [0.3, 0.8]),
        ("armijo", "max_trials", [3, 5, 30]),
        ("polyak", "c", [0.2, 0.5, 0.7]),
        ("polyak", "max_stepsize", [0.1, 1.0]),
        ("polyak", "smooth_cap", [1.0, 1.2]),
        ("cdat", "sigma", [1.0, 1.9]),
        ("cdat", "ema", [0.0, 0.9]),
    ],
)
def test_sweep_vmaps_any_numeric_hyperparameter(x64, rule, param, values):
    """A grid over a non-stepsize hyperparameter (traced inside vmap) gives, at every point, the
    run of the map rule built with that value (30 steps: some of these runs turn chaotic later,
    where XLA's different fusions of the batched and the single run drift apart)."""
    res = sweep("self_stabilization", rule, {param: values}, steps=30, fixed=_SWEEP_MODEL,
                dtype=jnp.float64)
    live = ~res["diverged"]
    assert live.sum() >= 2
    for i, v in enumerate(values):
        eta, lam = _map_run(jnp.asarray(v, jnp.float64), rule=rule, param=param, steps=30)
        if live[i]:
            np.testing.assert_allclose(res["final_stepsize"][i], eta, rtol=1e-10)
            np.testing.assert_allclose(res["final_sharpness"][i], lam, rtol=1e-10)
        else:  # the run of that value diverges too (a budget of 3 trials cannot bring ηλ below 2)
            assert not (abs(float(lam)) < 1e15)
    # The hyperparameter matters: distinct outcomes (a diverged run counts as one).
    assert np.unique(np.where(live, res["final_sharpness"], np.inf)).size >= 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(model="nope"), "model must be one of"),
        (dict(rule="nope"), "rule must be one of"),
        (dict(grid={"gamma": [1.0]}), "unknown sweep parameter 'gamma'"),
        (dict(grid={"eta": []}), "non-empty sequence of finite numbers"),
        (dict(grid={"eta": [0.1]}, steps=0), "steps must be an integer >= 1"),
        (dict(grid={"eta": [-0.1]}), "stepsize must be a finite number > 0"),
        (dict(rule="armijo", grid={"max_trials": [3, 2.5]}), "max_trials must be an integer"),
        (dict(rule="armijo", grid={"c": [0.1]}, fixed={"on_failure": "never"}), "on_failure must be one of"),
        (dict(rule="polyak", grid={"smooth_cap": [0.5, 1.1]}), "smooth_cap must be a finite number >= 1"),
        (dict(grid={"eta": [0.1]}, record_last=1000), "record_last must lie in"),
    ],
)
def test_sweep_rejects_bad_input(kwargs, match):
    args = dict(model="self_stabilization", rule="constant", grid={"eta": [0.1]}, steps=100)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sweep(args.pop("model"), args.pop("rule"), args.pop("grid"), **args)


# ----------------------------------------------------------------------------------------------
# simulate on the toys.
# ----------------------------------------------------------------------------------------------


def test_uv_catapult_regime(x64):
    """uv model, GD: monotone for η < 2/λ₀; catapult (loss spike, λ falls below 2/η, then
    convergence) for 2/λ₀ < η < 4/λ₀; divergence beyond (docs/theory.md §4.3)."""
    toy = uv(20, 0.0)
    params = toy.init(jax.random.key(3))
    lam0 = float(uv_lambda(params))
    runs = {}
    for k in (1.5, 3.0, 4.5):
        runs[k] = simulate(toy, {"name": "constant", "stepsize": k / lam0}, 600,
                           key=jax.random.key(0), params=params, sharpness=None,
                           divergence_threshold=1e8)
    stable, catapult, diverging = runs[1.5], runs[3.0], runs[4.5]
    assert not stable.config["diverged"] and np.all(np.diff(stable["loss"]) <= 1e-15)
    assert not catapult.config["diverged"]
    assert catapult["loss"].max() > 2 * catapult["loss"][0]  # the spike
    assert catapult["loss"][-1] < 1e-8 * catapult["loss"][0]  # then convergence
    assert (3.0 / lam0) * catapult["lam"][-1] < 2.0  # to a flatter region: ηλ < 2
    assert diverging.config["diverged"] and diverging.config["diverged_at"] < 100


def test_zhu_gd_settles_at_the_edge(x64):
    """GD on ¼(a²b² − 1)² started with ηλ₀ > 2 ends at sharpness ≈ 2/η, (c, d) ≈ ((η⁻² − 4)^¼, 1)."""
    eta = 0.2
    tr = simulate(zhu(), {"name": "constant", "stepsize": eta}, 3000, key=jax.random.key(0))
    assert eta * tr["sharpness"][0] > 2
    assert tr["sharpness"][-1] == pytest.approx(2 / eta, rel=0.02)
    assert tr["c"][-1] == pytest.approx((eta**-2 - 4) ** 0.25, rel=0.02)
    assert tr["d"][-1] == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=8)
@given(product=st.one_of(st.floats(0.2, 1.9), st.floats(2.1, 3.0)))
def test_quadratic_diverges_exactly_above_two(product):
    """GD on a quadratic with top eigenvalue λ: diverged iff ηλ > 2 (docs/theory.md §1)."""
    eta = product / 4.0
    tr = simulate(QUAD, constant(eta), 400, key=jax.random.key(0), params=QUAD_P0,
                  divergence_threshold=1e10, tuner_config={"name": "constant", "stepsize": eta})
    assert tr.config["diverged"] == (product > 2)
    if product > 2:
        t = tr.config["diverged_at"]
        assert len(tr) == t + 1 and tr["loss"][-1] > 1e10


QUAD = quadratic([0.5, 4.0])
QUAD_P0 = jnp.asarray([1.0, 1.0])


def test_simulate_records_divergence_without_exception():
    """Non-finite values never raise: the run freezes, the trace ends at the diverged step."""
    tr = simulate(QUAD, {"name": "constant", "stepsize": 2.0}, 300, key=jax.random.key(0),
                  params=QUAD_P0)
    assert tr.config["diverged"]
    t = tr.config["diverged_at"]
    assert len(tr) == t + 1
    assert not np.isfinite(tr["loss"][-1]) or not np.isfinite(tr["grad_norm_sq"][-1]) or t > 0
    assert np.all(np.isfinite(tr["loss"][:-1]))
    final = tr.meta["final_params"]
    assert np.all(np.isfinite(np.asarray(final)))


def test_trace_columns_and_config(tmp_path):
    toy = self_stabilization(1.0, 1.0, 1.0, init_x=0.5)
    tr = simulate(toy, "armijo-jax", 30, key=jax.random.key(7), sharpness_every=5)
    for col in ("step", "loss", "grad_norm_sq", "stepsize", "sharpness", "normalized_sharpness",
                "hvps", "wall_time", "tuner_num_trials", "tuner_skipped", "x", "lam"):
        assert col in tr, col
    measured = np.isfinite(tr["sharpness"])
    np.testing.assert_array_equal(measured, tr["step"] % 5 == 0)
    x, lam = tr["x"], tr["lam"]
    np.testing.assert_allclose(tr["sharpness"][measured],
                               lam[measured] / 2 + np.sqrt(lam[measured] ** 2 / 4 + x[measured] ** 2),
                               rtol=1e-5)
    np.testing.assert_allclose(tr["loss"], -(tr["lam"] - 1.0) + 0.5 * lam * x * x, rtol=1e-4,
                               atol=1e-5)
    cfg = tr.config
    assert cfg["toy"]["name"] == "self_stabilization" and cfg["tuner"]["preset"] == "armijo-jax"
    assert cfg["steps"] == 30 and cfg["sharpness"] == "toy" and not cfg["diverged"]
    tr.save(tmp_path / "run")
    back = load_trace(tmp_path / "run")
    np.testing.assert_allclose(back["stepsize"], tr["stepsize"])


@pytest.mark.slow
def test_lanczos_sharpness_matches_dense():
    toy = two_layer_net(key=jax.random.key(0), num_data=16, input_dim=3, width=6)
    a = simulate(toy, {"name": "constant", "stepsize": 0.05}, 6, key=jax.random.key(1),
                 sharpness="dense")
    b = simulate(toy, {"name": "constant", "stepsize": 0.05}, 6, key=jax.random.key(1),
                 sharpness="lanczos", lanczos_tol=1e-5)
    np.testing.assert_allclose(b["sharpness"], a["sharpness"], rtol=1e-3)
    assert np.all(b["hvps"] > 0) and np.all(a["hvps"] == 0)


TOYS = {
    "quadratic": lambda: quadratic([0.5, 2.0, 3.0]),
    "second_order_regression_1d": lambda: second_order_regression_1d(1.0, 0.8),
    "uv": lambda: uv(4, 0.5),
    "zhu": lambda: zhu(),
    "self_stabilization": lambda: self_stabilization(1.0, 1.0, 1.0, sharpening_limit=10.0),
    "two_layer_net": lambda: two_layer_net(key=jax.random.key(0), num_data=8, input_dim=2, width=4),
}
TUNERS = ["constant", "armijo-jax", "sps-0.5", "cdat-edge"]
# One pair per toy and per tuner runs by default; the whole matrix with ``pytest -m slow``.
_FAST_PAIRS = {
    ("quadratic", "cdat-edge"),
    ("second_order_regression_1d", "armijo-jax"),
    ("uv", "sps-0.5"),
    ("zhu", "constant"),
    ("self_stabilization", "sps-0.5"),
    ("two_layer_net", "constant"),
}
_MATRIX = [
    pytest.param(toy, tuner, id=f"{toy}-{tuner}",
                 marks=() if (toy, tuner) in _FAST_PAIRS else pytest.mark.slow)
    for toy in sorted(TOYS) for tuner in TUNERS
]


@pytest.mark.parametrize("toy_name, tuner", _MATRIX)
def test_simulate_every_tuner_on_every_toy(toy_name, tuner):
    """Every tuner runs on every toy: finite records, the stepsize column is the tuner's
    (η = read_stepsize), and consecutive records obey w_{t+1} = w_t − η_t g_t through the
    first-order identity f(w_{t+1}) − f(w_t) ≈ −η_t‖g_t‖² for small steps."""
    config = tuner_config(tuner, stepsize=0.05) if tuner == "constant" else tuner_config(tuner)
    tr = simulate(TOYS[toy_name](), config, 8, key=jax.random.key(0))
    assert len(tr) == 8 and not tr.config["diverged"]
    for col in ("loss", "grad_norm_sq", "stepsize", "sharpness"):
        assert np.all(np.isfinite(tr[col])), col
    assert np.all(tr["stepsize"] >= 0)
    np.testing.assert_allclose(tr["normalized_sharpness"], tr["stepsize"] * tr["sharpness"])
    if tuner == "armijo-jax":  # an accepted step satisfied sufficient decrease (c = 0.1)
        ok = tr["tuner_failed"][:-1] == 0
        lhs, rhs = tr["loss"][1:], tr["loss"][:-1] - 0.1 * tr["stepsize"][:-1] * tr["grad_norm_sq"][:-1]
        assert np.all(lhs[ok] <= rhs[ok] + 1e-5 * (1 + np.abs(rhs[ok])))
    if tuner == "sps-0.5":  # η = min(f/(c‖g‖²), γ_max) with c = 0.5, γ_max = 1
        live = tr["grad_norm_sq"] > 1e-30  # below: the zero-gradient guard (η = 0)
        expected = np.minimum(tr["loss"][live] / (0.5 * tr["grad_norm_sq"][live]), 1.0)
        np.testing.assert_allclose(tr["stepsize"][live], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(sharpness="power"), "sharpness must be one of"),
        (dict(sharpness_every=0), "sharpness_every must be an integer >= 1"),
        (dict(key=None), "key is required"),
        (dict(tuner="nope"), "name_or_preset must be"),
        (dict(divergence_threshold=-1.0), "divergence_threshold must be"),
    ],
)
def test_simulate_rejects_bad_input(kwargs, match):
    args = dict(tuner="constant", steps=5, key=jax.random.key(0))
    if kwargs.get("tuner") is None:
        args["tuner"] = {"name": "constant", "stepsize": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        simulate(QUAD, args.pop("tuner"), args.pop("steps"), **args)


def test_sweep_uv_catapult_boundaries():
    """The uv map in a sweep: converges below 2/λ₀, catapults to ηλ < 2 for 2/λ₀ < η < 4/λ₀,
    diverges above 4/λ₀ (λ₀ = 2 here)."""
    etas = np.array([0.5, 1.5, 1.9, 2.2])
    res = sweep("uv", "constant", {"eta": etas}, steps=600,
                fixed={"width": 20, "target": 0.0, "init_f": 1.0, "init_lam": 2.0})
    np.testing.assert_array_equal(res["diverged"], [False, False, False, True])
    final = etas[:3] * res["final_sharpness"][:3]
    assert np.all(final < 2.0)
    assert final[1] < 1.0 and final[2] < 1.0  # the catapult lands well inside the stable region
