"""Armijo backtracking line search, built on ``optax.scale_by_backtracking_linesearch``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from eosmodel.tuners import _base

ON_FAILURE = ("smallest", "skip")
INIT_RULES = ("increase", "max")


class ArmijoInfo(NamedTuple):
    """Diagnostics of :func:`armijo` for the last update.

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


@_base.register_state
class ArmijoState(NamedTuple):
    """State of :func:`armijo`.

    Attributes:
      stepsize: the stepsize the last update took (0 when it took no step).
      info: :class:`ArmijoInfo` diagnostics.
      linesearch: the wrapped ``optax.ScaleByBacktrackingLinesearchState``; its
        ``learning_rate`` is η_{t−1}, the memory the next initial guess grows from (the accepted
        trial, or the smallest trial when none passed, whatever the ``on_failure`` policy).
    """

    stepsize: jax.Array
    info: ArmijoInfo
    linesearch: Any


def _strong(tree: Any) -> Any:
    """Cast every leaf to a strongly typed array of its own dtype (keeps ``jit`` caches warm)."""
    return jax.tree.map(lambda x: jax.lax.convert_element_type(jnp.asarray(x), jnp.result_type(x)), tree)


def armijo(
    c: float = 0.1,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_stepsize: float = 1.0,
    max_trials: int = 30,
    on_failure: str = "smallest",
    init_rule: str = "increase",
) -> optax.GradientTransformationExtraArgs:
    """Armijo backtracking line search along −g (sufficient decrease).

    Math: accept the first η in η₀, βη₀, β²η₀, …, β^{m−1}η₀ with

        f(w − η·d) ≤ f(w) − c·η·⟨g, d⟩,

    where d = ``updates`` (the direction; −d is followed), g = ``grad`` (defaults to d, which gives
    the textbook condition f(w − ηg) ≤ f(w) − cη‖g‖²), f = ``value_fn``, f(w) = ``value``,
    c = ``c``, β = ``decrease_factor``, m = ``max_trials``, and the initial guess
    η₀ = min(γ·η_{t−1}, η_max) with γ = ``increase_factor``, η_max = ``max_stepsize`` and
    η₀ = η_max at t = 0 (``init_rule="max"``: η₀ = η_max at every step). On a quadratic with
    Hessian H the condition reads η ≤ 2(1 − c)‖g‖²/(gᵀHg). In the stochastic regime pass a
    ``value_fn`` that evaluates the same mini-batch as the gradient (Vaswani et al.).

    The search itself is ``optax.scale_by_backtracking_linesearch`` with ``slope_rtol=c``,
    ``atol=rtol=0`` (so its criterion is exactly the one above) and
    ``max_backtracking_steps=m−1`` (optax evaluates ``max_backtracking_steps + 1`` trials). This
    wrapper fixes what optax does differently: optax starts from a stored learning rate of 1
    (here η_max, so η₀ = η_max at t = 0 for any γ), and when the last trial is non-finite it stores
    a learning rate of 0, after which every later guess γ·0 would be 0 (here the memory keeps
    the smallest trial). It also adds the ``on_failure`` policy and uniform diagnostics.

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

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(updates, state, params, *,
      value, grad=None, value_fn)`` returns ``-eta * updates``; ``value`` and ``value_fn`` are
      required (``value_fn(params) -> scalar``).

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
    c = _base.check_open("c", c, 0.0, 1.0)
    beta = _base.check_open("decrease_factor", decrease_factor, 0.0, 1.0)
    gamma = _base.check_at_least("increase_factor", increase_factor, 1.0)
    eta_max = _base.check_positive("max_stepsize", max_stepsize)
    max_trials = _base.check_positive_int("max_trials", max_trials)
    on_failure = _base.check_choice("on_failure", on_failure, ON_FAILURE)
    init_rule = _base.check_choice("init_rule", init_rule, INIT_RULES)

    # atol = rtol = 0: the optax criterion f(w + ηu) ≤ (1+rtol) f(w) + η·c·⟨u, g⟩ + atol becomes
    # exactly the Armijo condition with u = −d.
    search = optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=max_trials - 1,
        slope_rtol=c,
        decrease_factor=beta,
        increase_factor=gamma,
        max_learning_rate=eta_max,
        atol=0.0,
        rtol=0.0,
        store_grad=False,
    )

    def init_fn(params: Any) -> ArmijoState:
        dtype = _base.real_dtype(params)
        inner = search.init(params)
        # optax stores a learning rate of 1; storing η_max makes η₀ = min(γ·η_max, η_max) = η_max.
        inner = _strong(inner._replace(learning_rate=_base.scalar(eta_max, dtype)))
        return ArmijoState(
            stepsize=_base.scalar(0.0, dtype),
            info=ArmijoInfo(
                skipped=_base.scalar(False, bool),
                status=_base.scalar(_base.STATUS_OK, "int32"),
                num_trials=_base.scalar(0, "int32"),
                failed=_base.scalar(False, bool),
                initial_stepsize=_base.scalar(0.0, dtype),
            ),
            linesearch=inner,
        )

    def update_fn(
        updates: Any,
        state: ArmijoState,
        params: Any,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
    ) -> tuple[Any, ArmijoState]:
        _base.require("value", value, "armijo")
        _base.require("value_fn", value_fn, "armijo")
        dtype = state.stepsize.dtype
        grad = updates if grad is None else grad
        value = _base.scalar(value, dtype)
        finite = _base.all_finite(updates, grad, value)
        memory = state.linesearch.learning_rate
        if init_rule == "max":
            memory = jnp.full_like(memory, eta_max)
        # Same expression as optax's initial guess (kept for the diagnostics).
        eta0 = jnp.minimum(gamma * memory, eta_max).astype(dtype)

        def run(_: None) -> ArmijoState:
            inner_in = state.linesearch._replace(learning_rate=memory)
            minus_d = jax.tree.map(jnp.negative, updates)
            _, inner = search.update(
                minus_d, inner_in, params, value=value, grad=grad, value_fn=value_fn
            )
            num_trials = inner.info.num_linesearch_steps.astype(jnp.int32)
            error = inner.info.decrease_error
            failed = error > 0
            # optax maps a NaN/inf trial value to an infinite error and then stores lr = 0.
            nonfinite_trial = jnp.isinf(error)
            smallest = (eta0 * beta ** (num_trials - 1).astype(dtype)).astype(dtype)
            last_trial = jnp.where(nonfinite_trial, smallest, inner.learning_rate).astype(dtype)
            if on_failure == "smallest":  # a non-finite smallest trial is never taken
                take = ~failed | ~nonfinite_trial
            else:
                take = ~failed
            status = jnp.where(
                ~failed,
                _base.STATUS_OK,
                jnp.where(nonfinite_trial, _base.STATUS_NONFINITE_TRIAL, _base.STATUS_LINESEARCH_FAILED),
            )
            return ArmijoState(
                stepsize=jnp.where(take, last_trial, 0.0).astype(dtype),
                info=ArmijoInfo(
                    skipped=~take,
                    status=status.astype(jnp.int32),
                    num_trials=num_trials,
                    failed=failed,
                    initial_stepsize=eta0,
                ),
                linesearch=_strong(
                    optax.tree.cast_like(
                        inner._replace(learning_rate=last_trial), other_tree=state.linesearch
                    )
                ),
            )

        def skip(_: None) -> ArmijoState:
            return ArmijoState(
                stepsize=_base.scalar(0.0, dtype),
                info=ArmijoInfo(
                    skipped=_base.scalar(True, bool),
                    status=_base.scalar(_base.STATUS_NONFINITE_INPUT, "int32"),
                    num_trials=_base.scalar(0, "int32"),
                    failed=_base.scalar(False, bool),
                    initial_stepsize=eta0,
                ),
                linesearch=state.linesearch,
            )

        new_state = jax.lax.cond(finite, run, skip, None)
        new_updates = _base.descent_update(new_state.stepsize, updates, new_state.info.skipped)
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
