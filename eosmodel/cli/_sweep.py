"""``eosmodel sweep``: a reduced map with a tuner rule over a parameter grid; diagrams out.

Example::

    eosmodel sweep --model self-stabilization --rule constant \\
        --param eta=0.01:0.2:64 --param lambda0=5:40:48 --set alpha=1 --set beta=1 \\
        --set init_x=0.5 --steps 4000 --out runs/phase1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from eosmodel.cli._simulate import parse_assignments


def parse_param(item: str) -> tuple[str, np.ndarray]:
    """``name=start:stop:num`` (linspace), ``name=v1,v2,...`` (list) or ``name=v`` to an axis."""
    name, sep, spec = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not spec.strip():
        raise ValueError(
            f"--param expects NAME=START:STOP:NUM or NAME=V1,V2,..., got {item!r}; write e.g. "
            "--param eta=0.1:2:64."
        )
    try:
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1:
                raise ValueError
            values = np.linspace(start, stop, num)
        else:
            values = np.asarray([float(v) for v in spec.split(",")])
    except ValueError:
        raise ValueError(
            f"--param {item!r} is not NAME=START:STOP:NUM (NUM an integer >= 1) or "
            "NAME=V1,V2,... with numbers; write e.g. --param eta=0.1:2:64."
        ) from None
    return name, values


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a reduced map with a tuner rule over a parameter grid (vmap): phase/bifurcation diagrams",
        description=(
            "Run a reduced map (self-stabilization, second-order, uv) with a tuner rule in the "
            "loop over the Cartesian grid of the --param axes, batched with vmap; write "
            "sweep.npz, sweep.json and the diagrams (phase.png; bifurcation.png for one axis)."
        ),
    )
    p.add_argument("--model", default="self-stabilization",
                   help="reduced map: self-stabilization (default), second-order, uv")
    p.add_argument("--rule", default="constant",
                   help="tuner rule: constant (default), oracle, armijo, polyak, cdat")
    p.add_argument("--param", action="append", metavar="NAME=START:STOP:NUM", required=True,
                   help="a grid axis, e.g. eta=0.1:2:64 or sigma=0.5,1,1.5 (repeatable)")
    p.add_argument("--set", dest="fixed", action="append", metavar="NAME=VALUE",
                   help="a fixed parameter, e.g. alpha=1.0 (repeatable)")
    p.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    p.add_argument("--window", type=int, default=None,
                   help="final steps summarised (default steps/2)")
    p.add_argument("--record-last", type=int, default=None,
                   help="final eta*lambda values kept per run (default min(64, window))")
    p.add_argument("--seed", type=int, default=0, help="key for init_noise (default 0)")
    p.add_argument("--quantity", default="mean_normalized_sharpness",
                   help="summary shown in the phase diagram (default mean_normalized_sharpness)")
    p.add_argument("--float64", action="store_true", help="run in float64")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    from eosmodel.dynamics import SUMMARIES, plot_bifurcation, plot_phase_diagram, sweep

    grid = dict(parse_param(item) for item in args.param)
    if len(grid) != len(args.param):
        raise ValueError("--param names repeat; give each grid axis once.")
    fixed = parse_assignments(args.fixed, "--set")
    if args.quantity not in SUMMARIES:
        raise ValueError(f"--quantity must be one of {list(SUMMARIES)}, got {args.quantity!r}.")
    with jax.enable_x64(bool(args.float64)):
        result = sweep(
            args.model.replace("-", "_"), args.rule, grid, steps=args.steps, fixed=fixed,
            key=jax.random.key(args.seed), window=args.window, record_last=args.record_last,
            dtype=jnp.float64 if args.float64 else jnp.float32,
        )
    out = result.save(Path(args.out))
    import matplotlib.pyplot as plt

    live = [a for a in result.axes if len(result.values[a]) > 1]
    if len(live) > 2:
        raise ValueError(f"wrote {out}, but a diagram shows at most two varying axes, got {live}.")
    plt.close(plot_phase_diagram(result, args.quantity, path=out / "phase.png"))
    figures = ["phase.png"]
    if len(live) == 1 and result["late_normalized_sharpness"].shape[-1]:
        plt.close(plot_bifurcation(result, path=out / "bifurcation.png"))
        figures.append("bifurcation.png")
    n = int(np.prod(result.shape))
    print(f"eosmodel sweep: {n} runs x {args.steps} steps, {int(result.diverged.sum())} diverged; "
          f"wrote {out} ({', '.join(['sweep.npz', 'sweep.json', *figures])})", file=sys.stdout)
    return 0
