"""Stepsize tuners as optax transformations: constant, Armijo, Polyak SPS_max, CDAT.

Every factory returns an ``optax.GradientTransformationExtraArgs`` whose update is

    update(updates, state, params, *, value=None, grad=None, value_fn=None) -> (-eta * updates, state)

(``updates`` is the gradient g; apply with ``optax.apply_updates``). The state is a NamedTuple
with ``stepsize`` (the stepsize taken, 0 when skipped, in the dtype of ``params``) and ``info``
(scalar diagnostics, always with ``skipped`` and ``status``). Read them from any (chained)
optimizer state with :func:`read_stepsize` / :func:`read_diagnostics`. Build from configs with
:func:`make_tuner` / :func:`tuner_config` / :data:`PRESETS`.

Status codes (``info.status``): 0 ok, 1 non-finite value or gradient, 2 zero gradient, 3 f < f*,
4 line search failed, 5 line search failed on a non-finite trial, 6 degenerate stepsize formula.
Whenever ``info.skipped`` is set the update is exactly zero (never NaN parameters).

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> from eosmodel.tuners import make_tuner, read_stepsize
  >>> f = lambda w: 0.5 * jnp.sum(w**2)
  >>> opt = make_tuner({"preset": "sps-0.5"})
  >>> w = jnp.array([1.0, 2.0]); state = opt.init(w)
  >>> value, g = jax.value_and_grad(f)(w)
  >>> updates, state = opt.update(g, state, w, value=value)
  >>> w = optax.apply_updates(w, updates)
  >>> float(read_stepsize(state))  # min((f - 0) / (0.5 ||g||^2), 1) = 1
  1.0
"""

from eosmodel.tuners._armijo import ArmijoInfo, ArmijoState, armijo
from eosmodel.tuners._base import (
    STATUS_BELOW_F_STAR,
    STATUS_DEGENERATE,
    STATUS_LINESEARCH_FAILED,
    STATUS_NAMES,
    STATUS_NONFINITE_INPUT,
    STATUS_NONFINITE_TRIAL,
    STATUS_OK,
    STATUS_ZERO_GRADIENT,
    read_diagnostics,
    read_stepsize,
)
from eosmodel.tuners._cdat import CDATInfo, CDATState, cdat
from eosmodel.tuners._constant import ConstantInfo, ConstantState, constant
from eosmodel.tuners._polyak import PolyakInfo, PolyakState, polyak
from eosmodel.tuners._presets import PRESET_ARGUMENTS, PRESETS, TUNERS, make_tuner, tuner_config

__all__ = [
    "ArmijoInfo",
    "ArmijoState",
    "CDATInfo",
    "CDATState",
    "ConstantInfo",
    "ConstantState",
    "PRESETS",
    "PRESET_ARGUMENTS",
    "PolyakInfo",
    "PolyakState",
    "STATUS_BELOW_F_STAR",
    "STATUS_DEGENERATE",
    "STATUS_LINESEARCH_FAILED",
    "STATUS_NAMES",
    "STATUS_NONFINITE_INPUT",
    "STATUS_NONFINITE_TRIAL",
    "STATUS_OK",
    "STATUS_ZERO_GRADIENT",
    "TUNERS",
    "armijo",
    "cdat",
    "constant",
    "make_tuner",
    "polyak",
    "read_diagnostics",
    "read_stepsize",
    "tuner_config",
]
