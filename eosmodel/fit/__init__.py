"""EOS models fitted to measured traces, and where "EOS alone" stops explaining a run.

Two models of docs/theory.md §5, fitted to a trace (η_t, λ̂_t every k steps, optionally the
loss, ‖g‖², gᵀHg/‖g‖² or the oscillation coordinate x):

* **EOS alone**: λ_{t+1} = min(λ_t + a·w_t, 2/η_{t+1}), open loop (:func:`fit_eos_alone`);
* **joint**, which nests it: a sharpening rate that decays along the run, the self-stabilising
  oscillation, an edge offset and the stiffening of the top direction, in open loop
  (:func:`fit_joint_open`) and in closed loop, where the tuner's own rule (the one definition of
  :mod:`eosmodel.tuners`, through :func:`eosmodel.toys.map_rule`) chooses η_t on a reduced loss
  that keeps the smooth part of the loss and the oscillation's energy (:class:`JointModel`,
  :func:`fit_closed`).

:func:`fit_trace` runs them, compares them (nested likelihood-ratio test with the effective
sample size of autocorrelated residuals) and gives window-by-window verdicts (``explained``,
``above ceiling``, ``growing below edge``, ``off model``); :func:`predict_runs` predicts tuner
runs from fixed-stepsize runs with nothing fitted on the tuner runs. The :class:`FitReport`
writes JSON, :func:`plot_fit` draws the figure, :func:`compare` tabulates several reports.
Command line: ``eosmodel fit PATH...`` and ``eosmodel fit --predict RUN... --from RUN...``.

Reference: Roulet, Agarwala, Pedregosa, arXiv 2312.00209; Damian, Nichani, Lee, arXiv 2209.15594.
"""

from eosmodel.fit._closed import (
    ClosedFit,
    ClosedRun,
    EOSAloneModel,
    EOSAloneState,
    JointModel,
    JointState,
    SmoothPart,
    closed_errors,
    curvature_ratio,
    fit_closed,
    pool_smooth_parts,
    rule_config,
    simulate_closed,
    smooth_part,
)
from eosmodel.fit._data import MIN_MEASUREMENTS, FitData, FitInputError, prepare
from eosmodel.fit._joint import joint_path, loss_energy, oscillation_regressor, smoother_r2
from eosmodel.fit._models import (
    ModelFit,
    eos_alone_predict,
    eos_piecewise_predict,
    fit_eos_alone,
    fit_eos_piecewise,
    fit_joint_open,
)
from eosmodel.fit._plot import plot_fit
from eosmodel.fit._predict import Prediction, plot_predictions, predict_runs, write_predictions
from eosmodel.fit._report import FitReport, compare, fit_trace
from eosmodel.fit._stats import effective_size, hac_covariance, nested_test
from eosmodel.fit._verdict import (
    DEFAULT_EDGE_TOL,
    ABOVE_CEILING,
    EXPLAINED,
    GROWING_BELOW_EDGE,
    OFF_MODEL,
    VERDICTS,
    WindowVerdict,
    edge_centre,
    noise_scale,
    window_verdicts,
)

__all__ = [
    "ABOVE_CEILING",
    "ClosedFit",
    "ClosedRun",
    "DEFAULT_EDGE_TOL",
    "EOSAloneModel",
    "EOSAloneState",
    "EXPLAINED",
    "GROWING_BELOW_EDGE",
    "JointModel",
    "JointState",
    "MIN_MEASUREMENTS",
    "OFF_MODEL",
    "Prediction",
    "SmoothPart",
    "VERDICTS",
    "FitData",
    "FitInputError",
    "FitReport",
    "ModelFit",
    "WindowVerdict",
    "closed_errors",
    "curvature_ratio",
    "compare",
    "edge_centre",
    "effective_size",
    "eos_alone_predict",
    "eos_piecewise_predict",
    "fit_closed",
    "fit_eos_alone",
    "fit_eos_piecewise",
    "fit_joint_open",
    "fit_trace",
    "hac_covariance",
    "joint_path",
    "loss_energy",
    "nested_test",
    "noise_scale",
    "oscillation_regressor",
    "plot_fit",
    "plot_predictions",
    "pool_smooth_parts",
    "predict_runs",
    "prepare",
    "rule_config",
    "simulate_closed",
    "smooth_part",
    "smoother_r2",
    "window_verdicts",
    "write_predictions",
]
