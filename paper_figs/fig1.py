"""Figure 1: train loss and sharpness per architecture, full batch: GD at several η (2/η dashed)
vs Armijo-GD vs Polyak-GD (Roulet, Agarwala, Pedregosa, arXiv 2312.00209, figure 1).

Usage::

    python paper_figs/fig1.py [RUN_DIR ...] [--root runs/fig1] [--out figures/fig1.pdf]

Columns: architectures (``[model].name`` of the runs, in order of appearance); rows: training
loss f(w_t) (log scale) and sharpness λ₁(w_t) with the stability ceilings 2/η of the fixed-
stepsize runs (dashed, in each run's colour). Armijo's sharpness climbing above every 2/η while
Polyak's plateaus low is the paper's first finding.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt  # noqa: E402
from _common import (  # noqa: E402
    dataset_names,
    run_colors,
    finish_figure,
    main_for,
    model_name,
    plot_loss,
    plot_sharpness,
    run_label,
    run_sort_key,
)

from eosmodel.trace import Trace  # noqa: E402


def architectures(traces: Sequence[Trace]) -> list[str]:
    """Model names in order of first appearance."""
    names: list[str] = []
    for tr in traces:
        if model_name(tr) not in names:
            names.append(model_name(tr))
    return names


def make_figure(traces: Sequence[Trace]):
    """The figure; ``fig.axes`` is row-major over (loss, sharpness) x architectures."""
    archs = architectures(traces)
    fig, axes = plt.subplots(2, len(archs), figsize=(max(3.8 * len(archs), 6.5), 6.5), sharex="col", squeeze=False)
    for j, arch in enumerate(archs):
        runs = sorted((t for t in traces if model_name(t) == arch), key=run_sort_key)
        for tr, color in zip(runs, run_colors(runs), strict=True):
            plot_loss(axes[0, j], tr, color, run_label(tr))
            plot_sharpness(axes[1, j], tr, color, run_label(tr))
        axes[0, j].set_title(arch, fontsize=10)
        axes[1, j].set_xlabel("step")
        axes[0, j].legend(fontsize=7)
    axes[0, 0].set_ylabel("train loss")
    axes[1, 0].set_ylabel(r"sharpness $\lambda_1$ (dashed: $2/\eta$)")
    finish_figure(fig, axes, f"Full batch on {dataset_names(traces)}: GD at fixed η vs Armijo vs Polyak")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(
        make_figure,
        description=__doc__.split("\n\n")[0],
        default_root="runs/fig1",
        default_out="figures/fig1.pdf",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
