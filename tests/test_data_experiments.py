"""The experiment configs on disk are the generator's output, valid run configs, and describe the
paper's experiments (cifar10-5k full batch for figures 1-2; all of CIFAR-10 for figures 3-5)."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from eosmodel.train import load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def make_configs():
    spec = importlib.util.spec_from_file_location("make_configs", EXPERIMENTS / "make_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_on_disk_match_the_generator(make_configs, tmp_path):
    assert make_configs.main(["--check"]) == 0, "run python experiments/make_configs.py"
    on_disk = {p.relative_to(EXPERIMENTS).as_posix() for p in EXPERIMENTS.rglob("*.toml")}
    assert on_disk == set(make_configs.all_configs())
    # The TOML writer round-trips through tomllib.
    for rel, (header, cfg) in list(make_configs.all_configs().items())[:5]:
        assert tomllib.loads(make_configs.to_toml(cfg, header, rel)) == cfg


def test_every_config_is_a_valid_run_config():
    files = sorted(EXPERIMENTS.rglob("*.toml"))
    assert len(files) >= 50
    for path in files:
        cfg = load_config(path)  # fills defaults and validates (ValueError otherwise)
        assert cfg["train"]["steps"] >= 1


def test_figure_1_design():
    runs = {p.stem: tomllib.loads(p.read_text()) for p in (EXPERIMENTS / "fig1").glob("*.toml")}
    models = {cfg["model"]["name"] for cfg in runs.values()}
    assert {"fc-tanh", "cnn-relu"} <= models
    for model in models:
        mine = [cfg for cfg in runs.values() if cfg["model"]["name"] == model]
        tuners = [cfg["tuner"] for cfg in mine]
        etas = sorted(t["stepsize"] for t in tuners if t.get("name") == "constant")
        assert len(etas) >= 2 and len(set(etas)) == len(etas)
        assert {t.get("preset") for t in tuners} >= {"armijo-jax", "sps-0.5"}
        for cfg in mine:  # cifar10-5k, full batch, MSE, sharpness on the whole subset
            assert cfg["data"] | {"path": ""} == {
                "name": "cifar10", "n_train": 5000, "n_test": 1000, "balanced": False, "path": ""
            }
            assert cfg["train"]["batch_size"] == 0 and cfg["loss"]["name"] == "mse"
            assert cfg["sharpness"]["subset"] == 0 and cfg["sharpness"]["every"] > 0
    fc = runs["fc-tanh_gd_eta0.02"]["model"]
    assert (fc["width"], fc["depth"]) == (200, 2)  # 656,810 parameters on CIFAR-10


@pytest.mark.parametrize(("fig", "model"), [("fig3", "fc-relu"), ("fig4", "vgg11-bn"), ("fig5", "resnet34")])
def test_stochastic_figures_design(fig, model):
    runs = [tomllib.loads(p.read_text()) for p in (EXPERIMENTS / fig).glob("*.toml")]
    assert {cfg["model"]["name"] for cfg in runs} == {model}
    grid = {(cfg["train"]["batch_size"], cfg["tuner"].get("preset", cfg["tuner"].get("name"))) for cfg in runs}
    assert grid == {(b, t) for b in (32, 128, 512, 2048) for t in ("constant", "armijo-vaswani", "sps-0.2")}
    for cfg in runs:
        assert cfg["data"]["name"] == "cifar10" and cfg["data"]["n_train"] == 0  # all 50k
        # At least one pass over the data for every batch size.
        assert cfg["train"]["steps"] * cfg["train"]["batch_size"] >= 50_000
        assert 0 < cfg["sharpness"]["subset"] <= 50_000
