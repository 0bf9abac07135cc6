"""``eosmodel demo``: the README's main job, a small-scale analogue of the paper's figures 1-2.

An MLP on the embedded MNIST-1D data, full batch, trained with gradient descent at two fixed
stepsizes, with Armijo line search and with the Polyak stepsize, sharpness (and the curvature
along the gradient) tracked throughout. Then each run is fitted by the "EOS alone" and the joint
model (``eosmodel.fit``), giving one verdict per tuner. Everything lands in one output directory::

    runs/demo/
      gd-eta0.15/ gd-eta0.2/ armijo/ polyak/  run directories (config.json, trace.jsonl, ...)
      <run>/fit_report.json, <run>/fit.png    the fit of each run
      runs.png                                loss, sharpness (with 2/eta), stepsize, eta*lambda
      fits.txt                                the verdict table
      predictions.txt/.json/.png              Armijo and Polyak predicted from the GD runs

A run directory that is already complete is reused; one that was interrupted is resumed from
its last checkpoint, so re-running the command after a kill finishes the job. A run directory
holding a run of another config (e.g. from an older version of the demo) is an error, never reused.

The network is fc-relu (2 hidden layers of 64): at this scale it shows each of the paper's
findings, Armijo's η·λ included (median about 1.7, below 2, while λ climbs past every 2/η). With
fc-tanh, the paper's activation, Armijo's η·λ hovers at 2.0 instead (see tests/test_train_eos.py
for the settings and the measured mechanism).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from eosmodel.cli import UsageError

#: The shared part of the four runs (see ``eosmodel.train.normalize_config`` for every key).
BASE_CONFIG: dict = {
    "data": {"name": "mnist1d", "n_train": 200, "n_test": 1000},
    "model": {"name": "fc-relu", "width": 64, "depth": 2},
    "loss": {"name": "mse"},
    "train": {
        "steps": 2000,
        "batch_size": 0,
        "chunk_size": 200,
        "seed": 0,
        "log_every": 25,
        "eval_every": 200,
        "checkpoint_every": 200,
    },
    # An odd cadence: an even one samples one phase of the period-2 EOS oscillation only.
    "sharpness": {"every": 5, "k": 1, "tol": 1e-3, "grad_curvature": True},
}

#: The four tuners compared (name of the run directory -> tuner table).
TUNERS: dict[str, dict] = {
    "gd-eta0.15": {"name": "constant", "stepsize": 0.15},
    "gd-eta0.2": {"name": "constant", "stepsize": 0.2},
    "armijo": {"preset": "armijo-jax"},
    "polyak": {"preset": "sps-0.5"},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="the main job: GD at two stepsizes vs Armijo vs Polyak on MNIST-1D, then the EOS fits",
        description=(
            "Train an MLP on the embedded MNIST-1D data with GD at two fixed stepsizes, Armijo and "
            "Polyak (full batch, sharpness tracked), plot the runs, and fit the EOS models to each."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: 2000)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run)


def demo_configs(steps: int | None = None) -> dict[str, dict]:
    """The four run configs of the demo (run name -> config)."""
    configs = {}
    for name, tuner in TUNERS.items():
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg["tuner"] = dict(tuner)
        if steps is not None:
            cfg["train"]["steps"] = int(steps)
        configs[name] = cfg
    return configs


def _reuse_or_run(name: str, config: dict, run_dir: Path, progress: bool) -> str:
    """Train ``config`` into ``run_dir``, resuming or extending a run of the same config found there.

    Returns the run's status. A completed run of the same config and length is reused as is.

    Raises:
      ValueError: ``run_dir`` holds a run of another config, or a longer run of this one.
    """
    from eosmodel.train import config_mismatch, normalize_config, run_training

    config = normalize_config(config)
    steps = config["train"]["steps"]
    if not (run_dir / "config.json").exists():
        print(f"[demo] {name}: training -> {run_dir}", file=sys.stderr)
        return run_training(config, run_dir, progress=progress).status
    from eosmodel.errors import file_error

    try:
        stored = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise file_error(run_dir / "config.json", "valid JSON", err, "delete the run directory or pass --out DIR") from None
    mismatch = config_mismatch(stored, config)
    if mismatch is not None:
        raise UsageError(
            f"{run_dir} holds a run of another config than the demo's (an older demo?), differing at "
            f"{mismatch}; delete it or pass --out DIR."
        )
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise file_error(summary_path, "valid JSON", err, "delete it to let the demo resume the run") from None
        done = int(summary.get("steps", stored["train"]["steps"]))
        if summary.get("status") == "diverged" or done == steps:
            print(f"[demo] {name}: reusing the finished run in {run_dir}", file=sys.stderr)
            return summary.get("status", "completed")
        if done > steps:
            raise UsageError(
                f"{run_dir} holds a longer run ({done} steps) than asked ({steps}); pass --steps {done} or --out DIR."
            )
    print(f"[demo] {name}: resuming -> {run_dir}", file=sys.stderr)
    return run_training(config, run_dir, resume=True, progress=progress).status


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0, or 3 when a run diverged (the others still complete)."""
    from eosmodel.fit import compare, fit_trace, plot_fit
    from eosmodel.trace import load_trace, plot_traces
    from eosmodel.train import EXIT_DIVERGED

    if args.steps is not None and args.steps < 50:
        raise UsageError(f"--steps must be at least 50 to show any dynamics, got {args.steps}.")
    from eosmodel.cli import check_writable_dir

    out = check_writable_dir(args.out)
    args.interrupt_hint = (f"every run in {out} keeps its steps up to the last checkpoint; run the same "
                           "command again to resume them")
    started = time.perf_counter()
    traces, labels, diverged = [], [], []
    for name, config in demo_configs(args.steps).items():
        run_dir = out / name
        status = _reuse_or_run(name, config, run_dir, args.progress)
        if status == "diverged":
            diverged.append(name)
        traces.append(load_trace(run_dir))
        labels.append(name)

    plot_traces(traces, labels, out / "runs.png", title="MLP on MNIST-1D, full batch: fixed stepsizes vs tuners")

    reports = []
    for name, trace in zip(labels, traces):
        tuned = name in ("armijo", "polyak") and name not in diverged
        report = fit_trace(trace, closed_loop="auto" if tuned else None)
        report.to_json(out / name / "fit_report.json")
        plot_fit(report, trace, out / name / "fit.png")
        reports.append(report)
    table = compare(reports, out / "fits.txt")
    print(table)
    sources = [out / n for n in labels if n.startswith("gd-") and n not in diverged]
    targets = [out / n for n in ("armijo", "polyak") if n in labels and n not in diverged]
    if sources and targets:
        from eosmodel.fit import predict_runs, write_predictions

        ptable = write_predictions(predict_runs(targets, sources), out)
        print("Armijo and Polyak predicted in closed loop from the two GD runs (nothing fitted on them):")
        print(ptable)
    print(
        f"\n[demo] done in {time.perf_counter() - started:.0f} s: figure {out / 'runs.png'}, "
        f"fit reports and figures in {out}/<run>/, verdict table {out / 'fits.txt'}, "
        f"cross-run predictions {out / 'predictions.txt'} and {out / 'predictions.png'}"
    )
    if diverged:
        print(f"[demo] these runs diverged: {', '.join(diverged)} (see their summary.json)", file=sys.stderr)
        return EXIT_DIVERGED
    return 0
