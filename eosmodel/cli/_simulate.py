"""``eosmodel simulate``: run a tuner on a toy model, write the trace and its figure.

Example::

    eosmodel simulate --toy self-stabilization --toy-set sharpening_limit=50 \\
        --tuner polyak --set c=0.5 --steps 2000 --out runs/sim1
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from eosmodel.cli import UsageError

#: CLI defaults for the toy factories' required arguments (override with --toy-set).
TOY_DEFAULTS: dict[str, dict[str, Any]] = {
    "quadratic": {"eigenvalues": [1.0, 10.0]},
    "second_order_regression": {"num_data": 4, "num_params": 8},
    "second_order_regression_1d": {"omega": 1.0, "z0": 0.8},
    "uv": {"width": 16},
    "zhu": {},
    "self_stabilization": {"alpha": 1.0, "beta": 1.0, "lambda0": 1.5, "sharpening_limit": 20.0,
                           "init_x": 0.01},
    "two_layer_net": {},
}


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON (numbers, lists, true/false/null), ``none``, or a plain string."""
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["k=v", ...]`` to ``{k: parse_value(v)}``; a malformed item is a ``ValueError``."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got {item!r}; write e.g. {option} c=0.5.")
        out[name.strip().replace("-", "_")] = parse_value(value.strip())
    return out


def build_toy(name: str, overrides: dict[str, Any], seed: int):
    """Build a toy by (CLI) name with the CLI defaults, ``overrides`` and a data key from ``seed``."""
    import jax

    from eosmodel import toys

    key_name = name.replace("-", "_")
    if key_name not in TOY_DEFAULTS:
        raise UsageError(
            f"--toy must be one of {sorted(n.replace('_', '-') for n in TOY_DEFAULTS)}, got "
            f"{name!r}; pick one of them."
        )
    factory = getattr(toys, key_name)
    params = inspect.signature(factory).parameters
    kwargs = {**TOY_DEFAULTS[key_name], **overrides}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UsageError(
            f"--toy-set names {unknown} are not parameters of toy {name!r}; valid ones are "
            f"{sorted(p for p in params if p != 'key')}."
        )
    if "key" in params:
        kwargs["key"] = jax.random.fold_in(jax.random.key(seed), 1)
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise UsageError(f"cannot build toy {name!r} from {sorted(kwargs)}: {err}.") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="run a stepsize tuner on a toy model (one compiled scan); write trace and figure",
        description=(
            "Run a stepsize tuner on a toy model and write the run directory (config.json, "
            "trace.jsonl) and simulate.png (loss, sharpness with 2/eta, stepsize, eta*lambda)."
        ),
    )
    p.add_argument("--toy", required=True,
                   help=f"toy model: {', '.join(sorted(n.replace('_', '-') for n in TOY_DEFAULTS))}")
    p.add_argument("--toy-set", action="append", metavar="NAME=VALUE",
                   help="toy parameter, e.g. alpha=1.0 or eigenvalues=[1,4] (repeatable)")
    p.add_argument("--tuner", required=True,
                   help="tuner name (constant, armijo, polyak, cdat) or preset (armijo-jax, sps-0.5, ...)")
    p.add_argument("--set", dest="tuner_set", action="append", metavar="NAME=VALUE",
                   help="tuner hyperparameter, e.g. c=0.5 or stepsize=0.1 (repeatable)")
    p.add_argument("--steps", type=int, default=1000, help="number of steps (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sharpness", default="exact", choices=["exact", "dense", "lanczos", "none"],
                   help="how to measure the sharpness (default exact)")
    p.add_argument("--sharpness-every", type=int, default=1, help="measure every k steps")
    p.add_argument("--divergence-threshold", type=float, default=None,
                   help="|loss| above which the run counts as diverged (default: non-finite only)")
    p.add_argument("--float64", action="store_true", help="run in float64")
    p.add_argument("--no-figure", action="store_true", help="do not write simulate.png")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax

    from eosmodel.cli import check_writable_dir

    check_writable_dir(args.out)
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}; pass e.g. --steps 1000.")
    toy_set = parse_assignments(args.toy_set, "--toy-set")
    tuner_set = parse_assignments(args.tuner_set, "--set")
    with jax.enable_x64(bool(args.float64)):
        from eosmodel.dynamics import simulate
        from eosmodel.tuners import tuner_config

        toy = build_toy(args.toy, toy_set, args.seed)
        try:
            config = tuner_config(args.tuner, **tuner_set)
        except TypeError as err:
            raise UsageError(str(err)) from None
        trace = simulate(
            toy, config, args.steps, key=jax.random.key(args.seed),
            sharpness=None if args.sharpness == "none" else args.sharpness,
            sharpness_every=args.sharpness_every,
            divergence_threshold=args.divergence_threshold,
        )
    out = Path(args.out)
    trace.save(out)
    if not args.no_figure:
        from eosmodel.trace import plot_traces

        fig = plot_traces([trace], path=out / "simulate.png",
                          title=f"{toy.name} / {config.get('preset', config['name'])}")
        import matplotlib.pyplot as plt

        plt.close(fig)
    cfg = trace.config
    status = f"diverged at step {cfg['diverged_at']}" if cfg["diverged"] else "finished"
    if cfg.get("divergence_reason") == "underflow":
        status = f"stopped at step {cfg['diverged_at']} (x underflowed to 0)"
        print(f"eosmodel simulate: at step {cfg['diverged_at']}, {cfg['divergence_detail']}.", file=sys.stderr)
    ns = trace["normalized_sharpness"]
    tail = ns[len(ns) // 2:]
    tail = tail[tail == tail]
    mean_ns = f", mean eta*lambda over the second half {tail.mean():.3f}" if tail.size else ""
    print(f"eosmodel simulate: {len(trace)} steps {status}{mean_ns}; wrote {out}", file=sys.stdout)
    return 0
