"""``eosmodel simulate`` and ``eosmodel sweep`` end to end (small runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eosmodel.cli import main
from eosmodel.dynamics import SweepResult
from eosmodel.trace import load_trace


def test_simulate_writes_trace_and_figure(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--toy", "quadratic", "--toy-set", "eigenvalues=[1.0, 4.0]",
               "--tuner", "constant", "--set", "stepsize=0.45", "--steps", "40", "--out", str(out)])
    assert rc == 0
    trace = load_trace(out)
    assert len(trace) == 40
    # GD on a fixed quadratic: the sharpness is the top eigenvalue, η·λ = 0.45·4 = 1.8 < 2
    np.testing.assert_allclose(trace["sharpness"], 4.0, rtol=1e-6)
    np.testing.assert_allclose(trace["normalized_sharpness"], 1.8, rtol=1e-6)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["toy"]["hyper"]["eigenvalues"] == [1.0, 4.0]
    assert cfg["tuner"] == {"name": "constant", "stepsize": 0.45}
    assert (out / "simulate.png").stat().st_size > 1000
    assert "40 steps finished" in capsys.readouterr().out


def test_simulate_records_divergence(tmp_path, capsys):
    out = tmp_path / "div"
    rc = main(["simulate", "--toy", "quadratic", "--toy-set", "eigenvalues=[4.0]", "--tuner",
               "constant", "--set", "stepsize=0.6", "--steps", "200", "--no-figure",
               "--divergence-threshold", "1e6", "--out", str(out)])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["diverged"] is True and len(load_trace(out)) == cfg["diverged_at"] + 1
    assert "diverged at step" in capsys.readouterr().out


def test_sweep_writes_data_and_diagrams(tmp_path):
    out = tmp_path / "sw"
    rc = main(["sweep", "--rule", "oracle", "--param", "sigma=0.5:1.5:5", "--set", "lambda0=1",
               "--steps", "200", "--out", str(out)])
    assert rc == 0
    res = SweepResult.load(out)
    assert res.axes == ("sigma",)
    np.testing.assert_allclose(res["mean_normalized_sharpness"], np.linspace(0.5, 1.5, 5),
                               rtol=1e-5)
    assert (out / "phase.png").exists() and (out / "bifurcation.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "--toy", "nope", "--tuner", "constant"], "--toy must be one of"),
        (["simulate", "--toy", "uv", "--tuner", "constant", "--set", "stepsize"],
         "--set expects NAME=VALUE"),
        (["simulate", "--toy", "uv", "--toy-set", "depth=3", "--tuner", "sps-0.5"],
         "are not parameters of toy"),
        (["simulate", "--toy", "uv", "--tuner", "polyak", "--set", "gamma=2"],
         "has no hyperparameter 'gamma'"),
        (["simulate", "--toy", "uv", "--tuner", "constant", "--set", "stepsize=-1"],
         "stepsize must be"),
        (["sweep", "--param", "eta=1:2"], "is not NAME=START:STOP:NUM"),
        (["sweep", "--param", "zeta=1,2"], "unknown sweep parameter 'zeta'"),
        (["sweep", "--param", "eta=0.1,0.2", "--quantity", "nope"], "--quantity must be one of"),
    ],
)
def test_bad_values_exit_2_with_one_sentence(tmp_path, capsys, argv, message):
    rc = main([*argv, "--out", str(tmp_path / "x"), "--steps", "5"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
