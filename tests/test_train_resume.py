"""A run killed with SIGKILL after a checkpoint and resumed writes the trace of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eosmodel.cli import main
from eosmodel.trace import load_trace

CONFIG = {
    "data": {"name": "synthetic", "n_train": 48, "n_test": 16, "num_classes": 3, "input_shape": [4]},
    "model": {"name": "fc-tanh", "width": 8, "depth": 2},
    "tuner": {"preset": "armijo-jax"},
    # Mini-batch, so the resumed run must also restore the epoch permutation and position.
    "train": {"steps": 1500, "batch_size": 16, "chunk_size": 16, "log_every": 5, "eval_every": 25, "checkpoint_every": 15},
    "sharpness": {"every": 3, "k": 1, "subset": 32},
}


def _compare(a, b):
    assert len(a) == len(b)
    names = (set(a.names) | set(b.names)) - {"wall_time"}
    for name in sorted(names):
        x, y = a[name], b[name]
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=0, equal_nan=True, err_msg=name)


def _rows(path: Path) -> int:
    """Complete records in a trace file being written (header excluded)."""
    try:
        return max(path.read_bytes().count(b"\n") - 1, 0)
    except FileNotFoundError:
        return 0


def test_sigkill_then_resume_reproduces_the_trace(tmp_path):
    cfg_path = tmp_path / "run.json"
    cfg_path.write_text(json.dumps(CONFIG))
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eosmodel", "train", str(cfg_path), "--out", str(run_dir), "--no-progress"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Kill as soon as a checkpoint exists and the trace has records past it (so the resumed run
        # must truncate them): polled every 10 ms, far shorter than the rest of the run.
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
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()
    killed_rows = len(load_trace(run_dir))
    assert 0 < killed_rows < CONFIG["train"]["steps"]

    assert main(["train", str(cfg_path), "--out", str(run_dir), "--resume", "--no-progress"]) == 0
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "straight"), "--no-progress"]) == 0
    resumed, straight = load_trace(run_dir), load_trace(tmp_path / "straight")
    np.testing.assert_array_equal(resumed["step"], np.arange(CONFIG["train"]["steps"]))
    _compare(resumed, straight)
    s1 = json.loads((run_dir / "summary.json").read_text())
    s2 = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert s1["final_train_loss"] == s2["final_train_loss"]


def test_resume_rejects_a_different_config(tmp_path):
    cfg_path = tmp_path / "run.json"
    # The same config as above with fewer steps: the compiled programs are reused (same process).
    small = json.loads(json.dumps(CONFIG))
    small["train"]["steps"] = 6
    cfg_path.write_text(json.dumps(small))
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    # Extending a finished run continues from its final checkpoint.
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "r"), "--resume", "--set", "train.steps=8", "--no-progress"]) == 0
    tr = load_trace(tmp_path / "r")
    np.testing.assert_array_equal(tr["step"], np.arange(8))
    code = main(["train", str(cfg_path), "--out", str(tmp_path / "r"), "--resume", "--set", "tuner.c=0.3", "--no-progress"])
    assert code == 2
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "none"), "--resume", "--no-progress"]) == 2
