"""``eosmodel train CONFIG [--set table.key=value ...] [--out RUN_DIR] [--resume] [--no-progress]``.

``eosmodel train --show-config [CONFIG] [--set ...]`` prints every config key with its default,
valid range and meaning (and CONFIG's values), from the one schema ``eosmodel.train.SCHEMA``.

Trains the network described by a TOML/JSON run config (see ``eosmodel.train.load_config``) and
writes a run directory (config.json, trace.jsonl, checkpoint.npz, summary.json).

Exit codes: 0 the run completed; 2 a bad config or command line (one-sentence error);
3 the run diverged (non-finite training loss; where and why are in summary.json and the trace).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    parser = subparsers.add_parser(
        "train",
        help="train a network with a stepsize tuner while tracking sharpness",
        description=(
            "Train a network with a stepsize tuner while tracking sharpness; writes a run directory. "
            "Exit codes: 0 completed, 2 bad config, 3 diverged (non-finite loss)."
        ),
    )
    parser.add_argument("config", nargs="?", help="run config, a .toml or .json file")
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print every config key with its default, valid range and meaning (with CONFIG: its values) and exit",
    )
    parser.add_argument("--markdown", action="store_true", help="with --show-config: Markdown tables (docs/config.md)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="override a config value, e.g. --set train.steps=200 --set tuner.c=0.2 (repeatable)",
    )
    parser.add_argument("--out", default=None, help="run directory (default: runs/<config file name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``eosmodel train``; returns the exit code (0, or 3 when the run diverged)."""
    from eosmodel.cli import check_writable_dir
    from eosmodel.train import EXIT_DIVERGED, describe_config, load_config, run_training

    if args.show_config:
        config = load_config(args.config, args.overrides) if args.config or args.overrides else None
        print(describe_config(config, markdown=args.markdown), end="")
        return 0
    if args.config is None:
        from eosmodel.cli import UsageError

        raise UsageError("eosmodel train needs a CONFIG file (a .toml or .json run config); see --show-config for the keys.")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    check_writable_dir(out)
    config = load_config(args.config, args.overrides)
    args.interrupt_hint = (
        f"the run directory {out} keeps every step up to the last flush and the last checkpoint; "
        f"continue with: eosmodel train {args.config} --out {out} --resume"
    )
    result = run_training(config, out, resume=args.resume, progress=args.progress)
    if result.status == "diverged":
        print(
            f"eosmodel train: the run diverged: {result.summary['reason']}; the trace up to that step is in "
            f"{out} (lower the stepsize or change the tuner).",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    s = result.summary
    print(
        f"eosmodel train: done, {s['steps']} steps; after the last step: train loss {s['final_train_loss']:.4g}, "
        f"test accuracy {s['final_test_accuracy']:.3f}; run directory {out}"
    )
    return 0
