"""Run configs: defaults, validation messages, overrides, TOML/JSON loading, the CLI's bad-config exit."""

from __future__ import annotations

import json

import pytest

from eosmodel.train import DEFAULTS, apply_overrides, load_config, normalize_config, parse_override


def test_defaults_are_complete_and_json_roundtrip():
    cfg = normalize_config({})
    assert set(cfg) == set(DEFAULTS)
    for table in ("model", "train", "sharpness"):
        assert cfg[table] == {k: v for k, v in DEFAULTS[table].items() if k not in ("factory", "args")} | (
            {"factory": ""} if table == "model" else {}
        )
    # Keys MNIST-1D ignores (synthetic-only, CIFAR-only, factory arguments) are not recorded.
    assert cfg["data"] == {"name": "mnist1d", "factory": "", "n_train": 1000, "n_test": 500, "balanced": False}
    # The tuner table is completed by eosmodel.tuners.tuner_config.
    assert cfg["tuner"]["name"] == "constant" and cfg["tuner"]["stepsize"] == 0.05
    assert normalize_config(json.loads(json.dumps(cfg))) == cfg


def test_partial_tables_keep_other_defaults():
    cfg = normalize_config({"train": {"steps": 7}, "sharpness": {"every": 0}})
    assert cfg["train"]["steps"] == 7
    assert cfg["train"]["log_every"] == DEFAULTS["train"]["log_every"]
    assert cfg["sharpness"]["every"] == 0 and cfg["sharpness"]["k"] == DEFAULTS["sharpness"]["k"]


def test_presets_are_completed_with_data_size_when_needed():
    cfg = normalize_config({"tuner": {"preset": "armijo-vaswani"}, "data": {"n_train": 1000}, "train": {"batch_size": 100}})
    assert cfg["tuner"]["name"] == "armijo"
    assert cfg["tuner"]["increase_factor"] == pytest.approx(2.0 ** (100 / 1000))
    assert cfg["tuner"]["preset_args"] == {"batch_size": 100, "n": 1000}
    # Full batch: b = n, so gamma = 2.
    full = normalize_config({"tuner": {"preset": "armijo-vaswani"}, "data": {"n_train": 500}})
    assert full["tuner"]["increase_factor"] == pytest.approx(2.0)
    # A completed table is a fixed point.
    assert normalize_config(cfg) == cfg


@pytest.mark.parametrize(
    "config, words",
    [
        ({"train": {"steps": 0}}, ["train.steps", ">= 1"]),
        ({"train": {"steps": 2.5}}, ["train.steps", "integer"]),
        ({"train": {"batch_size": -1}}, ["train.batch_size", ">= 0"]),
        ({"train": {"batch_size": 2000}, "data": {"n_train": 100}}, ["train.batch_size", "<= data.n_train"]),
        ({"train": {"log_every": 0}}, ["train.log_every", ">= 1"]),
        ({"train": {"stepz": 3}}, ["train.stepz", "valid keys"]),
        ({"sharpness": {"tol": 1.5}}, ["sharpness.tol", "(0, 1)"]),
        ({"sharpness": {"k": 0}}, ["sharpness.k", ">= 1"]),
        ({"sharpness": {"grad_curvature": "yes"}}, ["sharpness.grad_curvature", "true or false"]),
        ({"data": {"name": "imagenet"}}, ["data.name", "mnist1d"]),
        ({"model": {"name": "mlp"}}, ["model.name", "fc-tanh"]),
        ({"loss": {"name": "hinge"}}, ["loss.name", "mse"]),
        ({"optimizer": {}}, ["[optimizer]", "unknown"]),
        ({"tuner": {"name": "adam"}}, ["tuner", "constant"]),
        ({"tuner": {"name": "armijo", "c": 2.0}}, ["c", "(0, 1)"]),
        ({"tuner": {"name": "constant", "stepsize": 0.1, "momentum": 0.9}}, ["tuner", "momentum"]),
    ],
)
def test_bad_values_raise_one_sentence_naming_the_key(config, words):
    with pytest.raises(ValueError) as err:
        normalize_config(config)
    msg = str(err.value)
    for word in words:
        assert word in msg, msg
    assert "\n" not in msg


def test_parse_override_types():
    assert parse_override("train.steps=200") == ("train", "steps", 200)
    assert parse_override("tuner.c=0.2") == ("tuner", "c", 0.2)
    assert parse_override("data.balanced=true") == ("data", "balanced", True)
    assert parse_override("tuner.name=armijo") == ("tuner", "name", "armijo")
    assert parse_override('data.path="/tmp/x y"') == ("data", "path", "/tmp/x y")
    assert parse_override("tuner.stepsize=1e-2") == ("tuner", "stepsize", 0.01)
    for bad in ("train.steps", "steps=3", "nope.steps=3", "a.b.c=1"):
        with pytest.raises(ValueError, match="table.key"):
            parse_override(bad)


def test_overrides_switching_tuner_start_a_fresh_table():
    base = {"tuner": {"name": "constant", "stepsize": 0.05}}
    cfg = normalize_config(apply_overrides(base, ["tuner.name=armijo", "tuner.c=0.2"]))
    assert cfg["tuner"]["name"] == "armijo" and cfg["tuner"]["c"] == 0.2
    cfg = normalize_config(apply_overrides(base, ["tuner.preset=sps-0.2"]))
    assert cfg["tuner"]["c"] == 0.2 and cfg["tuner"]["preset"] == "sps-0.2"
    # Same tuner: hyperparameters are kept and overridden one by one.
    cfg = normalize_config(apply_overrides(base, ["tuner.name=constant", "tuner.stepsize=0.3"]))
    assert cfg["tuner"]["stepsize"] == 0.3


def test_load_toml_and_json(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\nname = "fc-relu"\nwidth = 32\n[tuner]\npreset = "sps-0.5"\n[train]\nsteps = 50\n')
    cfg = load_config(toml, ["train.steps=60", "sharpness.every=5"])
    assert cfg["model"]["name"] == "fc-relu" and cfg["model"]["width"] == 32
    assert cfg["train"]["steps"] == 60 and cfg["sharpness"]["every"] == 5
    assert cfg["tuner"]["name"] == "polyak"
    js = tmp_path / "run.json"
    js.write_text(json.dumps(cfg))
    assert load_config(js) == cfg
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3")
    with pytest.raises(ValueError, match="does not parse"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    from eosmodel.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nsteps = -3\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eosmodel train: error:") and "train.steps" in err and "\n" not in err
    assert main(["train", str(cfg), "--set", "train.steps=3", "--set", "bogus=1", "--no-progress"]) == 2
    assert not (tmp_path / "run").exists()
