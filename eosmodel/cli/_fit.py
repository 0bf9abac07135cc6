"""``eosmodel fit PATH... [--out DIR] [--tuner NAME] [--closed-loop]``: fit EOS models to traces;
``eosmodel fit --predict RUN... --from RUN... [--out DIR]``: predict tuner runs from fixed-stepsize runs.

For each trace (run directory, ``trace.jsonl`` or CSV with columns step, stepsize, sharpness and
optionally loss or x) it writes ``<out>/<name>/fit_report.json`` and ``<out>/<name>/fit.png`` and
prints a summary; with several traces it also prints and saves ``<out>/comparison.txt``. With
``--predict`` it writes ``<out>/predictions.json``, ``predictions.txt`` and ``predictions.png``
(:func:`eosmodel.fit.predict_runs`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from eosmodel.cli import UsageError

from eosmodel.fit import DEFAULT_EDGE_TOL, compare, fit_trace, plot_fit


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit 'EOS alone' and the joint sharpness-stepsize model to traces",
        description=(
            "Fit the EOS-alone model and the joint (self-stabilisation + tuner) model to one or "
            "more traces, and say window by window where EOS alone explains the sharpness: "
            "'explained' (hovering within the tolerance of 2/eta, or sharpening towards a ceiling "
            "that stays put), 'above ceiling' (the window's centre of eta*lambda - 2 exceeds "
            "2*edge_tol plus two standard errors), 'growing below edge' (lambda grows while "
            "eta*lambda is held below 2), 'off model' (below the edge, lambda falls or departs "
            "from EOS alone with a free sharpening rate)."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="run directory, trace.jsonl or CSV (columns step, stepsize, sharpness; loss/x optional)")
    p.add_argument("--predict", nargs="+", metavar="RUN", default=None,
                   help="tuner runs to predict in closed loop, with nothing fitted on them (needs --from)")
    p.add_argument("--from", dest="sources", nargs="+", metavar="RUN", default=None,
                   help="fixed-stepsize runs of the same network and data to fit the prediction on")
    p.add_argument("--out", default="fit_out", help="output directory (default: fit_out)")
    p.add_argument("--tuner", default=None,
                   help="tuner rule for the closed loop (constant, oracle, armijo, polyak, cdat, or a "
                        "preset of eosmodel.tuners); implies --closed-loop")
    p.add_argument("--sigma", type=float, default=None, help="sigma of the oracle/cdat rule (with --tuner)")
    p.add_argument("--closed-loop", action="store_true",
                   help="also fit the closed-loop joint model (tuner from the trace's config unless --tuner)")
    p.add_argument("--windows", type=int, default=8, help="number of verdict windows (default 8)")
    p.add_argument("--time", choices=("eta_t", "steps"), default="eta_t",
                   help="clock of the fits: eta*t (default) or steps")
    p.add_argument("--edge-tol", type=float, default=DEFAULT_EDGE_TOL,
                   help=f"effect size on eta*lambda around 2, relative to the ceiling 2/eta (default "
                        f"{DEFAULT_EDGE_TOL}: GD sits up to ~6%% above 2/eta); the band on a window's "
                        "centre adds two standard errors")
    p.add_argument("--columns", default=None, metavar="THEIRS=OURS,...",
                   help="rename CSV columns, e.g. --columns iteration=step,lr=stepsize,top_eig=sharpness,"
                        "train_loss=loss (names of the standard columns: step, stepsize, sharpness, loss)")
    p.set_defaults(func=run)


def parse_columns(text: str | None) -> dict[str, str] | None:
    """``"a=step,b=stepsize"`` to ``{"a": "step", "b": "stepsize"}`` (the ``--columns`` option)."""
    if text is None:
        return None
    from eosmodel.cli import UsageError

    out: dict[str, str] = {}
    for item in text.split(","):
        theirs, sep, ours = (part.strip() for part in item.partition("="))
        if not sep or not theirs or not ours:
            raise UsageError(
                f"--columns expects THEIRS=OURS pairs separated by commas, got {item.strip()!r} in {text!r}; "
                "write e.g. --columns iteration=step,lr=stepsize,top_eig=sharpness."
            )
        out[theirs] = ours
    return out


def _closed_loop(args) -> None | str | dict:
    """The closed-loop request: ``None``, ``"auto"`` or a tuner config (a name, the oracle
    included, or a preset of eosmodel.tuners, resolved by ``tuner_config``)."""
    if args.tuner is None:
        if args.sigma is not None:
            raise UsageError("--sigma needs --tuner (oracle or cdat); pass e.g. --tuner oracle --sigma 1.5.")
        return "auto" if args.closed_loop else None
    if args.tuner == "constant":  # its stepsize comes from the trace (rule_config)
        cfg: dict = {"name": "constant"}
    else:
        from eosmodel.tuners import tuner_config

        try:
            cfg = tuner_config(args.tuner)
        except (TypeError, ValueError) as err:
            raise UsageError(f"--tuner {args.tuner!r}: {err}") from None
    if args.sigma is not None:
        cfg["sigma"] = args.sigma
    return cfg


def _name(path: Path, used: set[str]) -> str:
    base = path.stem if path.is_file() else path.name
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "trace"
    if base in ("trace", "run"):
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.resolve().parent.name if path.is_file() else base)
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}-{i}"
    used.add(name)
    return name


def _predict(args: argparse.Namespace, out: Path) -> int:
    from eosmodel.fit import predict_runs, write_predictions

    if not args.sources:
        raise UsageError("--predict needs --from RUN... (the fixed-stepsize runs to fit on).")
    table = write_predictions(predict_runs(args.predict, args.sources), out)
    print(table, end="")
    print(f"-> {out / 'predictions.json'}, {out / 'predictions.txt'}, {out / 'predictions.png'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from eosmodel.cli import check_writable_dir
    from eosmodel.trace import read_csv

    out = check_writable_dir(args.out)
    if args.predict is not None or args.sources is not None:
        if args.predict is None:
            raise UsageError("--from needs --predict RUN... (the tuner runs to predict).")
        return _predict(args, out)
    if not args.paths:
        raise UsageError("give at least one PATH to fit, or --predict RUN... --from RUN....")
    column_map = parse_columns(args.columns)
    if column_map is not None:
        not_csv = [p for p in args.paths if Path(p).suffix.lower() != ".csv"]
        if not_csv:
            raise UsageError(f"--columns renames the columns of CSV files, but {not_csv} are not .csv files; "
                             "drop --columns or fit the CSV files in a separate call.")
    closed = _closed_loop(args)
    reports, used = [], set()
    for raw in args.paths:
        path = Path(raw)
        source = read_csv(path, column_map=column_map) if column_map is not None else path
        report = fit_trace(source, closed_loop=closed, windows=args.windows, time=args.time,
                           edge_tol=args.edge_tol)
        sub = out / _name(path, used)
        report.to_json(sub / "fit_report.json")
        plot_fit(report, None, sub / "fit.png")
        print(report.summary())
        print(f"  -> {sub / 'fit_report.json'}, {sub / 'fit.png'}")
        reports.append(report)
    if len(reports) > 1:
        table = compare(reports, out / "comparison.txt")
        print()
        print(table, end="")
        print(f"-> {out / 'comparison.txt'}")
    return 0
