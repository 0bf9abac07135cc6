"""``eosmodel reproduce SUITE --out DIR``: run a suite of configs, draw its figures, check the paper's claims.

Suites: ``demo`` (the four runs of ``eosmodel demo``), ``small-fig1`` ... ``small-fig5`` and
``small`` (CPU scale, ``experiments/small/``), ``paper-fig1`` ... ``paper-fig5`` (GPU scale,
``experiments/``); ``--list`` shows them with their run counts and estimated cost.

Engines: ``--engine local`` (default; ``--jobs N`` worker processes) or ``--engine ray --address
ADDR`` (each run a Ray task on an existing cluster; needs ``pip install -e ".[ray]"``).

Exit codes: 0 every run completed (or was reused); 2 a bad command line, or a run directory of
another config in DIR (nothing started); 3 a run diverged; 4 a run or figure failed (see
DIR/status.json). The other runs, the figures and the claims report are produced in every case.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from eosmodel.cli import UsageError, check_writable_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` command."""
    parser = subparsers.add_parser(
        "reproduce",
        help="run a suite of the paper's configs (locally or on Ray), draw its figures, check its claims",
        description=(
            "Run every config of a suite (finished runs reused, interrupted ones resumed), draw the suite's "
            "figures and write DIR/claims.md and claims.json. Exit codes: 0 done, 2 bad command line or "
            "conflicting run directory, 3 a run diverged, 4 a run or figure failed."
        ),
    )
    parser.add_argument("suite", nargs="?", help="suite name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the suites with their run counts and estimated cost")
    parser.add_argument("--out", default=None, help="output directory (default: runs/<suite>)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="where runs execute (default: local)")
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time (local default: cores // CPUs per run)")
    parser.add_argument("--address", default=None, help="Ray cluster address for --engine ray, e.g. 127.0.0.1:6379")
    parser.add_argument("--cpus-per-run", type=float, default=None, help="CPU cores one run uses (default: the suite's)")
    parser.add_argument("--gpus-per-run", type=float, default=None, help="GPUs one run uses (default: the suite's)")
    parser.add_argument("--retries", type=int, default=2, help="restarts of a run whose worker died (default: 2)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="TABLE.KEY=VALUE",
        help="override a value in every run config, e.g. --set train.steps=200 (repeatable)",
    )
    parser.add_argument("--only", default=None, metavar="PATTERN", help="only the runs whose name matches, e.g. 'fc-tanh_*'")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="one line per run instead of progress bars")
    parser.set_defaults(func=run)


def all_suites() -> dict:
    """The demo suite and the suites of ``experiments/`` (name -> Suite)."""
    from eosmodel.cli._demo import demo_configs
    from eosmodel.reproduce import experiment_suites, suite_from_configs

    demo = suite_from_configs(
        "demo",
        demo_configs(),
        description="the main job (eosmodel demo): fc-relu on MNIST-1D, GD at 2 stepsizes / Armijo / Polyak",
        group="demo",
        source="eosmodel demo",
        figures=(("fig1", "demo"), ("fig2", "demo")),
        claim_figures=(("1", "demo"), ("2", "demo")),
        minutes_per_run=0.5,
    )
    return {"demo": demo, **experiment_suites()}


def _list(suites: dict) -> str:
    lines = [f"{'suite':<12} {'runs':>4}  {'estimated cost, one run at a time':<40} description"]
    for name, s in suites.items():
        total = s.estimated_minutes(1)
        if s.gpus_per_run:
            cost = f"{total / 60:.0f} GPU-hours ({s.minutes_per_run:.0f} min/run, 1 GPU)"
        else:
            cost = f"{total:.0f} min ({s.minutes_per_run:g} min/run, {s.hardware})"
        lines.append(f"{name:<12} {len(s.runs):>4}  {cost:<40} {s.description}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``eosmodel reproduce``; returns the exit code."""
    from eosmodel.reproduce import reproduce

    suites = all_suites()
    if args.list:
        print(_list(suites))
        return 0
    if not args.suite:
        raise UsageError(f"name a suite, one of {', '.join(suites)}; or pass --list.")
    if args.suite not in suites:
        raise UsageError(f"unknown suite {args.suite!r}; choose one of {', '.join(suites)} (see --list).")
    if args.retries < 0:
        raise UsageError(f"--retries must be at least 0, got {args.retries}.")
    suite = suites[args.suite].select(args.only).with_overrides(args.overrides)
    out = check_writable_dir(Path(args.out) if args.out else Path("runs") / suite.name)
    try:
        result = reproduce(
            suite, out, engine=args.engine, jobs=args.jobs, address=args.address, cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run, retries=args.retries, progress=args.progress,
        )
    except ModuleNotFoundError as err:
        if err.name == "ray":
            raise UsageError(str(err)) from None
        raise
    states = Counter(r["state"] for r in result.runs.values())
    verdicts = Counter(c["verdict"] for c in result.claims)
    print(f"[reproduce] {suite.name}: {len(result.runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}) "
          f"in {result.elapsed_s / 60:.1f} min; status {out / 'status.json'}")
    for fig, where in result.figures.items():
        print(f"[reproduce] figure {fig}: {where}")
    if result.claims:
        print(f"[reproduce] claims: {', '.join(f'{n} {v}' for v, n in verdicts.items())}; report {out / 'claims.md'}")
    for name, r in result.runs.items():
        if r["state"] in ("failed", "diverged"):
            print(f"[reproduce] {name} {r['state']}: {r.get('error', '')}", file=sys.stderr)
    return result.exit_code
