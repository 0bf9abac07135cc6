"""The paper's claims, each decided by one statistic of the suite's traces.

Roulet, Agarwala & Pedregosa (arXiv 2312.00209) state their findings in the abstract and in the
captions of figures 1-5. Each finding is a :class:`Claim` here: the sentence, the figure it
belongs to, and a *rule*, a function of the traces of one architecture that computes the
statistic deciding it and returns a :class:`Measurement` (value, verdict, details). The
statistics are written once, below, and the report (:func:`claims_report`) quotes their
definitions, so what "holds" means is stated next to every verdict.

Verdicts: ``holds``, ``does not hold`` (the numbers say by how much), ``not measured at this
scale`` (the suite lacks the runs the statistic needs, e.g. ``--only`` left them out, or they
recorded no sharpness).

Full batch (figures 1-2; per architecture, runs grouped by ``[model].name``):

* GD's sharpness settles at 2/η; Armijo's sharpness ends above every fixed-η plateau 2/η;
  Polyak's sharpness stays below every plateau; Polyak reaches the lowest training loss;
* Armijo's stepsize decreases; Armijo's ηλ stays well below 2 or lingers at 2 (either outcome is
  the paper's own caption; the verdict says which); Polyak runs at or beyond the edge (ηλ ≥ 2);
  Polyak's stepsize oscillates near its cap γ_max.

Mini-batch (figures 3-5; per architecture, over batch sizes):

* Armijo's loss depends strongly on the batch size, more than SGD's and Polyak's; Armijo is best
  at a medium batch size; Armijo sharpens progressively at medium and large batch sizes and
  "instantaneously" (early) at the smallest; Polyak is reasonable at every batch size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from eosmodel.trace import Trace

__all__ = [
    "CLAIMS",
    "Claim",
    "Measurement",
    "evaluate_claims",
    "final_loss",
    "final_measured",
    "late_median",
    "sharpening_phases",
]

HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured at this scale"
FULL, MINI = "full-batch", "mini-batch"

#: Thresholds of the rules (one place; the report prints them with the definitions).
EDGE = 2.0
EDGE_TOL = 0.1  # |median ηλ − 2| ≤ 0.1: "at the edge" (within 5 % of 2/η)
REACHED = 1.9  # ηλ ≥ 1.9: the sharpness has reached the edge (95 % of 2/η)
STEPSIZE_DROP = 0.5  # late/early stepsize ratio below this: "decreasing"
NEAR_CAP = 0.5  # median η/γ_max at least this: "near γ_max"
OSCILLATING = 0.2  # share of steps where the stepsize's change flips sign: "oscillating"
STRONG_SPREAD = 2.0  # max/min final loss over batch sizes at least this: "strong dependence"
GROWTH = 1.5  # a growth factor of λ at least this: the sharpness rose (sharpening_phases)
SETTLED = 1.25  # progressive growth below this after the early jump: sharpening was "instantaneous"
REASONABLE = 2.0  # Polyak's final loss within this factor of the best tuner's, at every batch size


# ------------------------------------------------------------------------------ statistics
def late_median(trace: Trace, column: str, frac: float = 0.5) -> float:
    """Median of the finite values of ``column`` over the last ``frac`` of the run (by step).

    NaN when nothing was measured there.
    """
    steps, values = trace.measured(column)
    if not len(steps):
        return math.nan
    start = trace["step"][0] + (1 - frac) * (trace["step"][-1] - trace["step"][0])
    late = values[steps >= start]
    return float(np.median(late)) if len(late) else math.nan


def early_median(trace: Trace, column: str, frac: float = 0.1) -> float:
    """Median of the finite values of ``column`` over the first ``frac`` of the run (step 0 excluded)."""
    steps, values = trace.measured(column)
    stop = trace["step"][0] + frac * (trace["step"][-1] - trace["step"][0])
    early = values[(steps > trace["step"][0]) & (steps <= stop)]
    return float(np.median(early)) if len(early) else math.nan


def final_measured(trace: Trace, column: str, frac: float = 0.1) -> float:
    """Median of the last ``frac`` of the measurements of ``column`` (at least the last one); NaN if none."""
    _, values = trace.measured(column)
    if not len(values):
        return math.nan
    return float(np.median(values[-max(1, math.ceil(frac * len(values))) :]))


def final_loss(trace: Trace) -> float:
    """The run's final training loss: the median of ``loss`` over the last 5 % of its steps.

    (A median, because Polyak's and mini-batch losses oscillate from step to step.)
    """
    return late_median(trace, "loss", 0.05)


def edge_median(trace: Trace) -> tuple[float, float | None]:
    """(median ηλ after the edge is first reached, that step as a fraction of the run).

    The edge is reached at the first measurement with ηλ ≥ ``REACHED``; (max ηλ, None) if never.
    """
    steps, ns = trace.measured("normalized_sharpness")
    if not len(ns):
        return math.nan, None
    hit = np.flatnonzero(ns >= REACHED)
    if not len(hit):
        return float(np.max(ns)), None
    span = max(1, int(trace["step"][-1] - trace["step"][0]))
    return float(np.median(ns[hit[0] :])), float((steps[hit[0]] - trace["step"][0]) / span)


def sharpening_phases(trace: Trace) -> tuple[float, float]:
    """(jump, progressive) growth factors of the sharpness, robust to single spikes.

    With λ₀ the first measurement (the initialisation), λ_early the median of the measurements in
    the first 10 % of the run (step 0 excluded) and λ_late the median over its last 20 %:
    jump = λ_early / λ₀ (the sharpening right after the start) and progressive = λ_late / λ_early
    (the sharpening over the rest of the run). NaNs without measurements in those windows.
    """
    steps, lam = trace.measured("sharpness")
    if len(lam) < 3 or lam[0] <= 0:
        return math.nan, math.nan
    early, late = early_median(trace, "sharpness", 0.1), late_median(trace, "sharpness", 0.2)
    return early / float(lam[0]), late / early


def stepsize_sign_changes(trace: Trace, frac: float = 0.5) -> float:
    """Share of the last ``frac`` of the steps where the stepsize's change flips sign."""
    eta = trace["stepsize"][int(len(trace) * (1 - frac)) :]
    d = np.diff(eta)
    d = d[d != 0]
    return float(np.mean(np.sign(d[1:]) != np.sign(d[:-1]))) if len(d) > 2 else 0.0


# ------------------------------------------------------------------------------ run identity
def _tuner(trace: Trace) -> dict:
    t = trace.config.get("tuner") if isinstance(trace.config, dict) else None
    return t if isinstance(t, dict) else {}


def family(trace: Trace) -> str:
    """``gd`` (a constant stepsize), ``armijo``, ``polyak``, or the tuner's name."""
    name = _tuner(trace).get("name", "unknown")
    return "gd" if name == "constant" else str(name)


def model(trace: Trace) -> str:
    m = trace.config.get("model", {}) if isinstance(trace.config, dict) else {}
    return str(m.get("name", "unknown")) if isinstance(m, dict) else "unknown"


def batch(trace: Trace) -> int:
    t = trace.config.get("train", {}) if isinstance(trace.config, dict) else {}
    return int(t.get("batch_size", 0) or 0) if isinstance(t, dict) else 0


def _of(traces: Sequence[Trace], fam: str) -> list[Trace]:
    return [t for t in traces if family(t) == fam]


# ------------------------------------------------------------------------------ claims
@dataclasses.dataclass(frozen=True)
class Measurement:
    """The outcome of a claim's rule on one architecture's runs.

    Attributes:
      value: the deciding statistic (None when not measured).
      verdict: ``holds``, ``does not hold`` or ``not measured at this scale``.
      details: one sentence with the numbers behind the verdict.
      numbers: the per-run numbers (JSON).
    """

    value: float | None
    verdict: str
    details: str
    numbers: dict = dataclasses.field(default_factory=dict)


def _missing(what: str) -> Measurement:
    return Measurement(None, NOT_MEASURED, f"the suite has no {what}")


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One finding of the paper and the rule that decides it.

    Attributes:
      id: short identifier (``gd-at-edge``).
      figure: the paper figure it belongs to (``"1"``, ``"2"``, ``"3"``: figures 3-5 share their claims).
      text: the claim, in the paper's words.
      statistic: how the rule decides it (quoted in the report).
      rule: traces of one architecture -> :class:`Measurement`.
    """

    id: str
    figure: str
    text: str
    statistic: str
    rule: Callable[[Sequence[Trace]], Measurement]

    @property
    def regime(self) -> str:
        """``full-batch`` (figures 1-2) or ``mini-batch`` (figure 3): the runs it is evaluated on."""
        return MINI if self.figure == "3" else FULL


def _gd_at_edge(traces: Sequence[Trace]) -> Measurement:
    gd = _of(traces, "gd")
    if not gd:
        return _missing("fixed-stepsize GD run")
    per = {}
    for t in gd:
        med, when = edge_median(t)
        per[f"eta={_tuner(t).get('stepsize')}"] = {"median_eta_lambda_at_edge": _r(med), "reached_at": _r(when) if when is not None else None}
    worst = max(per.values(), key=lambda d: abs((d["median_eta_lambda_at_edge"] or 0.0) - EDGE) if d["reached_at"] is not None else math.inf)
    ok = all(d["reached_at"] is not None and abs(d["median_eta_lambda_at_edge"] - EDGE) <= EDGE_TOL for d in per.values())
    never = [k for k, d in per.items() if d["reached_at"] is None]
    text = "; ".join(
        f"{k}: median ηλ {d['median_eta_lambda_at_edge']} after reaching the edge at {d['reached_at']:.0%} of the run"
        if d["reached_at"] is not None
        else f"{k}: never reached ηλ ≥ {REACHED} (max {d['median_eta_lambda_at_edge']})"
        for k, d in per.items()
    )
    if never:
        text += f" ({len(never)} run(s) did not reach the edge within the run)"
    return Measurement(worst["median_eta_lambda_at_edge"], HOLDS if ok else FAILS, text, per)


def _plateaus(traces: Sequence[Trace]) -> list[float]:
    return [EDGE / float(_tuner(t)["stepsize"]) for t in _of(traces, "gd") if _tuner(t).get("stepsize")]


def _final_sharpness_vs_plateaus(traces: Sequence[Trace], fam: str, above_highest: bool) -> Measurement:
    """``fam``'s final sharpness over the highest GD plateau 2/η (holds when > 1), or over the lowest (< 1)."""
    runs, plateaus = _of(traces, fam), _plateaus(traces)
    who = fam.capitalize()
    if not runs or not plateaus:
        return _missing(f"{who} run" if not runs else "fixed-stepsize GD run")
    lam = final_measured(runs[0], "sharpness")
    which, plateau = ("highest", max(plateaus)) if above_highest else ("lowest", min(plateaus))
    ratio = lam / plateau
    return Measurement(
        _r(ratio),
        HOLDS if (ratio > 1 if above_highest else ratio < 1) else FAILS,
        f"{who}'s final sharpness {lam:.3g} is {ratio:.2f}x the {which} plateau 2/η = {plateau:.3g}",
        {f"{fam}_final_sharpness": _r(lam), f"{which}_plateau": _r(plateau)},
    )


def _armijo_above_plateaus(traces: Sequence[Trace]) -> Measurement:
    return _final_sharpness_vs_plateaus(traces, "armijo", above_highest=True)


def _polyak_low_sharpness(traces: Sequence[Trace]) -> Measurement:
    return _final_sharpness_vs_plateaus(traces, "polyak", above_highest=False)


def _polyak_best_loss(traces: Sequence[Trace]) -> Measurement:
    pol = _of(traces, "polyak")
    others = [t for t in traces if family(t) != "polyak"]
    if not pol or not others:
        return _missing("Polyak run" if not pol else "run to compare Polyak with")
    mine = final_loss(pol[0])
    losses = {_label(t): final_loss(t) for t in others}
    best_name = min(losses, key=lambda k: losses[k] if math.isfinite(losses[k]) else math.inf)
    ratio = mine / losses[best_name]
    return Measurement(
        _r(ratio),
        HOLDS if ratio <= 1 else FAILS,
        f"Polyak's final loss {mine:.3g} vs the best other run ({best_name}) {losses[best_name]:.3g}: ratio {ratio:.2f}",
        {"polyak": _r(mine), **{k: _r(v) for k, v in losses.items()}},
    )


def _armijo_stepsize_decreasing(traces: Sequence[Trace]) -> Measurement:
    arm = _of(traces, "armijo")
    if not arm:
        return _missing("Armijo run")
    early, late = early_median(arm[0], "stepsize"), late_median(arm[0], "stepsize", 0.1)
    ratio = late / early
    return Measurement(
        _r(ratio),
        HOLDS if ratio < STEPSIZE_DROP else FAILS,
        f"Armijo's stepsize went from {early:.3g} (median, first 10 % of the run) to {late:.3g} (last 10 %): ratio {ratio:.2f}",
        {"early_stepsize": _r(early), "late_stepsize": _r(late)},
    )


def _armijo_below_or_at_edge(traces: Sequence[Trace]) -> Measurement:
    arm = _of(traces, "armijo")
    if not arm:
        return _missing("Armijo run")
    med = late_median(arm[0], "normalized_sharpness", 0.5)
    if not math.isfinite(med):
        return _missing("sharpness measurement of the Armijo run")
    if med < EDGE - EDGE_TOL:
        verdict, how = HOLDS, "well below 2"
    elif med <= EDGE + EDGE_TOL:
        verdict, how = HOLDS, "lingering at 2"
    else:
        verdict, how = FAILS, "above the edge"
    return Measurement(_r(med), verdict, f"Armijo's median ηλ over the second half of the run is {med:.3f}: {how}", {"outcome": how})


def _polyak_at_or_beyond_edge(traces: Sequence[Trace]) -> Measurement:
    pol = _of(traces, "polyak")
    if not pol:
        return _missing("Polyak run")
    med = late_median(pol[0], "normalized_sharpness", 0.5)
    if not math.isfinite(med):
        return _missing("sharpness measurement of the Polyak run")
    steps, ns = pol[0].measured("normalized_sharpness")
    above = float(np.mean(ns[steps >= steps[len(steps) // 2]] > EDGE))
    return Measurement(
        _r(med),
        HOLDS if med >= EDGE - EDGE_TOL else FAILS,
        f"Polyak's median ηλ over the second half is {med:.3f}; {above:.0%} of those measurements are above 2",
        {"share_above_edge": _r(above)},
    )


def _polyak_stepsize_near_cap(traces: Sequence[Trace]) -> Measurement:
    pol = _of(traces, "polyak")
    if not pol:
        return _missing("Polyak run")
    cap = float(_tuner(pol[0]).get("max_stepsize") or math.nan)
    rel = late_median(pol[0], "stepsize", 0.5) / cap
    flips = stepsize_sign_changes(pol[0])
    ok = rel >= NEAR_CAP and flips >= OSCILLATING
    return Measurement(
        _r(rel),
        HOLDS if ok else FAILS,
        f"Polyak's median η/γ_max over the second half is {rel:.2f} (γ_max = {cap:g}); its change flips sign at {flips:.0%} of the steps",
        {"median_stepsize_over_cap": _r(rel), "sign_flip_share": _r(flips)},
    )


def _label(t: Trace) -> str:
    fam = family(t)
    if fam == "gd":
        return f"{'SGD' if batch(t) else 'GD'} eta={_tuner(t).get('stepsize')}"
    return fam


def _by_batch(traces: Sequence[Trace], fam: str) -> dict[int, Trace]:
    return {batch(t): t for t in sorted(_of(traces, fam), key=batch)}


def _spread(losses: Sequence[float]) -> float:
    return max(losses) / min(losses) if len(losses) > 1 and min(losses) > 0 else math.nan


def _armijo_batch_dependence(traces: Sequence[Trace]) -> Measurement:
    arm = _by_batch(traces, "armijo")
    if len(arm) < 2:
        return _missing("Armijo runs at two or more batch sizes")
    finals = {fam: {b: final_loss(t) for b, t in _by_batch(traces, fam).items()} for fam in ("armijo", "gd", "polyak")}
    spreads = {fam: _spread(list(by_b.values())) for fam, by_b in finals.items()}
    others = [v for k, v in spreads.items() if k != "armijo" and math.isfinite(v)]
    ok = spreads["armijo"] >= STRONG_SPREAD and all(spreads["armijo"] > v for v in others)
    losses = {b: _r(v) for b, v in finals["armijo"].items()}
    return Measurement(
        _r(spreads["armijo"]),
        HOLDS if ok else FAILS,
        f"Armijo's final loss by batch size {losses}: max/min {spreads['armijo']:.2f} "
        f"(SGD {spreads['gd']:.2f}, Polyak {spreads['polyak']:.2f})",
        {"armijo_final_loss": losses, "spread": {k: _r(v) for k, v in spreads.items()}},
    )


def _armijo_best_at_medium(traces: Sequence[Trace]) -> Measurement:
    arm = _by_batch(traces, "armijo")
    if len(arm) < 3:
        return _missing("Armijo runs at three or more batch sizes")
    losses = {b: final_loss(t) for b, t in arm.items()}
    best = min(losses, key=lambda b: losses[b] if math.isfinite(losses[b]) else math.inf)
    ok = min(arm) < best < max(arm)
    return Measurement(
        float(best),
        HOLDS if ok else FAILS,
        f"Armijo's lowest final loss is at batch size {best} (of {sorted(arm)}): "
        + ", ".join(f"{b}: {v:.3g}" for b, v in losses.items()),
        {"final_loss": {b: _r(v) for b, v in losses.items()}},
    )


def _sharpening(arm: Mapping[int, Trace]) -> dict[int, dict]:
    return {b: dict(zip(("jump", "progressive"), map(_r, sharpening_phases(t)))) for b, t in arm.items()}


def _armijo_progressive_medium_large(traces: Sequence[Trace]) -> Measurement:
    arm = _by_batch(traces, "armijo")
    if len(arm) < 2:
        return _missing("Armijo runs at two or more batch sizes")
    per = _sharpening({b: t for b, t in arm.items() if b != min(arm)})
    if any(d["progressive"] is None for d in per.values()):
        return _missing("sharpness measurements of the Armijo runs")
    ok = all(d["progressive"] >= GROWTH for d in per.values())
    return Measurement(
        min(d["progressive"] for d in per.values()),
        HOLDS if ok else FAILS,
        "Armijo above the smallest batch size: "
        + "; ".join(f"b={b}: λ x{d['jump']:.2f} in the first 10 % of the run, then x{d['progressive']:.2f} to its last 20 %" for b, d in per.items()),
        {str(b): d for b, d in per.items()},
    )


def _armijo_instantaneous_small(traces: Sequence[Trace]) -> Measurement:
    arm = _by_batch(traces, "armijo")
    if len(arm) < 2:
        return _missing("Armijo runs at two or more batch sizes")
    b = min(arm)
    d = _sharpening({b: arm[b]})[b]
    if d["progressive"] is None or d["jump"] is None:
        return _missing("sharpness measurements of the Armijo runs")
    ok = d["jump"] >= GROWTH and d["progressive"] < SETTLED
    return Measurement(
        d["jump"],
        HOLDS if ok else FAILS,
        f"Armijo at the smallest batch size {b}: λ x{d['jump']:.2f} in the first 10 % of the run, then x{d['progressive']:.2f} to its last 20 %",
        d,
    )


def _polyak_reasonable(traces: Sequence[Trace]) -> Measurement:
    pol = _by_batch(traces, "polyak")
    if not pol:
        return _missing("Polyak run")
    per = {}
    for b, t in pol.items():
        others = [final_loss(o) for o in traces if batch(o) == b and family(o) != "polyak"]
        if others:
            per[b] = final_loss(t) / min(others)
    if not per:
        return _missing("run to compare Polyak with at its batch sizes")
    worst = max(per.values())
    return Measurement(
        _r(worst),
        HOLDS if worst <= REASONABLE else FAILS,
        "Polyak's final loss over the best other tuner's, by batch size: " + ", ".join(f"{b}: {v:.2f}" for b, v in per.items()),
        {str(b): _r(v) for b, v in per.items()},
    )


#: Every claim, in the order of the report.
CLAIMS: tuple[Claim, ...] = (
    Claim("gd-at-edge", "1", "GD with a fixed stepsize η: the sharpness rises to 2/η and stays there (ηλ ≈ 2).",
          f"per GD run, the median of ηλ after its first measurement with ηλ ≥ {REACHED}; holds when every run reaches it and |median − 2| ≤ {EDGE_TOL} (value: the run farthest from 2)", _gd_at_edge),
    Claim("armijo-above-plateaus", "1", "Armijo's sharpness climbs above every fixed-stepsize plateau 2/η.",
          "Armijo's final sharpness (median of the last 10 % of the measurements) over the highest GD plateau 2/η_min; holds when > 1", _armijo_above_plateaus),
    Claim("polyak-low-sharpness", "1", "Polyak's sharpness plateaus at low values.",
          "Polyak's final sharpness (median of the last 10 % of the measurements) over the lowest GD plateau 2/η_max; holds when < 1", _polyak_low_sharpness),
    Claim("polyak-best-loss", "1", "Polyak reaches the best training loss, better than Armijo and than well-chosen fixed stepsizes.",
          "Polyak's final training loss (median over the last 5 % of the steps) over the lowest final loss of the other runs of the architecture; holds when ≤ 1", _polyak_best_loss),
    Claim("armijo-stepsize-decreasing", "2", "Armijo's stepsize keeps decreasing.",
          f"Armijo's median stepsize over the last 10 % of the steps over its median over the first 10 % (step 0 excluded); holds when < {STEPSIZE_DROP}", _armijo_stepsize_decreasing),
    Claim("armijo-below-or-at-edge", "2", "Armijo's ηλ either stays well below 2 or lingers around it from the start.",
          f"Armijo's median ηλ over the second half of the run; holds below {EDGE - EDGE_TOL:g} (well below 2) or within {EDGE_TOL} of 2 (lingering), does not hold above {EDGE + EDGE_TOL:g}", _armijo_below_or_at_edge),
    Claim("polyak-at-or-beyond-edge", "2", "Polyak operates at the edge of stability or beyond (ηλ oscillating around or above 2).",
          f"Polyak's median ηλ over the second half of the run; holds when ≥ {EDGE - EDGE_TOL:g}", _polyak_at_or_beyond_edge),
    Claim("polyak-stepsize-near-cap", "2", "Polyak's stepsize oscillates near its cap γ_max.",
          f"Polyak's median η/γ_max over the second half of the run (holds when ≥ {NEAR_CAP}) and the share of those steps where the stepsize's change flips sign (≥ {OSCILLATING})", _polyak_stepsize_near_cap),
    Claim("armijo-batch-dependence", "3", "Armijo's performance depends strongly on the batch size.",
          f"max/min over batch sizes of Armijo's final training loss (median batch loss over the last 5 % of the steps); holds when ≥ {STRONG_SPREAD} and above the same spread of SGD and of Polyak", _armijo_batch_dependence),
    Claim("armijo-best-at-medium", "3", "Armijo does well at medium batch sizes and poorly at small and large ones.",
          "the batch size of Armijo's lowest final loss; holds when it is neither the smallest nor the largest", _armijo_best_at_medium),
    Claim("armijo-progressive-medium-large", "3", "Armijo shows progressive sharpening at medium and large batch sizes.",
          f"per Armijo run above the smallest batch size, progressive = λ_late / λ_early (medians of the sharpness over the last 20 % of the run and over its first 10 %, step 0 excluded); holds when every run has progressive ≥ {GROWTH} (value: the smallest)", _armijo_progressive_medium_large),
    Claim("armijo-instantaneous-small", "3", "At small batch size Armijo's sharpening is 'instantaneous' (early), as SGD with a large stepsize.",
          f"Armijo at the smallest batch size: jump = λ_early / λ₀ (λ₀ at step 0) ≥ {GROWTH} and progressive = λ_late / λ_early < {SETTLED}: the sharpness rose at once, then stayed (value: jump)", _armijo_instantaneous_small),
    Claim("polyak-reasonable", "3", "Polyak performs reasonably at every batch size.",
          f"per batch size, Polyak's final training loss over the lowest of the other tuners; holds when ≤ {REASONABLE} at every batch size (value: the largest ratio)", _polyak_reasonable),
)


def evaluate_claims(traces: Sequence[Trace], figures: Sequence[str]) -> list[dict[str, Any]]:
    """Evaluate the claims of the paper figures ``figures`` on ``traces``, per architecture.

    Claims of figures 1-2 are evaluated on the full-batch runs, claims of figure 3 on the mini-batch
    runs (figures 4 and 5 repeat figure 3's claims for VGG11 and ResNet: pass "4" or "5" to label
    them so). Each architecture (``[model].name``) is a row; a figure with no run of its regime
    gets one "not measured" row per claim.

    Returns:
      One dict per (claim, architecture): ``id``, ``figure``, ``model``, ``claim``, ``statistic``,
      ``value``, ``verdict``, ``details``, ``numbers``.
    """
    rows = []
    for fig in figures:
        claims = [c for c in CLAIMS if c.figure == ("3" if fig in ("3", "4", "5") else fig)]
        regime = claims[0].regime if claims else FULL
        runs = [t for t in traces if (batch(t) == 0) == (regime == FULL)]
        models = sorted({model(t) for t in runs}) or ["(none)"]
        for claim in claims:
            for m in models:
                mine = [t for t in runs if model(t) == m]
                result = claim.rule(mine) if mine else _missing(f"{regime} run")
                if result.value is None and result.verdict != NOT_MEASURED:
                    result = Measurement(None, NOT_MEASURED, f"the statistic is undefined on these runs: {result.details}", result.numbers)
                rows.append(
                    {
                        "id": claim.id,
                        "figure": fig,
                        "model": m,
                        "claim": claim.text,
                        "statistic": claim.statistic,
                        "value": result.value,
                        "verdict": result.verdict,
                        "details": result.details,
                        "numbers": result.numbers,
                    }
                )
    return rows
