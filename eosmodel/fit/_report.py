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
from eosmodel.fit._closed import (
    EOSAloneModel,
    EOSAloneState,
    closed_errors,
    curvature_ratio,
    fit_closed,
    rule_config,
    simulate_closed,
    smooth_part,
    zero_smooth_part,
)
from eosmodel.fit._joint import oscillation_regressor
from eosmodel.fit._models import (
    ModelFit,
    _clock,
    _jsonable,
    _statistics,
    fit_eos_alone,
    fit_joint_open,
    time_weights,
)
from eosmodel.fit._stats import nested_test
from eosmodel.fit._verdict import (
    DEFAULT_EDGE_TOL,
    EXPLAINED,
    WindowVerdict,
    fit_windowed,
    overall_verdict,
    window_bounds,
    window_verdicts,
)

REPORT_VERSION = 2


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
        """The JSON-ready report (predictions and arrays left out; strict JSON)."""
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
            c = self.comparison
            lines.append(f"  nested test (joint vs EOS alone): LR={c['lr']:.1f} on {c['df']} df with "
                         f"n_eff={c['n_eff']:.0f}, p={c['p_value']:.2g}, effect={c['effect']:.2f}, "
                         f"dBIC_eff={c['delta_bic_eff']:.1f} -> {c['preferred']}")
        closed = self.models.get("joint_closed")
        if closed is not None:
            for label, e in (("joint", closed.extra["errors"]), ("EOS alone", closed.extra["eos_alone_errors"])):
                lines.append(f"  closed loop, {label}: median eta*lambda {e['median_eta_lambda_predicted']:.3f} "
                             f"(measured {e['median_eta_lambda_measured']:.3f}), final sharpness "
                             f"{e['final_sharpness_predicted']:.4g} (measured {e['final_sharpness_measured']:.4g})")
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
    edge_tol: float = DEFAULT_EDGE_TOL,
    trend_window: int | str = "auto",
    min_measurements: int = MIN_MEASUREMENTS,
) -> FitReport:
    """Fit "EOS alone" and the joint model to a trace and say where EOS alone explains it.

    Math (docs/theory.md §5): EOS alone λ_{t+1} = min(λ_t + a·w_t, 2/η_{t+1})
    (:func:`fit_eos_alone`); the joint model, which nests it, adds a sharpening rate that decays
    along the run, the oscillation's self-stabilising pull, an edge offset and the stiffening of
    the top direction (:func:`fit_joint_open`, open loop: measured η_t), and optionally runs with
    the tuner's own rule choosing η_t (closed loop, :func:`eosmodel.fit.fit_closed`). The nested
    comparison is a likelihood-ratio test with the effective number of independent residuals
    (:func:`eosmodel.fit._stats.nested_test`). Verdicts per window: :func:`window_verdicts`.

    Args:
      trace: a :class:`~eosmodel.trace.Trace`, a run directory, a ``trace.jsonl`` or ``.csv``
        path, or a dict of columns; needs ``step`` (consecutive), ``stepsize`` (≥ 0; 0 at a step
        the tuner skipped) and ``sharpness`` (NaN where not measured; at least
        ``min_measurements`` values), optionally ``x``, ``loss``, ``grad_norm_sq`` and
        ``grad_curvature``.
      closed_loop: ``None`` (open loop only, default), ``"auto"`` (the trace's
        ``config["tuner"]``), a rule name (``constant``, ``oracle``, ``armijo``, ``polyak``,
        ``cdat``) or a tuner config dict.
      windows: number of verdict windows (default 8) or their start steps.
      time: ``"eta_t"`` (default) or ``"steps"``.
      edge_tol: the effect size on ηλ around 2, relative to the ceiling (default 0.075).
      trend_window: steps of the loss trend (the oscillation energy is the loss above it), or
        ``"auto"`` (default): 101 steps, at most a quarter of the trace.
      min_measurements: fewest sharpness measurements accepted (default 8).

    Returns:
      :class:`FitReport`.

    Raises:
      eosmodel.fit.FitInputError: the trace or an argument is not usable (the message says what).
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
    edge_tol = _check_edge_tol(edge_tol)
    windows = _check_windows(windows)
    data = prepare(trace, min_measurements=min_measurements)
    w, _ = time_weights(data.stepsize, time)
    clock = _clock(w)
    eos = fit_eos_alone(data, time=time)
    models: dict[str, ModelFit] = {"eos_alone": eos}
    if isinstance(trend_window, str):
        if trend_window != "auto":
            raise FitInputError(f"trend_window must be 'auto' or a number of steps, got {trend_window!r}.")
        window = int(min(101, max(21, len(data) // 4))) | 1
    elif isinstance(trend_window, (int, np.integer)) and not isinstance(trend_window, bool) and trend_window >= 3:
        window = int(trend_window)
    else:
        raise FitInputError(f"trend_window must be 'auto' or a number of steps >= 3, got {trend_window!r}.")
    q, kind = oscillation_regressor(data, window)
    described = f"loss (trend window {window | 1} steps)" if kind == "loss" else kind
    joint = fit_joint_open(data, q, time=time, kind=described, eos=eos)
    if kind == "loss" and isinstance(trend_window, str):
        # the envelope must see the orbit's smallest excess: refit with 1.5 periods of the orbit
        window = _orbit_window(data, joint, eos, window)
        q, kind = oscillation_regressor(data, window)
        joint = fit_joint_open(data, q, time=time, kind=f"loss (trend window {window | 1} steps)", eos=eos)
    models["joint"] = joint
    comparison = nested_test(eos.rss, joint.rss, eos.k, joint.k, joint.n_eff)
    comparison.update({"delta_aic": joint.aic - eos.aic, "delta_bic": joint.bic - eos.bic,
                       "estimator": "likelihood ratio with n_eff = n(1 - rho)/(1 + rho) of the "
                                    "joint model's residuals; HAC (Newey-West) standard errors"})
    rule = None
    if closed_loop is not None:
        rule = rule_config(closed_loop, data)
        models["joint_closed"] = _closed_model(data, rule, joint, eos, q, window)
    windowed = fit_windowed(data, window_bounds(data, windows), clock, eos)
    verdicts, sigma = window_verdicts(
        data, eos.sharpness, joint.sharpness, clock,
        windows=windows, edge_tol=edge_tol, windowed_fit=windowed,
    )
    return FitReport(
        source=data.source, n_steps=len(data), n_measured=int(data.measured.size), time=time,
        observable=kind, tuner=data.tuner, closed_loop_rule=rule, models=models,
        comparison=comparison, windows=verdicts, verdict=overall_verdict(verdicts), sigma=sigma,
        edge_tol=edge_tol, data=data, windowed=windowed,
    )


def _orbit_window(data: FitData, joint: ModelFit, eos: ModelFit, default: int) -> int:
    """1.5 periods of the self-stabilisation orbit, 2π/(η̄√(2α)) steps (linearised about (δ, 0)),
    with α from the joint fit (else the EOS-alone rate), clipped to [21, n/4]."""
    alpha = joint.physical.get("alpha", 0.0)
    if not alpha > 0:
        alpha = eos.physical["a"]
    if not alpha > 0:
        return default
    eta_bar = float(np.mean(data.stepsize[data.stepsize > 0]))
    period = 2 * math.pi / (eta_bar * math.sqrt(2 * alpha))
    return int(np.clip(round(1.5 * period), 21, max(21, len(data) // 4))) | 1


def _check_edge_tol(edge_tol: Any) -> float:
    if isinstance(edge_tol, bool) or not isinstance(edge_tol, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(edge_tol)) or float(edge_tol) < 0:
        raise FitInputError(f"edge_tol must be a finite fraction >= 0 (e.g. 0.075), got {edge_tol!r}.")
    return float(edge_tol)


def _check_windows(windows: Any) -> int | list[int]:
    if isinstance(windows, (int, np.integer)) and not isinstance(windows, bool):
        return int(windows)
    if isinstance(windows, (list, tuple, np.ndarray)) and len(windows) > 0 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in windows):
        return [int(v) for v in windows]
    raise FitInputError(
        f"windows must be a number of windows or a list of start steps (integers), got {windows!r}."
    )


def _closed_model(data: FitData, rule: dict, joint: ModelFit, eos: ModelFit, q, window: int) -> ModelFit:
    """The closed-loop joint fit as a :class:`ModelFit`, with the EOS-alone closed loop beside it."""
    notes = [f"tuner rule: {rule}"]
    try:
        smooth = smooth_part(data, window=window)
    except FitInputError as err:
        smooth = zero_smooth_part()
        notes.append(f"no smooth part: the tuner sees the oscillation only ({err})")
    jp = joint.physical
    lam0 = jp["lambda0"] if jp["lambda0"] > 0 else float(data.sharpness[data.measured[0]])
    alpha = max(jp["alpha"], 1e-6 * abs(lam0))
    beta = jp.get("beta", 0.0) or 1.0
    x0 = math.sqrt(q[0]) if q is not None and q[0] > 0 else 1e-3 * math.sqrt(2 * alpha / beta)
    start = {"alpha": alpha, "kappa": jp.get("kappa", 0.0), "beta": beta, "zeta": jp.get("zeta", 0.0),
             "rho": curvature_ratio(data), "lambda0": lam0, "x0": x0}
    fit = fit_closed(data, rule, start, smooth=smooth)
    eos_run = simulate_closed(EOSAloneModel(eos.physical["a"], fit.params["rho"], smooth),
                              EOSAloneState(eos.physical["lambda0"], smooth.loss0, 0.0), rule, len(data))
    idx = data.measured
    y = data.sharpness[idx]
    r = fit.run.sharpness[idx] - y
    notes.append(f"least_squares on block medians: {fit.message} ({fit.nfev} evaluations)")
    if fit.run.diverged_at is not None:
        notes.append(f"the closed-loop model diverges at step {fit.run.diverged_at}")
    unseen = [k for k, v in fit.stderr.items() if not math.isfinite(v)]
    if unseen:
        notes.append(f"not identified in closed loop (the block medians do not move with them): "
                     f"{', '.join(unseen)}")
    stats = _statistics(np.where(np.isfinite(r), r, 1e150), y, k=len(fit.params))
    return ModelFit(
        name="joint_closed", loop="closed", params=dict(fit.params), stderr=dict(fit.stderr),
        physical=dict(fit.params), physical_stderr=dict(fit.stderr),
        sharpness=fit.run.sharpness, stepsize=fit.run.stepsize, notes=notes,
        extra={"errors": fit.errors, "eos_alone_errors": closed_errors(data, eos_run),
               "eos_alone_stepsize": eos_run.stepsize, "eos_alone_sharpness": eos_run.sharpness},
        **stats,
    )


def compare(reports: Sequence[FitReport], path: str | os.PathLike | None = None) -> str:
    """A plain-text table comparing fit reports, one row per trace (written to ``path`` if given).

    Columns: source, verdict, R² of EOS alone, of the open-loop joint model and of a running
    median (the share of variance any smooth trend explains), the nested test's p-value and the
    preferred model, the measured median η_tλ̂_t and, when fitted, the closed-loop joint model's
    median ηλ and relative error of the final sharpness.
    """
    header = ("source", "verdict", "R2_eos", "R2_joint", "R2_smooth", "p_nested", "preferred",
              "med_eta_lam", "closed_eta_lam", "closed_final_err")
    rows = []
    for r in reports:
        e = r.models["eos_alone"]
        j = r.models.get("joint")
        c = r.models.get("joint_closed")
        idx = r.data.measured
        nl = float(np.median(r.data.stepsize[idx] * r.data.sharpness[idx]))
        err = c.extra["errors"] if c is not None else None
        rows.append((
            Path(r.source).parent.name if r.source.endswith("trace.jsonl") else r.source,
            r.verdict, f"{e.r2:.3f}",
            f"{j.r2:.3f}" if j else "-", f"{j.extra.get('smoother_r2', float('nan')):.3f}" if j else "-",
            f"{r.comparison['p_value']:.2g}" if r.comparison else "-",
            r.comparison.get("preferred", "-") if r.comparison else "-", f"{nl:.3f}",
            f"{err['median_eta_lambda_predicted']:.3f}" if err else "-",
            f"{err['final_sharpness_rel_error']:+.2f}" if err else "-",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    text = "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*row) for row in rows]) + "\n"
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text
