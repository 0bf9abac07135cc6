"""Prediction across runs: tuner runs predicted from fixed-stepsize runs (docs/theory.md §5.6).

The sharpening parameters and the smooth part of the loss are fitted on fixed-stepsize (GD) runs
of one network and data set; the Armijo, Polyak, … runs of the same network and data are then
predicted in closed loop, with nothing fitted on them: their tuner's own rule chooses η_t on the
joint model's reduced loss. "EOS alone" predicts the same runs from the same fits (its rate a and
λ₀, the same smooth part, the same rule, no oscillation): the comparison says what the joint
evolution of stepsize and sharpness explains that EOS alone cannot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eosmodel.fit._closed import (
    ClosedRun,
    EOSAloneModel,
    EOSAloneState,
    JointModel,
    closed_errors,
    curvature_ratio,
    joint_state,
    pool_smooth_parts,
    rule_config,
    simulate_closed,
    smooth_part,
)
from eosmodel.fit._data import FitData, FitInputError, prepare
from eosmodel.fit._joint import oscillation_regressor


@dataclass
class Prediction:
    """One target run predicted from the source runs.

    Attributes:
      target: the target's label. tuner: its rule config.
      joint, eos_alone: :func:`eosmodel.fit.closed_errors` of each prediction (median ηλ,
        final sharpness, RMS log errors of sharpness and stepsize over blocks).
      params: the pooled parameters used (from the sources).
      data: the target's arrays; joint_run, eos_run: the predicted runs (not written to JSON).
    """

    target: str
    tuner: dict
    joint: dict
    eos_alone: dict
    params: dict
    sources: list[str]
    data: FitData = field(repr=False)
    joint_run: ClosedRun = field(repr=False)
    eos_run: ClosedRun = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        from eosmodel.fit._models import _jsonable

        return _jsonable({"target": self.target, "tuner": self.tuner, "sources": self.sources,
                          "params": self.params, "joint": self.joint, "eos_alone": self.eos_alone})


def _source_fit(source: Any, window: int) -> dict:
    """The open-loop fits of a fixed-stepsize run, by :func:`eosmodel.fit.fit_trace` (the same
    pipeline as any fit: EOS alone, the joint model with its orbit-sized trend window)."""
    from eosmodel.fit._report import fit_trace

    report = fit_trace(source)
    data = report.data
    q, _ = oscillation_regressor(data, window)
    if q is None:
        raise FitInputError(
            f"source {data.source} has no loss column: the cross-run prediction needs the loss "
            "(the oscillation's energy and the smooth part) of the fixed-stepsize runs."
        )
    return {"eos": report.models["eos_alone"], "joint": report.models["joint"], "source": data.source,
            "smooth": smooth_part(data, window=window),
            "x0": math.sqrt(max(float(q[0]), 1e-24)), "rho": curvature_ratio(data)}


def predict_runs(targets: Sequence[Any], sources: Sequence[Any], *, window: int = 101) -> list[Prediction]:
    """Predict tuner runs in closed loop from fixed-stepsize runs of the same network and data.

    Math (docs/theory.md §5.6). On each source: the open-loop joint fit (α, κ, β, ζ, λ₀) and
    EOS alone (a, λ₀) (:func:`fit_joint_open`, :func:`fit_eos_alone`), and the smooth part of its
    loss on its clock E = Σ η (:func:`smooth_part`), and ρ = the median recorded gᵀHg/‖g‖² over λ̂
    (:func:`curvature_ratio`). Pooled over the sources: the median of each parameter and the
    smooth parts on one clock (:func:`pool_smooth_parts`: runs of one network follow one path in
    ηt-time). Each target is then simulated with its own tuner's rule
    (its ``config["tuner"]``) from the pooled initial state: the joint model
    (:class:`JointModel`) and EOS alone (:class:`EOSAloneModel`), and compared with what was
    measured (:func:`closed_errors`). Nothing is fitted on the targets.

    Args:
      targets: tuner runs (run directories, traces, paths), each with its ``config["tuner"]``.
      sources: fixed-stepsize runs with ``loss`` recorded (and ``grad_curvature`` for ρ).
      window: steps of the loss trend (default 101).

    Returns:
      One :class:`Prediction` per target.

    Raises:
      FitInputError: no source or target, a source without loss, a target without tuner config.
    """
    if not sources or not targets:
        raise FitInputError("prediction needs at least one source run (--from) and one target run "
                            "(--predict); pass fixed-stepsize runs as sources and tuner runs as targets.")
    fits = [_source_fit(s, window) for s in sources]
    src_names = [f["source"] for f in fits]
    med = lambda key, model="joint": float(np.median([f[model].physical.get(key, 0.0) for f in fits]))  # noqa: E731
    params = {"alpha": med("alpha"), "kappa": med("kappa"), "beta": med("beta"), "zeta": med("zeta"),
              "lambda0": med("lambda0"), "x0": float(np.median([f["x0"] for f in fits])),
              "rho": float(np.median([f["rho"] for f in fits])),
              "eos_a": med("a", "eos"), "eos_lambda0": med("lambda0", "eos")}
    smooth = pool_smooth_parts([f["smooth"] for f in fits])
    out = []
    for target in targets:
        data = prepare(target)
        if not data.tuner:
            raise FitInputError(f"target {data.source} has no config['tuner']; predict runs written "
                                "by eosmodel (or fit them with --tuner).")
        rule = rule_config("auto", data)
        model = JointModel(params["alpha"], params["kappa"], params["beta"], params["zeta"],
                           params["rho"], smooth)
        joint_run = simulate_closed(model, joint_state(params["lambda0"], params["x0"], smooth),
                                    rule, len(data))
        eos_run = simulate_closed(EOSAloneModel(params["eos_a"], params["rho"], smooth),
                                  EOSAloneState(params["eos_lambda0"], smooth.loss0, 0.0), rule, len(data))
        out.append(Prediction(target=data.source, tuner=rule, joint=closed_errors(data, joint_run),
                              eos_alone=closed_errors(data, eos_run), params=params,
                              sources=src_names, data=data, joint_run=joint_run, eos_run=eos_run))
    return out


def prediction_table(predictions: Sequence[Prediction]) -> str:
    """A plain-text table: per target, predicted vs measured median ηλ, its pair-mean centre and
    the final sharpness, for the joint model and EOS alone, the RMS log errors of sharpness and
    stepsize, and where a prediction broke down."""
    head = ("target", "model", "med_eta_lam", "(measured)", "centre", "(measured)", "final_lam",
            "(measured)", "rel_err", "rms_log_lam", "rms_log_eta", "note")
    rows = []
    for p in predictions:
        for name, e in (("joint", p.joint), ("eos_alone", p.eos_alone)):
            rows.append((Path(str(p.target)).parent.name or str(p.target), name,
                         f"{e['median_eta_lambda_predicted']:.3f}", f"{e['median_eta_lambda_measured']:.3f}",
                         f"{e['centre_eta_lambda_predicted']:.3f}", f"{e['centre_eta_lambda_measured']:.3f}",
                         f"{e['final_sharpness_predicted']:.3g}", f"{e['final_sharpness_measured']:.3g}",
                         f"{e['final_sharpness_rel_error']:+.2f}", f"{e['rms_log_sharpness']:.3f}",
                         f"{e['rms_log_stepsize']:.3f}",
                         "" if e["diverged_at"] is None else f"model broke down at step {e['diverged_at']}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*r) for r in rows]) + "\n"


def write_predictions(predictions: Sequence[Prediction], out: Any) -> str:
    """Write ``predictions.json`` (strict JSON), ``predictions.txt`` (:func:`prediction_table`) and
    ``predictions.png`` (:func:`plot_predictions`) into the folder ``out``; returns the table."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps([p.to_dict() for p in predictions], indent=2) + "\n")
    table = prediction_table(predictions)
    (out / "predictions.txt").write_text(table)
    plot_predictions(predictions, out / "predictions.png")
    return table


def plot_predictions(predictions: Sequence[Prediction], path: Any = None):
    """Predicted vs measured stepsize, sharpness and ηλ, one row per target: measured (grey),
    the joint model in closed loop (blue), EOS alone in closed loop (orange)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(predictions)
    fig, axes = plt.subplots(n, 3, figsize=(12, 2.8 * n), squeeze=False)
    for row, p in zip(axes, predictions):
        d = p.data
        idx = d.measured
        steps = d.step
        series = (("stepsize", d.stepsize, p.joint_run.stepsize, p.eos_run.stepsize, np.arange(len(d))),
                  ("sharpness", d.sharpness[idx], p.joint_run.sharpness[idx], p.eos_run.sharpness[idx], idx),
                  ("eta*lambda", (d.stepsize * d.sharpness)[idx],
                   (p.joint_run.stepsize * p.joint_run.sharpness)[idx],
                   (p.eos_run.stepsize * p.eos_run.sharpness)[idx], idx))
        for ax, (name, meas, joint, eos, where) in zip(row, series):
            ax.plot(steps[where], meas, color="0.6", lw=0.8, label="measured")
            ax.plot(steps[where], joint, color="C0", lw=0.9, label="joint (closed loop)")
            ax.plot(steps[where], eos, color="C1", lw=0.9, ls="--", label="EOS alone")
            if name == "eta*lambda":
                ax.axhline(2.0, color="k", lw=0.6, ls=":")
            if name == "stepsize":
                ax.set_yscale("log")
            ax.set_title(f"{Path(str(p.target)).parent.name or p.target}: {name}", fontsize=9)
            ax.set_xlabel("step")
        row[0].legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
