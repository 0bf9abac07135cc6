"""The simulator: stepsize tuners on toy losses and reduced maps, one ``lax.scan`` per run.

* :func:`simulate`: any :mod:`eosmodel.tuners` transformation on any :class:`eosmodel.toys.Toy`,
  producing a :class:`eosmodel.trace.Trace` (loss, gradient norm, stepsize, sharpness, tuner
  diagnostics, toy coordinates), with divergence detected and recorded.
* :func:`simulate_map`: a reduced map of :mod:`eosmodel.toys` with a tuner rule in the loop.
* :func:`sweep`: batched reduced-map runs over parameter grids (``vmap``), summarised on the fly
  into phase diagrams and bifurcation diagrams (:class:`SweepResult`, :func:`plot_phase_diagram`,
  :func:`plot_bifurcation`).
"""

from eosmodel.dynamics._simulate import (
    DENSE_MAX_PARAMS,
    SHARPNESS_MODES,
    map_records,
    resolve_tuner,
    simulate,
    simulate_map,
    toy_coordinates,
    underflow_step,
)
from eosmodel.dynamics._sweep import (
    MODELS,
    SUMMARIES,
    SweepResult,
    plot_bifurcation,
    plot_phase_diagram,
    sweep,
)

__all__ = [
    "MODELS",
    "SUMMARIES",
    "SweepResult",
    "plot_bifurcation",
    "plot_phase_diagram",
    "sweep",
    "DENSE_MAX_PARAMS",
    "SHARPNESS_MODES",
    "map_records",
    "resolve_tuner",
    "simulate",
    "simulate_map",
    "toy_coordinates",
    "underflow_step",
]
