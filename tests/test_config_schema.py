"""The one config schema: typing rules applied to every key alike, aliases, keys a dataset ignores,
--show-config and docs/config.md (generated from the schema, checked here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eosmodel.cli import main
from eosmodel.train import SCHEMA, config_mismatch, describe_config, load_config, normalize_config

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = [k for k in SCHEMA if k.kind in ("int", "float") and k.when is None]
INTS = [k for k in NUMERIC if k.kind == "int"]


@pytest.mark.parametrize("spec", NUMERIC, ids=lambda k: k.path)
def test_booleans_and_numeric_strings_are_not_numbers(spec):
    for bad in (True, False, "1", "0.5"):
        with pytest.raises(ValueError, match=rf"^{spec.path} must be .*got {bad!r}"):
            normalize_config({spec.table: {spec.name: bad}})


@pytest.mark.parametrize("spec", INTS, ids=lambda k: k.path)
def test_integer_keys_refuse_fractions_and_accept_integral_floats(spec):
    with pytest.raises(ValueError, match=rf"^{spec.path} must be an integer"):
        normalize_config({spec.table: {spec.name: int(spec.lo) + 1.7}})
    value = int(spec.lo) + 1
    extra = {"k": 1} if spec.path == "sharpness.max_iters" else {}
    cfg = normalize_config({spec.table: {spec.name: float(value), **extra}})
    assert cfg[spec.table][spec.name] == value and type(cfg[spec.table][spec.name]) is int


@pytest.mark.parametrize(
    ("tuner", "match"),
    [
        ({"stepsize": True}, "tuner.stepsize must be a number, got True; a boolean is not a number"),
        ({"name": "constant", "stepsize": "0.1"}, "tuner.stepsize must be a number, got '0.1'; write the number without quotes"),
        ({"name": "armijo", "max_trials": 1.7}, "tuner.max_trials must be an integer, got 1.7"),
        ({"name": "armijo", "c": False}, "tuner.c must be a number"),
        ({"preset": "sps-0.5", "c": "0.2"}, "tuner.c must be a number"),
        ({"name": "armijo", "on_failure": 3}, "tuner.on_failure must be a string"),
    ],
)
def test_tuner_hyperparameters_follow_the_same_typing_rules(tuner, match):
    with pytest.raises(ValueError, match=match):
        normalize_config({"tuner": tuner})
    assert normalize_config({"tuner": {"name": "armijo", "max_trials": 7.0}})["tuner"]["max_trials"] == 7


def test_aliases_from_the_literature():
    cfg = normalize_config({"tuner": {"name": "gd", "lr": 0.1}, "data": {"name": "cifar10-5k"},
                            "sharpness": {"eig_freq": 50, "neigs": 2}, "train": {"physical_batch_size": 500},
                            "loss": {"name": "ce"}, "model": {"init": "pytorch"}})
    assert cfg["tuner"] == {"name": "constant", "stepsize": 0.1}
    assert cfg["data"]["name"] == "cifar10" and cfg["data"]["n_train"] == 5000
    assert cfg["sharpness"]["every"] == 50 and cfg["sharpness"]["k"] == 2 and cfg["train"]["chunk_size"] == 500
    assert cfg["loss"]["name"] == "cross_entropy" and cfg["model"]["init"] == "torch"
    assert normalize_config({"tuner": {"name": "sps"}})["tuner"]["name"] == "polyak"
    with pytest.raises(ValueError, match="means data.name = 'cifar10' with data.n_train = 5000, but data.n_train = 1000"):
        normalize_config({"data": {"name": "cifar10-5k", "n_train": 1000}})
    with pytest.raises(ValueError, match="sharpness.eig_freq and sharpness.every name the same key"):
        normalize_config({"sharpness": {"eig_freq": 5, "every": 5}})


def test_keys_the_dataset_or_model_ignores_are_refused_and_not_recorded():
    with pytest.raises(ValueError, match='data.num_classes = 3 has no effect here: it applies only with data.name = "synthetic"'):
        normalize_config({"data": {"name": "mnist1d", "num_classes": 3}})
    with pytest.raises(ValueError, match="model.width = 64 has no effect here: it applies only with an fc-"):
        normalize_config({"model": {"name": "cnn-relu", "width": 64}})
    with pytest.raises(ValueError, match="data.path = '/x' has no effect"):
        normalize_config({"data": {"name": "digits", "path": "/x"}})
    # The default value is accepted (generated configs write every key) but not recorded as used.
    cfg = normalize_config({"data": {"name": "mnist1d", "num_classes": 4, "path": ""}, "model": {"name": "cnn-relu", "width": 200}})
    assert "num_classes" not in cfg["data"] and "path" not in cfg["data"] and "width" not in cfg["model"]
    synth = normalize_config({"data": {"name": "synthetic", "num_classes": 3}})
    assert synth["data"]["num_classes"] == 3 and synth["data"]["input_shape"] == [16]
    # A run directory written before these keys were dropped still resumes with the same config.
    stored = json.loads(json.dumps(cfg))
    stored["data"].update({"seed": 0, "num_classes": 4, "input_shape": [16], "path": ""})
    stored["model"].update({"width": 200, "depth": 2})
    assert config_mismatch(stored, cfg) is None


def test_describe_config_lists_every_key_and_docs_are_generated_from_it():
    text = describe_config()
    for spec in SCHEMA:
        assert f"{spec.path} = " in text
    for key in ("tuner.name", "tuner.preset", "tuner.stepsize", "tuner.c", "tuner.max_trials", "tuner.sigma"):
        assert f"{key} = " in text
    assert 'model.init = "torch"' in text and "gd = constant" in text and "cifar10-5k = cifar10 with n_train = 5000" in text
    shown = describe_config({"model": {"name": "fc-relu", "width": 64}})
    assert "model.width = 64   (default 200" in shown
    docs = (ROOT / "docs" / "config.md").read_text()
    generated = docs.split("<!-- generated: eosmodel train --show-config --markdown -->\n", 1)[1]
    assert generated == describe_config(markdown=True), (
        "docs/config.md is out of date: regenerate it with eosmodel train --show-config --markdown"
    )


def test_show_config_on_the_command_line(tmp_path, capsys):
    assert main(["train", "--show-config"]) == 0
    assert "sharpness.every = 10" in capsys.readouterr().out
    cfg = tmp_path / "c.toml"
    cfg.write_text('[tuner]\nname = "gd"\nlr = 0.2\n[data]\nname = "cifar10-5k"\n')
    assert main(["train", "--show-config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert 'data.name = "cifar10"' in out and "data.n_train = 5000" in out and "tuner.stepsize = 0.2" in out
    assert main(["train", "--show-config", str(cfg), "--set", "tuner.lr=true"]) == 2
    assert "a boolean is not a number" in capsys.readouterr().err
    assert load_config(cfg)["tuner"] == {"name": "constant", "stepsize": 0.2}
