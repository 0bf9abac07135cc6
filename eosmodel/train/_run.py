"""Run a training config into a run directory: trace, checkpoints, resume, divergence handling.

Run directory layout::

    config.json       the normalized config (eosmodel.train.normalize_config, tuner resolved)
    trace.jsonl       one record per step (eosmodel.trace.TraceWriter), flushed every log_every steps
    checkpoint.npz    the latest checkpoint (every checkpoint_every steps and at the end), atomic
    summary.json      written when the run ends: status, steps, final losses, divergence info
    run.lock          while a process writes the directory: its pid and host (see run_lock)

A checkpoint at step s holds the state before step s: parameters, model state, optimizer state,
tracker eigenvectors, the epoch permutation, the step (the epoch and position in it follow from
s), the base PRNG key and the wall time. Resuming truncates the trace to steps < s and replays
from s; every random draw is ``fold_in(key, t)``, so a resumed run writes the same trace as an
uninterrupted one (wall_time aside).

The summary's ``final_train_loss``, ``final_test_loss`` and ``final_test_accuracy`` are measured
at w_T, the parameters after the last step, i.e. at step ``final_step`` = T, one step after the
trace's last row (step T − 1, whose ``loss`` is f(w_{T−1})).

Exit statuses (``RunResult.status``): "completed", or "diverged" when the training loss or the
squared gradient norm became non-finite (detected at the next logging check; recorded in the
trace as column ``diverged`` = 1 on that step and in summary.json); the CLI exits with code 3
(:data:`EXIT_DIVERGED`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import socket
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel._memory import format_bytes, memory_available
from eosmodel.errors import InputError, file_error
from eosmodel.trace import Trace, TraceWriter, load_trace
from eosmodel.train._config import _comparable, config_mismatch, normalize_config, resolve_tuner
from eosmodel.train._factory import build_dataset, build_model, load_params
from eosmodel.train._loop import TrainState, build_step_fns, host_layout, to_host
from eosmodel.train._losses import make_loss_fn
from eosmodel.train._models import count_params, init_model
from eosmodel.train._parallel import make_data_parallel
from eosmodel.tuners import make_tuner

__all__ = ["EXIT_DIVERGED", "RunResult", "load_checkpoint", "run_lock", "run_training", "save_checkpoint"]

#: Exit code of ``eosmodel train`` when the run diverged (non-finite loss).
EXIT_DIVERGED = 3

CHECKPOINT_FILE = "checkpoint.npz"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "run.lock"
_CHECKPOINT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run_training`.

    Attributes:
      run_dir: the run directory.
      status: "completed" or "diverged".
      steps: steps done (rows in the trace).
      summary: the content of summary.json.
      trace: the run's :class:`eosmodel.trace.Trace` (config + columns).
    """

    run_dir: Path
    status: str
    steps: int
    summary: dict
    trace: Trace


# ----------------------------------------------------------------------------------- checkpoints


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: str | os.PathLike, state: Any, meta: Mapping[str, Any]) -> Path:
    """Write ``state`` (any pytree of arrays) and ``meta`` (JSON) to ``run_dir/checkpoint.npz`` atomically.

    The leaves are stored in flattening order as ``leaf_00000, ...`` (host numpy arrays), so
    loading needs a template of the same structure (:func:`load_checkpoint`). Written to a
    temporary file, fsynced, then renamed over the previous checkpoint: a kill at any moment
    leaves either the old or the new checkpoint, never a partial one.
    """
    leaves = [np.asarray(x) for x in jax.tree.leaves(to_host(state))]
    arrays = {f"leaf_{i:05d}": x for i, x in enumerate(leaves)}
    arrays["meta"] = np.asarray(json.dumps({**meta, "num_leaves": len(leaves), "version": _CHECKPOINT_VERSION}))
    path = Path(run_dir) / CHECKPOINT_FILE
    _write_atomic(path, lambda fh: np.savez(fh, **arrays))
    return path


def load_checkpoint(run_dir: str | os.PathLike, template: Any) -> tuple[Any, dict] | None:
    """Read ``run_dir/checkpoint.npz`` into the structure of ``template``; None if there is none.

    Raises:
      InputError: the checkpoint is unreadable (truncated, corrupt) or does not match the template
        (another model or config); the message names the file.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    fix = ("delete it to restart the run from step 0 with --resume (the run is deterministic and rewrites the "
           "same trace), or restore it")
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            leaves = [data[f"leaf_{i:05d}"] for i in range(int(meta["num_leaves"]))]
        int(meta["step"]), float(meta["wall_time"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise file_error(path, "a readable eosmodel checkpoint: it is truncated or corrupt", err, fix) from None
    tmpl_leaves, treedef = jax.tree.flatten(template)
    mismatch = len(leaves) != len(tmpl_leaves) or any(
        a.shape != np.shape(b) or a.dtype != np.asarray(b).dtype for a, b in zip(leaves, tmpl_leaves)
    )
    if mismatch:
        raise InputError(
            f"{path} does not match this config's model and tuner (different arrays); resume with the "
            "config the run was started with, or start a new run directory."
        )
    return jax.tree.unflatten(treedef, leaves), meta


# ----------------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.4g}"


class _Progress:
    """tqdm bar over steps with loss, stepsize, sharpness and eta*lambda (updated per chunk)."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.sharpness = math.nan
        self.normalized = math.nan

    def update(self, rows: dict[str, np.ndarray]) -> None:
        if self.bar is None:
            return
        if "sharpness" in rows:
            measured = np.flatnonzero(np.isfinite(rows["sharpness"]))
            if measured.size:
                self.sharpness = float(rows["sharpness"][measured[-1]])
                self.normalized = float(rows["normalized_sharpness"][measured[-1]])
        self.bar.set_postfix_str(
            f"loss={_fmt(float(rows['loss'][-1]))} eta={_fmt(float(rows['stepsize'][-1]))} "
            f"sharpness={_fmt(self.sharpness)} eta*lambda={_fmt(self.normalized)}",
            refresh=False,
        )
        self.bar.update(len(rows["step"]))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _next_stop(t: int, steps: int, periods: list[int]) -> int:
    """The next step > t at which the host must act (logging, evaluation, checkpoint, end)."""
    stops = [steps] + [(t // p + 1) * p for p in periods if p > 0]
    return min(stops)


# ----------------------------------------------------------------------------------- lock, memory


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir/run.lock`` (the owner's pid and host) while a run writes the directory.

    The lock file is created exclusively (``O_CREAT | O_EXCL``). A lock whose owner is a live
    process (or one on another host, which cannot be checked) refuses the second run; a lock left
    by a dead process (a killed run) is stale and taken over. The lock is removed on exit, Ctrl-C
    included.

    Raises:
      InputError: another process holds the lock (the message names it and the lock file).
    """
    path = Path(run_dir) / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text())
                pid, host = int(owner["pid"]), str(owner["host"])
            except (OSError, ValueError, KeyError, TypeError):
                raise InputError(
                    f"{path} exists but names no owner (a run being started, or a crash); if no run is "
                    "writing this directory, delete that file and run again."
                ) from None
            stale = host == me["host"] and pid != os.getpid() and not _pid_alive(pid)
            if not stale or attempt:
                where = f"process {pid}" + ("" if host == me["host"] else f" on host {host}")
                raise InputError(
                    f"the run directory {run_dir} is in use by {where} (lock file {path}); wait for that run "
                    "to finish or stop it, or choose another --out (delete the lock file only if no run is "
                    "alive)."
                ) from None
            print(f"eosmodel: taking over the stale lock {path} of process {pid}, which is no longer running.",
                  file=sys.stderr)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if json.loads(path.read_text())["pid"] == me["pid"]:
                path.unlink()


def check_model_memory(config: Mapping[str, Any], num_params: int) -> int:
    """Refuse a model whose parameter-sized arrays cannot fit in memory; returns the bytes needed.

    A lower bound, counted in float32 parameter-sized vectors: parameters, gradient, the update
    and the tuner's state (4), plus, with sharpness tracking, the Lanczos basis
    (``sharpness.max_iters``), the tracked eigenvectors (``sharpness.k``) and the HVP's
    intermediates (2). Activations come on top.

    Raises:
      InputError: the bound exceeds the device's memory (or the host's available RAM on CPU).
    """
    sharp = config["sharpness"]
    copies = 4 + ((int(sharp["max_iters"]) + int(sharp["k"]) + 2) if int(sharp["every"]) else 0)
    need = 4 * num_params * copies
    have, where = memory_available()
    model = config["model"]
    if have is not None and need > have:
        raise InputError(
            f"model {model['name']} with these settings (model.width = {model.get('width')}) has {num_params:.3g} "
            f"parameters and needs at least {format_bytes(need)} ({copies} parameter-sized vectors: parameters, gradient, "
            f"tuner state{', Lanczos basis of sharpness.max_iters' if int(sharp['every']) else ''}) but the "
            f"{where} is {format_bytes(have)}; lower model.width (or width_multiplier, sharpness.max_iters)."
        )
    if need > 2 ** 31:
        print(f"eosmodel: the model has {num_params:.3g} parameters (at least {format_bytes(need)} of memory); "
              "initialising and compiling it can take minutes.", file=sys.stderr)
    return need


# ----------------------------------------------------------------------------------- the run


@functools.lru_cache(maxsize=8)
def _build(config_json: str, n: int, num_classes: int, dp: Any):
    """Model, loss, tuner, keys and compiled step functions of a config (cached per process).

    Runs of the same config (resumed, or repeated in one process) reuse the compiled programs;
    the number of steps is not part of the key (it is not part of the programs).
    """
    config = json.loads(config_json)
    train_cfg = config["train"]
    model = build_model(config["model"], num_classes)
    fns = make_loss_fn(model, config["loss"], num_classes)
    tx = make_tuner(config["tuner"])
    # Key derivation (documented, tests replay it): k = key(seed); init, data order, tracker start
    # and per-step keys are fold_in(k, 0), fold_in(k, 1), fold_in(k, 2), fold_in(k, 3); step t uses
    # fold_in(per-step key, t) and epoch e the permutation of fold_in(data key, e).
    root = jax.random.key(int(train_cfg["seed"]))
    keys = {name: jax.random.fold_in(root, i) for i, name in enumerate(("init", "data", "tracker", "step"))}
    step_fns = build_step_fns(
        fns=fns,
        tx=tx,
        dp=dp,
        keys=keys,
        n_train=n,
        batch_size=int(train_cfg["batch_size"]),
        chunk_size=int(train_cfg["chunk_size"]),
        sharpness=config["sharpness"],
        subset_is_train=int(config["sharpness"]["subset"]) in (0, n),
    )
    return model, fns, tx, keys, step_fns


def run_training(
    config: Mapping[str, Any], run_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True
) -> RunResult:
    """Train a network with a stepsize tuner while tracking sharpness; write a run directory.

    Full batch (``train.batch_size = 0``): gradient descent w_{t+1} = w_t − η_t ∇f(w_t) on the
    training loss f(w) = (1/n) Σ_j ℓ(w; x_j, y_j), accumulated over chunks of
    ``train.chunk_size`` examples; Armijo's trials evaluate the full f. Mini-batch: SGD on batches
    drawn without replacement (a fresh permutation per epoch), the tuner (line search, Polyak)
    evaluating the loss of the same batch. Every ``sharpness.every`` steps the top-``k`` Hessian
    eigenvalues of the training loss on the first ``sharpness.subset`` examples (0: all) are
    estimated with the warm-started ``SharpnessTracker`` (BatchNorm models: the training-mode loss,
    normalised with batch statistics). η_t is chosen by ``make_tuner(config["tuner"])``.

    Each ``train.log_every`` steps run as one compiled loop; the host then fetches the
    per-step records, stops on a non-finite loss, appends them to the trace and updates the
    progress bar. Held-out loss and accuracy (evaluation mode) are recorded every
    ``train.eval_every`` steps (columns ``test_loss``, ``test_accuracy``), a checkpoint is written
    every ``train.checkpoint_every`` steps and at the end. Data-parallel over
    ``train.devices`` local devices (each chunk split over them, parameters replicated).

    Randomness: k = ``jax.random.key(train.seed)``; the initial parameters use fold_in(k, 0), the
    epoch permutations fold_in(fold_in(k, 1), epoch), the tracker's first vectors fold_in(k, 2) and
    step t's sharpness estimate fold_in(fold_in(k, 3), t); nothing else is random.

    Args:
      config: a run config (see :func:`eosmodel.train.normalize_config`; partial configs are
        completed with the defaults).
      run_dir: the run directory (created; must not hold a run unless ``resume``).
      resume: continue the run in ``run_dir`` from its last checkpoint (the trace is truncated to
        the checkpoint's step); ``train.steps`` may be larger than in the original run, every other
        setting must match. With no checkpoint yet, the run restarts from step 0.
      progress: show a tqdm progress bar on stderr.

    Returns:
      A :class:`RunResult`; ``status`` is "diverged" when the loss became non-finite (the run
      stops at the next logging check, see the module docstring).

    Raises:
      ValueError: an invalid config, a config that differs from the resumed run's, a run directory
        that already holds a run (without ``resume``), or a batch/chunk size that does not split
        over the devices (an :class:`~eosmodel.errors.InputError`, a ``ValueError``, for the
        run-directory cases); a directory locked by a live run (:func:`run_lock`); a model whose
        parameter-sized arrays exceed the memory (:func:`check_model_memory`); on ``resume``, an
        unreadable checkpoint or a trace that ends before the checkpoint's step.
      FileNotFoundError: ``resume`` without a run in ``run_dir``, or missing data files.

    Reference: Roulet, Agarwala, Pedregosa, arXiv 2312.00209 (tuners and progressive sharpening);
    Cohen et al., arXiv 2103.00065 (sharpness conventions).
    """
    started = time.perf_counter()
    config = normalize_config(config)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"the run directory {run_dir} is a file; give a directory path (it is created if missing).")
    if resume and not ((run_dir / "config.json").exists() and (run_dir / "trace.jsonl").exists()):
        raise FileNotFoundError(f"cannot resume: {run_dir} holds no run (config.json and trace.jsonl); start it without resume.")
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _run_locked(config, run_dir, resume=resume, progress=progress, started=started)


def _check_resumable(run_dir: Path, start_step: int) -> None:
    """Refuse to resume when the trace does not hold exactly the steps 0..start_step-1 it should."""
    steps = load_trace(run_dir)["step"]
    kept = steps[steps < start_step]
    if len(kept) == start_step and (start_step == 0 or int(kept[-1]) == start_step - 1):
        return
    have = f"steps {int(kept[0])}..{int(kept[-1])} ({len(kept)} records)" if len(kept) else "no records"
    raise InputError(
        f"cannot resume {run_dir}: its trace.jsonl holds {have} before the checkpoint's step {start_step}, so "
        f"steps would be missing; restore trace.jsonl, or delete {run_dir / CHECKPOINT_FILE} and resume to "
        "rerun from step 0 (the run is deterministic and rewrites the same trace)."
    )


def _run_locked(config: dict, run_dir: Path, *, resume: bool, progress: bool, started: float) -> RunResult:
    """The body of :func:`run_training`, run while holding the run directory's lock."""
    if not resume and (run_dir / "trace.jsonl").exists():  # resume's files were checked by run_training
        raise InputError(f"run directory {run_dir} already holds a run; resume it (--resume) or choose another directory.")

    data_cfg, train_cfg, sharp_cfg = config["data"], config["train"], config["sharpness"]
    dataset = build_dataset(data_cfg)
    n = int(dataset.x_train.shape[0])
    batch_size = int(train_cfg["batch_size"])
    if batch_size > n:
        raise InputError(f"train.batch_size must be <= the training-set size {n}, got {batch_size}; lower it or use 0 (full batch).")
    subset_n = int(sharp_cfg["subset"])
    if subset_n > n:
        raise InputError(f"sharpness.subset must be <= the training-set size {n}, got {subset_n}; lower it or use 0 (all).")
    config["tuner"] = resolve_tuner(config["tuner"], n=n, batch_size=batch_size or n)

    if resume:
        try:
            stored = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise file_error(run_dir / "config.json", "valid JSON", err,
                             "restore it, or start the run anew in another directory") from None
        if not isinstance(stored, dict):
            raise InputError(f"{run_dir / 'config.json'} does not hold a JSON object; restore it, or start the "
                             "run anew in another directory.")
        mismatch = config_mismatch(stored, config)
        if mismatch is not None:
            raise InputError(
                f"the config differs from the resumed run's config.json at {mismatch}; resume with the same config "
                "(only train.steps may change)."
            )

    dp = make_data_parallel(int(train_cfg["devices"]))
    if batch_size and batch_size % dp.num_devices:
        raise InputError(
            f"train.batch_size must be a multiple of the number of devices ({dp.num_devices}), got {batch_size}; "
            "change it or set train.devices."
        )
    chunk_size = int(train_cfg["chunk_size"])
    if batch_size and min(chunk_size, batch_size) % dp.num_devices:
        raise InputError(
            f"train.chunk_size must be a multiple of the number of devices ({dp.num_devices}), got {chunk_size}; "
            "change it or set train.devices."
        )

    model, fns, tx, keys, step_fns = _build(json.dumps(_comparable(config), sort_keys=True), n, dataset.num_classes, dp)

    # Data on the devices: full batch and the sharpness subset pre-cut into sharded chunks.
    train_xy = (dataset.x_train, dataset.y_train)
    train_chunks = host_layout(train_xy, chunk_size, dp, "training set")
    train_data = train_chunks if batch_size == 0 else dp.put_replicated(train_xy)
    if subset_n in (0, n):
        subset = train_chunks
    else:
        subset = host_layout((dataset.x_train[:subset_n], dataset.y_train[:subset_n]), chunk_size, dp, "sharpness subset")
    test_chunks = host_layout((dataset.x_test, dataset.y_test), chunk_size, dp, "test set")

    # Initial state (also the template a checkpoint is read into); its size is checked first, on
    # shapes only, so an impossible model is refused instead of hanging in the allocator.
    shapes = jax.eval_shape(functools.partial(init_model, model), keys["init"], dataset.x_train[:1])
    check_model_memory(config, count_params(shapes["params"]))
    variables = init_model(model, keys["init"], dataset.x_train[:1])
    params = variables["params"]
    if config["model"].get("init_from"):
        params = load_params(config["model"]["init_from"], params)
    model_state = {k: v for k, v in variables.items() if k != "params"}
    tracker_state = ()
    if int(sharp_cfg["every"]):
        from eosmodel.sharpness import SharpnessTracker

        tracker = SharpnessTracker(k=int(sharp_cfg["k"]), tol=float(sharp_cfg["tol"]), max_iters=int(sharp_cfg["max_iters"]))
        tracker_state = tracker.init(params, keys["tracker"])
    perm = jnp.arange(n if batch_size else 0, dtype=jnp.int32)
    state = TrainState(params, model_state, tx.init(params), tracker_state, perm, jnp.zeros((), jnp.int32))

    start_step, wall_offset = 0, 0.0
    if resume:
        loaded = load_checkpoint(run_dir, state)
        if loaded is not None:
            state, meta = loaded
            start_step, wall_offset = int(meta["step"]), float(meta["wall_time"])
        _check_resumable(run_dir, start_step)
        writer = TraceWriter(run_dir, config, resume=True, resume_step=start_step - 1)
    else:
        writer = TraceWriter(run_dir, config)
    state = dp.put_replicated(state)
    num_params = count_params(params)

    steps = int(train_cfg["steps"])
    log_every, eval_every, ckpt_every = (int(train_cfg[k]) for k in ("log_every", "eval_every", "checkpoint_every"))
    bar = _Progress(progress, steps, start_step, f"{config['model'].get('name') or config['model']['factory']}/{config['tuner'].get('preset', config['tuner']['name'])}")
    clock0 = time.perf_counter() - wall_offset
    t = start_step
    status, diverged_at, reason = "completed", None, ""
    last_time = time.perf_counter() - clock0
    try:
        while t < steps:
            evals = {}
            if eval_every and t % eval_every == 0:
                test_loss, test_acc = step_fns.evaluate(state.params, state.model_state, test_chunks)
                evals = {"test_loss": test_loss, "test_accuracy": test_acc}
            stop = _next_stop(t, steps, [log_every, eval_every, ckpt_every])
            length = stop - t
            state, records = step_fns.run_chunk(state, train_data, subset, np.int32(length), buffer=log_every)
            rows, evals = to_host((records, evals))
            now = time.perf_counter() - clock0
            rows = {k: np.asarray(v)[:length] for k, v in rows.items()}
            rows["wall_time"] = last_time + (now - last_time) * np.arange(1, length + 1) / length
            last_time = now
            for name, value in evals.items():
                col = np.full(length, np.nan)
                col[0] = float(value)
                rows[name] = col
            bad = ~(np.isfinite(rows["loss"]) & np.isfinite(rows["grad_norm_sq"]))
            if bad.any():
                i = int(np.argmax(bad))
                rows = {k: v[: i + 1] for k, v in rows.items()}
                rows["diverged"] = np.zeros(i + 1)
                rows["diverged"][i] = 1.0
                diverged_at = t + i
                what = "training loss" if not np.isfinite(rows["loss"][i]) else "squared gradient norm"
                status = "diverged"
                reason = f"non-finite {what} ({rows['loss'][i]!r}) at step {diverged_at}"
            writer.append_columns(rows)
            bar.update(rows)
            if status == "diverged":
                t = diverged_at + 1
                break
            t = stop
            if (ckpt_every and t % ckpt_every == 0) or t == steps:
                writer.sync()
                save_checkpoint(run_dir, state, {"step": t, "wall_time": now, "seed": int(train_cfg["seed"])})
    finally:
        bar.close()
        writer.close()

    summary: dict[str, Any] = {
        "status": status,
        "steps": t,
        "steps_requested": steps,
        "wall_time": time.perf_counter() - clock0,
        "run_seconds_this_session": time.perf_counter() - started,
        "num_params": num_params,
        "num_devices": dp.num_devices,
        "n_train": n,
        "n_test": int(dataset.x_test.shape[0]),
        "dataset": dataset.meta.get("source", dataset.name),
    }
    if status == "diverged":
        summary.update({"diverged_at_step": diverged_at, "reason": reason})
    else:
        final_train = step_fns.train_loss(state.params, train_chunks)
        test_loss, test_acc = step_fns.evaluate(state.params, state.model_state, test_chunks)
        # Measured at w_T, the parameters after the last step: one step after the trace's last
        # row (step T-1, whose loss is f(w_{T-1})); "final_step" = T says so.
        summary.update(
            {
                "final_step": t,
                "final_train_loss": float(final_train),
                "final_test_loss": float(test_loss),
                "final_test_accuracy": float(test_acc),
            }
        )
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    _write_atomic(run_dir / SUMMARY_FILE, lambda fh: fh.write(text.encode()))
    trace = load_trace(run_dir)
    return RunResult(run_dir=run_dir, status=status, steps=t, summary=summary, trace=trace)

