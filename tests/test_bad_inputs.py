"""Bad inputs and faults: each is refused with one sentence (exit code 2) or reported, never a traceback.

Every CLI case asserts the exit code and that stderr is one line naming the thing that is wrong
and the fix, with no traceback. A bug (an internal error) keeps its traceback, exit code 1.
Inputs are tiny (a few dozen steps of an 8-unit MLP on synthetic data): the module runs in
about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from eosmodel.cli import EXIT_INTERRUPTED, main
from eosmodel.trace import SCHEMA_VERSION, Trace, TraceError, TraceWriter, load_trace, read_csv

TINY = {
    "data": {"name": "synthetic", "n_train": 32, "n_test": 16, "num_classes": 3, "input_shape": [4]},
    "model": {"name": "fc-tanh", "width": 8, "depth": 1},
    "tuner": {"name": "constant", "stepsize": 0.1},
    "train": {"steps": 20, "chunk_size": 32, "log_every": 5, "eval_every": 10, "checkpoint_every": 10},
    "sharpness": {"every": 5},
}


def _config(tmp_path: Path, **tables) -> Path:
    cfg = json.loads(json.dumps(TINY))
    for table, values in tables.items():
        if table == "data" and values.get("name", cfg["data"]["name"]) != cfg["data"]["name"]:
            cfg["data"] = {}  # another dataset: the synthetic keys would be refused as ignored
        cfg.setdefault(table, {}).update(values)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(result, *names: str, code: int = 2) -> str:
    """Assert exit ``code`` and one stderr line without traceback that contains every name."""
    rc, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _train(capsys, tmp_path, out, *extra, **tables):
    return _cli(capsys, "train", _config(tmp_path, **tables), "--out", out, "--no-progress", *extra)


# ------------------------------------------------------------------------ 1. the error boundary


def test_internal_value_error_keeps_its_traceback_and_exit_code_1(tmp_path):
    """A ValueError raised inside numpy is a bug: traceback, exit 1, not posed as a user error."""
    script = (
        "import sys, numpy as np, eosmodel.cli._fit as f\n"
        "f.fit_trace = lambda *a, **k: np.arange(3).reshape(2)\n"
        "from eosmodel.cli import main\n"
        f"sys.exit(main(['fit', 'x.csv', '--out', {str(tmp_path / 'o')!r}]))\n"
    )
    (tmp_path / "x.csv").write_text("step,stepsize,sharpness\n0,0.1,1\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "reshape" in proc.stderr
    assert "error:" not in proc.stderr


def test_validation_value_error_of_the_library_is_a_user_error(tmp_path, capsys):
    """A ValueError from a raise statement of eosmodel's validation code: one line, exit 2."""
    _refused(_train(capsys, tmp_path, tmp_path / "r", tuner={"stepsize": -1.0}), "stepsize")


@pytest.mark.parametrize("command", ["train", "fit", "sweep", "simulate", "demo", "derive"])
def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, command):
    out = tmp_path / "a_file"
    out.write_text("not a directory\n")
    csv = tmp_path / "t.csv"
    csv.write_text("step,stepsize,sharpness\n0,0.1,1\n")
    argv = {
        "train": ["train", _config(tmp_path), "--out", out],
        "fit": ["fit", csv, "--out", out],
        "sweep": ["sweep", "--param", "eta=0.1:1:3", "--out", out],
        "simulate": ["simulate", "--toy", "quadratic", "--tuner", "constant", "--out", out],
        "demo": ["demo", "--out", out],
        "derive": ["derive", "--out", tmp_path],
    }[command]
    line = _refused(_cli(capsys, *argv), "--out")
    assert "give" in line and ("is a file" in line or "is a directory" in line)


def test_out_below_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _refused(_train(capsys, tmp_path, tmp_path / "f" / "run"), "--out", "is a file", "choose a directory")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only dirs")
def test_read_only_out_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(_train(capsys, tmp_path, ro / "run"), "--out", "cannot be written", "choose")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("bad.json", "{\"data\": ", ("bad.json", "does not parse as JSON", "fix its syntax")),
        ("bad.toml", "[data\nname = 1\n", ("bad.toml", "does not parse as TOML", "fix its syntax")),
        ("list.json", "[1, 2]", ("list.json", "top level", "object of tables")),
        ("latin.toml", b"[data]\nname = \"caf\xe9\"\n", ("latin.toml", "UTF-8", "save it as UTF-8")),
    ],
)
def test_config_parse_errors_name_the_file(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _refused(_cli(capsys, "train", path, "--out", tmp_path / "r"), *words)


def test_csv_parse_errors_name_the_file_and_bom_is_accepted(tmp_path, capsys):
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"step,stepsize,sharpness\n0,0.1,1\n# caf\xe9\n")
    _refused(_cli(capsys, "fit", bad, "--out", tmp_path / "o"), "latin.csv", "UTF-8")
    text = tmp_path / "text.csv"
    text.write_text("step,stepsize,sharpness\n0,0.1,abc\n")
    _refused(_cli(capsys, "fit", text, "--out", tmp_path / "o"), "text.csv", "abc", "numeric")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfstep,stepsize,sharpness\n0,0.1,1\n1,0.1,2\n")
    assert read_csv(bom)["step"].tolist() == [0, 1]


def test_corrupt_trace_and_run_config_name_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    Trace.from_columns({"step": np.arange(20), "stepsize": np.full(20, 0.1),
                        "sharpness": np.linspace(1, 19, 20)}, {"tuner": {}}).save(run)
    (run / "config.json").write_bytes(b"{\"tuner\": \xff}")
    _refused(_cli(capsys, "fit", run, "--out", tmp_path / "o"), "config.json", "UTF-8")
    (run / "config.json").write_text("{}")
    lines = (run / "trace.jsonl").read_text().splitlines()
    lines[3] = lines[3][:10]
    (run / "trace.jsonl").write_text("\n".join(lines) + "\n")
    _refused(_cli(capsys, "fit", run, "--out", tmp_path / "o"), "trace.jsonl", "line 4", "restore")


def _fake_cifar(root: Path, labels_test=None, garbage: str | None = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = list(rng.integers(0, 10, 12))
        if name == "test_batch" and labels_test is not None:
            labels = labels_test
        blob = {b"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8), b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(blob) if name != garbage else b"\x80\x04garbage")
    return folder


def test_cifar_garbage_pickle_names_the_file(tmp_path, capsys):
    folder = _fake_cifar(tmp_path / "c", garbage="data_batch_1")
    _refused(_train(capsys, tmp_path, tmp_path / "r", data={"name": "cifar10", "path": str(folder),
                                                             "n_train": 10, "n_test": 10}),
             "data_batch_1", "pickle", "replace it")


def test_cifar_garbage_tar_names_the_file(tmp_path, capsys):
    tar = tmp_path / "cifar-10-python.tar.gz"
    tar.write_bytes(b"this is not a tar archive at all" * 10)
    _refused(_train(capsys, tmp_path, tmp_path / "r", data={"name": "cifar10", "path": str(tar),
                                                             "n_train": 10, "n_test": 10}),
             "cifar-10-python.tar.gz", "tar archive", "replace it")


def test_cifar_labels_outside_0_9_are_refused(tmp_path, capsys):
    folder = _fake_cifar(tmp_path / "c", labels_test=[0] * 11 + [12])
    _refused(_train(capsys, tmp_path, tmp_path / "r", data={"name": "cifar10", "path": str(folder),
                                                             "n_train": 10, "n_test": 10}),
             "test_batch", "outside 0..9", "12", "replace it")
    tar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar, "w:gz") as fh:
        fh.add(folder, arcname="cifar-10-batches-py")
    _refused(_train(capsys, tmp_path, tmp_path / "r", data={"name": "cifar10", "path": str(tar),
                                                             "n_train": 10, "n_test": 10}),
             "cifar-10-python.tar.gz:cifar-10-batches-py/test_batch", "outside 0..9")


def test_memory_impossible_sweep_is_refused_before_allocation(tmp_path, capsys):
    line = _refused(_cli(capsys, "sweep", "--param", "eta=0.1:2:100000", "--param", "lambda0=1:40:100000000",
                         "--out", tmp_path / "sw"), "1e+13 runs", "GiB", "fewer grid points")
    assert "100000 x 100000000" in line
    _refused(_cli(capsys, "sweep", "--param", "eta=0.1:2:3", "--steps", str(2 ** 40), "--out", tmp_path / "sw"),
             "--steps", "2^31")


def test_model_too_large_for_memory_is_refused_with_the_memory_it_needs(tmp_path, capsys):
    line = _refused(_train(capsys, tmp_path, tmp_path / "r", model={"width": 1_000_000, "depth": 2}),
                    "model.width = 1000000", "GiB", "lower model.width")
    assert "1e+12 parameters" in line


# ------------------------------------------------------------------------ runs: lock, Ctrl-C, resume


def test_second_run_on_a_locked_directory_is_refused_and_stale_locks_are_taken_over(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    _refused(_train(capsys, tmp_path, run), str(os.getpid()), "run.lock", "choose another --out")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / "run.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    rc, out, err = _train(capsys, tmp_path, run)
    assert rc == 0, err
    assert "stale lock" in err and "done" in out
    assert not (run / "run.lock").exists()


def test_ctrl_c_exits_130_with_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    from eosmodel.trace import _trace

    calls = {"n": 0}
    original = _trace.TraceWriter.append_columns

    def interrupted(self, columns):
        calls["n"] += 1
        if calls["n"] == 3:  # after a checkpoint at step 10
            raise KeyboardInterrupt
        return original(self, columns)

    run = tmp_path / "r"
    monkeypatch.setattr(_trace.TraceWriter, "append_columns", interrupted)
    line = _refused(_train(capsys, tmp_path, run), "interrupted", "--resume", str(run), code=EXIT_INTERRUPTED)
    assert "Ctrl-C" in line
    assert not (run / "run.lock").exists()
    monkeypatch.setattr(_trace.TraceWriter, "append_columns", original)
    rc, out, err = _train(capsys, tmp_path, run, "--resume")
    assert rc == 0, err
    assert load_trace(run)["step"].tolist() == list(range(20))


def test_disk_full_is_one_line_naming_the_file_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    import errno

    from eosmodel.train import _run

    original = _run.save_checkpoint

    def full(run_dir, state, meta):
        path = Path(run_dir) / "checkpoint.npz"
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    run = tmp_path / "r"
    monkeypatch.setattr(_run, "save_checkpoint", full)
    _refused(_train(capsys, tmp_path, run), "checkpoint.npz", "no space left", "free some disk space")
    assert not (run / "run.lock").exists()
    monkeypatch.setattr(_run, "save_checkpoint", original)
    rc, _, err = _train(capsys, tmp_path, run, "--resume")
    assert rc == 0, err
    assert load_trace(run)["step"].tolist() == list(range(20))


@pytest.mark.slow
def test_real_sigint_exits_130_and_leaves_a_resumable_directory(tmp_path):
    """The same with a real SIGINT sent to a subprocess (slow: starts JAX in a new process)."""
    import signal
    import time

    cfg = _config(tmp_path, train={"steps": 100000, "checkpoint_every": 10})
    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "eosmodel.cli", "train", str(cfg), "--out", str(run),
                             "--no-progress"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 240
    while not (run / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in err and "interrupted" in err and "--resume" in err
    assert not (run / "run.lock").exists()
    assert len(load_trace(run)) >= 10


def test_resume_refuses_a_trace_that_ends_before_the_checkpoint(tmp_path, capsys):
    run = tmp_path / "r"
    rc, out, err = _train(capsys, tmp_path, run)
    assert rc == 0, err
    # The summary's final loss is measured after the last step: labelled, with its step.
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_step"] == 20 and load_trace(run)["step"][-1] == 19
    assert "after the last step" in out
    lines = (run / "trace.jsonl").read_text().splitlines(keepends=True)
    (run / "trace.jsonl").write_text("".join(lines[:11]))  # header + steps 0..9; checkpoint at 20
    _refused(_train(capsys, tmp_path, run, "--resume", train={"steps": 30}),
             "trace.jsonl", "steps 0..9", "checkpoint's step 20", "delete")
    (run / "trace.jsonl").write_text(lines[0])  # header only: an empty trace
    _refused(_train(capsys, tmp_path, run, "--resume", train={"steps": 30}), "no records", "checkpoint")
    # The fix the message gives: without the checkpoint the run reruns from step 0.
    (run / "checkpoint.npz").unlink()
    rc, _, err = _train(capsys, tmp_path, run, "--resume", train={"steps": 30})
    assert rc == 0, err
    assert load_trace(run)["step"].tolist() == list(range(30))


def test_truncated_checkpoint_names_the_file(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(capsys, tmp_path, run)[0] == 0
    data = (run / "checkpoint.npz").read_bytes()
    (run / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    _refused(_train(capsys, tmp_path, run, "--resume", train={"steps": 30}),
             "checkpoint.npz", "truncated", "delete it")


# ------------------------------------------------------------------------ 2. silent wrong results


def test_steps_must_be_integers(tmp_path):
    with pytest.raises(TraceError, match=r"step 1\.7 is not an integer"):
        Trace.from_columns({"step": [0, 1.7, 3]})
    with TraceWriter(tmp_path / "w", {}) as w:
        w.append({"step": 0, "loss": 1.0})
        w.append({"step": 1.0, "loss": 1.0})  # an integral float is fine
        with pytest.raises(TraceError, match=r"step 2\.5 is not an integer"):
            w.append({"step": 2.5, "loss": 1.0})
        with pytest.raises(TraceError, match=r"step 3\.2 is not an integer"):
            w.append_columns({"step": [3.2], "loss": [1.0]})
    assert load_trace(tmp_path / "w")["step"].tolist() == [0, 1]


def test_csv_from_a_future_schema_version_is_refused(tmp_path, capsys):
    path = tmp_path / "future.csv"
    path.write_text(f"# eosmodel.trace schema_version={SCHEMA_VERSION + 1}\nstep,stepsize,sharpness\n0,0.1,1\n")
    _refused(_cli(capsys, "fit", path, "--out", tmp_path / "o"), "future.csv", "schema_version", "upgrade eosmodel")


def _eos_rows(steps, eta=0.1):
    """Sharpness rising to 2/eta, then hovering (EOS alone explains it)."""
    t = np.asarray(steps, float)
    return (2 / eta) * (1 - 0.7 * np.exp(-t / 150)) + 0.05 * np.cos(np.pi * t)


def test_fit_columns_option_maps_csv_names(tmp_path, capsys):
    steps = np.arange(400)
    path = tmp_path / "other.csv"
    rows = ["iteration,lr,top_eig,train_loss"] + [
        f"{s},0.1,{lam if s % 5 == 0 else ''},{1.0 / (1 + s)}" for s, lam in zip(steps, _eos_rows(steps))]
    path.write_text("\n".join(rows) + "\n")
    rc, out, err = _cli(capsys, "fit", path, "--out", tmp_path / "o",
                        "--columns", "iteration=step,lr=stepsize,top_eig=sharpness,train_loss=loss")
    assert rc == 0, err
    assert (tmp_path / "o" / "other" / "fit_report.json").exists()
    _refused(_cli(capsys, "fit", path, "--out", tmp_path / "o", "--columns", "top_eig"),
             "--columns", "THEIRS=OURS", "e.g.")
    _refused(_cli(capsys, "fit", path, "--out", tmp_path / "o", "--columns", "topeig=sharpness"),
             "other.csv", "topeig", "names of its header")


def test_csv_with_one_row_per_measurement_is_expanded_and_fitted(tmp_path, capsys):
    steps = np.arange(0, 2001, 50)
    path = tmp_path / "every50.csv"
    path.write_text("step,lr,lambda_max\n" + "".join(
        f"{s},0.1,{lam}\n" for s, lam in zip(steps, _eos_rows(steps))))
    trace = read_csv(path)
    assert trace["step"].tolist() == list(range(2001))
    assert np.all(trace["stepsize"] == 0.1)
    assert trace.measured("sharpness")[0].tolist() == steps.tolist()
    rc, out, err = _cli(capsys, "fit", path, "--out", tmp_path / "o")
    assert rc == 0, err
    # Without a stepsize on every row, nothing can be carried: refused with the fix.
    path.write_text("step,lr,lambda_max\n0,0.1,3\n50,,4\n100,0.1,5\n")
    _refused(_cli(capsys, "fit", path, "--out", tmp_path / "o"), "every50.csv", "step 50",
             "give the stepsize on every row")


def test_underflow_of_x_is_detected_and_reported_in_simulate_and_sweep(tmp_path, capsys):
    """alpha=0.3, beta=7, lambda0=12, eta=0.05 in float64: x underflows to 0 and lambda would
    grow without bound (mean eta*lambda 34 over a long run, reported as not diverged before)."""
    rc, out, err = _cli(capsys, "simulate", "--toy", "self-stabilization", "--toy-set", "alpha=0.3",
                        "--toy-set", "beta=7", "--toy-set", "lambda0=12", "--toy-set", "sharpening_limit=null",
                        "--tuner", "constant", "--set", "stepsize=0.05", "--steps", "3000", "--float64",
                        "--no-figure", "--out", tmp_path / "sim")
    assert rc == 0
    _refused((2, out, err), "x underflowed to exactly 0", "exceeds 2", "start nearer the edge")
    cfg = json.loads((tmp_path / "sim" / "config.json").read_text())
    assert cfg["diverged"] is True and cfg["divergence_reason"] == "underflow"
    trace = load_trace(tmp_path / "sim")
    assert trace["x"][-1] == 0 and trace["normalized_sharpness"][-1] > 2
    rc, out, err = _cli(capsys, "sweep", "--param", "eta=0.05,0.02", "--set", "alpha=0.3", "--set", "beta=7",
                        "--set", "lambda0=12", "--steps", "3000", "--float64", "--out", tmp_path / "sw")
    assert rc == 0
    _refused((2, out, err), "1 run(s)", "underflowed", "start nearer the edge")
    res = np.load(tmp_path / "sw" / "sweep.npz")
    assert res["underflowed"].tolist() == [True, False]
    assert res["diverged"].tolist() == [True, False]
