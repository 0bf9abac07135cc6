"""Your own model and data in a run config (model.factory / data.factory), given initial weights
(model.init_from), and a factory run killed with SIGKILL then resumed. The model and the data are
defined in this module and named as "test_train_factory:tiny_mlp" with tests/ on the path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eosmodel.cli import main
from eosmodel.trace import load_trace
from eosmodel.train import build_model, init_model, load_params, normalize_config, run_training, save_params

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


class TinyMLP(nn.Module):
    width: int
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.tanh(nn.Dense(self.width, name="hidden")(x.reshape((x.shape[0], -1))))
        return nn.Dense(self.num_classes, name="out")(x)


def tiny_mlp(num_classes: int, width: int = 8) -> nn.Module:
    """A model factory: model.factory = "test_train_factory:tiny_mlp"."""
    return TinyMLP(width=width, num_classes=num_classes)


def blobs(n: int = 64, dim: int = 5, classes: int = 3, seed: int = 0) -> dict:
    """A data factory: Gaussian blobs around random class centres (data.factory = "test_train_factory:blobs")."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2
    y = rng.integers(0, classes, size=n + 32)
    x = centres[y] + rng.normal(size=(n + 32, dim))
    return {"x_train": x[:n], "y_train": y[:n], "x_test": x[n:], "y_test": y[n:], "num_classes": classes}


def not_a_module(num_classes: int):
    return lambda x: x


CONFIG = {
    "data": {"factory": "test_train_factory:blobs", "args": {"n": 64, "seed": 1}, "n_train": 0, "n_test": 0},
    "model": {"factory": "test_train_factory:tiny_mlp", "args": {"width": 8}},
    "tuner": {"name": "gd", "lr": 0.5},
    "train": {"steps": 600, "log_every": 5, "eval_every": 50, "checkpoint_every": 15},
    "sharpness": {"eig_freq": 5},
}


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def test_factories_are_validated_recorded_and_trained(tmp_path, on_path):
    cfg = normalize_config({**CONFIG, "train": {"steps": 12, "log_every": 4}})
    assert cfg["model"] == {"factory": "test_train_factory:tiny_mlp", "args": {"width": 8}, "init_from": ""}
    assert cfg["tuner"] == {"name": "constant", "stepsize": 0.5} and cfg["sharpness"]["every"] == 5
    result = run_training(cfg, tmp_path / "run", progress=False)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["data"]["factory"] == "test_train_factory:blobs" and stored["data"]["args"] == {"n": 64, "seed": 1}
    assert result.summary["n_train"] == 64 and result.summary["num_params"] == 5 * 8 + 8 + 8 * 3 + 3
    assert np.isfinite(result.trace["sharpness"][0]) and result.trace["stepsize"][0] == 0.5

    for bad, match in (
        ({"model": {"factory": "test_train_factory"}}, 'of the form "package.module:function"'),
        ({"model": {"factory": "test_train_factory:nope"}}, "has no attribute 'nope'"),
        ({"model": {"factory": "no_such_module_xyz:f"}}, "cannot be imported"),
        ({"model": {"factory": "test_train_factory:tiny_mlp", "width": 64}}, "model.width = 64 has no effect"),
        ({"data": {"factory": "test_train_factory:blobs", "name": "cifar10"}}, "data.name = 'cifar10' has no effect"),
    ):
        with pytest.raises(ValueError, match=match):
            normalize_config(bad)
    with pytest.raises(ValueError, match="must return a flax.linen.Module"):
        build_model({"factory": "test_train_factory:not_a_module"}, 3)


def test_init_from_npz_is_checked_against_the_shapes(tmp_path, on_path):
    cfg = normalize_config({**CONFIG, "train": {"steps": 1, "eval_every": 0}, "sharpness": {"every": 0}})
    model = build_model(cfg["model"], 3)
    params = init_model(model, jax.random.key(7), jnp.zeros((1, 5)))["params"]
    params = jax.tree.map(lambda p: 0.5 * p + 0.01, params)
    path = save_params(params, tmp_path / "w.npz")
    assert sorted(np.load(path).files) == ["hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    loaded = load_params(path, params)
    jax.tree.map(np.testing.assert_array_equal, loaded, params)

    cfg["model"]["init_from"] = str(path)
    result = run_training(cfg, tmp_path / "run", progress=False)
    data = blobs(64, seed=1)
    x, y = jnp.asarray(data["x_train"], jnp.float32), jax.nn.one_hot(data["y_train"], 3)
    want = 0.5 * jnp.mean(jnp.sum((model.apply({"params": params}, x) - y) ** 2, axis=1))
    np.testing.assert_allclose(result.trace["loss"][0], want, rtol=1e-5)

    wrong = dict(params, out={"kernel": np.zeros((8, 4), np.float32), "bias": np.zeros(3, np.float32)})
    save_params(wrong, tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"out/kernel has shape \(8, 4\), the model needs \(8, 3\)"):
        load_params(tmp_path / "bad.npz", params)
    np.savez(tmp_path / "keys.npz", kernel=np.zeros(3))
    with pytest.raises(ValueError, match="does not match the model's parameters"):
        load_params(tmp_path / "keys.npz", params)


def _rows(path: Path) -> int:
    try:
        return max(path.read_bytes().count(b"\n") - 1, 0)
    except FileNotFoundError:
        return 0


def test_factory_run_killed_then_resumed_matches_an_uninterrupted_run(tmp_path, on_path):
    cfg_path = tmp_path / "run.json"
    cfg_path.write_text(json.dumps(CONFIG))
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eosmodel", "train", str(cfg_path), "--out", str(run_dir), "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "checkpoint.npz").exists() or _rows(run_dir / "trace.jsonl") <= 20:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 600 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and not (run_dir / "summary.json").exists()
    assert 0 < len(load_trace(run_dir)) < CONFIG["train"]["steps"]

    # The resume rebuilds model and data from config.json's factory strings.
    assert main(["train", str(cfg_path), "--out", str(run_dir), "--resume", "--no-progress"]) == 0
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "straight"), "--no-progress"]) == 0
    resumed, straight = load_trace(run_dir), load_trace(tmp_path / "straight")
    np.testing.assert_array_equal(resumed["step"], np.arange(CONFIG["train"]["steps"]))
    for name in sorted(set(resumed.names) - {"wall_time"}):
        np.testing.assert_allclose(resumed[name], straight[name], rtol=1e-6, equal_nan=True, err_msg=name)
