"""``eosmodel demo`` end to end at a few steps: outputs, reuse, extension, and stale directories."""

from __future__ import annotations

import json

import pytest

from eosmodel.cli import main
from eosmodel.cli._demo import TUNERS
from eosmodel.trace import load_trace


def test_demo_writes_runs_fits_and_figure_then_reuses_and_extends(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "60", "--no-progress"]) == 0
    for name in TUNERS:
        trace = load_trace(out / name)
        assert len(trace) == 60 and "grad_curvature" in trace
        assert json.loads((out / name / "summary.json").read_text())["status"] == "completed"
        assert (out / name / "fit_report.json").exists() and (out / name / "fit.png").stat().st_size > 1000
    assert (out / "runs.png").stat().st_size > 1000
    rows = {line.split()[0]: line for line in (out / "fits.txt").read_text().splitlines()[2:]}
    assert set(rows) == set(TUNERS)
    for name in ("armijo", "polyak"):  # the tuner runs are also fitted in closed loop
        report = json.loads((out / name / "fit_report.json").read_text())
        assert "joint_closed" in report["models"] and report["closed_loop_rule"]["name"] == name
    # the cross-run prediction: both tuner runs predicted from the GD runs, both models
    preds = json.loads((out / "predictions.json").read_text())
    assert [p["tuner"]["name"] for p in preds] == ["armijo", "polyak"]
    assert all(len(p["sources"]) == 2 and {"joint", "eos_alone"} <= set(p) for p in preds)
    assert (out / "predictions.png").stat().st_size > 1000
    capsys.readouterr()

    # Same length: every run reused (nothing retrained); longer: every run extended by resuming.
    assert main(["demo", "--out", str(out), "--steps", "60", "--no-progress"]) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == len(TUNERS)
    assert main(["demo", "--out", str(out), "--steps", "70", "--no-progress"]) == 0
    assert capsys.readouterr().err.count("resuming") == len(TUNERS)
    assert all(len(load_trace(out / name)) == 70 for name in TUNERS)

    # Shorter than what is there: an error, nothing lost.
    assert main(["demo", "--out", str(out), "--steps", "60", "--no-progress"]) == 2
    assert "longer run (70 steps)" in capsys.readouterr().err
    assert len(load_trace(out / "armijo")) == 70


def test_demo_refuses_a_directory_holding_another_config(tmp_path, capsys):
    out = tmp_path / "demo"
    run_dir = out / next(iter(TUNERS))
    run_dir.mkdir(parents=True)
    stale = {"model": {"name": "fc-tanh"}, "train": {"steps": 60}}
    (run_dir / "config.json").write_text(json.dumps(stale))
    assert main(["demo", "--out", str(out), "--steps", "60", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds a run of another config" in err and "--out" in err
    assert json.loads((run_dir / "config.json").read_text()) == stale


@pytest.mark.parametrize("steps", ["10", "-5"])
def test_demo_rejects_too_few_steps(tmp_path, steps, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--steps", steps, "--no-progress"]) == 2
    assert "--steps must be at least 50" in capsys.readouterr().err
