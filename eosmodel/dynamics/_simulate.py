"""The simulator: any tuner on any toy (or a reduced map with a tuner rule) in one ``lax.scan``."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from eosmodel import tuners as _tuners
from eosmodel.sharpness import SharpnessTracker
from eosmodel.toys import Toy
from eosmodel.toys._maps import (
    MapRule,
    SecondOrderModel,
    SelfStabilizationModel,
    UVModel,
    map_rule,
)
from eosmodel.trace import Trace

SHARPNESS_MODES = ("exact", "dense", "lanczos", None)
#: Largest parameter count for which ``sharpness="exact"`` falls back to a dense ``eigvalsh``
#: when the toy has no closed-form sharpness (above it: Lanczos).
DENSE_MAX_PARAMS = 512


# ----------------------------------------------------------------------------------------------
# Argument handling (host side).
# ----------------------------------------------------------------------------------------------


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}; pass e.g. steps=1000.")
    return int(steps)


def _check_every(every: Any) -> int:
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(
            f"sharpness_every must be an integer >= 1, got {every!r}; pass e.g. sharpness_every=1."
        )
    return int(every)


def _check_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not value > 0:
        raise ValueError(
            f"divergence_threshold must be a number > 0 or None, got {threshold!r}; pass e.g. 1e12."
        )
    return value


def _complete_config(config: Mapping[str, Any]) -> dict:
    """The complete tuner config (``tuner_config``) of a ``{"name"|"preset": ...}`` mapping."""
    return _tuners.tuner_config(config)


def resolve_tuner(tuner: Any, config: Mapping[str, Any] | None = None) -> tuple[Any, dict]:
    """``(optax transformation, complete config)`` from a name/preset, a config, or a transformation.

    Args:
      tuner: a tuner name or preset (``"armijo"``, ``"sps-0.5"``), a config mapping
        (``{"name": "polyak", "c": 0.2}``), or an ``optax.GradientTransformationExtraArgs``.
      config: the config to record for a transformation passed directly (default
        ``{"name": "custom"}``).

    Raises:
      ValueError: an unknown name/preset or a bad hyperparameter (from :mod:`eosmodel.tuners`).
    """
    if isinstance(tuner, str):
        full = _tuners.tuner_config(tuner)
        return _tuners.make_tuner(full), full
    if isinstance(tuner, Mapping):
        full = _complete_config(tuner)
        return _tuners.make_tuner(full), full
    if isinstance(tuner, optax.GradientTransformation) or (
        hasattr(tuner, "init") and hasattr(tuner, "update")
    ):
        return tuner, dict(config) if config is not None else {"name": "custom"}
    raise ValueError(
        f"tuner must be a tuner name, a config dict or an optax transformation, got {tuner!r}; "
        "pass e.g. 'armijo-jax' or eosmodel.tuners.constant(0.1)."
    )


def _key_seed(key: jax.Array) -> list[int]:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(k) for k in np.asarray(key).ravel()]


def _check_key(key: Any) -> jax.Array:
    if key is None:
        raise ValueError("key is required; pass key=jax.random.key(seed).")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise ValueError(
            f"key must be a PRNG key, got dtype {key.dtype} and shape {key.shape}; "
            "pass key=jax.random.key(seed)."
        )
    return key


def toy_coordinates(toy: Toy) -> Callable[[Any], dict[str, jax.Array]] | None:
    """The toy-specific coordinates recorded as extra trace columns, or ``None``.

    ``self_stabilization``: ``x``, ``lam`` (λ = λ₀ + √β s); ``uv``: ``f``, ``lam``;
    ``second_order_regression_1d``: ``z``, ``ntk``; ``zhu``: ``c``, ``d``.
    """
    if toy.name == "self_stabilization":
        model = SelfStabilizationModel.from_toy(toy)
        return lambda p: model.coordinates(model.state_from_params(p))
    if toy.name == "uv":
        return lambda p: UVModel().coordinates(UVModel.state_from_params(p))
    if toy.name == "second_order_regression_1d":
        return lambda p: SecondOrderModel().coordinates(SecondOrderModel.state_from_params(toy, p))
    if toy.name == "zhu":
        from eosmodel.toys import zhu_cd

        def cd(p):
            c, d = zhu_cd(p)
            return {"c": c, "d": d}

        return cd
    return None


# ----------------------------------------------------------------------------------------------
# The compiled simulation.
# ----------------------------------------------------------------------------------------------


def _tree_where(cond: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


@functools.partial(
    jax.jit,
    static_argnames=("toy", "tuner", "steps", "mode", "every", "threshold", "tol", "max_iters"),
)
def _simulate_scan(params, opt_state, batch, key, *, toy, tuner, steps, mode, every, threshold,
                   tol, max_iters):
    """One compiled run: ``steps`` tuner steps on ``toy.loss(., batch)`` with per-step records."""
    coords = toy_coordinates(toy)
    flat0, unravel = ravel_pytree(params)
    dtype = flat0.dtype
    nan = jnp.asarray(jnp.nan, dtype)

    tracker = SharpnessTracker(k=1, tol=tol, max_iters=max_iters) if mode == "lanczos" else None

    def value_fn(p):
        return toy.loss(p, batch)

    def measure(p, v_prev, t):
        """(sharpness, hvps, eigenvector) at p."""
        if mode == "closed":
            return toy.sharpness(p).astype(dtype), jnp.int32(0), v_prev
        if mode == "dense":
            flat, unr = ravel_pytree(p)
            h = jax.hessian(lambda w: value_fn(unr(w)))(flat)
            return jnp.linalg.eigvalsh(0.5 * (h + h.T))[-1].astype(dtype), jnp.int32(0), v_prev

        def matvec(v):
            return jax.jvp(jax.grad(value_fn), (p,), (v,))[1]

        # The tracker's warm start (previous Ritz vectors + a random part + a guard vector).
        tstate, res = tracker.estimate(v_prev, matvec, key=jax.random.fold_in(key, t))
        return res.eigenvalues[0].astype(dtype), res.num_hvps.astype(jnp.int32), tstate

    def body(carry, t):
        p, s, alive, v_prev = carry
        value, grad = jax.value_and_grad(value_fn)(p)
        g2 = sum(jnp.vdot(g, g) for g in jax.tree.leaves(grad)).astype(dtype)
        updates, s_new = tuner.update(grad, s, p, value=value, grad=grad, value_fn=value_fn)
        p_new = optax.apply_updates(p, updates)
        eta = _tuners.read_stepsize(s_new).astype(dtype)
        diag = _tuners.read_diagnostics(s_new)
        if mode is None:
            lam, hvps, v_new = nan, jnp.int32(0), v_prev
        else:
            lam, hvps, v_new = lax.cond(
                (t % every == 0) & alive,
                lambda: measure(p, v_prev, t),
                lambda: (nan, jnp.int32(0), v_prev),
            )
        bad = ~(jnp.isfinite(value) & jnp.isfinite(g2) & _all_finite(p_new))
        if threshold is not None:
            bad = bad | (jnp.abs(value) > threshold)
        ok = alive & ~bad
        record = {
            "loss": value.astype(dtype),
            "grad_norm_sq": g2,
            "stepsize": eta,
            "sharpness": lam,
            "hvps": hvps,
            "alive": alive,
            "bad": bad,
        }
        record.update({f"tuner_{k}": v for k, v in diag.items()})
        if coords is not None:
            record.update({k: v.astype(dtype) for k, v in coords(p).items()})
        carry = (_tree_where(ok, p_new, p), _tree_where(ok, s_new, s), ok,
                 _tree_where(ok, v_new, v_prev))
        return carry, record

    if mode == "lanczos":  # carry the tracker state (the step keys fold_in(key, t) use t < steps)
        v0 = tracker.init(params, jax.random.fold_in(key, 2**31 - 1))
    else:
        v0 = jax.tree.map(jnp.zeros_like, params)
    carry0 = (params, opt_state, jnp.asarray(True), v0)
    (p_final, _, _, _), records = lax.scan(body, carry0, jnp.arange(steps))
    return p_final, records


def simulate(
    toy: Toy,
    tuner: Any,
    steps: int,
    *,
    key: jax.Array,
    params: Any = None,
    sharpness: str | None = "exact",
    sharpness_every: int = 1,
    divergence_threshold: float | None = None,
    lanczos_tol: float = 1e-3,
    lanczos_max_iters: int = 50,
    tuner_config: Mapping[str, Any] | None = None,
) -> Trace:
    """Run a stepsize tuner on a toy loss for ``steps`` steps in one compiled ``lax.scan``.

    Math: w_{t+1} = w_t − η_t·g_t, g_t = ∇f(w_t), f = ``toy.loss(., toy.batch)``, η_t chosen by
    ``tuner`` (an :mod:`eosmodel.tuners` transformation fed ``value=f(w_t)``, ``grad=g_t``,
    ``value_fn=f``). Recorded per step t, at w_t: ``step``, ``loss`` f(w_t), ``grad_norm_sq``
    ‖g_t‖², ``stepsize`` η_t (``read_stepsize`` after the update), ``sharpness`` λ₁(w_t) (every
    ``sharpness_every`` steps, NaN otherwise), ``normalized_sharpness`` η_t·λ₁(w_t), ``hvps``,
    ``wall_time``, ``tuner_<field>`` (``read_diagnostics``) and the toy's reduced coordinates
    (:func:`toy_coordinates`, e.g. ``x``, ``lam`` for the self-stabilisation toy).

    Divergence: at the first step where f(w_t) or ‖g_t‖² is non-finite, w_{t+1} is non-finite, or
    |f(w_t)| > ``divergence_threshold``, the run is marked diverged: the parameters freeze (the
    scan finishes harmlessly), the trace ends at that step (its record is kept), and the config
    says ``"diverged": true, "diverged_at": t, "divergence_reason": "diverged"``. On the
    self-stabilisation toy, η_tλ_t > 2 after x underflowed to exactly 0 (:func:`underflow_step`)
    ends the run the same way with ``"divergence_reason": "underflow"``: what follows (λ growing
    without bound) is an artefact of the arithmetic. ``divergence_detail`` says it in words. No
    exception is raised.

    Args:
      toy: a :class:`eosmodel.toys.Toy`.
      tuner: a tuner name or preset (``"armijo-jax"``), a config mapping (``{"name": "polyak",
        "c": 0.5}``) or an optax transformation from :mod:`eosmodel.tuners` (then pass
        ``tuner_config`` to record its settings).
      steps: number of steps ≥ 1.
      key: PRNG key; split into the initialisation key (``toy.init``, unless ``params`` is
        given) and the Lanczos key (start vectors ``fold_in(key, t)``).
      params: starting parameters (default ``toy.init(key)``); their dtype sets the run's dtype.
      sharpness: ``"exact"`` (``toy.sharpness``; if absent a dense ``eigvalsh`` of the Hessian up
        to ``DENSE_MAX_PARAMS`` parameters, else Lanczos), ``"dense"``, ``"lanczos"``
        (warm-started :class:`eosmodel.sharpness.SharpnessTracker`) or ``None`` (not measured).
      sharpness_every: measure every k-th step (k ≥ 1).
      divergence_threshold: optional bound on |f| beyond which the run counts as diverged.
      lanczos_tol, lanczos_max_iters: Lanczos settings (relative accuracy, product cap).
      tuner_config: the config recorded for a transformation passed as ``tuner``.

    Returns:
      A :class:`eosmodel.trace.Trace`; its config holds ``kind="simulate"``, ``toy`` (name and
      hyper), ``tuner`` (complete config), ``steps``, ``seed`` (the key's data), ``dtype``,
      ``sharpness`` (the method used: ``toy``, ``dense``, ``lanczos`` or ``None``),
      ``sharpness_every``, ``divergence_threshold``, ``diverged``, ``diverged_at``,
      ``divergence_reason`` (None, "diverged" or "underflow") and ``divergence_detail``; the last
      parameters are in ``trace.meta["final_params"]`` (not saved). ``wall_time`` is the run's
      total time (compilation included) spread evenly over its steps: the scan is one call.

    Raises:
      ValueError: bad ``steps``, ``sharpness``, ``sharpness_every``, ``key`` or tuner settings.

    Reference: Cohen et al., arXiv 2103.00065 (EOS); Roulet, Agarwala, Pedregosa, arXiv
    2312.00209 (tuners and sharpness).

    Example:
      >>> import jax
      >>> from eosmodel.toys import quadratic
      >>> tr = simulate(quadratic([1.0, 3.0]), {"name": "constant", "stepsize": 0.5}, 20,
      ...               key=jax.random.key(0))
      >>> float(tr["sharpness"][0]), tr.config["diverged"]
      (3.0, False)
    """
    steps = _check_steps(steps)
    every = _check_every(sharpness_every)
    threshold = _check_threshold(divergence_threshold)
    if sharpness not in SHARPNESS_MODES:
        raise ValueError(
            f"sharpness must be one of {list(SHARPNESS_MODES)}, got {sharpness!r}; pass 'exact'."
        )
    key = _check_key(key)
    if not isinstance(toy, Toy):
        raise ValueError(f"toy must be an eosmodel.toys.Toy, got {type(toy).__name__}; build one "
                         "with eosmodel.toys (e.g. quadratic([1.0])).")
    opt, config = resolve_tuner(tuner, tuner_config)
    init_key, run_key = jax.random.split(key)
    if params is None:
        params = toy.init(init_key)
    params = jax.tree.map(jnp.asarray, params)
    flat, _ = ravel_pytree(params)
    mode = sharpness
    if mode == "exact":
        if toy.sharpness is not None:
            mode = "closed"
        else:
            mode = "dense" if flat.size <= DENSE_MAX_PARAMS else "lanczos"
    opt_state = opt.init(params)
    t0 = time.perf_counter()
    p_final, rec = _simulate_scan(
        params, opt_state, toy.batch, run_key, toy=toy, tuner=opt, steps=steps, mode=mode,
        every=every, threshold=threshold, tol=float(lanczos_tol),
        max_iters=int(min(lanczos_max_iters, flat.size)),
    )
    rec = jax.device_get(rec)
    elapsed = time.perf_counter() - t0
    columns, diverged_at, reason = _records_to_columns(
        rec, steps, elapsed, underflow=("x", "lam") if toy.name == "self_stabilization" else None)
    method = {"closed": "toy", "dense": "dense", "lanczos": "lanczos", None: None}[mode]
    cfg = {
        "kind": "simulate",
        "toy": {"name": toy.name, "hyper": toy.hyper},
        "tuner": config,
        "steps": steps,
        "seed": _key_seed(key),
        "dtype": str(flat.dtype),
        "sharpness": method,
        "sharpness_every": every,
        "divergence_threshold": threshold,
        **_divergence_record(diverged_at, reason),
    }
    return Trace.from_columns(columns, cfg, meta={"final_params": jax.device_get(p_final)})


UNDERFLOW_DETAIL = (
    "x underflowed to exactly 0 during a long decay and eta*lambda now exceeds 2, where any nonzero x "
    "would grow back, so the oscillation cannot return and lambda would sharpen without bound (an "
    "artefact of the arithmetic); start nearer the edge (init_x of order sqrt(2 alpha / beta), lambda0 "
    "near 2/eta)"
)


def underflow_step(x: np.ndarray, normalized_sharpness: np.ndarray) -> int | None:
    """The first step t with η_tλ_t > 2 after x underflowed to exactly 0, or None.

    On the self-stabilisation map x_{t+1} = (1 − η_tλ_t)x_t: x decays while η_tλ_t < 2 and grows
    once η_tλ_t > 2. In floating point a long decay can underflow x to exactly 0 (a nonzero
    x_{t−1} below √tiny of its dtype, followed by x_t = 0); x then stays 0 for ever, and
    λ_{t+1} = λ_t + η_tα grows without bound instead of being pulled back by the oscillation,
    which in exact arithmetic would grow again beyond the edge. An underflow that stays below
    the edge (a converging run, e.g. a tuner held below 2) is harmless and is not flagged.

    Args:
      x: the oscillating coordinate per step, in the run's dtype.
      normalized_sharpness: η_tλ_t per step (NaN where unknown: not flagged).
    """
    x = np.asarray(x)
    floor = np.sqrt(np.finfo(x.dtype if x.dtype.kind == "f" else np.float64).tiny)
    sunk = np.flatnonzero((x[1:] == 0) & (x[:-1] != 0) & (np.abs(x[:-1]) < floor))
    if not sunk.size:
        return None
    start = int(sunk[0]) + 1
    above = np.flatnonzero((x[start:] == 0) & (np.asarray(normalized_sharpness)[start:] > 2))
    return start + int(above[0]) if above.size else None


def _records_to_columns(rec: dict, steps: int, elapsed: float,
                        underflow: tuple[str, str] | None = None) -> tuple[dict, int | None, str | None]:
    """Host side: numpy columns, truncated after the first diverged step, and why it diverged.

    ``underflow``: ``(x, lam)`` names of the oscillating coordinate and of λ, whose underflow
    (:func:`underflow_step`) also stops the run (reason ``"underflow"``); other failures have
    reason ``"diverged"``.
    """
    alive = np.asarray(rec.pop("alive"), bool)
    bad = np.asarray(rec.pop("bad"), bool)
    hits = np.flatnonzero(alive & bad)
    diverged_at = int(hits[0]) if hits.size else None
    reason = None if diverged_at is None else "diverged"
    if underflow is not None and set(underflow) <= set(rec):
        x_name, lam_name = underflow
        at = underflow_step(np.asarray(rec[x_name]),
                            np.asarray(rec["stepsize"], np.float64) * np.asarray(rec[lam_name], np.float64))
        if at is not None and (diverged_at is None or at < diverged_at):
            diverged_at, reason = at, "underflow"
    n = steps if diverged_at is None else diverged_at + 1
    columns = {"step": np.arange(n)}
    for name, values in rec.items():
        columns[name] = np.asarray(values)[:n].astype(np.float64)
    columns["normalized_sharpness"] = columns["stepsize"] * columns["sharpness"]
    columns["wall_time"] = elapsed * (np.arange(n) + 1) / steps
    return columns, diverged_at, reason


def _divergence_record(diverged_at: int | None, reason: str | None) -> dict:
    """The config keys that say whether, where and why a run stopped early."""
    detail = None
    if reason == "underflow":
        detail = UNDERFLOW_DETAIL
    elif reason == "diverged":
        detail = "the loss, gradient or parameters became non-finite (or |loss| exceeded the threshold)"
    return {"diverged": diverged_at is not None, "diverged_at": diverged_at,
            "divergence_reason": reason, "divergence_detail": detail}


# ----------------------------------------------------------------------------------------------
# Reduced maps.
# ----------------------------------------------------------------------------------------------


def _resolve_rule(rule: Any) -> MapRule:
    if isinstance(rule, MapRule):
        return rule
    if isinstance(rule, (str, Mapping)):
        return map_rule(rule)
    raise ValueError(
        f"rule must be a MapRule, a rule name or a tuner config, got {rule!r}; pass e.g. "
        "eosmodel.toys.oracle_rule(1.5) or {'name': 'polyak', 'c': 0.5}."
    )


def map_state_finite(state: Any) -> jax.Array:
    """True where every leaf of a reduced state is finite (elementwise over batch axes)."""
    leaves = jax.tree.leaves(state)
    out = jnp.isfinite(leaves[0])
    for leaf in leaves[1:]:
        fin = jnp.isfinite(leaf)
        out = out & (fin if fin.ndim == out.ndim else jnp.all(fin, axis=-1))
    return out


@functools.partial(jax.jit, static_argnames=("rule", "steps", "threshold"))
def _map_scan(model, state0, *, rule, steps, threshold):
    def body(carry, t):
        s, rs, alive = carry
        f = model.loss(s)
        g2 = model.grad_norm_sq(s)
        eta, rs_new, diag = rule.update(model, s, rs)
        s_new = model.step(s, eta)
        bad = ~(jnp.isfinite(f) & jnp.isfinite(g2) & map_state_finite(s_new))
        if threshold is not None:
            bad = bad | (jnp.abs(f) > threshold)
        ok = alive & ~bad
        record = {"loss": f, "grad_norm_sq": g2, "stepsize": eta,
                  "sharpness": model.top_eigenvalue(s), "alive": alive, "bad": bad}
        record.update({f"tuner_{k}": v for k, v in diag.items()})
        record.update(model.coordinates(s))
        return (_tree_where(ok, s_new, s), _tree_where(ok, rs_new, rs), ok), record

    rs0 = rule.init(model, state0)
    (s_final, _, _), rec = lax.scan(body, (state0, rs0, jnp.asarray(True)), jnp.arange(steps), unroll=4)
    return s_final, rec


def map_records(model: Any, rule: MapRule, state: Any, steps: int) -> dict[str, jax.Array]:
    """The per-step records of a reduced map with a tuner rule in the loop, as arrays (traceable).

    The computation of :func:`simulate_map` (one ``lax.scan``, the state frozen after the first
    non-finite step, ``alive`` False from then on) without the host-side trace: a pure function
    of ``model`` and ``state`` that composes with ``jax.vmap`` (a batch of models or initial
    states sharing one ``rule``) and ``jax.jit`` (``rule`` and ``steps`` static).

    Returns:
      ``{"loss", "grad_norm_sq", "stepsize", "sharpness", "alive", "bad", "tuner_<diag>",
      <coordinates>}``, each of shape ``(steps,)`` (plus the batch axes under ``vmap``).
    """
    return _map_scan(model, state, rule=rule, steps=int(steps), threshold=None)[1]


def simulate_map(
    model: Any,
    rule: Any,
    state: Any,
    steps: int,
    *,
    divergence_threshold: float | None = None,
) -> Trace:
    """Iterate a reduced map with a tuner rule in the loop (one compiled ``lax.scan``).

    Math: η_t = rule(state_t) (:class:`eosmodel.toys.MapRule`), state_{t+1} =
    ``model.step(state_t, η_t)``: exactly GD with that tuner on the model's toy (see
    :mod:`eosmodel.toys._maps`). On the self-stabilisation model, x_{t+1} = (1 − η_tλ_t)x_t,
    λ_{t+1} = λ_t + η_t(α − βx_t²/2).

    Recorded per step: ``step``, ``loss``, ``grad_norm_sq``, ``stepsize`` η_t, ``sharpness``
    (``model.top_eigenvalue``), ``normalized_sharpness``, ``tuner_<diagnostic>``, the model's
    coordinates (e.g. ``x``, ``lam``), ``hvps`` (0) and ``wall_time``. Divergence is handled as in
    :func:`simulate` (non-finite loss/gradient/state, or |f| > ``divergence_threshold``; on the
    self-stabilisation map also x underflowed to exactly 0, :func:`underflow_step`).

    Args:
      model: a reduced model (``SelfStabilizationModel``, ``SecondOrderModel``, ``UVModel``).
      rule: a :class:`MapRule`, a rule name, or a tuner config (``{"name": "polyak", ...}``).
      state: the initial reduced state (scalars; its dtype sets the run's dtype).
      steps: number of steps ≥ 1.
      divergence_threshold: optional bound on |f|.

    Returns:
      A :class:`eosmodel.trace.Trace` with config ``kind="simulate_map"``, ``model`` (name and
      constants), ``tuner`` (rule name and hyperparameters), ``initial_state``, ``steps``,
      ``diverged``, ``diverged_at``, ``divergence_reason``, ``divergence_detail``.

    Raises:
      ValueError: bad ``steps`` or rule.

    Reference: Damian, Nichani, Lee, arXiv 2209.15594; Roulet, Agarwala, Pedregosa, arXiv
    2312.00209.

    Example:
      >>> from eosmodel.toys import SelfStabilizationModel, SelfStabilizationState, oracle_rule
      >>> tr = simulate_map(SelfStabilizationModel(alpha=1.0, beta=1.0, lambda0=1.0),
      ...                   oracle_rule(1.0), SelfStabilizationState(x=0.0, lam=1.0), 3)
      >>> tr["lam"].round(4).tolist()   # λ_{t+1} = λ_t + σα/λ_t
      [1.0, 2.0, 2.5]
    """
    steps = _check_steps(steps)
    threshold = _check_threshold(divergence_threshold)
    rule = _resolve_rule(rule)
    state = jax.tree.map(lambda v: jnp.asarray(v, dtype=jnp.result_type(float)) if
                         not isinstance(v, jax.Array) else v, state)
    t0 = time.perf_counter()
    s_final, rec = _map_scan(model, state, rule=rule, steps=steps, threshold=threshold)
    rec = jax.device_get(rec)
    elapsed = time.perf_counter() - t0
    columns, diverged_at, reason = _records_to_columns(
        rec, steps, elapsed, underflow=("x", "lam") if isinstance(model, SelfStabilizationModel) else None)
    columns["hvps"] = np.zeros(len(columns["step"]))
    cfg = {
        "kind": "simulate_map",
        "model": _describe_model(model),
        "tuner": _describe_rule(rule),
        "initial_state": {k: _jsonable(v) for k, v in state._asdict().items()},
        "steps": steps,
        "divergence_threshold": threshold,
        **_divergence_record(diverged_at, reason),
    }
    return Trace.from_columns(columns, cfg, meta={"final_state": jax.device_get(s_final)})


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    arr = np.asarray(v)
    if arr.dtype.kind in "biuf":
        return arr.item() if arr.ndim == 0 else arr.tolist()
    return str(v)


def _describe_model(model: Any) -> dict:
    out = {"name": type(model).__name__}
    out.update({k: _jsonable(v) for k, v in model._asdict().items()})
    return out


def _describe_rule(rule: MapRule) -> dict:
    return {"name": rule.name, **{k: _jsonable(v) for k, v in rule.hyper.items()}}
