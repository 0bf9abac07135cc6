"""The fit figure: measured against predicted sharpness and eta*lambda, failure windows shaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from eosmodel.fit._report import FitReport
from eosmodel.fit._verdict import EXPLAINED

_SHADES = {"above ceiling": "tab:red", "growing below edge": "tab:orange", "off model": "tab:purple"}
_STYLE = {"eos_alone": ("tab:blue", "EOS alone"), "joint": ("tab:green", "joint (open loop)"),
          "joint_closed": ("tab:brown", "joint (closed loop)")}


def plot_fit(report: FitReport, trace: Any = None, path: str | os.PathLike | None = None) -> Figure:
    """Draw the fit: sharpness and η·λ, measured and predicted by each model, failures shaded.

    Top panel: measured sharpness λ̂_t (dots), the ceiling 2/η_t (grey), and λ_t predicted by each
    fitted model (dashed cyan: EOS alone with a rate per piece of each verdict window, the
    verdicts' residual test below the ceiling). Bottom panel: η_tλ̂_t and η_tλ_t (with the
    closed-loop model's own η_t), with the edge at 2. Windows whose verdict is a failure are shaded (red: above ceiling, orange: growing
    below edge, purple: off model). Uses matplotlib's Agg canvas (no display needed).

    Args:
      report: from :func:`eosmodel.fit.fit_trace`.
      trace: unused beyond a consistency check (the report holds the validated arrays); accepted so
        that callers can pass the trace they fitted.
      path: where to save the figure (PNG/PDF/SVG by suffix), or ``None``.

    Returns:
      The matplotlib ``Figure``.

    Raises:
      ValueError: ``trace`` has a different number of steps from the report.
    """
    data = report.data
    if trace is not None and hasattr(trace, "__len__") and len(trace) != len(data):
        raise ValueError(
            f"the trace has {len(trace)} steps but the report was fitted on {len(data)}; pass the "
            "trace that was fitted."
        )
    steps = data.step
    idx = data.measured
    fig = Figure(figsize=(9, 6.5), constrained_layout=True)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    kinds = []
    for w in report.windows:
        if w.verdict != EXPLAINED:
            color = _SHADES.get(w.verdict, "grey")
            for ax in (ax1, ax2):
                ax.axvspan(w.start_step, w.end_step + 1, color=color, alpha=0.12, lw=0)
            if w.verdict not in kinds:
                kinds.append(w.verdict)
    ax1.plot(steps, 2.0 / data.stepsize, color="0.6", lw=1, ls="--", label="2/η")
    ax1.plot(steps[idx], data.sharpness[idx], "k.", ms=3, label="measured λ")
    ax2.axhline(2.0, color="0.6", lw=1, ls="--")
    ax2.plot(steps[idx], data.stepsize[idx] * data.sharpness[idx], "k.", ms=3, label="measured ηλ")
    for name, m in report.models.items():
        color, label = _STYLE.get(name, ("tab:gray", name))
        ax1.plot(steps, m.sharpness, color=color, lw=1.2, label=f"{label} (R²={m.r2:.3f})")
        eta = m.stepsize if m.stepsize is not None else data.stepsize
        ax2.plot(steps, eta * m.sharpness, color=color, lw=1.0, label=label)
    if report.windowed is not None:
        ax1.plot(steps, report.windowed.sharpness, color="tab:cyan", lw=1.0, ls="--",
                 label="EOS alone, free rate (verdicts)")
    lam_all = data.sharpness[idx]
    lo, hi = float(np.min(lam_all)), float(np.max(lam_all))
    pad = 0.15 * (hi - lo) + 1e-12
    ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_ylabel("sharpness λ")
    ax1.set_title(f"{report.source}: {report.verdict}", fontsize=10)
    ax1.legend(fontsize=7, loc="best")
    ax2.set_ylabel("η·λ")
    ax2.set_xlabel("step")
    nl = data.stepsize[idx] * lam_all
    ax2.set_ylim(max(0.0, float(np.min(nl)) - 0.2), float(np.max(nl)) + 0.2)
    handles, labels = ax2.get_legend_handles_labels()
    for kind in kinds:
        handles.append(Patch(color=_SHADES.get(kind, "grey"), alpha=0.25))
        labels.append(f"EOS alone fails: {kind}")
    ax2.legend(handles, labels, fontsize=7, loc="best")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
