"""The training loop against its mathematical contracts, on tiny synthetic problems.

Replays in plain JAX (no chunks, no tuner objects) check what the trace says: the loss, the
squared gradient norm and the stepsize of every step, the mini-batch sampling without
replacement, and the sharpness against a dense Hessian. Tuner runs are checked against their
defining inequalities/formulas re-evaluated from the trace.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eosmodel.sharpness import dense_top_eigenpairs, hvp
from eosmodel.train import init_model, load_checkpoint, load_dataset, make_loss_fn, make_model, run_training
from eosmodel.train._loop import Chunks, chunk_mean, split_chunks

DATA = {"name": "synthetic", "n_train": 60, "n_test": 20, "num_classes": 3, "input_shape": [5]}
MODEL = {"name": "fc-tanh", "width": 8, "depth": 2}


def _config(tuner, **train):
    return {
        "data": DATA,
        "model": MODEL,
        "tuner": tuner,
        "train": {"steps": 12, "chunk_size": 25, "log_every": 5, "eval_every": 10, "checkpoint_every": 0, **train},
        "sharpness": {"every": 4, "k": 2, "tol": 1e-4, "grad_curvature": True},
    }


@pytest.fixture(scope="module")
def problem():
    ds = load_dataset(DATA)
    model = make_model(MODEL, ds.num_classes)
    fns = make_loss_fn(model, {"name": "mse"}, ds.num_classes)
    # Documented key derivation: init key = fold_in(key(seed), 0), data key = fold_in(key(seed), 1).
    root = jax.random.key(0)
    params = init_model(model, jax.random.fold_in(root, 0), ds.x_train[:1])["params"]
    return ds, fns, params, jax.random.fold_in(root, 1)


@pytest.fixture(scope="module")
def gd_run(tmp_path_factory):
    return run_training(_config({"name": "constant", "stepsize": 0.3}), tmp_path_factory.mktemp("gd") / "run", progress=False)


def test_chunk_mean_is_the_exact_mean(problem):
    ds, fns, params, _ = problem
    data = (jnp.asarray(ds.x_train), jnp.asarray(ds.y_train))
    ref_v, ref_g = jax.value_and_grad(fns.loss)(params, data)
    for c in (7, 100):  # 8 chunks + a remainder of 4; one chunk larger than n
        chunks = split_chunks(data, c)
        value, grad = jax.jit(lambda ch: chunk_mean(lambda b: jax.value_and_grad(fns.loss)(params, b), ch))(chunks)
        np.testing.assert_allclose(value, ref_v, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_g)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        v = jax.tree.map(jnp.ones_like, params)
        hv = jax.jit(lambda ch: chunk_mean(lambda b: hvp(fns.loss, params, b, v), ch))(chunks)
        for a, b in zip(jax.tree.leaves(hv), jax.tree.leaves(hvp(fns.loss, params, data, v))):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert split_chunks(data, 25).rem is not None and split_chunks(data, 20).rem is None
    assert isinstance(split_chunks(data, 25), Chunks)


def test_full_batch_gd_matches_plain_replay_and_dense_sharpness(problem, gd_run):
    ds, fns, params, _ = problem
    tr = gd_run.trace
    assert gd_run.status == "completed" and len(tr) == 12
    np.testing.assert_array_equal(tr["step"], np.arange(12))
    data = (jnp.asarray(ds.x_train), jnp.asarray(ds.y_train))
    vg = jax.jit(jax.value_and_grad(fns.loss))
    p = params
    for t in range(12):
        value, grad = vg(p, data)
        gns = sum(float(jnp.vdot(g, g)) for g in jax.tree.leaves(grad))
        np.testing.assert_allclose(tr["loss"][t], value, rtol=2e-5)
        np.testing.assert_allclose(tr["grad_norm_sq"][t], gns, rtol=2e-4)
        assert tr["stepsize"][t] == np.float32(0.3)
        if t % 4 == 0:
            dense = dense_top_eigenpairs(fns.loss, p, data, k=2).eigenvalues
            np.testing.assert_allclose(tr["sharpness"][t], dense[0], rtol=2e-3)
            np.testing.assert_allclose(tr["sharpness_2"][t], dense[1], rtol=2e-3)
            np.testing.assert_allclose(tr["normalized_sharpness"][t], 0.3 * tr["sharpness"][t], rtol=1e-6)
            hg = hvp(fns.loss, p, data, grad)
            curvature = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(hg))) / gns
            np.testing.assert_allclose(tr["grad_curvature"][t], curvature, rtol=1e-3)
            assert tr["grad_curvature"][t] <= dense[0] * (1 + 1e-5)  # a Rayleigh quotient
            assert tr["hvps"][t] > 1  # the estimate's and one for the curvature
        else:
            assert np.isnan(tr["sharpness"][t]) and np.isnan(tr["grad_curvature"][t]) and tr["hvps"][t] == 0
        p = jax.tree.map(lambda w, g: w - 0.3 * g, p, grad)
    # Held-out metrics at eval_every, NaN elsewhere; final loss in the summary is f(w_T).
    assert np.isfinite(tr["test_loss"][[0, 10]]).all() and np.isnan(np.delete(tr["test_loss"], [0, 10])).all()
    np.testing.assert_allclose(gd_run.summary["final_train_loss"], vg(p, data)[0], rtol=2e-5)
    assert np.all(np.diff(tr["wall_time"]) >= 0)


def test_run_directory_contents(gd_run):
    d = gd_run.run_dir
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["tuner"] == {"name": "constant", "stepsize": 0.3}
    assert cfg["train"]["steps"] == 12 and cfg["sharpness"]["k"] == 2
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 12
    assert (d / "checkpoint.npz").exists()  # the final checkpoint
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(cfg, d, progress=False)


def test_armijo_trace_satisfies_sufficient_decrease(tmp_path):
    cfg = _config({"preset": "armijo-jax"}, steps=15)
    cfg["sharpness"] = {"every": 0}  # not needed here: a smaller program to compile
    res = run_training(cfg, tmp_path / "armijo", progress=False)
    tr = res.trace
    c = res.trace.config["tuner"]["c"]
    ok = tr["tuner_failed"][:-1] == 0
    assert ok.all()
    # f(w_{t+1}) <= f(w_t) - c * eta_t * ||g_t||^2 with the FULL loss (full batch).
    lhs, rhs = tr["loss"][1:], tr["loss"][:-1] - c * tr["stepsize"][:-1] * tr["grad_norm_sq"][:-1]
    assert np.all(lhs <= rhs + 1e-6 * np.abs(tr["loss"][:-1]))
    # Backtracking grid: eta_t = eta0_t * beta^(trials-1).
    beta = res.trace.config["tuner"]["decrease_factor"]
    np.testing.assert_allclose(tr["stepsize"], tr["tuner_initial_stepsize"] * beta ** (tr["tuner_num_trials"] - 1), rtol=1e-5)


def test_polyak_trace_follows_its_formula(tmp_path):
    cfg = _config({"preset": "sps-0.5"}, steps=10)
    cfg["sharpness"] = {"every": 0}
    res = run_training(cfg, tmp_path / "sps", progress=False)
    tr, hyper = res.trace, res.trace.config["tuner"]
    expected = np.minimum((tr["loss"] - hyper["f_star"]) / (hyper["c"] * tr["grad_norm_sq"]), hyper["max_stepsize"])
    np.testing.assert_allclose(tr["stepsize"], expected, rtol=1e-4)


def test_minibatch_sgd_samples_without_replacement(problem, tmp_path):
    ds, fns, params, data_key = problem
    cfg = _config({"name": "constant", "stepsize": 0.2}, steps=9, batch_size=20, chunk_size=8)
    cfg["sharpness"] = {"every": 0}
    res = run_training(cfg, tmp_path / "sgd", progress=False)
    tr = res.trace
    n, b = 60, 20
    np.testing.assert_array_equal(tr["epoch"], np.arange(9) // 3)
    vg = jax.jit(jax.value_and_grad(fns.loss))
    p, seen = params, {}
    for t in range(9):
        epoch, pos = divmod(t, n // b)
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))
        idx = perm[pos * b : (pos + 1) * b]
        seen.setdefault(epoch, []).extend(idx.tolist())
        value, grad = vg(p, (jnp.asarray(ds.x_train[idx]), jnp.asarray(ds.y_train[idx])))
        np.testing.assert_allclose(tr["loss"][t], value, rtol=2e-5)
        p = jax.tree.map(lambda w, g: w - 0.2 * g, p, grad)
    for epoch, idx in seen.items():
        assert sorted(idx) == list(range(n)), f"epoch {epoch} does not visit every example once"
    assert sorted(seen[0]) == sorted(seen[1]) and seen[0] != seen[1]  # fresh order per epoch


def test_divergence_stops_cleanly(tmp_path, capsys):
    from eosmodel.cli import main

    cfg = _config({"name": "constant", "stepsize": 1e4}, steps=200, log_every=10)
    cfg["sharpness"] = {"every": 0}
    path = tmp_path / "div.json"
    path.write_text(json.dumps(cfg))
    code = main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "non-finite" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    t = summary["diverged_at_step"]
    assert summary["status"] == "diverged" and 0 < t < 200
    from eosmodel.trace import load_trace

    tr = load_trace(tmp_path / "run")
    assert tr["step"][-1] == t and tr["diverged"][-1] == 1
    assert not np.isfinite(tr["loss"][-1]) or not np.isfinite(tr["grad_norm_sq"][-1])
    assert np.isfinite(tr["loss"][:-1]).all()


def test_checkpoint_roundtrip(gd_run, problem):
    _, _, params, _ = problem
    state, meta = load_checkpoint(gd_run.run_dir, _template(gd_run))
    assert meta["step"] == 12
    assert int(state.step) == 12
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(gd_run.run_dir, {"params": params})


def _template(result):
    """The TrainState structure of a run (rebuilt the way run_training builds it)."""
    from eosmodel.sharpness import SharpnessTracker
    from eosmodel.train._loop import TrainState
    from eosmodel.tuners import make_tuner

    cfg = result.trace.config
    ds = load_dataset(cfg["data"])
    model = make_model(cfg["model"], ds.num_classes)
    params = init_model(model, jax.random.key(0), ds.x_train[:1])["params"]
    tracker = SharpnessTracker(k=cfg["sharpness"]["k"], tol=cfg["sharpness"]["tol"]).init(params, jax.random.key(1))
    tx = make_tuner(cfg["tuner"])
    return TrainState(params, {}, tx.init(params), tracker, jnp.zeros((0,), jnp.int32), jnp.zeros((), jnp.int32))
