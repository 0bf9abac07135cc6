"""EOS models fitted to measured traces, and where "EOS alone" stops explaining a run.

Two models of science.md §5, fitted to a trace (η_t, λ̂_t every k steps, optionally the loss or
the oscillation coordinate x):

* **EOS alone**: λ_{t+1} = min(λ_t + a·η_t, 2/η_t), open loop (:func:`fit_eos_alone`);
* **joint** (self-stabilisation with the tuner): x_{t+1} = (1 − η_tλ_t)x_t,
  λ_{t+1} = λ_t + η_t(α − βx_t²/2), open loop teacher-forced (:func:`fit_joint_open`) and closed
  loop with the tuner's rule (:func:`fit_joint_closed`).

:func:`fit_trace` runs them, compares them (AIC/BIC) and gives window-by-window verdicts
(``explained``, ``above ceiling``, ``growing below edge``, ``off model``); the
:class:`FitReport` writes JSON, :func:`plot_fit` draws the figure, :func:`compare` tabulates
several reports. Command line: ``eosmodel fit PATH...``.

Reference: Roulet, Agarwala, Pedregosa, arXiv 2312.00209; Damian, Nichani, Lee, arXiv 2209.15594.
"""

from eosmodel.fit._data import MIN_MEASUREMENTS, FitData, FitInputError, prepare
from eosmodel.fit._models import (
    ModelFit,
    eos_alone_predict,
    eos_piecewise_predict,
    fit_eos_alone,
    fit_eos_piecewise,
    fit_joint_closed,
    fit_joint_open,
    oscillation_observable,
    rule_config,
    simulate_joint,
)
from eosmodel.fit._plot import plot_fit
from eosmodel.fit._rules import RULE_NAMES, reduced_rule
from eosmodel.fit._report import FitReport, compare, fit_trace
from eosmodel.fit._verdict import (
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
    "EXPLAINED",
    "GROWING_BELOW_EDGE",
    "MIN_MEASUREMENTS",
    "OFF_MODEL",
    "VERDICTS",
    "FitData",
    "FitInputError",
    "FitReport",
    "ModelFit",
    "RULE_NAMES",
    "WindowVerdict",
    "compare",
    "edge_centre",
    "eos_alone_predict",
    "eos_piecewise_predict",
    "fit_eos_alone",
    "fit_eos_piecewise",
    "fit_joint_closed",
    "fit_joint_open",
    "fit_trace",
    "noise_scale",
    "oscillation_observable",
    "plot_fit",
    "prepare",
    "reduced_rule",
    "rule_config",
    "simulate_joint",
    "window_verdicts",
]
