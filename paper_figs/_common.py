"""Shared helpers of the figure scripts: find and load run directories, label and style runs,
draw the standard panels (loss, sharpness with 2/η, stepsize, η·λ with the edge at 2).

Every figure script reads run directories written by ``eosmodel train`` (``config.json`` +
``trace.jsonl``, loaded with :func:`eosmodel.trace.load_trace`), given on the command line or
found recursively under ``--root``, and writes one PNG or PDF (format from ``--out``'s suffix).
Each script's ``make_figure(traces)`` returns the matplotlib ``Figure`` so tests can read the
plotted data back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eosmodel.trace import TRACE_FILE, Trace, load_trace  # noqa: E402

__all__ = [
    "batch_size",
    "dataset_names",
    "describe",
    "discover_runs",
    "edge_line",
    "finish_figure",
    "fixed_stepsize",
    "load_runs",
    "main_for",
    "model_name",
    "plot_loss",
    "plot_normalized_sharpness",
    "plot_sharpness",
    "plot_stepsize",
    "run_color",
    "run_colors",
    "run_label",
    "run_sort_key",
    "save_figure",
    "select",
    "stochastic_figure",
    "tuner_family",
]

EDGE = 2.0  # the edge of stability of the normalized sharpness η·λ
_FAMILY_COLORS = {"armijo": "tab:red", "polyak": "tab:green", "cdat": "tab:purple"}
_GD_CMAP = plt.get_cmap("Blues")


# ------------------------------------------------------------------------------ run discovery
def discover_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among ``paths``: each path is a run directory (holding ``trace.jsonl``)
    or a root searched recursively for them. Sorted, without duplicates.

    Raises:
      FileNotFoundError: a path does not exist, or no run directory is found at all.
    """
    found: set[Path] = set()
    paths = list(paths)
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist; give run directories or a root holding them.")
        if (p / TRACE_FILE).is_file():
            found.add(p.resolve())
        else:
            found.update(f.parent.resolve() for f in p.rglob(TRACE_FILE))
    if not found:
        raise FileNotFoundError(
            f"no run directory (with {TRACE_FILE}) under {', '.join(map(str, paths)) or '(nothing)'}; "
            "run e.g. `eosmodel train experiments/small/fig1/fc-tanh_armijo.toml --out runs/small/fig1/fc-tanh_armijo` first."
        )
    return sorted(found)


def load_runs(paths: Iterable[str | Path]) -> list[Trace]:
    """Load every run found by :func:`discover_runs`; ``trace.meta["run_dir"]`` records its path.

    Runs without any record yet (just started, or killed before the first log) are skipped with a
    note on stderr; a FileNotFoundError if nothing is left.
    """
    traces, empty = [], []
    for run_dir in discover_runs(paths):
        tr = load_trace(run_dir)
        if len(tr) == 0 or "loss" not in tr:
            empty.append(run_dir)  # a run that has not logged a step yet
            continue
        tr.meta["run_dir"] = str(run_dir)
        traces.append(tr)
    if empty:
        print(f"skipping {len(empty)} run(s) without records: {', '.join(map(str, empty))}", file=sys.stderr)
    if not traces:
        raise FileNotFoundError(f"none of the {len(empty)} run directories found has a record yet.")
    return traces


# ------------------------------------------------------------------------------ run identity
def _table(trace: Trace, name: str) -> dict[str, Any]:
    table = trace.config.get(name) if isinstance(trace.config, dict) else None
    return table if isinstance(table, dict) else {}


def tuner_family(trace: Trace) -> str:
    """``"gd"`` (constant stepsize), ``"armijo"``, ``"polyak"``, ``"cdat"`` or the tuner's name."""
    name = _table(trace, "tuner").get("name", "unknown")
    return "gd" if name == "constant" else str(name)


def fixed_stepsize(trace: Trace) -> float | None:
    """η of a constant-stepsize run, else None."""
    tuner = _table(trace, "tuner")
    if tuner.get("name") == "constant" and "stepsize" in tuner:
        return float(tuner["stepsize"])
    return None


def model_name(trace: Trace) -> str:
    """The ``[model]`` name (e.g. ``fc-tanh``), ``"unknown"`` if the config lacks it."""
    return str(_table(trace, "model").get("name", "unknown"))


def batch_size(trace: Trace) -> int:
    """The training batch size, 0 for full batch."""
    return int(_table(trace, "train").get("batch_size", 0) or 0)


def run_label(trace: Trace) -> str:
    """A legend label: ``GD η=0.02`` / ``SGD η=0.1``, ``Armijo``, ``Polyak (c=0.5)``, …"""
    family = tuner_family(trace)
    tuner = _table(trace, "tuner")
    if family == "gd":
        prefix = "SGD" if batch_size(trace) else "GD"
        return f"{prefix} η={fixed_stepsize(trace):g}"
    if family == "armijo":
        return "Armijo"
    if family == "polyak":
        c = tuner.get("c")
        return f"Polyak (c={c:g})" if isinstance(c, (int, float)) else "Polyak"
    if family == "cdat":
        sigma = tuner.get("sigma")
        return f"CDAT (σ={sigma:g})" if isinstance(sigma, (int, float)) else "CDAT"
    return family


def run_sort_key(trace: Trace) -> tuple:
    """GD runs first by decreasing η, then Armijo, Polyak, CDAT, others."""
    family = tuner_family(trace)
    rank = {"gd": 0, "armijo": 1, "polyak": 2, "cdat": 3}.get(family, 4)
    eta = fixed_stepsize(trace)
    return (rank, -(eta or 0.0), run_label(trace))


def run_color(trace: Trace, gd_index: int = 0, gd_count: int = 1) -> Any:
    """Tuners get fixed colours; GD runs shades of blue (darker = smaller η)."""
    family = tuner_family(trace)
    if family == "gd":
        return _GD_CMAP(0.45 + 0.5 * (gd_index + 1) / (gd_count + 1))
    return _FAMILY_COLORS.get(family, "tab:gray")


def run_colors(traces: Sequence[Trace]) -> list[Any]:
    """One colour per run (see :func:`run_color`), GD shades ordered as the runs are."""
    gd = [t for t in traces if tuner_family(t) == "gd"]
    return [run_color(t, gd.index(t) if t in gd else 0, len(gd)) for t in traces]


# ------------------------------------------------------------------------------ panels
def plot_loss(ax, trace: Trace, color, label: str | None = None):
    """Training loss f(w_t) against t (log scale); the batch loss in mini-batch runs."""
    (line,) = ax.plot(trace["step"], trace["loss"], color=color, lw=1.1, label=label)
    ax.set_yscale("log")
    return line


def plot_sharpness(ax, trace: Trace, color, label: str | None = None, *, edge: bool = True):
    """λ₁ at the steps where it was measured; for a fixed η also the ceiling 2/η (dashed)."""
    steps, values = trace.measured("sharpness")
    (line,) = ax.plot(steps, values, color=color, lw=1.1, marker=".", ms=2.5, label=label)
    eta = fixed_stepsize(trace)
    if edge and eta is not None:
        ax.axhline(EDGE / eta, color=color, ls="--", lw=0.9, alpha=0.9)
    return line


def plot_stepsize(ax, trace: Trace, color, label: str | None = None):
    """The stepsize η_t taken at each step (log scale)."""
    (line,) = ax.plot(trace["step"], trace["stepsize"], color=color, lw=1.0, label=label)
    ax.set_yscale("log")
    return line


def plot_normalized_sharpness(ax, trace: Trace, color, label: str | None = None):
    """η_t·λ₁(w_t) where the sharpness was measured, against the edge of stability at 2."""
    if "normalized_sharpness" in trace:
        steps, values = trace.measured("normalized_sharpness")
    else:
        keep = np.isfinite(trace["sharpness"])
        steps, values = trace["step"][keep], (trace["stepsize"] * trace["sharpness"])[keep]
    (line,) = ax.plot(steps, values, color=color, lw=1.1, marker=".", ms=2.5, label=label)
    return line


def edge_line(ax) -> None:
    """The edge of stability ηλ = 2 (dotted black)."""
    ax.axhline(EDGE, color="k", ls=":", lw=1.2, label="edge of stability (ηλ = 2)")


def finish_figure(fig, axes, title: str) -> None:
    """Grids, tick sizes, linear scale where a log axis has no positive data, title, layout."""
    for ax in np.ravel(axes):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if ax.get_yscale() == "log" and not any(
            np.any(np.asarray(line.get_ydata(), float) > 0) for line in ax.get_lines()
        ):
            ax.set_yscale("linear")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()


# ------------------------------------------------------------------------------ figures
def dataset_names(traces: Sequence[Trace]) -> str:
    """``"cifar10"``: the ``[data]`` names of the runs, comma-separated."""
    return ", ".join(sorted({str(_table(t, "data").get("name", "?")) for t in traces}))


def describe(traces: Sequence[Trace]) -> str:
    """``"resnet18, resnet34 on cifar10"``: the models and datasets of the runs."""
    models = sorted({model_name(t) for t in traces})
    return f"{', '.join(models)} on {dataset_names(traces)}"


def stochastic_figure(traces: Sequence[Trace], title: str):
    """Figures 3-5: one column per batch size, rows loss / sharpness / stepsize / η·λ.

    Args:
      traces: the runs of one architecture (any tuners, any batch sizes).
      title: the figure title.

    Returns:
      The ``Figure``; ``fig.axes`` is row-major over (4 rows) x (batch sizes, increasing).
    """
    sizes = sorted({batch_size(t) for t in traces}, key=lambda b: (b == 0, b))
    ncols = len(sizes)
    fig, axes = plt.subplots(4, ncols, figsize=(max(3.6 * ncols, 6.5), 10), sharex="col", squeeze=False)
    for j, b in enumerate(sizes):
        runs = sorted((t for t in traces if batch_size(t) == b), key=run_sort_key)
        colors = run_colors(runs)
        for tr, color in zip(runs, colors, strict=True):
            label = run_label(tr)
            plot_loss(axes[0, j], tr, color, label)
            plot_sharpness(axes[1, j], tr, color, label)
            plot_stepsize(axes[2, j], tr, color, label)
            plot_normalized_sharpness(axes[3, j], tr, color, label)
        edge_line(axes[3, j])
        axes[0, j].set_title(f"batch size {b}" if b else "full batch", fontsize=10)
        axes[3, j].set_xlabel("step")
    axes[0, 0].set_ylabel("train loss (batch)")
    axes[1, 0].set_ylabel(r"sharpness $\lambda_1$ (dashed: $2/\eta$)")
    axes[2, 0].set_ylabel(r"stepsize $\eta_t$")
    axes[3, 0].set_ylabel(r"normalized sharpness $\eta_t\lambda_t$")
    axes[0, 0].legend(fontsize=7)
    axes[3, 0].legend(fontsize=7, loc="upper left")
    finish_figure(fig, axes, title)
    return fig


def save_figure(fig, out: str | Path) -> Path:
    """Save ``fig`` to ``out`` (PNG or PDF from the suffix), creating parent folders."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--out must end in .png, .pdf or .svg, got {str(out)!r}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


def main_for(
    make_figure: Callable[[Sequence[Trace]], Any],
    *,
    description: str,
    default_root: str,
    default_out: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Command line shared by the figure scripts: ``figN.py [RUN_DIR ...] [--root DIR] [--out FILE]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="*", help="run directories (default: every run under --root)")
    parser.add_argument("--root", default=default_root, help=f"root searched for runs (default {default_root})")
    parser.add_argument("--out", default=default_out, help=f"output figure, .png or .pdf (default {default_out})")
    args = parser.parse_args(argv)
    traces = load_runs(args.runs or [args.root])
    fig = make_figure(traces)
    out = save_figure(fig, args.out)
    plt.close(fig)
    print(f"wrote {out} ({len(traces)} runs)")
    return 0


def select(traces: Sequence[Trace], keep: Callable[[Trace], bool], what: str) -> list[Trace]:
    """The traces satisfying ``keep``; a ValueError naming ``what`` if none does."""
    out = [t for t in traces if keep(t)]
    if not out:
        models = sorted({model_name(t) for t in traces})
        raise ValueError(f"none of the {len(traces)} runs is {what} (models found: {models}); pass the right run directories.")
    return out

