"""The joint model of docs/theory.md §5: nesting of EOS alone, closed form against its recursion,
exact Jacobian, parameter recovery within the reported (HAC) uncertainty, sampling-invariant
verdicts, skipped steps, the closed loop with the tuners' own rules, and the cross-run
prediction."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eosmodel.fit import (
    EXPLAINED,
    FitInputError,
    eos_alone_predict,
    fit_trace,
    hac_covariance,
    joint_path,
    predict_runs,
)
from eosmodel.fit._joint import JOINT_PARAMS, joint_jacobian
from eosmodel.trace import Trace


def joint_recursion(eta, w, q, lam0, alpha, kappa, beta, edge, zeta):
    """The joint model of docs/theory.md §5.2 step by step (independent of the closed form)."""
    n = len(eta)
    lam = np.empty(n)
    lam[0], e = lam0, 0.0
    for t in range(n - 1):
        nxt = lam[t] + w[t] * (alpha * np.exp(-kappa * e) - 0.5 * beta * q[t])
        e += w[t]
        lam[t + 1] = min(nxt, (2 + edge) / eta[t + 1]) if eta[t + 1] > 0 else nxt
    return lam + zeta * q


schedules = st.lists(st.sampled_from([0.0, 0.005, 0.01, 0.02, 0.04]), min_size=3, max_size=40).map(
    lambda v: np.repeat(np.where(np.arange(len(v)) == 0, 0.01, v), 4))


@given(eta=schedules, a=st.floats(0.0, 3000.0), lam0=st.floats(1.0, 400.0))
def test_eos_alone_is_the_joint_model_with_its_extra_terms_at_zero(eta, a, lam0):
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 1, eta.size)
    nested = joint_path(eta, eta, q, lam0, a, 0.0, 0.0, 0.0, 0.0).lam
    np.testing.assert_allclose(nested, eos_alone_predict(eta, a, lam0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(nested, joint_recursion(eta, eta, q, lam0, a, 0, 0, 0, 0), rtol=1e-10)
    # the ceiling holds eta_t * lambda_t <= 2 on every step taken after the first (no off-by-one)
    taken = (eta > 0) & (np.arange(eta.size) > 0)
    assert np.all(eta[taken] * nested[taken] <= 2 + 1e-9)


@settings(max_examples=30)
@given(eta=schedules, lam0=st.floats(5.0, 300.0), alpha=st.floats(0.0, 2000.0),
       kappa=st.floats(0.0, 0.5), beta=st.floats(0.0, 500.0), edge=st.floats(-1.0, 3.0),
       zeta=st.floats(0.0, 50.0))
def test_joint_closed_form_equals_its_recursion(eta, lam0, alpha, kappa, beta, edge, zeta):
    q = np.abs(np.sin(np.arange(eta.size))) * 0.1
    got = joint_path(eta, eta, q, lam0, alpha, kappa, beta, edge, zeta).lam
    want = joint_recursion(eta, eta, q, lam0, alpha, kappa, beta, edge, zeta)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * (1 + np.abs(want).max()))


def test_joint_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    eta = np.repeat(rng.uniform(0.01, 0.03, 40), 25)
    q = 0.05 * rng.uniform(0, 1, eta.size)
    theta = np.array([40.0, 900.0, 0.05, 300.0, 0.1, 20.0])
    idx = np.arange(0, eta.size, 3)
    path = joint_path(eta, eta, q, *theta, jacobian=True)
    jac = joint_jacobian(eta, eta, q, theta, path, idx)
    assert path.clipped[idx].any() and (~path.clipped[idx]).any()  # both branches exercised
    for k in range(len(JOINT_PARAMS)):
        h = 1e-6 * max(abs(theta[k]), 1.0)
        up, dn = theta.copy(), theta.copy()
        up[k] += h
        dn[k] -= h
        fd = (joint_path(eta, eta, q, *up).lam[idx] - joint_path(eta, eta, q, *dn).lam[idx]) / (2 * h)
        # piecewise smooth: compare where the binding step does not change within +-h
        same = (joint_path(eta, eta, q, *up, jacobian=True).arg[idx] ==
                joint_path(eta, eta, q, *dn, jacobian=True).arg[idx])
        np.testing.assert_allclose(jac[same, k], fd[same], rtol=1e-4, atol=1e-6, err_msg=JOINT_PARAMS[k])


def _joint_truth_trace(theta, *, steps=6000, every=1, eta=0.01, noise=0.01, rho=0.8, seed=0):
    """A trace from the open-loop joint model (theta, oscillation x recorded) with AR(1) noise of
    correlation rho on the measured sharpness (the autocorrelated residuals of an EOS run)."""
    t = np.arange(steps)
    x = 0.3 * (1 + 0.5 * np.sin(2 * np.pi * t / 700)) * np.where(t % 2, -1, 1)
    lam = joint_path(np.full(steps, eta), np.full(steps, eta), x ** 2, *theta).lam
    rng = np.random.default_rng(seed)
    e = np.empty(steps)
    e[0] = rng.standard_normal()
    for i in range(1, steps):
        e[i] = rho * e[i - 1] + np.sqrt(1 - rho * rho) * rng.standard_normal()
    sharp = lam * (1 + noise * e)
    sharp[t % every != 0] = np.nan
    return Trace.from_columns({"step": t, "stepsize": np.full(steps, eta), "sharpness": sharp,
                               "x": x}, config={"tuner": {"name": "constant", "stepsize": eta}})


def test_joint_parameters_recovered_within_reported_uncertainty():
    truth = dict(zip(JOINT_PARAMS, (150.0, 60.0, 0.02, 400.0, 0.08, 30.0)))
    report = fit_trace(_joint_truth_trace(np.array(list(truth.values())), every=7))
    joint = report.models["joint"]
    for key, value in truth.items():
        est, se = joint.physical[key], joint.physical_stderr[key]
        assert np.isfinite(se) and se > 0, key
        assert abs(est - value) < 4 * se + 1e-6 * abs(value), (key, est, se, value)
    assert report.comparison["preferred"] == "joint"
    assert report.models["eos_alone"].rss > joint.rss  # nested: never worse


def test_standard_errors_do_not_shrink_with_the_sampling_rate_of_correlated_noise():
    """HAC errors: measuring every step instead of every 10th adds correlated, not new,
    information; OLS errors would shrink by sqrt(10) ~ 3.2."""
    theta = np.array([150.0, 60.0, 0.02, 400.0, 0.08, 30.0])
    dense = fit_trace(_joint_truth_trace(theta, every=1, rho=0.97)).models["joint"]
    sparse = fit_trace(_joint_truth_trace(theta, every=10, rho=0.97)).models["joint"]
    ratio = dense.physical_stderr["alpha"] / sparse.physical_stderr["alpha"]
    assert ratio > 0.5, ratio
    assert dense.n_eff < 0.3 * dense.n  # the effective sample size sees the correlation


def test_hac_covariance_is_ols_for_independent_residuals():
    rng = np.random.default_rng(3)
    jac = rng.standard_normal((4000, 2))
    r = rng.standard_normal(4000)
    cov = hac_covariance(jac, r, lags=0)
    ols = np.linalg.inv(jac.T @ jac) * (r @ r) / 3998
    np.testing.assert_allclose(np.diag(cov), np.diag(ols), rtol=0.1)


def _edge_trace(every, *, centre=0.118, steps=3000, seed=0):
    """GD at a fixed stepsize sitting 5.9% above the edge (as measured on a digits fc-tanh run),
    a period-2 flip and a slow wander, plus a short overshoot before a spike."""
    eta = 0.05
    t = np.arange(steps)
    y = centre + 0.15 * np.where(t % 2, -1, 1) + 0.03 * np.sin(2 * np.pi * t / 400)
    y[1200:1230] += 0.4  # a short transient
    lam = (2 + y) / eta
    lam[:300] = np.linspace(10, lam[300], 300)  # progressive sharpening first
    rng = np.random.default_rng(seed)
    sharp = lam * (1 + 0.002 * rng.standard_normal(steps))
    sharp[t % every != 0] = np.nan
    return {"step": t, "stepsize": np.full(steps, eta), "sharpness": sharp}


@pytest.mark.parametrize("every", [1, 7, 51])
def test_verdict_of_a_run_at_the_edge_does_not_depend_on_the_sampling_rate(every):
    report = fit_trace(_edge_trace(every))
    assert report.verdict == EXPLAINED, [w.reason for w in report.windows]


def test_a_run_clearly_above_the_edge_is_flagged_at_any_sampling_rate():
    for every in (1, 51):
        assert fit_trace(_edge_trace(every, centre=0.45)).verdict.startswith("fails: above ceiling")


def test_skipped_steps_are_masked_not_refused():
    eta = np.full(2000, 0.01)
    eta[::37] = 0.0  # steps the tuner skipped (status recorded): no step, no ceiling
    lam = eos_alone_predict(eta, 300.0, 100.0)
    assert np.all(np.diff(lam)[eta[:-1] == 0] <= 0)  # no sharpening over a skipped step
    sharp = np.where(np.arange(2000) % 5 == 0, lam, np.nan)
    report = fit_trace({"step": np.arange(2000), "stepsize": eta, "sharpness": sharp,
                        "tuner_status": np.where(eta == 0, 2.0, 0.0)})
    assert report.models["eos_alone"].physical["a"] == pytest.approx(300.0, rel=1e-6)
    assert report.verdict == EXPLAINED
    assert report.data.skipped.size == int(np.sum(eta == 0))


@pytest.mark.parametrize("kwargs,match", [
    ({"edge_tol": float("inf")}, "edge_tol must be a finite"),
    ({"edge_tol": -0.1}, "edge_tol must be a finite"),
    ({"windows": 2.5}, "windows must be"),
    ({"windows": [0, "100"]}, "windows must be"),
    ({"trend_window": 1}, "trend_window"),
])
def test_bad_fit_arguments(kwargs, match):
    with pytest.raises(FitInputError, match=match):
        fit_trace(_edge_trace(7), **kwargs)


# ------------------------------------------------------------------------------------------------
# Closed loop: the tuner's own rule on the joint model's reduced loss.
# ------------------------------------------------------------------------------------------------


def _polyak_toy_trace():
    from eosmodel import dynamics, toys, tuners

    toy = toys.self_stabilization(alpha=1.0, beta=1.0, lambda0=6.0, sharpening_limit=12.0,
                                  bulk_eigenvalues=[0.02], init_x=0.1, bulk_init_scale=30.0)
    with jax.enable_x64(True):
        return dynamics.simulate(toy, tuners.polyak(c=0.5, max_stepsize=0.5), 3000,
                                 key=jax.random.key(0))


def test_closed_loop_polyak_runs_above_the_edge_where_the_real_tuner_does():
    """The optax Polyak tuner on the self-stabilisation toy (with a bulk holding loss) runs above
    ηλ = 2; the closed loop, whose Polyak rule sees the smooth part and the oscillation energy,
    does too (a rule that saw only ½λx² would give ηλ = 1/(2c) = 1)."""
    trace = _polyak_toy_trace()
    nl = np.asarray(trace["stepsize"]) * np.asarray(trace["lam"])
    k = (nl.size - 500) // 2
    measured_centre = np.median(0.5 * (nl[500:500 + 2 * k:2] + nl[501:501 + 2 * k:2]))
    assert measured_centre > 2.02
    report = fit_trace(trace, closed_loop={"name": "polyak", "c": 0.5, "max_stepsize": 0.5})
    errors = report.models["joint_closed"].extra["errors"]
    assert errors["centre_eta_lambda_predicted"] > 2.0
    assert errors["centre_eta_lambda_predicted"] == pytest.approx(measured_centre, abs=0.05)
    assert abs(errors["final_sharpness_rel_error"]) < 0.2


def test_closed_loop_reports_its_uncertainty_or_why_not():
    trace = _joint_truth_trace(np.array([150.0, 60.0, 0.0, 400.0, 0.0, 0.0]), every=10, steps=3000)
    closed = fit_trace(trace, closed_loop="auto").models["joint_closed"]
    unseen = [k for k, v in closed.stderr.items() if not np.isfinite(v)]
    assert len(unseen) < len(closed.stderr)  # some parameters identified ...
    if unseen:  # ... and the others named, with the reason
        assert any("not identified" in n and all(k in n for k in unseen) for n in closed.notes)


def test_prediction_across_runs_fits_nothing_on_the_targets(tmp_path):
    """Sources: two fixed-stepsize runs of the toy; target: the Polyak run. Changing the target's
    measured sharpness changes the reported errors but not the prediction."""
    from eosmodel import dynamics, toys, tuners

    toy = toys.self_stabilization(alpha=1.0, beta=1.0, lambda0=6.0, sharpening_limit=12.0,
                                  bulk_eigenvalues=[0.02], init_x=0.1, bulk_init_scale=30.0)
    paths = []
    with jax.enable_x64(True):
        for eta in (0.15, 0.2):  # below 2/lambda_inf and at the edge
            tr = dynamics.simulate(toy, tuners.constant(eta), 1500, key=jax.random.key(0))
            assert not tr.config["diverged"]
            cols = dict(tr.columns)
            paths.append(Trace.from_columns(cols, {"tuner": {"name": "constant", "stepsize": eta}}))
    target = _polyak_toy_trace()
    cols = dict(target.columns)
    cfg = {"tuner": {"name": "polyak", "c": 0.5, "max_stepsize": 0.5, "f_star": 0.0}}
    a = predict_runs([Trace.from_columns(cols, cfg)], paths)[0]
    cols["sharpness"] = np.asarray(cols["sharpness"]) * 1.5
    b = predict_runs([Trace.from_columns(cols, cfg)], paths)[0]
    np.testing.assert_array_equal(a.joint_run.stepsize, b.joint_run.stepsize)
    assert a.joint["final_sharpness_measured"] != b.joint["final_sharpness_measured"]
    json.dumps(a.to_dict())  # strict JSON


# ------------------------------------------------------------------------------------------------
# One definition per tuner: the fit's closed loop calls the tuners' own rule.
# ------------------------------------------------------------------------------------------------


@settings(max_examples=25)
@given(lam=st.floats(0.5, 50.0), x=st.floats(-1.0, 1.0), ls=st.floats(0.0, 2.0),
       clock=st.floats(0.0, 30.0), zeta=st.floats(0.0, 5.0), rho=st.floats(0.0, 2.0),
       c=st.floats(0.05, 0.9), cap=st.floats(0.01, 2.0), sigma=st.floats(0.5, 2.5))
def test_closed_loop_stepsize_is_the_tuners_rule_on_the_reduced_loss(lam, x, ls, clock, zeta, rho,
                                                                     c, cap, sigma):
    """The closed loop's eta (eosmodel.fit -> eosmodel.toys.map_rule) equals the pure rule of
    eosmodel.tuners fed the reduced loss's f, ‖g‖², slope, curvature and trial function, to 1e-12
    in float64, for every tuner: the third use of the one definition."""
    import jax.numpy as jnp

    from eosmodel.fit import JointModel, JointState, SmoothPart
    from eosmodel.fit._closed import closed_rule
    from eosmodel.tuners import build_rule, tuner_config

    with jax.enable_x64(True):
        smooth = SmoothPart(clock=jnp.array([0.0, 10.0, 40.0]), mu=jnp.array([0.3, 0.1, 0.02]),
                            tail=1.5, loss0=1.0)
        model = JointModel(1.0, 0.01, 4.0, zeta, rho, smooth)
        s = JointState(*(jnp.float64(v) for v in (lam, x, ls, clock)))
        f, g2 = model.loss(s), model.grad_norm_sq(s)
        configs = [{"name": "constant", "stepsize": 0.1}, {"name": "oracle", "sigma": sigma},
                   {"name": "polyak", "c": c, "max_stepsize": cap},
                   {"name": "armijo", "c": min(c, 0.5), "max_stepsize": cap},
                   {"name": "cdat", "sigma": sigma}]
        for cfg in configs:
            mr = closed_rule(cfg)
            eta_fit = float(mr.update(model, s, mr.init(model, s))[0])
            rule = build_rule(tuner_config(cfg["name"], **{k: v for k, v in cfg.items() if k != "name"}))
            rs = rule.init(f)
            if cfg["name"] == "constant":
                eta = rule(rs, finite=jnp.asarray(True), dtype=f.dtype)[0]
            elif cfg["name"] == "oracle":
                eta = rule(rs, sharpness=model.sharpness(s))[0]
            elif cfg["name"] == "polyak":
                eta = rule(rs, value=f, grad_norm_sq=g2)[0]
            elif cfg["name"] == "armijo":
                eta = rule(rs, value=f, slope=g2, trial=lambda e: model.loss(model.step(s, e)))[0]
            else:
                eta = rule(rs, slope=g2, curvature=model.curvature(s))[0]
            assert eta_fit == pytest.approx(float(eta), rel=1e-12, abs=1e-300), cfg
