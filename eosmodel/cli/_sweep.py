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

from eosmodel.cli import UsageError
from eosmodel.cli._simulate import parse_assignments


def parse_param(item: str) -> tuple[str, np.ndarray]:
    """``name=start:stop:num`` (linspace), ``name=v1,v2,...`` (list) or ``name=v`` to an axis."""
    name, sep, spec = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not spec.strip():
        raise UsageError(
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
        raise UsageError(
            f"--param {item!r} is not NAME=START:STOP:NUM (NUM an integer >= 1) or "
            "NAME=V1,V2,... with numbers; write e.g. --param eta=0.1:2:64."
        ) from None
    return name, values


def _axis_length(item: str) -> int | None:
    """The number of values of a ``--param`` item, without building them (None if malformed)."""
    _, _, spec = item.partition("=")
    if ":" in spec:
        parts = spec.split(":")
        try:
            return int(parts[2]) if len(parts) == 3 else None
        except ValueError:
            return None
    return len(spec.split(",")) if spec.strip() else None


#: Summaries a sweep returns per run besides the last eta*lambda values (see SweepResult).
_SUMMARY_ARRAYS = 11


def sweep_bytes(lengths: list[int], steps: int, record_last: int | None, window: int | None,
                itemsize: int) -> int:
    """A lower bound on the host memory of a sweep over a grid with axes of ``lengths`` values.

    Per run: the grid coordinates (a float64 mesh, its flat copy and the device copy in the run's
    dtype, for each axis) and the results (the summaries and the last ``record_last`` values of
    eta*lambda, on the device and on the host). ``steps`` costs time, not memory.
    """
    total = int(np.prod(lengths, dtype=object)) if lengths else 1
    window = steps // 2 if window is None else window
    last = min(64, max(window, 1)) if record_last is None else record_last
    per_run = len(lengths) * (16 + itemsize) + 2 * itemsize * (_SUMMARY_ARRAYS + last)
    return total * per_run


def check_sweep_size(items: list[str], steps: int, record_last: int | None, window: int | None,
                     float64: bool) -> None:
    """Refuse, before anything is allocated, a sweep whose grid cannot fit in memory.

    Raises:
      UsageError: naming the number of runs, the memory they would need and what is available.
    """
    from eosmodel._memory import format_bytes, memory_available
    from eosmodel.cli import UsageError

    if steps < 1 or steps >= 2 ** 31:
        raise UsageError(f"--steps must be an integer in [1, 2^31 - 1], got {steps}; pass e.g. --steps 2000.")
    lengths = [_axis_length(item) for item in items]
    if any(n is None for n in lengths):
        return  # parse_param reports the malformed item
    need = sweep_bytes(lengths, steps, record_last, window, 8 if float64 else 4)
    have, where = memory_available()
    if have is not None and need > have:
        total = int(np.prod(lengths, dtype=object))
        raise UsageError(
            f"the grid has {total:.3g} runs ({' x '.join(map(str, lengths))}), which need at least "
            f"{format_bytes(need)} but the {where} is {format_bytes(have)}; use fewer grid points "
            "(or a smaller --record-last)."
        )


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

    from eosmodel.cli import check_writable_dir
    from eosmodel.dynamics import SUMMARIES, plot_bifurcation, plot_phase_diagram, sweep

    check_writable_dir(args.out)
    check_sweep_size(args.param, args.steps, args.record_last, args.window, args.float64)
    grid = dict(parse_param(item) for item in args.param)
    if len(grid) != len(args.param):
        raise UsageError("--param names repeat; give each grid axis once.")
    live = [a for a, v in grid.items() if len(v) > 1]
    if len(live) > 2:
        raise UsageError(f"a diagram shows at most two varying axes, got {live}; fix the others with --set "
                         "or give them one value.")
    fixed = parse_assignments(args.fixed, "--set")
    if args.quantity not in SUMMARIES:
        raise UsageError(f"--quantity must be one of {list(SUMMARIES)}, got {args.quantity!r}.")
    with jax.enable_x64(bool(args.float64)):
        result = sweep(
            args.model.replace("-", "_"), args.rule, grid, steps=args.steps, fixed=fixed,
            key=jax.random.key(args.seed), window=args.window, record_last=args.record_last,
            dtype=jnp.float64 if args.float64 else jnp.float32,
        )
    out = result.save(Path(args.out))
    import matplotlib.pyplot as plt

    live = [a for a in result.axes if len(result.values[a]) > 1]
    plt.close(plot_phase_diagram(result, args.quantity, path=out / "phase.png"))
    figures = ["phase.png"]
    if len(live) == 1 and result["late_normalized_sharpness"].shape[-1]:
        plt.close(plot_bifurcation(result, path=out / "bifurcation.png"))
        figures.append("bifurcation.png")
    n = int(np.prod(result.shape))
    under = int(result.summaries["underflowed"].sum()) if "underflowed" in result.summaries else 0
    if under:
        print(f"eosmodel sweep: {under} run(s) failed because x underflowed to exactly 0 and eta*lambda then "
              "exceeded 2 (recorded as diverged, underflowed in sweep.npz): lambda would sharpen without bound, "
              "an artefact of the arithmetic; start nearer the edge (init_x, lambda0 near 2/eta) or add init_noise.", file=sys.stderr)
    print(f"eosmodel sweep: {n} runs x {args.steps} steps, {int(result.diverged.sum())} diverged; "
          f"wrote {out} ({', '.join(['sweep.npz', 'sweep.json', *figures])})", file=sys.stdout)
    return 0
