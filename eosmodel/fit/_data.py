"""Input validation for the fitters: a trace (object, run directory or CSV) to checked arrays.

The fitters need, per step t (one record per step, consecutive steps):

* ``step``: t, consecutive integers (one record per optimisation step);
* ``stepsize``: η_t ≥ 0 and finite at every step (the stepsize taken from w_t); η_t = 0 is a step
  the tuner skipped (no step was taken: it advances no clock and has no ceiling), at most half the
  steps;
* ``sharpness``: λ_t, NaN where not measured; at least :data:`MIN_MEASUREMENTS` finite values;
* optionally ``x`` (the displacement along the top eigenvector, recorded by toy simulations) and
  ``loss`` (finite at every step), the observables of the oscillation, and ``grad_norm_sq`` and
  ``grad_curvature`` (gᵀHg/‖g‖² where measured), what a tuner sees of the smooth part of the loss
  (the closed loop needs ``loss`` and ``grad_norm_sq``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from eosmodel.errors import InputError
from eosmodel.trace import Trace, load_trace, read_csv

#: The fewest finite sharpness measurements a fit accepts: the joint model has 3 linear
#: parameters and the verdict needs at least 3 measurements in each of at least 2 windows, and
#: the residual scale needs a few degrees of freedom beyond that.
MIN_MEASUREMENTS = 8

REQUIRED_COLUMNS = ("step", "stepsize", "sharpness")


class FitInputError(InputError):
    """A trace or a fit argument that the fitters cannot use; the message says what is needed."""


@dataclass(frozen=True)
class FitData:
    """The validated arrays a fit runs on (float64 numpy; one entry per step).

    Attributes:
      step: t, consecutive int64 steps.
      stepsize: η_t > 0.
      sharpness: λ̂_t, NaN where not measured.
      measured: indices (into the arrays) of the finite sharpness measurements.
      loss: f(w_t) or ``None`` when absent or not finite everywhere.
      x: the oscillation coordinate x_t or ``None`` when absent or not finite everywhere.
      grad_norm_sq: ‖g_t‖² or ``None`` when absent or not finite everywhere.
      grad_curvature: gᵀHg/‖g‖² (NaN where not measured) or ``None`` when absent.
      skipped: indices of the steps the tuner skipped (η_t = 0).
      tuner: the trace's ``config["tuner"]`` dict, or ``None``.
      source: a label for the trace (its path, or its config's ``name``).
    """

    step: np.ndarray
    stepsize: np.ndarray
    sharpness: np.ndarray
    measured: np.ndarray
    loss: np.ndarray | None
    x: np.ndarray | None
    tuner: dict | None
    source: str
    grad_norm_sq: np.ndarray | None = None
    grad_curvature: np.ndarray | None = None
    skipped: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.step)


def as_trace(trace: Any) -> Trace:
    """A :class:`~eosmodel.trace.Trace` from a Trace, a run directory, a ``.jsonl``/``.csv`` path,
    or a mapping of columns.

    Raises:
      FitInputError: an object of another type.
      FileNotFoundError: a path that does not exist.
    """
    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, (str, os.PathLike)):
        path = Path(trace)
        if not path.exists():
            raise FileNotFoundError(f"no trace at {path}; pass a run directory, a trace.jsonl or a CSV file.")
        if path.suffix.lower() == ".csv":
            return read_csv(path)
        return load_trace(path)
    if isinstance(trace, Mapping):
        return Trace.from_columns(trace, config={})
    raise FitInputError(
        f"cannot fit a {type(trace).__name__}; pass an eosmodel.trace.Trace, a run directory, "
        "a trace.jsonl/.csv path or a dict of columns."
    )


def _source(trace: Trace) -> str:
    src = trace.meta.get("source") if isinstance(trace.meta, Mapping) else None
    if src:
        return str(src)
    name = trace.config.get("name") if isinstance(trace.config, Mapping) else None
    return str(name) if name else "trace"


def prepare(trace: Any, *, min_measurements: int = MIN_MEASUREMENTS) -> FitData:
    """Validate a trace for fitting and return its arrays.

    Args:
      trace: a Trace, a run directory, a ``trace.jsonl`` or ``.csv`` path, or a dict of columns.
      min_measurements: the fewest finite sharpness values accepted (default
        :data:`MIN_MEASUREMENTS`).

    Returns:
      :class:`FitData`.

    Raises:
      FitInputError: a missing column, non-consecutive steps, a non-finite or non-positive
        stepsize, an infinite sharpness, or fewer than ``min_measurements`` sharpness values.
    """
    tr = as_trace(trace)
    missing = [c for c in REQUIRED_COLUMNS if c not in tr.columns]
    if missing:
        raise FitInputError(
            f"the trace lacks the column(s) {missing} (it has {sorted(tr.columns)}); a fit needs "
            "step, stepsize and sharpness (NaN where not measured), loss optional; rename yours "
            "with eosmodel fit --columns your_name=sharpness,... (or read_csv(path, column_map=...))."
        )
    step = np.asarray(tr["step"], dtype=np.int64)
    stepsize = np.asarray(tr["stepsize"], dtype=np.float64)
    sharp = np.asarray(tr["sharpness"], dtype=np.float64)
    if step.size >= 2 and np.any(np.diff(step) != 1):
        i = int(np.flatnonzero(np.diff(step) != 1)[0])
        raise FitInputError(
            f"steps jump from {int(step[i])} to {int(step[i + 1])}; the fit needs one record per "
            "step (consecutive steps, sharpness NaN where not measured), so log every step."
        )
    bad = np.flatnonzero(~np.isfinite(stepsize) | (stepsize < 0))
    if bad.size:
        i = int(bad[0])
        raise FitInputError(
            f"stepsize at step {int(step[i])} is {stepsize[i]!r}; the fit needs a finite stepsize "
            f">= 0 at every step (0 for a step the tuner skipped; {bad.size} step(s) violate it), "
            "so drop or repair those records."
        )
    skipped = np.flatnonzero(stepsize == 0)
    if skipped.size * 2 > stepsize.size:
        raise FitInputError(
            f"{skipped.size} of {stepsize.size} steps have stepsize 0 (skipped by the tuner); the "
            "fit needs at least half the steps taken, so check the run's tuner_status column."
        )
    if np.any(np.isinf(sharp)):
        i = int(np.flatnonzero(np.isinf(sharp))[0])
        raise FitInputError(
            f"sharpness at step {int(step[i])} is infinite; record NaN where it was not measured "
            "and drop diverged steps."
        )
    measured = np.flatnonzero(np.isfinite(sharp) & (stepsize > 0))
    if measured.size < min_measurements:
        raise FitInputError(
            f"the trace has {measured.size} finite sharpness measurement(s) but a fit needs at least "
            f"{min_measurements}; measure the sharpness more often or record a longer run."
        )

    def optional(name: str) -> np.ndarray | None:
        if name not in tr.columns:
            return None
        col = np.asarray(tr[name], dtype=np.float64)
        return col if np.all(np.isfinite(col)) else None

    tuner = tr.config.get("tuner") if isinstance(tr.config, Mapping) else None
    return FitData(
        step=step,
        stepsize=stepsize,
        sharpness=sharp,
        measured=measured,
        loss=optional("loss"),
        x=optional("x"),
        tuner=dict(tuner) if isinstance(tuner, Mapping) else None,
        source=_source(tr),
        grad_norm_sq=optional("grad_norm_sq"),
        grad_curvature=(np.asarray(tr["grad_curvature"], dtype=np.float64)
                        if "grad_curvature" in tr.columns else None),
        skipped=skipped,
    )
