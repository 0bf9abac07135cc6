"""One run of a suite: reuse a finished run directory, resume an interrupted one, or train it.

:func:`execute_run` is what every engine runs for one run (in a worker process of the local
pool, or as a Ray task): it never raises for a run that fails or diverges, it returns an outcome
dict (JSON) that the suite records in ``status.json``. :func:`check_run_dir` is the check, made
before anything starts, that a run directory holds nothing but a run of the same config.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RunDirConflict", "check_run_dir", "execute_run", "resolved_config", "reused_outcome"]

#: Run states recorded in status.json.
STATES = ("pending", "running", "completed", "reused", "diverged", "failed")

WORKER_FILE = "worker.json"


class RunDirConflict(ValueError):
    """A run directory holds a run that the suite cannot reuse (another config, or a longer run)."""


@functools.lru_cache(maxsize=16)
def _train_size(data_json: str) -> int:
    from eosmodel.train import load_dataset

    return int(load_dataset(json.loads(data_json)).x_train.shape[0])


def resolved_config(config: Mapping[str, Any]) -> dict:
    """The config as ``run_training`` stores it in ``config.json``: normalized, tuner resolved.

    ``eosmodel.train.normalize_config`` fills the defaults; the tuner's preset arguments (e.g.
    ``armijo-vaswani``'s γ = 2^{b/n}) need the training-set size n, read from the data.
    """
    from eosmodel.train import normalize_config, resolve_tuner

    config = normalize_config(config)
    n = _train_size(json.dumps(config["data"], sort_keys=True))
    config["tuner"] = resolve_tuner(config["tuner"], n=n, batch_size=int(config["train"]["batch_size"]) or n)
    return config


def _done_steps(run_dir: Path, stored: Mapping[str, Any]) -> tuple[int, str] | None:
    """(steps, status) of a finished run in ``run_dir`` (summary.json), None if unfinished."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return int(summary.get("steps", stored["train"]["steps"])), str(summary.get("status", "completed"))


def check_run_dir(run_dir: str | os.PathLike, config: Mapping[str, Any]) -> str:
    """What the suite will do with ``run_dir`` for ``config``: "train", "resume" or "reuse".

    "reuse": a finished run of the same config and length (or a run of it that diverged);
    "resume": an unfinished run of the same config, or a shorter finished one (extended).
    The configs are compared with ``eosmodel.train.config_mismatch`` (only ``train.steps`` may
    differ).

    Raises:
      RunDirConflict: ``run_dir`` holds a run of another config, or a longer run of this one.
    """
    from eosmodel.train import config_mismatch

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        return "train"
    config = resolved_config(config)
    stored = json.loads((run_dir / "config.json").read_text())
    mismatch = config_mismatch(stored, config)
    if mismatch is not None:
        raise RunDirConflict(
            f"{run_dir} holds a run of another config, differing at {mismatch}; delete it or pass another --out."
        )
    if not (run_dir / "trace.jsonl").exists():
        return "train"
    done = _done_steps(run_dir, stored)
    if done is None:
        return "resume"
    steps, status = done
    want = int(config["train"]["steps"])
    if status == "diverged" or steps == want:
        return "reuse"
    if steps > want:
        raise RunDirConflict(
            f"{run_dir} holds a longer run ({steps} steps) than asked ({want}); pass --set train.steps={steps} or another --out."
        )
    return "resume"


def reused_outcome(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The outcome of a finished run that is reused (``check_run_dir`` said "reuse"): state and steps."""
    run_dir = Path(run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    steps, status = _done_steps(run_dir, stored)
    out: dict[str, Any] = {"state": "reused" if status == "completed" else status, "action": "reuse", "steps": steps}
    if status == "diverged":
        summary = json.loads((run_dir / "summary.json").read_text())
        out["error"] = str(summary.get("reason", "non-finite loss"))
    return out


def execute_run(name: str, config: Mapping[str, Any], run_dir: str, attempt: int = 0) -> dict[str, Any]:
    """Reuse, resume or train one run; the suite's unit of work on every engine.

    Args:
      name: the run's name (for the outcome).
      config: its config (before normalization).
      run_dir: its run directory.
      attempt: how many times it was started before (a retried Ray task; recorded).

    Returns:
      The outcome, a JSON dict: ``name``, ``state`` ("reused", "completed", "diverged" or
      "failed"), ``action`` ("reuse", "resume", "train"), ``steps``, ``wall_s``, ``host``,
      ``pid``, and ``error`` (one line, with the traceback's last frames in ``traceback``) when
      it failed. A failed run never raises: the suite goes on with the others.
    """
    started = time.perf_counter()
    out: dict[str, Any] = {"name": name, "host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt}
    run_path = Path(run_dir)
    try:
        action = check_run_dir(run_path, config)
        out["action"] = action
        run_path.mkdir(parents=True, exist_ok=True)
        (run_path / WORKER_FILE).write_text(json.dumps({**out, "started": time.time()}) + "\n")
        if action == "reuse":
            out.update(reused_outcome(run_path))
        else:
            from eosmodel.train import run_training

            result = run_training(config, run_path, resume=action == "resume", progress=False)
            out.update(state=result.status, steps=int(result.steps))
            if result.status == "diverged":
                out["error"] = str(result.summary.get("reason", "non-finite loss"))
    except Exception as err:  # noqa: BLE001 - a failed run is recorded, the suite goes on
        out.update(state="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=-4))
    out["wall_s"] = round(time.perf_counter() - started, 3)
    return out
