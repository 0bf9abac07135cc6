"""Shared helpers of the tuners: status codes, validation, finite guards, state readers.

Every tuner state is a ``NamedTuple`` with a ``stepsize`` field (the stepsize the last update
took, 0 when it took no step) and an ``info`` field (a ``NamedTuple`` of scalar diagnostics that
always holds ``skipped`` (bool) and ``status`` (int32, one of the codes below)).

Status codes (``info.status``), the same for every tuner:

* 0 ``STATUS_OK``: a regular step was taken.
* 1 ``STATUS_NONFINITE_INPUT``: the value or the gradient was NaN/inf: no step.
* 2 ``STATUS_ZERO_GRADIENT``: ‖g‖² ≤ eps (Polyak): no step.
* 3 ``STATUS_BELOW_F_STAR``: f(w) < f* (Polyak): no step (never an ascent step).
* 4 ``STATUS_LINESEARCH_FAILED``: no Armijo trial passed; the ``on_failure`` policy applied.
* 5 ``STATUS_NONFINITE_TRIAL``: no Armijo trial passed and the last one was non-finite: no step.
* 6 ``STATUS_DEGENERATE``: the stepsize formula gave a zero denominator or a non-finite value
  (e.g. CDAT with zero curvature and eps = 0): no step.

Whenever ``info.skipped`` is set, the update is exactly zero.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable

import jax
import numpy as np
import jax.numpy as jnp

STATUS_OK = 0
STATUS_NONFINITE_INPUT = 1
STATUS_ZERO_GRADIENT = 2
STATUS_BELOW_F_STAR = 3
STATUS_LINESEARCH_FAILED = 4
STATUS_NONFINITE_TRIAL = 5
STATUS_DEGENERATE = 6

STATUS_NAMES = {
    STATUS_OK: "ok",
    STATUS_NONFINITE_INPUT: "nonfinite_input",
    STATUS_ZERO_GRADIENT: "zero_gradient",
    STATUS_BELOW_F_STAR: "below_f_star",
    STATUS_LINESEARCH_FAILED: "linesearch_failed",
    STATUS_NONFINITE_TRIAL: "nonfinite_trial",
    STATUS_DEGENERATE: "degenerate",
}

#: Registry of tuner state types, filled by each tuner module; used by the state readers.
TUNER_STATE_TYPES: list[type] = []


def register_state(cls: type) -> type:
    """Register a tuner state ``NamedTuple`` so that :func:`read_stepsize` can find it."""
    TUNER_STATE_TYPES.append(cls)
    return cls


# ----------------------------------------------------------------------------------------------
# Construction-time validation. Hyperparameters may be traced JAX values (``inject_hyperparams``,
# a ``vmap``-ed sweep): a traced value cannot be inspected in Python, so it is returned unchecked;
# a concrete value (Python number, numpy scalar, concrete 0-d array) is checked and returned as a
# Python number.
# ----------------------------------------------------------------------------------------------


def is_traced(value: Any) -> bool:
    """True iff ``value`` is a JAX tracer (its number is unknown while tracing)."""
    return isinstance(value, jax.core.Tracer)


def as_real(name: str, value: Any) -> Any:
    """Return ``value`` as a Python float (a tracer unchanged), or raise ``ValueError`` if it is
    not a real number."""
    if is_traced(value):
        return value
    # A boolean or a string is not a number (True would train at 1.0, "0.1" would be a typo that
    # happens to parse): refused, as the config schema of eosmodel.train refuses them.
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{name} must be a real number, got {value!r}; pass a Python float.")
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars, 0-d arrays
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a real number, got {value!r}; pass a Python float."
            ) from None
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a real number, got nan; pass a finite float.")
    return value


def check_open(name: str, value: Any, lo: float, hi: float) -> Any:
    """Return ``value`` as float, or raise ``ValueError`` unless ``lo < value < hi``."""
    if is_traced(value):
        return value
    v = as_real(name, value)
    if not lo < v < hi:
        raise ValueError(f"{name} must lie in ({lo:g}, {hi:g}), got {value!r}; choose a value inside.")
    return v


def check_positive(name: str, value: Any, *, finite: bool = True) -> Any:
    """Return ``value`` as float, or raise ``ValueError`` unless ``value > 0`` (and finite)."""
    if is_traced(value):
        return value
    v = as_real(name, value)
    if not v > 0 or (finite and math.isinf(v)):
        raise ValueError(
            f"{name} must be a finite number > 0, got {value!r}; pass a positive value."
        )
    return v


def check_nonnegative(name: str, value: Any) -> Any:
    """Return ``value`` as float, or raise ``ValueError`` unless ``0 <= value < inf``."""
    if is_traced(value):
        return value
    v = as_real(name, value)
    if not 0 <= v < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}; pass e.g. 0.0.")
    return v


def check_at_least(name: str, value: Any, lo: float) -> Any:
    """Return ``value`` as float, or raise ``ValueError`` unless ``lo <= value < inf``."""
    if is_traced(value):
        return value
    v = as_real(name, value)
    if not lo <= v < math.inf:
        raise ValueError(f"{name} must be a finite number >= {lo:g}, got {value!r}; pass e.g. {lo:g}.")
    return v


def check_positive_int(name: str, value: Any) -> Any:
    """Return ``value`` as int, or raise ``ValueError`` unless it is an integer >= 1."""
    if is_traced(value):
        return value
    try:
        ok = not isinstance(value, (bool, str)) and int(value) == value and value >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}; pass e.g. 30.")
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value``, or raise ``ValueError`` unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def check_finite(name: str, value: Any) -> Any:
    """Return ``value`` as float, or raise ``ValueError`` unless it is a finite number."""
    v = as_real(name, value)
    if not is_traced(v) and not -math.inf < v < math.inf:
        raise ValueError(f"{name} must be a finite number, got {value!r}; pass e.g. 0.0.")
    return v


def check_unit_interval(name: str, value: Any) -> Any:
    """Return ``value`` as float, or raise ``ValueError`` unless ``0 <= value < 1``."""
    v = as_real(name, value)
    if not is_traced(v) and not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}; pass a decay such as 0.9, or None.")
    return v


def hyper(value: Any, like: Any) -> jax.Array:
    """A hyperparameter (number or traced array) as an array of the floating dtype of ``like``.

    For a Python number this is the value a weakly typed scalar would take in arithmetic with
    ``like``, so ``hyper(c, x) * x == c * x`` bit for bit.
    """
    return jnp.asarray(value, dtype=jnp.result_type(like))


# ----------------------------------------------------------------------------------------------
# Per-step helpers (traced).
# ----------------------------------------------------------------------------------------------


def require(name: str, value: Any, tuner: str) -> None:
    """Raise ``ValueError`` naming the missing per-step keyword ``name`` if it is ``None``."""
    if value is None:
        raise ValueError(f"{tuner}.update needs the keyword argument {name}=...; pass it.")


def real_dtype(params: Any) -> jnp.dtype:
    """The real floating dtype of the first leaf of ``params`` (the dtype of the stepsize)."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must hold at least one array leaf; got an empty pytree.")
    dtype = jnp.result_type(leaves[0])
    if not jnp.issubdtype(dtype, jnp.inexact):
        return jnp.result_type(float)
    return jnp.finfo(dtype).dtype


def scalar(x: Any, dtype: Any) -> jax.Array:
    """A strongly typed 0-d array of ``dtype`` (weak types would make ``jit`` recompile)."""
    return jax.lax.convert_element_type(jnp.asarray(x), jnp.dtype(dtype)).reshape(())


def all_finite(*trees: Any) -> jax.Array:
    """True iff every entry of every leaf of ``trees`` is finite (bool scalar); ``None`` is skipped."""
    unique = [tree for i, tree in enumerate(trees) if all(tree is not t for t in trees[:i])]
    leaves = [leaf for tree in unique for leaf in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def tree_vdot(a: Any, b: Any) -> jax.Array:
    """Σ over leaves of ⟨a, b⟩ (real inputs), accumulated in the leaves' dtype."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def bind_value_fn(value_fn: Callable[..., Any], extra_args: dict[str, Any]) -> Callable[[Any], Any]:
    """``value_fn`` with the extra update arguments it accepts bound (e.g. a mini-batch).

    As optax's line searches do, an extra keyword argument of ``update`` that ``value_fn``'s
    signature names (or every one, if it takes ``**kwargs``) is passed on to it; the others are
    left to the transformations they are meant for (the tuner may sit in an ``optax.chain``).
    """
    if not extra_args:
        return value_fn
    try:
        params = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass nothing
        return value_fn
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        bound = dict(extra_args)
    else:
        bound = {k: v for k, v in extra_args.items() if k in params}
    return functools.partial(value_fn, **bound) if bound else value_fn


def status_code(*cases: tuple[Any, int]) -> jax.Array:
    """The int32 status of the first ``(condition, code)`` pair whose condition holds, else
    ``STATUS_OK`` (elementwise; conditions in order of precedence)."""
    status = jnp.asarray(STATUS_OK)
    for condition, code in reversed(cases):
        status = jnp.where(condition, code, status)
    return status.astype(jnp.int32)


def as_floating(value: Any, fallback: Any) -> jax.Array:
    """``value`` as an array, cast to ``fallback``'s dtype if it is not floating (e.g. a Python
    int, or an integer array)."""
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(jnp.result_type(fallback))
    return value


def initial_info(info_cls: type, dtype: Any, **fields: Any) -> Any:
    """The ``info`` before any step: ``skipped`` False, ``status`` 0 (int32), and every other
    field a 0-d zero of ``dtype`` unless given in ``fields``."""
    values = {name: scalar(0.0, dtype) for name in info_cls._fields}
    values.update(skipped=scalar(False, bool), status=scalar(STATUS_OK, "int32"), **fields)
    return info_cls(**values)


def descent_update(stepsize: jax.Array, direction: Any, skip: jax.Array) -> Any:
    """``-stepsize * direction`` leaf by leaf, exactly zero where ``skip`` (even if NaN)."""

    def leaf(x: jax.Array) -> jax.Array:
        step = (-stepsize).astype(x.dtype) * x
        return jnp.where(skip, jnp.zeros_like(x), step)

    return jax.tree.map(leaf, direction)


# ----------------------------------------------------------------------------------------------
# Reading the state of a (possibly chained) optimizer.
# ----------------------------------------------------------------------------------------------


def _find_tuner_state(opt_state: Any) -> Any:
    types = tuple(TUNER_STATE_TYPES)
    found = [
        leaf
        for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, types))
        if isinstance(leaf, types)
    ]
    if not found:
        raise ValueError(
            "opt_state holds no eosmodel tuner state; pass the state of an optimizer built with "
            "eosmodel.tuners (constant, armijo, polyak, cdat or make_tuner)."
        )
    if len(found) > 1:
        raise ValueError(
            f"opt_state holds {len(found)} tuner states, which is ambiguous; chain one tuner only "
            "or read the wanted sub-state yourself."
        )
    return found[0]


def read_stepsize(opt_state: Any) -> jax.Array:
    """The stepsize η_t the last update took (0 if it took no step), found anywhere in ``opt_state``.

    Args:
      opt_state: the state of a tuner, or of an ``optax.chain`` containing exactly one tuner.

    Returns:
      The ``stepsize`` field of the tuner state (a scalar, or batched under ``vmap``).

    Raises:
      ValueError: if ``opt_state`` holds no tuner state or more than one.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from eosmodel.tuners import constant, read_stepsize
      >>> opt, w = optax.chain(optax.clip(1.0), constant(0.5)), jnp.zeros(2)
      >>> float(read_stepsize(opt.init(w)))  # before any step
      0.0
      >>> _, state = opt.update(jnp.ones(2), opt.init(w), w)
      >>> float(read_stepsize(state))
      0.5
    """
    return _find_tuner_state(opt_state).stepsize


def read_diagnostics(opt_state: Any) -> dict[str, jax.Array]:
    """The tuner diagnostics of the last update as ``{field: array}`` (the fields of ``info``).

    The trace stores them as columns ``tuner_<field>``. Every tuner reports at least ``skipped``
    (bool) and ``status`` (int32, see the module's status codes).

    Args:
      opt_state: the state of a tuner, or of an ``optax.chain`` containing exactly one tuner.

    Returns:
      A dict mapping each field of the tuner's ``info`` NamedTuple to its value.

    Raises:
      ValueError: if ``opt_state`` holds no tuner state or more than one.
    """
    return dict(_find_tuner_state(opt_state).info._asdict())

