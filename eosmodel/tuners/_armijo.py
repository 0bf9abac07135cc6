"""Armijo backtracking line search: the rule (a ``lax.while_loop`` on a scalar trial function) and
its optax transformation."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base

ON_FAILURE = ("smallest", "skip")
INIT_RULES = ("increase", "max")


class ArmijoInfo(NamedTuple):
    """Diagnostics of :func:`armijo` / :class:`ArmijoRule` for the last update.

    Attributes:
      skipped: bool, no step was taken (non-finite input, or no trial passed under
        ``on_failure="skip"``, or no trial passed and the smallest one was non-finite).
      status: int32 status code (0 ok, 1 non-finite input, 4 no trial passed, 5 no trial passed
        and the last trial's value was non-finite).
      num_trials: int32, function evaluations f(w − ηg) spent by the line search (0 if skipped
        before searching).
      failed: bool, no trial satisfied the sufficient-decrease condition.
      initial_stepsize: η₀ of this search, min(γ·η_{t−1}, η_max) (η_max with ``init_rule="max"``).
    """

    skipped: jax.Array
    status: jax.Array
    num_trials: jax.Array
    failed: jax.Array
    initial_stepsize: jax.Array


class ArmijoRuleState(NamedTuple):
    """State of :class:`ArmijoRule`: ``memory`` = η_{t−1}, the stepsize the next initial guess grows
    from (the accepted trial, or the smallest trial when none passed, whatever the ``on_failure``
    policy; η_max before the first step)."""

    memory: jax.Array


@_base.register_state
class ArmijoState(NamedTuple):
    """State of :func:`armijo`.

    Attributes:
      stepsize: the stepsize the last update took (0 when it took no step).
      info: :class:`ArmijoInfo` diagnostics.
      rule_state: :class:`ArmijoRuleState` (η_{t−1}).
    """

    stepsize: jax.Array
    info: ArmijoInfo
    rule_state: ArmijoRuleState


@dataclasses.dataclass(frozen=True, eq=False)
class ArmijoRule:
    """The Armijo backtracking rule on a scalar trial function φ(η) = f(w − η·d).

    Math: η₀ = min(γ·η_{t−1}, η_max) (η_{−1} = η_max; η₀ = η_max at every step with
    ``init_rule="max"``); accept the first η in η₀, βη₀, β²η₀, …, β^{m−1}η₀ with

        φ(η) ≤ f − c·η·s,   s = ⟨g, d⟩ (``slope``; ‖g‖² for GD),

    with f = ``value``, φ = ``trial``, c = ``c``, β = ``decrease_factor``, γ =
    ``increase_factor``, η_max = ``max_stepsize``, m = ``max_trials``. On a quadratic with Hessian
    H and d = g the condition reads η ≤ 2(1 − c)‖g‖²/(gᵀHg). When no trial passes,
    ``on_failure="smallest"`` takes the smallest trial β^{m−1}η₀ (unless φ there is non-finite)
    and ``"skip"`` takes no step; either way η_{t−1} ← the smallest trial.

    The search is a ``lax.while_loop`` over trials of the scalar function φ, not
    ``optax.scale_by_backtracking_linesearch``: the same rule must run on the reduced maps of
    :mod:`eosmodel.toys`, whose φ(η) = ``model.loss(model.step(state, η))`` has no parameter
    pytree to step. The loop performs optax's arithmetic operation for operation (the trial
    η ← β·η, the decrease error φ(η) − f + (η·c)·s with NaN mapped to +inf, the stopping test
    error ≤ 0), so it accepts exactly the stepsizes optax accepts with ``slope_rtol=c``,
    ``atol=rtol=0``, ``max_backtracking_steps=m−1`` (tested bit for bit). It differs from
    optax's state handling on purpose: η₀ = η_max at t = 0 (optax starts from a stored rate of 1)
    and a non-finite last trial keeps the smallest trial as memory (optax stores 0, after which
    every later guess would be 0).

    Args:
      c: sufficient-decrease constant, in (0, 1). Default 0.1.
      decrease_factor: β in (0, 1). Default 0.8.
      increase_factor: γ ≥ 1. Default 1.5.
      max_stepsize: η_max > 0. Default 1.0.
      max_trials: m ≥ 1, the most evaluations of φ per step. Default 30.
      on_failure: ``"smallest"`` or ``"skip"`` (static). Default ``"smallest"``.
      init_rule: ``"increase"`` or ``"max"`` (static). Default ``"increase"``.

    The numbers may be traced JAX values (then they are not validated).

    Call: ``rule(rule_state, *, value, slope, trial, finite=True) -> (eta, rule_state,
    ArmijoInfo)`` with scalar ``value``/``slope``/``finite`` (vmap for batches) and ``trial(eta)``
    returning φ(η) (a scalar). No trial is evaluated when ``finite`` is False (status 1).

    Failure modes: statuses 1 (non-finite input), 4 (no trial passed), 5 (no trial passed and
    the last trial was non-finite: no step). Bad concrete hyperparameters raise ``ValueError``.

    References: Armijo (1966); Vaswani et al., arXiv 1905.09997; Roulet, Agarwala, Pedregosa,
    arXiv 2312.00209.

    Example:
      >>> rule = ArmijoRule(c=0.5, max_stepsize=4.0)  # φ(η) = ½(1 − η)², f = ½, s = 1
      >>> eta, rs, info = rule(rule.init(0.0), value=0.5, slope=1.0, trial=lambda e: 0.5 * (1 - e) ** 2)
      >>> round(float(eta), 4), int(info.num_trials)  # trials 4·0.8^k fail while η > 2(1 − c) = 1
      (0.8389, 8)
    """

    c: Any = 0.1
    decrease_factor: Any = 0.8
    increase_factor: Any = 1.5
    max_stepsize: Any = 1.0
    max_trials: Any = 30
    on_failure: str = "smallest"
    init_rule: str = "increase"

    def __post_init__(self) -> None:
        checked = {
            "c": _base.check_open("c", self.c, 0.0, 1.0),
            "decrease_factor": _base.check_open("decrease_factor", self.decrease_factor, 0.0, 1.0),
            "increase_factor": _base.check_at_least("increase_factor", self.increase_factor, 1.0),
            "max_stepsize": _base.check_positive("max_stepsize", self.max_stepsize),
            "max_trials": _base.check_positive_int("max_trials", self.max_trials),
            "on_failure": _base.check_choice("on_failure", self.on_failure, ON_FAILURE),
            "init_rule": _base.check_choice("init_rule", self.init_rule, INIT_RULES),
        }
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def init(self, like: Any) -> ArmijoRuleState:
        """η_{−1} = η_max, in the dtype and shape of ``like``."""
        like = jnp.asarray(like)
        return ArmijoRuleState(memory=jnp.full(jnp.shape(like), _base.hyper(self.max_stepsize, like)))

    def __call__(
        self,
        rule_state: ArmijoRuleState,
        *,
        value: Any,
        slope: Any,
        trial: Callable[[jax.Array], Any],
        finite: Any = True,
    ) -> tuple[jax.Array, ArmijoRuleState, ArmijoInfo]:
        f0 = _base.as_floating(value, rule_state.memory)
        dtype = f0.dtype
        slope = jnp.asarray(slope, dtype)
        finite = jnp.asarray(finite, bool)
        c, beta = _base.hyper(self.c, f0), _base.hyper(self.decrease_factor, f0)
        eta_max = _base.hyper(self.max_stepsize, f0)
        memory = jnp.full_like(f0, eta_max) if self.init_rule == "max" else rule_state.memory
        eta0 = jnp.minimum(_base.hyper(self.increase_factor, f0) * memory, eta_max).astype(dtype)

        def cond(carry):  # no search on a non-finite input
            k, error, _ = carry
            return (k < self.max_trials) & ~(error <= 0) & finite

        def body(carry):
            k, _, eta = carry
            eta = jnp.where(k > 0, beta * eta, eta)
            new_value = jnp.asarray(trial(eta)).astype(dtype)
            # optax's decrease error: φ(η) − (1 + 0)·f − (η·c)·(−s), NaN -> inf, clipped at 0.
            error = new_value - f0 + eta * c * slope
            error = jnp.maximum(jnp.where(jnp.isnan(error), jnp.inf, error), 0.0)
            return k + 1, error, eta

        start = (jnp.zeros(jnp.shape(f0), jnp.int32), jnp.full_like(f0, jnp.inf), eta0)
        trials, error, last = jax.lax.while_loop(cond, body, start)
        failed = finite & (error > 0)
        nonfinite_trial = jnp.isinf(error)
        if self.on_failure == "smallest":  # a non-finite smallest trial is never taken
            take = finite & (~failed | ~nonfinite_trial)
        else:
            take = finite & ~failed
        status = _base.status_code(
            (~finite, _base.STATUS_NONFINITE_INPUT),
            (failed & nonfinite_trial, _base.STATUS_NONFINITE_TRIAL),
            (failed, _base.STATUS_LINESEARCH_FAILED),
        )
        info = ArmijoInfo(
            skipped=~take,
            status=status,
            num_trials=jnp.where(finite, trials, 0).astype(jnp.int32),
            failed=failed,
            initial_stepsize=eta0,
        )
        eta = jnp.where(take, last, 0.0).astype(dtype)
        new_state = ArmijoRuleState(memory=jnp.where(finite, last, rule_state.memory).astype(dtype))
        return eta, new_state, info


def armijo(
    c: float = 0.1,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_stepsize: float = 1.0,
    max_trials: int = 30,
    on_failure: str = "smallest",
    init_rule: str = "increase",
) -> optax.GradientTransformationExtraArgs:
    """Armijo backtracking line search along −d (sufficient decrease), as an optax transformation.

    Math (:class:`ArmijoRule`): accept the first η in η₀, βη₀, …, β^{m−1}η₀ with

        f(w − η·d) ≤ f(w) − c·η·⟨g, d⟩,

    where d = ``updates`` (the direction; −d is followed), g = ``grad`` (defaults to d, which gives
    the textbook condition f(w − ηg) ≤ f(w) − cη‖g‖²), f = ``value_fn``, f(w) = ``value``, and
    η₀ = min(γ·η_{t−1}, η_max) (η_max at t = 0, or at every step with ``init_rule="max"``). In
    the stochastic regime pass a ``value_fn`` that evaluates the same mini-batch as the gradient
    (Vaswani et al.); extra ``update`` keyword arguments that ``value_fn`` accepts (e.g. a batch)
    are passed on to it, as optax's line searches do. The trials are the same as
    ``optax.scale_by_backtracking_linesearch(slope_rtol=c, atol=0, rtol=0,
    max_backtracking_steps=m−1)`` (tested), with the state fixes described in
    :class:`ArmijoRule`.

    Args:
      c: sufficient-decrease constant, in (0, 1). Default 0.1.
      decrease_factor: β in (0, 1). Default 0.8.
      increase_factor: γ ≥ 1. Default 1.5.
      max_stepsize: η_max > 0. Default 1.0.
      max_trials: m ≥ 1, the most function evaluations per step. Default 30.
      on_failure: what to do when no trial passes: ``"smallest"`` takes the smallest trial
        β^{m−1}η₀, ``"skip"`` takes no step. Either way ``info.failed`` is set. Default
        ``"smallest"``.
      init_rule: ``"increase"`` (η₀ = min(γη_{t−1}, η_max)) or ``"max"`` (η₀ = η_max).

    Numbers may be traced (``optax.inject_hyperparams(armijo)(c=0.1)`` works under ``jit``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value, grad=None, value_fn, **extra_args)`` returns ``-eta * updates``; ``value`` and
      ``value_fn`` are required (``value_fn(params) -> scalar``).

    Failure modes:
      Non-finite ``value``/``grad``/``updates``: zero update, no search, ``status=1``. No trial
      passes: ``failed=True``, ``status=4``, the ``on_failure`` policy applies; if the smallest
      trial's value is itself non-finite no step is taken (``status=5``). Bad hyperparameters
      raise ``ValueError`` at construction.

    References: Armijo (1966); Vaswani et al., "Painless stochastic gradient", arXiv 1905.09997;
    Roulet, Agarwala, Pedregosa, arXiv 2312.00209.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda w: 0.5 * jnp.sum(w**2)
      >>> opt, w = armijo(c=0.5, max_stepsize=4.0), jnp.array([1.0])
      >>> u, s = opt.update(w, opt.init(w), w, value=f(w), value_fn=f)
      >>> # the condition is η ≤ 2(1 − c)/λ = 1: trials 4·0.8^k fail for k < 7
      >>> round(float(s.stepsize), 4), int(s.info.num_trials)
      (0.8389, 8)
    """
    rule = ArmijoRule(c, decrease_factor, increase_factor, max_stepsize, max_trials, on_failure, init_rule)

    def init_fn(params: Any) -> ArmijoState:
        dtype = _base.real_dtype(params)
        return ArmijoState(
            stepsize=_base.scalar(0.0, dtype),
            info=_base.initial_info(
                ArmijoInfo, dtype, num_trials=_base.scalar(0, "int32"), failed=_base.scalar(False, bool)
            ),
            rule_state=rule.init(_base.scalar(0.0, dtype)),
        )

    def update_fn(
        updates: Any,
        state: ArmijoState,
        params: Any,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra_args: Any,
    ) -> tuple[Any, ArmijoState]:
        _base.require("value", value, "armijo")
        _base.require("value_fn", value_fn, "armijo")
        dtype = state.stepsize.dtype
        grad = updates if grad is None else grad
        value = _base.scalar(value, dtype)
        finite = _base.all_finite(updates, grad, value)
        fn = _base.bind_value_fn(value_fn, extra_args)
        minus_d = jax.tree.map(jnp.negative, updates)

        def trial(eta: jax.Array) -> jax.Array:  # optax's trial point w + η·(−d)
            return fn(optax.tree.add_scale(params, eta, minus_d))

        # The slope as optax computes it (−⟨−d, g⟩, exactly ⟨d, g⟩).
        slope = -optax.tree.real(optax.tree.vdot(minus_d, grad))
        eta, rule_state, info = rule(state.rule_state, value=value, slope=slope, trial=trial, finite=finite)
        new_state = ArmijoState(stepsize=eta, info=info, rule_state=rule_state)
        return _base.descent_update(eta, updates, info.skipped), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
