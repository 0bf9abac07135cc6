"""``fit_trace``: both EOS models fitted to a trace, window verdicts, and the JSON report."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from eosmodel.fit._data import MIN_MEASUREMENTS, FitData, FitInputError, prepare
from eosmodel.fit._models import (
    ModelFit,
    _clock,
    _jsonable,
    fit_eos_alone,
    fit_joint_closed,
    fit_joint_open,
    oscillation_observable,
    rule_config,
    time_weights,
)
from eosmodel.fit._verdict import (
    EXPLAINED,
    WindowVerdict,
    fit_windowed,
    overall_verdict,
    window_bounds,
    window_verdicts,
)

REPORT_VERSION = 1


@dataclass
class FitReport:
    """The result of :func:`fit_trace`.

    Attributes:
      source: the trace's label (path or config name).
      n_steps, n_measured: steps in the trace and sharpness measurements.
      time: the clock of the fits (``"eta_t"`` or ``"steps"``).
      observable: the oscillation observable of the joint model (``"x"``, ``"loss"``, ``"none"``).
      tuner: the trace's tuner config (or ``None``); ``closed_loop_rule`` the rule used in
        closed loop (or ``None``).
      models: ``{"eos_alone": ModelFit, "joint": ModelFit, "joint_closed": ModelFit}`` (those
        fitted).
      comparison: ΔAIC and ΔBIC (joint − EOS alone; negative favours the joint model) and the
        preferred model by BIC.
      windows: the :class:`WindowVerdict` list; ``verdict`` the whole trace's (``"explained"`` or
        ``"fails: ..."``), ``explained`` its boolean form; ``sigma`` the sharpness noise scale,
        ``edge_tol`` the tolerance used.
      data: the validated arrays (not written to JSON), used by :func:`eosmodel.fit.plot_fit`.
      windowed: EOS alone with a sharpening rate of its own on each piece of each verdict window
        (:func:`eosmodel.fit.fit_eos_piecewise`), the residual test of the verdicts below the
        ceiling; its mean rate per window is in ``windows`` (``rate``); it is not in ``models``
        (the global-rate fit gives the parameter estimates).
    """

    source: str
    n_steps: int
    n_measured: int
    time: str
    observable: str
    tuner: dict | None
    closed_loop_rule: dict | None
    models: dict[str, ModelFit]
    comparison: dict[str, Any]
    windows: list[WindowVerdict]
    verdict: str
    sigma: float
    edge_tol: float
    data: FitData = field(repr=False)
    windowed: ModelFit | None = field(default=None, repr=False)

    @property
    def explained(self) -> bool:
        """True when EOS alone explains every window."""
        return self.verdict == EXPLAINED

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report (predictions and arrays left out)."""
        return {
            "report_version": REPORT_VERSION,
            "source": self.source,
            "n_steps": self.n_steps,
            "n_measured": self.n_measured,
            "time": self.time,
            "observable": self.observable,
            "tuner": _jsonable(self.tuner),
            "closed_loop_rule": _jsonable(self.closed_loop_rule),
            "models": {k: m.to_dict() for k, m in self.models.items()},
            "comparison": _jsonable(self.comparison),
            "verdict": self.verdict,
            "explained": self.explained,
            "noise": {"sigma_sharpness": _jsonable(self.sigma), "edge_tol": self.edge_tol},
            "windows": [w.to_dict() for w in self.windows],
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as indented JSON to ``path`` (parent folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def summary(self) -> str:
        """A few lines for a terminal: verdict, parameters ± errors, statistics."""
        lines = [f"{self.source}: {self.verdict}  ({self.n_steps} steps, {self.n_measured} sharpness "
                 f"measurements, time in {self.time}, oscillation observable: {self.observable})"]
        for m in self.models.values():
            ps = ", ".join(f"{k}={_pm(v, m.physical_stderr.get(k, float('nan')))}"
                           for k, v in m.physical.items())
            lines.append(f"  {m.name:<13}[{m.loop}] {ps}; R2={m.r2:.4f} AIC={m.aic:.1f} BIC={m.bic:.1f}")
        if self.comparison:
            lines.append(f"  dAIC(joint-eos)={self.comparison['delta_aic']:.1f} "
                         f"dBIC={self.comparison['delta_bic']:.1f} -> {self.comparison['preferred']}")
        for w in self.windows:
            lines.append(f"  steps {w.start_step:>7}-{w.end_step:<7} {w.verdict:<19} "
                         f"median(eta*lam-2)={w.median_gap:+.3f}+-{w.gap_se:.3f} "
                         f"band={w.tolerance:.3f} growth={w.growth:+.3f} follow={w.follow:.2f}")
        return "\n".join(lines)


def _pm(v: float, se: float) -> str:
    if not math.isfinite(se):
        return f"{v:.4g}"
    return f"{v:.4g}+-{se:.2g}"


def fit_trace(
    trace: Any,
    *,
    closed_loop: None | str | Mapping[str, Any] = None,
    windows: int | Sequence[int] = 8,
    time: str = "eta_t",
    edge_tol: float = 0.05,
    trend_window: int | str = "auto",
    min_measurements: int = MIN_MEASUREMENTS,
) -> FitReport:
    """Fit "EOS alone" and the joint model to a trace and say where EOS alone explains it.

    Math (science.md §5): EOS alone λ_{t+1} = min(λ_t + a·w_t, 2/η_t) (:func:`fit_eos_alone`); the
    joint model x_{t+1} = (1 − η_tλ_t)x_t, λ_{t+1} = λ_t + w_t(α − βx_t²/2), in open loop
    teacher-forced on the oscillation observable (:func:`fit_joint_open`) and optionally in closed
    loop with the tuner rule (:func:`fit_joint_closed`); w_t = η_t (``time="eta_t"``) or 1
    (``time="steps"``); physical rates a, α, β are per unit of ηt either way. Model comparison by
    AIC = n ln(RSS/n) + 2k and BIC = n ln(RSS/n) + k ln n on the sharpness residuals (k = 2 for EOS
    alone, 3 for the joint model, 4 in closed loop). Verdicts per window: :func:`window_verdicts`
    (the edge tested on each window's centre of ηλ̂ − 2; below the ceiling, the residual test uses
    EOS alone with a rate of its own on each piece of each window, :func:`fit_eos_piecewise`, as
    EOS alone claims growth towards the ceiling, not a constant rate).

    Args:
      trace: a :class:`~eosmodel.trace.Trace`, a run directory, a ``trace.jsonl`` or ``.csv``
        path, or a dict of columns; needs ``step`` (consecutive), ``stepsize`` (> 0) and
        ``sharpness`` (NaN where not measured; at least ``min_measurements`` values), optionally
        ``x`` and ``loss``.
      closed_loop: ``None`` (open loop only, default), ``"auto"`` (the trace's
        ``config["tuner"]``), a rule name (``constant``, ``oracle``, ``armijo``, ``polyak``,
        ``cdat``) or a tuner config dict.
      windows: number of verdict windows (default 8) or their start steps.
      time: ``"eta_t"`` (default) or ``"steps"``.
      edge_tol: tolerance on ηλ around 2, relative to the ceiling (default 0.05).
      trend_window: steps of the loss trend when the loss is the oscillation observable
        (:func:`oscillation_observable`), or ``"auto"`` (default): fit once with 101 steps, then
        refit with 1.5 periods of the orbit, 2π/(η̄√(2α)) steps, so that the window sees the
        orbit's smallest excess.
      min_measurements: fewest sharpness measurements accepted (default 8).

    Returns:
      :class:`FitReport`.

    Raises:
      eosmodel.fit.FitInputError: the trace lacks what the fit needs (the message says what).
      FileNotFoundError: a path that does not exist.

    Example:
      >>> import numpy as np
      >>> eta = np.full(400, 0.01); lam = np.minimum(100 + 300 * 0.01 * np.arange(400), 200.0)
      >>> lam[1::2] = np.nan
      >>> report = fit_trace({"step": np.arange(400), "stepsize": eta, "sharpness": lam})
      >>> report.verdict, round(report.models["eos_alone"].physical["a"], 6)
      ('explained', 300.0)

    Reference: Roulet, Agarwala, Pedregosa, arXiv 2312.00209 (the EOS model and its test);
      Damian, Nichani, Lee, arXiv 2209.15594 (the self-stabilisation map).
    """
    data = prepare(trace, min_measurements=min_measurements)
    w, _ = time_weights(data.stepsize, time)
    clock = _clock(w)
    models: dict[str, ModelFit] = {"eos_alone": fit_eos_alone(data, time=time)}
    auto = isinstance(trend_window, str) and trend_window == "auto"
    if not auto and not isinstance(trend_window, (int, np.integer)):
        raise FitInputError(f"trend_window must be 'auto' or a number of steps, got {trend_window!r}.")
    q, kind = oscillation_observable(data, trend_window=_FIRST_TREND_WINDOW if auto else trend_window)
    if q is not None:
        models["joint"] = fit_joint_open(data, q, time=time, kind=kind)
        if kind == "loss" and auto:
            window = _orbit_window(data, models)
            q, kind = oscillation_observable(data, trend_window=window)
            models["joint"] = fit_joint_open(data, q, time=time, kind=f"loss (trend window {window} steps)")
    rule = None
    if closed_loop is not None:
        rule = rule_config(closed_loop, data)
        start = _closed_start(data, models, q)
        models["joint_closed"] = fit_joint_closed(data, rule, start=start)
    joint = models.get("joint")
    windowed = fit_windowed(data, window_bounds(data, windows), clock, models["eos_alone"])
    verdicts, sigma = window_verdicts(
        data, models["eos_alone"].sharpness, None if joint is None else joint.sharpness, clock,
        windows=windows, edge_tol=edge_tol, windowed_fit=windowed,
    )
    comparison: dict[str, Any] = {}
    if joint is not None:
        eos = models["eos_alone"]
        comparison = {
            "delta_aic": joint.aic - eos.aic,
            "delta_bic": joint.bic - eos.bic,
            "preferred": "joint" if joint.bic < eos.bic else "eos_alone",
        }
    return FitReport(
        source=data.source, n_steps=len(data), n_measured=int(data.measured.size), time=time,
        observable=kind, tuner=data.tuner, closed_loop_rule=rule, models=models,
        comparison=comparison, windows=verdicts, verdict=overall_verdict(verdicts), sigma=sigma,
        edge_tol=edge_tol, data=data, windowed=windowed,
    )


_FIRST_TREND_WINDOW = 101


def _orbit_window(data: FitData, models: dict[str, ModelFit]) -> int:
    """1.5 periods of the self-stabilisation orbit, 2π/(η̄√(2α)) steps (linearised about (δ, 0)),
    with α from the first joint fit (else the EOS-alone rate), clipped to [51, n/4]."""
    alpha = models["joint"].physical["alpha"]
    if not alpha > 0:
        alpha = models["eos_alone"].physical["a"]
    if not alpha > 0:
        return _FIRST_TREND_WINDOW
    period = 2 * math.pi / (float(np.mean(data.stepsize)) * math.sqrt(2 * alpha))
    return int(np.clip(round(1.5 * period), 51, max(51, len(data) // 4))) | 1


def _closed_start(data: FitData, models: dict[str, ModelFit], q: np.ndarray | None) -> dict[str, float]:
    """Closed-loop initial guess from the open-loop fits (physical units)."""
    eos = models["eos_alone"].physical
    lam0 = float(data.sharpness[data.measured[0]])
    joint = models.get("joint")
    alpha = max(eos["a"], 1e-6 * abs(lam0) + 1e-12)
    beta = 1.0
    if joint is not None:
        if joint.physical["alpha"] > 0:
            alpha = joint.physical["alpha"]
        if joint.physical["beta"] > 0:
            beta = joint.physical["beta"]
        if joint.physical["lambda0"] > 0:  # a sharpness; a poor open-loop fit can make it negative
            lam0 = joint.physical["lambda0"]
    x0 = math.sqrt(q[0]) if q is not None and q[0] > 0 else 1e-3 * math.sqrt(2 * alpha / beta)
    return {"alpha": alpha, "beta": beta, "lambda0": lam0, "x0": x0}


def compare(reports: Sequence[FitReport], path: str | os.PathLike | None = None) -> str:
    """A plain-text table comparing fit reports, one row per trace (written to ``path`` if given).

    Columns: source, verdict, EOS-alone a and R², joint α, β, δ and R², ΔBIC (joint − EOS alone),
    and the mean η_tλ̂_t over the measurements.
    """
    header = ("source", "verdict", "a", "R2_eos", "alpha", "beta", "delta", "R2_joint", "dBIC", "mean_eta_lam")
    rows = []
    for r in reports:
        e = r.models["eos_alone"]
        j = r.models.get("joint")
        idx = r.data.measured
        nl = float(np.mean(r.data.stepsize[idx] * r.data.sharpness[idx]))
        rows.append((
            r.source, r.verdict, f"{e.physical['a']:.4g}", f"{e.r2:.4f}",
            f"{j.physical['alpha']:.4g}" if j else "-", f"{j.physical['beta']:.4g}" if j else "-",
            f"{j.physical.get('delta', float('nan')):.4g}" if j else "-",
            f"{j.r2:.4f}" if j else "-",
            f"{r.comparison['delta_bic']:.1f}" if r.comparison else "-", f"{nl:.3f}",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    text = "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*row) for row in rows]) + "\n"
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text
