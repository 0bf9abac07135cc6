"""Stepsize tuners: constant, oracle σ/λ, Armijo, Polyak SPS_max, CDAT, each defined once.

Each tuner's stepsize rule is ONE pure function of local quantities, a frozen dataclass whose
fields are the hyperparameters (validated at construction when concrete; they may be traced JAX
values, e.g. under ``optax.inject_hyperparams`` or in a ``vmap``-ed sweep) and whose call returns
``(eta, new_rule_state, info)``:

* :class:`ConstantRule`: ``rule((), *, finite, dtype)``, η = η₀;
* :class:`OracleRule`: ``rule((), *, sharpness, finite=True)``, η = σ/λ;
* :class:`ArmijoRule`: ``rule(rule_state, *, value, slope, trial, finite=True)``, backtracking on
  the scalar trial function φ(η) = f(w − η·d) (``trial``), slope ⟨g, d⟩;
* :class:`PolyakRule`: ``rule(rule_state, *, value, grad_norm_sq, finite=True)``, SPS_max;
* :class:`CDATRule`: ``rule(rule_state, *, slope, curvature, finite=True)``, η = σ·⟨g, d⟩/(|dᵀHd| + ε).

(``rule.init(like)`` gives the initial rule state in the dtype and shape of ``like``.) The optax
transformations below and the reduced-map rules of :func:`eosmodel.toys.map_rule` are thin
adapters that compute these quantities (from parameters, or from a reduced model's state) and call
the rule. :data:`STEPSIZE_RULES` lists the rules by config name.

Every optax factory returns an ``optax.GradientTransformationExtraArgs`` whose update is

    update(updates, state, params, *, value=None, grad=None, value_fn=None, **extra_args)
        -> (-eta * updates, state)

(``updates`` is the gradient g; apply with ``optax.apply_updates``). The state is a NamedTuple
with ``stepsize`` (the stepsize taken, 0 when skipped, in the dtype of ``params``) and ``info``
(scalar diagnostics, always with ``skipped`` and ``status``; the rule's ``info``). Extra keyword
arguments are accepted, as by optax's own transformations (so a tuner can sit in an
``optax.chain``); Armijo and CDAT pass those their ``value_fn`` names on to it (e.g. a batch).
Every factory works with ``optax.inject_hyperparams`` under ``jit``. Read them from any (chained)
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

from eosmodel.tuners._armijo import ArmijoInfo, ArmijoRule, ArmijoRuleState, ArmijoState, armijo
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
from eosmodel.tuners._cdat import CDATInfo, CDATRule, CDATRuleState, CDATState, cdat
from eosmodel.tuners._constant import ConstantInfo, ConstantRule, ConstantState, constant
from eosmodel.tuners._oracle import OracleInfo, OracleRule, OracleState, oracle
from eosmodel.tuners._polyak import PolyakInfo, PolyakRule, PolyakRuleState, PolyakState, polyak
from eosmodel.tuners._presets import (
    PRESET_ARGUMENTS,
    PRESETS,
    STEPSIZE_RULES,
    TUNERS,
    build_rule,
    make_tuner,
    tuner_config,
)

__all__ = [
    "ArmijoInfo",
    "ArmijoRule",
    "ArmijoRuleState",
    "ArmijoState",
    "CDATInfo",
    "CDATRule",
    "CDATRuleState",
    "CDATState",
    "ConstantInfo",
    "ConstantRule",
    "ConstantState",
    "OracleInfo",
    "OracleRule",
    "OracleState",
    "PRESETS",
    "PRESET_ARGUMENTS",
    "PolyakInfo",
    "PolyakRule",
    "PolyakRuleState",
    "PolyakState",
    "STEPSIZE_RULES",
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
    "build_rule",
    "cdat",
    "constant",
    "make_tuner",
    "oracle",
    "polyak",
    "read_diagnostics",
    "read_stepsize",
    "tuner_config",
]
