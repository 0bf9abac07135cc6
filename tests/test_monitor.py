"""eosmodel.Monitor in a user's own loop: the trainer's estimates and columns, the preconditioned
sharpness of Adam, and the examples of docs/examples/ (executed here)."""

import importlib.util
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import eosmodel
from eosmodel import tuners
from eosmodel.fit import prepare
from eosmodel.monitor import Monitor, adam_preconditioner
from eosmodel.sharpness import dense_hessian
from eosmodel.trace import load_trace

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _problem(n=40, d=5, h=6, c=3):
    kx, kw, k1, k2 = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(kx, (n, d))
    y = jax.nn.one_hot(jnp.argmax(x @ jax.random.normal(kw, (d, c)), axis=1), c)
    params = {"w1": jax.random.normal(k1, (d, h)) / math.sqrt(d), "w2": jax.random.normal(k2, (h, c)) / math.sqrt(h)}

    def loss_fn(p, batch):
        xb, yb = batch
        return 0.5 * jnp.mean(jnp.sum((jnp.tanh(xb @ p["w1"]) @ p["w2"] - yb) ** 2, axis=1))

    return loss_fn, params, (x, y)


def test_monitor_matches_dense_hessian_and_writes_the_trainers_columns(tmp_path, x64):
    loss_fn, params, data = _problem()
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    data = jax.tree.map(lambda a: a.astype(jnp.float64), data)
    opt = tuners.armijo(c=0.1)
    opt_state = opt.init(params)
    mon = Monitor(loss_fn, data, tmp_path / "run", key=jax.random.key(0), every=3, k=2, tol=1e-8,
                  chunk_size=16, flush_every=4, grad_curvature=True, config={"note": "pytree"})
    expected = {}
    for t in range(10):
        value, grad = jax.value_and_grad(loss_fn)(params, data)
        updates, opt_state = opt.update(grad, opt_state, params, value=value, grad=grad,
                                        value_fn=lambda p: loss_fn(p, data))
        mon.record(t, params, loss=value, grad=grad, opt_state=opt_state)
        if t % 3 == 0:
            hess = np.asarray(dense_hessian(loss_fn, params, data))
            g = np.asarray(ravel_pytree(grad)[0])
            expected[t] = (np.linalg.eigvalsh(hess)[::-1][:2], g @ hess @ g / (g @ g), float(tuners.read_stepsize(opt_state)))
        params = optax.apply_updates(params, updates)
    trace = mon.close()
    assert mon._measure._cache_size() == 1  # compiled once for the whole run

    assert list(trace["step"]) == list(range(10))
    for t in range(10):
        if t in expected:
            eigs, curv, eta = expected[t]
            np.testing.assert_allclose([trace["sharpness"][t], trace["sharpness_2"][t]], eigs, rtol=1e-6)
            np.testing.assert_allclose(trace["grad_curvature"][t], curv, rtol=1e-6)
            np.testing.assert_allclose(trace["normalized_sharpness"][t], eta * eigs[0], rtol=1e-6)
            assert trace["stepsize"][t] == eta and trace["hvps"][t] > 0 and trace["sharpness_converged"][t] == 1
        else:
            assert np.isnan(trace["sharpness"][t]) and np.isnan(trace["grad_curvature"][t]) and trace["hvps"][t] == 0
    assert {"loss", "grad_norm_sq", "wall_time", "tuner_num_trials", "tuner_skipped"} <= set(trace.columns)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["note"] == "pytree" and config["monitor"]["every"] == 3


def test_monitor_value_and_grad_shares_its_pass_with_the_estimate(tmp_path, x64):
    """The fused path returns the exact loss and gradient, and the same estimates as record() alone."""
    loss_fn, params, data = _problem()
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    data = jax.tree.map(lambda a: a.astype(jnp.float64), data)
    runs = {}
    for fused in (True, False):
        mon = Monitor(loss_fn, data, tmp_path / f"run{fused}", key=jax.random.key(0), every=2, k=2, tol=1e-8,
                      grad_curvature=True)
        p = params
        for t in range(5):
            value, grad = mon.value_and_grad(t, p) if fused else jax.value_and_grad(loss_fn)(p, data)
            ref_value, ref_grad = jax.value_and_grad(loss_fn)(p, data)
            np.testing.assert_allclose(value, ref_value, rtol=1e-12)
            np.testing.assert_allclose(ravel_pytree(grad)[0], ravel_pytree(ref_grad)[0], rtol=1e-10, atol=1e-14)
            mon.record(t, p, loss=value, grad=grad, stepsize=0.3)
            p = jax.tree.map(lambda w, g: w - 0.3 * g, p, grad)
        runs[fused] = mon.close()
    a, b = runs[True], runs[False]
    for name in ("sharpness", "sharpness_2", "grad_curvature", "normalized_sharpness", "loss"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-7, equal_nan=True)
    assert list(np.isnan(a["sharpness"])) == [False, True, False, True, False]
    assert a["hvps"][0] > 0 and a["hvps"][1] == 0


def test_monitor_trace_is_read_by_fit(tmp_path):
    loss_fn, params, data = _problem()
    mon = Monitor(loss_fn, data, tmp_path / "run", key=jax.random.key(0), every=1)
    for t in range(12):
        value, grad = jax.value_and_grad(loss_fn)(params, data)
        mon.record(t, params, loss=value, grad=grad, stepsize=0.5)
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grad)
    mon.close()
    fit_data = prepare(tmp_path / "run")
    assert len(fit_data.measured) == 12 and np.all(fit_data.stepsize == 0.5)


def test_adam_preconditioner_is_the_one_adam_divides_by(x64):
    """P from the state reproduces Adam's step (-lr P^-1 m), and lambda_1(P^-1 H) matches dense."""
    loss_fn, params, data = _problem()
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    data = jax.tree.map(lambda a: a.astype(jnp.float64), data)
    b1, b2, eps, lr = 0.9, 0.99, 1e-6, 0.01
    opt = optax.adam(lr, b1=b1, b2=b2, eps=eps)
    opt_state = opt.init(params)
    precondition = adam_preconditioner(b1, b2, eps)
    for _ in range(3):
        grad = jax.grad(loss_fn)(params, data)
        updates, opt_state = opt.update(grad, opt_state, params)
        params = optax.apply_updates(params, updates)
    adam_state = opt_state[0]
    expected = jax.tree.map(lambda m, p: -lr * m / p, adam_state.mu, precondition(opt_state))
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10)

    import tempfile

    mon = Monitor(loss_fn, data, tempfile.mkdtemp(), key=jax.random.key(0), every=1, tol=1e-8,
                  precondition=precondition)
    value, grad = jax.value_and_grad(loss_fn)(params, data)
    mon.record(0, params, loss=value, grad=grad, stepsize=lr, opt_state=opt_state)
    trace = mon.close()
    p = np.asarray(ravel_pytree(precondition(opt_state))[0])
    hess = np.asarray(dense_hessian(loss_fn, params, data))
    want = np.max(np.linalg.eigvals(hess / p[:, None]).real)
    np.testing.assert_allclose(trace["preconditioned_sharpness"][0], want, rtol=1e-6)


def test_monitor_refuses_bad_settings(tmp_path):
    loss_fn, params, data = _problem()
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        Monitor(loss_fn, data, tmp_path / "a", key=jax.random.key(0), every=0)
    with pytest.raises(ValueError, match="every must be an integer"):
        Monitor(loss_fn, data, tmp_path / "b", key=jax.random.key(0), every=True)
    mon = Monitor(loss_fn, data, tmp_path / "c", key=jax.random.key(0))
    with pytest.raises(ValueError, match="needs the stepsize"):
        mon.record(0, params, loss=1.0)
    with pytest.raises(ValueError, match="no eosmodel tuner state"):
        mon.record(0, params, loss=1.0, opt_state=optax.sgd(0.1).init(params))
    mon.close()
    assert eosmodel.Monitor is Monitor


def _run_example(name, out, steps):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--out", str(out), "--steps", str(steps)])


def test_example_flax_loop_with_an_eosmodel_tuner(tmp_path, capsys):
    pytest.importorskip("flax")
    trace = _run_example("flax_tuner", tmp_path / "run", 21)
    assert "trace in" in capsys.readouterr().out
    reread = load_trace(tmp_path / "run")
    assert len(reread) == 21 and reread.config["tuner"]["name"] == "armijo"
    steps, lam = reread.measured("sharpness")
    assert list(steps) == [0, 10, 20] and np.all(lam > 0)
    np.testing.assert_array_equal(reread["stepsize"], trace["stepsize"])
    assert np.all(reread["tuner_num_trials"] >= 1)


def test_example_equinox_loop_with_adam(tmp_path, capsys):
    pytest.importorskip("equinox")
    trace = _run_example("equinox_adam", tmp_path / "run", 21)
    assert "threshold" in capsys.readouterr().out
    steps, pre = trace.measured("preconditioned_sharpness")
    assert list(steps) == [0, 10, 20] and np.all(pre > 0)
    # P^-1 H's top eigenvalue exceeds lambda_1(H) / max(P) (P is diagonal and positive).
    assert np.all(np.isfinite(trace.measured("sharpness")[1]))


def test_readme_monitor_example_runs(tmp_path, monkeypatch, capsys):
    """The README's "Your own training loop" block runs and writes a trace that fit reads."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "eosmodel.Monitor(" in b]
    assert len(blocks) == 1, "the README's API section shows the monitor in one Python block"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert "array([ 0, 10, 20, 30, 40, 50, 60, 70, 80, 90])" in capsys.readouterr().out
    trace = load_trace(tmp_path / "runs" / "my_loop")
    assert len(trace) == 100 and np.all(trace["stepsize"] == 0.5)
    assert len(prepare(trace).measured) == 10
