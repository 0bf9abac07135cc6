"""Figure 2: stepsize η_t and normalized sharpness η_t·λ_t over time, full batch, for the runs of
figure 1 (Roulet, Agarwala, Pedregosa, arXiv 2312.00209, figure 2).

Usage::

    python paper_figs/fig2.py [RUN_DIR ...] [--root runs/fig1] [--out figures/fig2.pdf]

Columns: architectures; rows: stepsize (log scale) and η·λ with the edge of stability at 2
(dotted). Fixed-η GD settles at ηλ ≈ 2; Armijo stays below 2 with a shrinking stepsize; Polyak
oscillates around or above 2.
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
    edge_line,
    finish_figure,
    main_for,
    model_name,
    plot_normalized_sharpness,
    plot_stepsize,
    run_label,
    run_sort_key,
)
from fig1 import architectures  # noqa: E402

from eosmodel.trace import Trace  # noqa: E402


def make_figure(traces: Sequence[Trace]):
    """The figure; ``fig.axes`` is row-major over (stepsize, η·λ) x architectures."""
    archs = architectures(traces)
    fig, axes = plt.subplots(2, len(archs), figsize=(max(3.8 * len(archs), 6.5), 6.5), sharex="col", squeeze=False)
    for j, arch in enumerate(archs):
        runs = sorted((t for t in traces if model_name(t) == arch), key=run_sort_key)
        for tr, color in zip(runs, run_colors(runs), strict=True):
            plot_stepsize(axes[0, j], tr, color, run_label(tr))
            plot_normalized_sharpness(axes[1, j], tr, color, run_label(tr))
        edge_line(axes[1, j])
        axes[0, j].set_title(arch, fontsize=10)
        axes[1, j].set_xlabel("step")
        axes[0, j].legend(fontsize=7)
    axes[0, 0].set_ylabel(r"stepsize $\eta_t$")
    axes[1, 0].set_ylabel(r"normalized sharpness $\eta_t\lambda_t$")
    finish_figure(fig, axes, f"Full batch on {dataset_names(traces)}: stepsize and normalized sharpness")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(
        make_figure,
        description=__doc__.split("\n\n")[0],
        default_root="runs/fig1",
        default_out="figures/fig2.pdf",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
