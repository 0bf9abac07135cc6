"""Tests of ``eosmodel reproduce``: suites through the local and the Ray engine, reuse and resume,
failure isolation, the claims' statistics on synthetic traces with known answers, the command line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from eosmodel.reproduce import (
    CLAIMS,
    RunDirConflict,
    evaluate_claims,
    experiment_suites,
    reproduce,
    suite_from_configs,
)
from eosmodel.reproduce._claims import FAILS, HOLDS, NOT_MEASURED
from eosmodel.trace import Trace, load_trace

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ a tiny suite
def _tiny_configs(steps: int = 30) -> dict[str, dict]:
    base = {
        "data": {"name": "synthetic", "n_train": 64, "n_test": 32},
        "model": {"name": "fc-tanh", "width": 16},
        "train": {"steps": steps, "log_every": 5, "checkpoint_every": 10, "eval_every": 10},
        "sharpness": {"every": 3},
    }
    return {
        "gd": {**base, "tuner": {"name": "constant", "stepsize": 0.1}},
        "polyak": {**base, "tuner": {"preset": "sps-0.5"}},
    }


def _tiny_suite(steps: int = 30, extra: dict | None = None):
    configs = {**_tiny_configs(steps), **(extra or {})}
    return suite_from_configs("tiny", configs, claim_figures=(("1", "main"), ("2", "main")))


def _columns_without_wall_time(run_dir: Path) -> dict[str, np.ndarray]:
    tr = load_trace(run_dir)
    return {k: v for k, v in tr.columns.items() if k != "wall_time"}


def _assert_same_traces(a: Path, b: Path, names) -> None:
    for name in names:
        ca, cb = _columns_without_wall_time(a / name), _columns_without_wall_time(b / name)
        assert sorted(ca) == sorted(cb), name
        for col in ca:
            np.testing.assert_array_equal(ca[col], cb[col], err_msg=f"{name}: column {col}")


@pytest.fixture(scope="module")
def local_suite(tmp_path_factory):
    """The tiny suite run once on the local engine, with a run that fails and one that diverges."""
    out = tmp_path_factory.mktemp("local")
    bad = {**_tiny_configs()["gd"], "train": {"steps": 30, "batch_size": 1000}}  # batch > data: fails
    diverge = {**_tiny_configs()["gd"], "tuner": {"name": "constant", "stepsize": 1e30}}  # overflows
    suite = _tiny_suite(extra={"bad": bad, "diverge": diverge})
    result = reproduce(suite, out, engine="local", jobs=2, progress=False)
    return suite, out, result


def test_local_engine_runs_every_run_and_isolates_failures(local_suite):
    suite, out, result = local_suite
    status = json.loads((out / "status.json").read_text())
    states = {name: r["state"] for name, r in status["runs"].items()}
    assert states == {"gd": "completed", "polyak": "completed", "bad": "failed", "diverge": "diverged"}
    assert "batch_size" in status["runs"]["bad"]["error"]
    assert result.exit_code == 4  # a run failed; the others were still run and reported
    for name in ("gd", "polyak"):
        assert len(load_trace(out / name)) == 30
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert sorted(c["id"] for c in claims) == sorted(c.id for c in CLAIMS if c.figure in ("1", "2"))
    assert {c["model"] for c in claims} == {"fc-tanh"}
    by_id = {c["id"]: c for c in claims}
    # The suite has no Armijo run: Armijo's claims are not measured; GD's and Polyak's are.
    assert by_id["armijo-stepsize-decreasing"]["verdict"] == NOT_MEASURED
    for claim_id in ("gd-at-edge", "polyak-low-sharpness", "polyak-at-or-beyond-edge"):
        assert by_id[claim_id]["verdict"] in (HOLDS, FAILS) and by_id[claim_id]["value"] is not None
    assert "`polyak-low-sharpness`" in (out / "claims.md").read_text()


def test_rerun_reuses_finished_runs_and_resumes_interrupted_ones(local_suite, tmp_path):
    suite, out, _ = local_suite
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {n: (copy / n / "trace.jsonl").read_bytes() for n in ("gd", "polyak")}
    # Interrupt "polyak" as a kill before its first checkpoint would: no summary, no checkpoint,
    # a trace cut in the middle of a line.
    (copy / "polyak" / "summary.json").unlink()
    (copy / "polyak" / "checkpoint.npz").unlink()
    lines = (copy / "polyak" / "trace.jsonl").read_text().splitlines(keepends=True)
    (copy / "polyak" / "trace.jsonl").write_text("".join(lines[:8]) + lines[8][:7])
    only_good = suite.select("[gp]*")
    result = reproduce(only_good, copy, engine="local", jobs=1, progress=False)
    assert result.runs["gd"]["state"] == "reused" and result.runs["gd"]["action"] == "reuse"
    assert result.runs["polyak"]["action"] == "resume" and result.runs["polyak"]["state"] == "completed"
    assert (copy / "gd" / "trace.jsonl").read_bytes() == before["gd"]  # untouched
    _assert_same_traces(out, copy, ["gd", "polyak"])  # the resumed run wrote the same trace
    again = reproduce(only_good, copy, engine="local", jobs=1, progress=False)
    assert {r["state"] for r in again.runs.values()} == {"reused"} and again.exit_code == 0


def test_a_directory_of_another_config_is_refused_before_anything_runs(local_suite, tmp_path):
    suite, out, _ = local_suite
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    mtime = (copy / "status.json").stat().st_mtime_ns
    changed = suite.select("gd").with_overrides(["tuner.stepsize=0.2"])
    with pytest.raises(RunDirConflict, match=r"tuner\.stepsize"):
        reproduce(changed, copy, engine="local", jobs=1, progress=False)
    assert (copy / "status.json").stat().st_mtime_ns == mtime
    longer = suite.select("gd").with_overrides(["train.steps=20"])
    with pytest.raises(RunDirConflict, match="longer run"):
        reproduce(longer, copy, engine="local", jobs=1, progress=False)


# ------------------------------------------------------------------------------ the Ray engine
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    """A one-node Ray cluster on 127.0.0.1 only, started here and stopped after the test."""
    if not _has_ray():  # (not imported here: Ray reads its settings from the environment on import)
        pytest.skip("Ray is not installed (pip install -e \".[ray]\")")
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed next to this Python")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
        # A single-node cluster: Ray keeps the node address at 127.0.0.1 (else it swaps a loopback
        # --node-ip-address for the machine's address) and binds its servers there.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    cmd = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", "--block"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log: list[str] = []
    deadline = time.time() + 120
    for line in proc.stdout:
        log.append(line)
        if "Ray runtime started" in line or time.time() > deadline:
            break
    threading.Thread(target=lambda: [log.append(x) for x in proc.stdout], daemon=True).start()
    if proc.poll() is not None:
        pytest.fail("ray start failed:\n" + "".join(log[-20:]))
    old = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update({k: env[k] for k in old})
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()  # ray start --block stops its cluster on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            time.sleep(2)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything of this cluster still alive
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _kill_when_running(run_dir: Path, min_records: int, killed: dict) -> None:
    """SIGKILL the worker running ``run_dir`` once its trace holds ``min_records`` records."""
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            pid = json.loads((run_dir / "worker.json").read_text())["pid"]
            records = (run_dir / "trace.jsonl").read_bytes().count(b"\n") - 1
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.02)
            continue
        if records >= min_records:
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, records=records)
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_ray_engine_survives_a_killed_worker_and_matches_the_local_engine(ray_cluster, tmp_path):
    steps = 1500  # long enough that the kill lands mid-run
    suite = _tiny_suite(steps)
    local = reproduce(suite, tmp_path / "local", engine="local", jobs=2, progress=False)
    assert local.exit_code == 0

    killed: dict = {}
    killer = threading.Thread(target=_kill_when_running, args=(tmp_path / "ray" / "gd", 400, killed), daemon=True)
    killer.start()
    result = reproduce(suite, tmp_path / "ray", engine="ray", address=ray_cluster, progress=False)
    killer.join(timeout=1)
    assert killed, "the worker was never killed (the run finished first?)"
    status = json.loads((tmp_path / "ray" / "status.json").read_text())
    assert status["engine"] == "ray"
    assert status["runs"]["gd"]["attempts"] == 2 and status["runs"]["gd"]["action"] == "resume"
    assert status["runs"]["gd"]["pid"] != killed["pid"]
    assert {r["state"] for r in result.runs.values()} == {"completed"} and result.exit_code == 0
    _assert_same_traces(tmp_path / "local", tmp_path / "ray", ["gd", "polyak"])
    rerun = reproduce(suite, tmp_path / "ray", engine="ray", address=ray_cluster, progress=False)
    assert {r["state"] for r in rerun.runs.values()} == {"reused"}


# ------------------------------------------------------------------------------ claims
def _full_batch_trace(tuner: dict, steps: int, stepsize, sharpness, loss) -> Trace:
    t = np.arange(steps)
    lam = np.full(steps, np.nan)
    lam[::5] = np.broadcast_to(sharpness, (steps,))[::5]
    return Trace.from_columns(
        {"step": t, "stepsize": np.broadcast_to(stepsize, (steps,)), "sharpness": lam, "loss": np.broadcast_to(loss, (steps,))},
        {"model": {"name": "fc-tanh"}, "tuner": tuner, "train": {"batch_size": 0}},
    )


def _row(rows, claim_id):
    (row,) = [r for r in rows if r["id"] == claim_id]
    return row


def test_gd_edge_claim_holds_at_the_edge_and_not_below_it():
    t = np.arange(1000)
    eta = 0.1
    # Progressive sharpening to 2/eta, then a period-2 oscillation around it: the claim holds.
    at_edge = np.minimum(5 + 0.05 * t, 2 / eta) * (1 + 0.02 * (-1) ** (t // 5))
    rows = evaluate_claims([_full_batch_trace({"name": "constant", "stepsize": eta}, 1000, eta, at_edge, 1 / (1 + t))], ["1"])
    row = _row(rows, "gd-at-edge")
    assert row["verdict"] == HOLDS and abs(row["value"] - 2.0) < 0.05
    # Sharpness stuck at 12 < 2/eta = 20: eta*lambda = 1.2, the edge is never reached.
    stuck = np.full(1000, 12.0)
    rows = evaluate_claims([_full_batch_trace({"name": "constant", "stepsize": eta}, 1000, eta, stuck, 1 / (1 + t))], ["1"])
    row = _row(rows, "gd-at-edge")
    assert row["verdict"] == FAILS and row["value"] == pytest.approx(1.2)


def test_armijo_claims_on_synthetic_traces():
    t = np.arange(1000)
    gd = _full_batch_trace({"name": "constant", "stepsize": 0.1}, 1000, 0.1, np.full(1000, 20.0), 0.5)
    # Snowball: stepsize shrinking as 1/sqrt(t), sharpness growing so that eta*lambda = 1.6.
    eta = 0.5 / np.sqrt(1 + t / 10)
    snowball = _full_batch_trace({"name": "armijo"}, 1000, eta, 1.6 / eta, 0.3)
    rows = evaluate_claims([gd, snowball], ["1", "2"])
    assert _row(rows, "armijo-above-plateaus")["verdict"] == HOLDS
    assert _row(rows, "armijo-stepsize-decreasing")["verdict"] == HOLDS
    below = _row(rows, "armijo-below-or-at-edge")
    assert below["verdict"] == HOLDS and below["numbers"]["outcome"] == "well below 2"
    # A constant stepsize with eta*lambda = 2.5: none of these holds.
    flat = _full_batch_trace({"name": "armijo"}, 1000, 0.1, np.full(1000, 25.0), 0.3)
    rows = evaluate_claims([gd, flat], ["1", "2"])
    assert _row(rows, "armijo-stepsize-decreasing")["verdict"] == FAILS
    assert _row(rows, "armijo-below-or-at-edge")["verdict"] == FAILS
    assert _row(rows, "armijo-above-plateaus")["value"] == pytest.approx(25.0 / 20.0)
    # Polyak claims without a Polyak run: not measured, not failed.
    assert _row(rows, "polyak-best-loss")["verdict"] == NOT_MEASURED


def _minibatch_trace(tuner: str, batch: int, sharpness, loss: float, steps: int = 600) -> Trace:
    lam = np.full(steps, np.nan)
    lam[::10] = sharpness[::10]
    return Trace.from_columns(
        {"step": np.arange(steps), "stepsize": np.full(steps, 0.1), "sharpness": lam, "loss": np.full(steps, loss)},
        {"model": {"name": "fc-relu"}, "tuner": {"name": tuner}, "train": {"batch_size": batch}},
    )


def _minibatch_traces(tuner: str, by_batch: dict) -> list[Trace]:
    """One trace of ``tuner`` per batch size, from ``{batch: (sharpness, loss)}``."""
    return [_minibatch_trace(tuner, b, sharpness, loss) for b, (sharpness, loss) in by_batch.items()]


def test_stochastic_sharpening_claims_on_synthetic_traces():
    t = np.arange(600)
    instantaneous = 2 + 8 * (1 - np.exp(-t / 10))  # reaches 80 % of its max by step ~16
    progressive = 2 + 8 * t / 600
    traces = _minibatch_traces("armijo", {32: (instantaneous, 1.0), 128: (progressive, 0.1), 512: (progressive, 0.5)})
    traces += _minibatch_traces("polyak", {32: (progressive, 0.3), 128: (progressive, 0.15), 512: (progressive, 0.4)})
    rows = evaluate_claims(traces, ["3"])
    assert _row(rows, "armijo-instantaneous-small")["verdict"] == HOLDS
    assert _row(rows, "armijo-progressive-medium-large")["verdict"] == HOLDS
    assert _row(rows, "armijo-best-at-medium")["verdict"] == HOLDS
    assert _row(rows, "armijo-batch-dependence")["verdict"] == HOLDS  # 10x vs Polyak's 2x
    assert _row(rows, "polyak-reasonable")["value"] == pytest.approx(1.5)  # 0.15 / 0.1 at b=128
    assert _row(rows, "polyak-reasonable")["verdict"] == HOLDS
    # Swap the shapes: progressive at the small batch, instantaneous at the larger ones.
    swapped = _minibatch_traces("armijo", {32: (progressive, 0.1), 128: (instantaneous, 0.1), 512: (instantaneous, 0.1)})
    rows = evaluate_claims(swapped, ["3"])
    assert _row(rows, "armijo-instantaneous-small")["verdict"] == FAILS
    assert _row(rows, "armijo-progressive-medium-large")["verdict"] == FAILS
    assert _row(rows, "armijo-batch-dependence")["verdict"] == FAILS
    assert _row(rows, "polyak-reasonable")["verdict"] == NOT_MEASURED


# ------------------------------------------------------------------------------ suites and CLI
def test_experiment_suites_cover_every_config_once():
    suites = experiment_suites()
    for fig in ("fig1", "fig3", "fig4", "fig5"):
        files = sorted((REPO / "experiments" / "small" / fig).glob("*.toml"))
        assert [r.name for r in suites[f"small-{fig}"].runs] == [f.stem for f in files]
        files = sorted((REPO / "experiments" / fig).glob("*.toml"))
        assert [r.name for r in suites[f"paper-{fig}"].runs] == [f.stem for f in files]
    assert len(suites["small"].runs) == sum(len(suites[f"small-{f}"].runs) for f in ("fig1", "fig3", "fig4", "fig5"))
    assert suites["small-fig2"].runs == suites["small-fig1"].runs


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _cli(*argv: str) -> subprocess.CompletedProcess:
    code = "import sys; from eosmodel.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, "reproduce", *argv], capture_output=True, text=True, env=env, cwd=REPO)


def test_cli_lists_suites_and_rejects_mistakes_in_one_sentence(tmp_path):
    listed = _cli("--list")
    assert listed.returncode == 0
    for name, runs in (("demo", 4), ("small-fig1", 15), ("small-fig3", 9), ("paper-fig5", 12)):
        assert any(line.split()[:2] == [name, str(runs)] for line in listed.stdout.splitlines()), listed.stdout
    for argv, needle in (
        (("nope",), "unknown suite"),
        (("small-fig3", "--only", "zzz*", "--out", str(tmp_path)), "matches none"),
        # Without --address: the missing address, or (Ray not installed) the missing extra.
        (("small-fig3", "--engine", "ray", "--out", str(tmp_path)), "--address" if _has_ray() else ".[ray]"),
    ):
        proc = _cli(*argv)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_ray_engine_without_ray_names_the_extra(monkeypatch, capsys, tmp_path):
    from eosmodel.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["reproduce", "demo", "--engine", "ray", "--address", "127.0.0.1:1", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert 'pip install -e ".[ray]"' in err
