"""The standard four-panel figure of one or more runs: loss, sharpness, stepsize, eta*lambda."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from eosmodel.trace._trace import Trace


def _constant_stepsize(trace: Trace) -> float | None:
    """The fixed stepsize of a constant-stepsize run (from its config), else None."""
    tuner = trace.config.get("tuner") if isinstance(trace.config, dict) else None
    if isinstance(tuner, dict) and tuner.get("name") == "constant" and "stepsize" in tuner:
        return float(tuner["stepsize"])
    return None


def default_label(trace: Trace) -> str:
    """A short label from the trace's tuner config (e.g. ``constant eta=0.05``, ``armijo``)."""
    tuner = trace.config.get("tuner") if isinstance(trace.config, dict) else None
    if not isinstance(tuner, dict):
        return trace.meta.get("source", "run")
    name = tuner.get("preset") or tuner.get("name", "run")
    if tuner.get("name") == "constant":
        return f"GD eta={tuner.get('stepsize')}"
    return str(name)


def plot_traces(
    traces: Sequence[Trace],
    labels: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
):
    """Plot runs side by side: training loss, sharpness (with 2/eta for fixed stepsizes),
    stepsize, and normalized sharpness eta*lambda against the edge of stability at 2.

    Sharpness is drawn at the steps where it was measured (finite values). For runs whose
    config says ``tuner.name == "constant"`` the stability ceiling 2/eta is a dashed line in
    the run's colour.

    Args:
      traces: the runs.
      labels: one label per run (default: from each run's tuner config).
      path: if given, the figure is saved there (format from the suffix).
      title: the figure's title.

    Returns:
      The matplotlib ``Figure`` (its axes, in order: loss, sharpness, stepsize, eta*lambda).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if labels is None:
        labels = [default_label(t) for t in traces]
    if len(labels) != len(traces):
        raise ValueError(f"got {len(labels)} labels for {len(traces)} traces; give one per trace.")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    ax_loss, ax_sharp, ax_eta, ax_norm = axes.ravel()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (tr, label) in enumerate(zip(traces, labels)):
        color = colors[i % len(colors)]
        step = tr["step"]
        if "loss" in tr:
            ax_loss.plot(step, tr["loss"], color=color, label=label, lw=1.2)
        if "sharpness" in tr:
            s_steps, s_vals = tr.measured("sharpness")
            ax_sharp.plot(s_steps, s_vals, color=color, label=label, lw=1.2, marker=".", ms=3)
        eta_const = _constant_stepsize(tr)
        if eta_const is not None:
            ax_sharp.axhline(2.0 / eta_const, color=color, ls="--", lw=1.0, alpha=0.8)
        if "stepsize" in tr:
            ax_eta.plot(step, tr["stepsize"], color=color, label=label, lw=1.0)
        if "normalized_sharpness" in tr:
            n_steps, n_vals = tr.measured("normalized_sharpness")
            ax_norm.plot(n_steps, n_vals, color=color, label=label, lw=1.2, marker=".", ms=3)
    ax_norm.axhline(2.0, color="k", ls=":", lw=1.2, label="edge of stability")
    ax_loss.set(ylabel="train loss", yscale="log", title="loss")
    ax_sharp.set(ylabel=r"sharpness $\lambda_1$", title=r"sharpness (dashed: $2/\eta$)")
    ax_eta.set(ylabel=r"stepsize $\eta_t$", yscale="log", xlabel="step", title="stepsize")
    ax_norm.set(ylabel=r"$\eta_t\lambda_t$", xlabel="step", title="normalized sharpness")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    _positive_log(ax_loss)
    _positive_log(ax_eta)
    ax_loss.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _positive_log(ax) -> None:
    """Fall back to a linear scale when a log axis has no positive data."""
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    if not any(np.any(np.isfinite(y) & (y > 0)) for y in ys):
        ax.set_yscale("linear")
