"""Figure 4: VGG11 on CIFAR-10, mini-batch: per batch size, loss, sharpness, stepsize and
normalized sharpness for SGD, Armijo-SGD and Polyak-SGD (Roulet, Agarwala, Pedregosa,
arXiv 2312.00209, figure 4).

Usage::

    python paper_figs/fig4.py [RUN_DIR ...] [--root runs/fig4] [--out figures/fig4.pdf]

Runs whose model is not a VGG11 (vgg11, vgg11-bn) are ignored. Columns: batch sizes (increasing); rows:
batch loss (log scale), sharpness λ₁ on the fixed sharpness subset (with 2/η dashed for SGD),
stepsize η_t (log scale) and η_t·λ_t with the edge of stability at 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import describe, main_for, model_name, select, stochastic_figure  # noqa: E402

from eosmodel.trace import Trace  # noqa: E402


def make_figure(traces: Sequence[Trace]):
    """The figure; ``fig.axes`` is row-major over 4 rows x batch sizes (see ``stochastic_figure``)."""
    runs = select(traces, lambda t: model_name(t).startswith("vgg"), "a VGG11 (vgg11, vgg11-bn)")
    return stochastic_figure(runs, f"{describe(runs)}: SGD vs Armijo vs Polyak across batch sizes")


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(
        make_figure,
        description=__doc__.split("\n\n")[0],
        default_root="runs/fig4",
        default_out="figures/fig4.pdf",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
