"""Batched reduced-map runs over parameter grids (vmap), summarised on the fly into diagrams."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from eosmodel.toys._maps import (
    MAP_OPTIONS,
    RULES,
    SecondOrderModel,
    SecondOrderState,
    SelfStabilizationModel,
    SelfStabilizationState,
    UVModel,
    UVState,
    map_rule,
)
from eosmodel.tuners import STEPSIZE_RULES

#: Reduced models a sweep can run: name -> (model class, state class, default initial state).
MODELS: dict[str, tuple[type, type, dict[str, float]]] = {
    "self_stabilization": (SelfStabilizationModel, SelfStabilizationState, {"x": 0.01}),
    "second_order": (SecondOrderModel, SecondOrderState, {"z": 0.5, "ntk": 1.0}),
    "uv": (UVModel, UVState, {"f": 1.0, "lam": 1.0}),
}

#: Rule settings that are not numbers (strings and flags that select code paths): pass them in
#: ``fixed``. Every numeric hyperparameter of every rule can be a grid axis (it is traced inside
#: ``vmap``); ``smooth_cap``/``ema`` on an axis select the smoothed cap/the moving averages (their
#: default ``None`` turns them off).
STATIC_HYPER = frozenset({"on_failure", "init_rule", "exact", "guard"})
#: Convenience aliases accepted as grid/fixed names.
ALIASES = {"eta": "stepsize"}

SUMMARIES = (
    "mean_normalized_sharpness",
    "mean_sharpness",
    "mean_stepsize",
    "rms_coordinate",
    "final_sharpness",
    "final_stepsize",
    "min_normalized_sharpness",
    "max_normalized_sharpness",
)


@dataclasses.dataclass
class SweepResult:
    """Summaries of a batch of reduced-map runs over a Cartesian parameter grid.

    Every summary array has the grid's shape ``shape`` (axis i ↔ ``axes[i]``), computed over
    the last ``window`` steps of each run, with λ_t = ``model.sharpness`` (the map's sharpness
    variable: λ for the self-stabilisation and uv maps, T = ‖J‖² for the second-order map):

    * ``mean_normalized_sharpness`` ⟨η_tλ_t⟩, ``min_/max_normalized_sharpness``,
      ``mean_sharpness`` ⟨λ_t⟩, ``mean_stepsize`` ⟨η_t⟩, ``rms_coordinate`` √⟨c_t²⟩ of the
      state's first coordinate (x, z or f), ``final_sharpness`` λ_T and ``final_stepsize`` η_{T−1};
      NaN for diverged runs;
    * ``diverged`` (bool) and ``diverged_at`` (the first step whose update was non-finite or
      exceeded the threshold, or, on the self-stabilisation map, had η_tλ_t > 2 after x
      underflowed to exactly 0; −1 if none); ``underflowed`` (bool): the run failed so;
    * ``late_normalized_sharpness``: shape ``shape + (record_last,)``, the last η_tλ_t values of
      each run (the bifurcation diagram's points; NaN for diverged runs).

    Attributes:
      axes: the grid's parameter names, in axis order.
      values: name → the 1-D grid values of that axis.
      summaries: name → array (the fields above).
      config: the sweep's settings (model, rule, fixed values, steps, window, dtype, ...).
    """

    axes: tuple[str, ...]
    values: dict[str, np.ndarray]
    summaries: dict[str, np.ndarray]
    config: dict

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.values[a]) for a in self.axes)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.summaries[name]
        except KeyError:
            raise KeyError(f"no summary {name!r}; available: {sorted(self.summaries)}") from None

    @property
    def diverged(self) -> np.ndarray:
        return self.summaries["diverged"]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``sweep.npz`` (grid values and summaries) and ``sweep.json`` (axes, config)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f"axis_{a}": v for a, v in self.values.items()}
        arrays.update(self.summaries)
        np.savez_compressed(out / "sweep.npz", **arrays)
        meta = {"axes": list(self.axes), "summaries": sorted(self.summaries), "config": self.config}
        with open(out / "sweep.json", "w") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True, default=_json_default)
            fh.write("\n")
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "SweepResult":
        """Read a result written by :meth:`save`."""
        out = Path(out_dir)
        with open(out / "sweep.json") as fh:
            meta = json.load(fh)
        with np.load(out / "sweep.npz") as data:
            values = {a: data[f"axis_{a}"] for a in meta["axes"]}
            summaries = {k: data[k] for k in meta["summaries"]}
        return cls(tuple(meta["axes"]), values, summaries, meta["config"])


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    return str(obj)


def _canonical(name: str) -> str:
    return ALIASES.get(name, name)


def _classify(model_name: str, rule_name: str, names: Sequence[str]) -> dict[str, str]:
    """Map every parameter name to its role: ``model``, ``rule``, ``init`` or ``seed``."""
    model_cls, state_cls, _ = MODELS[model_name]
    rule_params = set(_rule_signature(rule_name))
    roles = {}
    for raw in names:
        name = _canonical(raw)
        if name in model_cls._fields:
            roles[raw] = "model"
        elif name in rule_params:
            roles[raw] = "rule"
        elif name.startswith("init_") and name[5:] in state_cls._fields:
            roles[raw] = "init"
        elif name in ("seed", "init_noise"):
            roles[raw] = name
        else:
            valid = sorted(
                set(model_cls._fields) | rule_params | {f"init_{f}" for f in state_cls._fields}
                | {"seed", "init_noise"} | set(ALIASES)
            )
            raise ValueError(
                f"unknown sweep parameter {raw!r} for model {model_name!r} with rule "
                f"{rule_name!r}; valid names are {valid}."
            )
    return roles


def _rule_signature(rule_name: str) -> list[str]:
    """The rule's hyperparameters (those of its class in ``eosmodel.tuners``) and map options."""
    import inspect

    return [*inspect.signature(STEPSIZE_RULES[rule_name]).parameters, *MAP_OPTIONS.get(rule_name, {})]


def _as_axis(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1) if not isinstance(values, str) else None
    if arr is None or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"grid values of {name!r} must be a non-empty sequence of finite numbers, got "
            f"{values!r}; pass e.g. np.linspace(0.1, 2.0, 64)."
        )
    return arr


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}; pass e.g. {max(lo, 1)}.")
    return int(value)


def _state_finite(state: Any, threshold: float | None) -> jax.Array:
    """True where every coordinate is finite (and below ``threshold`` in absolute value).

    ``|v| < threshold`` is False for NaN and ±inf, so with a threshold one comparison suffices.
    """
    out = None
    for leaf in jax.tree.leaves(state):
        ok = jnp.isfinite(leaf) if threshold is None else jnp.abs(leaf) < threshold
        if ok.ndim:
            ok = jnp.all(ok)
        out = ok if out is None else out & ok
    return out


def _first_field(state: Any) -> jax.Array:
    return state[0]


#: Rows per packed carry array: XLA's CPU backend fuses a concatenate of at most 8 operands into
#: one loop (more are split into one kernel per row, each recomputing the step).
_PACK_ROWS = 8


def _pack(tree: Any, dtype: Any, n: int) -> tuple[list[jax.Array], list, tuple]:
    """Stack the ``[n]``-shaped leaves of ``dtype`` of a batched carry into ``[k, n]`` arrays.

    With the per-step state in a few arrays (of at most :data:`_PACK_ROWS` rows, in equal
    groups), XLA's CPU backend emits a step as one loop fusion per array (one pass over the
    chunk) instead of one kernel per leaf.
    """
    leaves, treedef = jax.tree.flatten(tree)
    idx = tuple(i for i, v in enumerate(leaves) if v.dtype == dtype and v.shape == (n,))
    groups = -(-len(idx) // _PACK_ROWS)
    size = -(-len(idx) // groups) if groups else 0
    packed = [jnp.stack([leaves[i] for i in idx[g:g + size]]) for g in range(0, len(idx), size or 1)]
    rest = [v for i, v in enumerate(leaves) if i not in idx]
    return packed, rest, (treedef, idx, size, len(leaves))


def _unpack(packed: list[jax.Array], rest: list, meta: tuple) -> Any:
    treedef, idx, size, count = meta
    others = iter(rest)
    leaves = []
    for i in range(count):
        if i in idx:
            j = idx.index(i)
            leaves.append(packed[j // size][j % size])
        else:
            leaves.append(next(others))
    return jax.tree.unflatten(treedef, leaves)


def _packed_scan(body, carry, start, length, *, dtype, n, unroll, count_dtype):
    """``lax.scan`` of ``body(carry, t) -> (carry, out)`` over steps t = start, ...,
    start + length − 1 (in ``count_dtype``), with the carry packed by :func:`_pack` (its
    structure and dtypes are those of ``carry``)."""
    packed, rest, meta = _pack(carry, dtype, n)

    def step(c, t):
        new, out = body(_unpack(*c, meta), t)
        p, r, _ = _pack(new, dtype, n)
        return (p, r), out

    ts = jnp.arange(start, start + length, dtype=count_dtype)
    (packed, rest), outs = lax.scan(step, (packed, rest), ts, unroll=unroll)
    return _unpack(packed, rest, meta), outs


@functools.partial(
    jax.jit,
    static_argnames=("model_name", "rule_name", "roles", "static_rule", "steps", "window",
                     "record_last", "threshold", "unroll", "chunk"),
)
def _sweep_jit(flat_params, fixed_params, key, *, model_name, rule_name, roles, static_rule,
               steps, window, record_last, threshold, unroll, chunk):
    """All trajectories: ``lax.map`` over chunks; each chunk runs all its steps as a scan of a
    ``vmap``-ed step whose float carry is one ``[k, chunk]`` array (see :func:`_pack`)."""
    model_cls, state_cls, default_init = MODELS[model_name]
    roles = dict(roles)
    floats = [v.dtype for v in jax.tree.leaves((flat_params, fixed_params))
              if jnp.issubdtype(v.dtype, jnp.floating)]
    dtype = jnp.dtype(floats[0] if floats else jnp.result_type(float))
    # The first failing step is kept in the float dtype (packed with the rest) while exact.
    count_dtype = dtype if steps < 2 ** jnp.finfo(dtype).nmant else jnp.dtype(jnp.int32)

    def build(point: dict):
        hp = {**fixed_params, **{k: v for k, v in point.items() if k in roles}}
        by = {"model": {}, "rule": dict(static_rule), "init": {}}
        if rule_name == "constant":
            # Divergence is detected on the state: the constant rule's input guard is not needed.
            by["rule"].setdefault("guard", False)
        for name, v in hp.items():
            role = roles[name]
            if role in by:
                by[role][_canonical(name)] = v
        model = model_cls(**{**model_cls._field_defaults, **by["model"]})
        return hp, by, model, map_rule(rule_name, **by["rule"])

    def init_one(point: dict):
        hp, by, model, rule = build(point)
        if model_name == "self_stabilization":
            # The toy starts at s = 0: λ_0 = λ₀ unless init_lam is given.
            by["init"].setdefault("init_lam", hp.get("lambda0", model.lambda0))
        init = {f: by["init"].get(f"init_{f}", default_init.get(f)) for f in state_cls._fields}
        if "init_noise" in hp:
            sub = jax.random.fold_in(key, jnp.asarray(hp.get("seed", 0), jnp.int32))
            noise = jax.random.normal(sub, (len(state_cls._fields),), dtype)
            fields = [f for f in state_cls._fields if init[f] is not None]
            for i, f in enumerate(fields):
                init[f] = init[f] + hp["init_noise"] * noise[i]
        state = state_cls(**{f: (None if v is None else jnp.asarray(v, dtype))
                             for f, v in init.items()})
        return state, rule.init(model, state)

    def advance_one(point: dict, s, rs):
        _, _, model, rule = build(point)
        eta, rs_new, diag = rule.update(model, s, rs)
        lam = model.sharpness(s)
        s_new = model.step(s, eta)
        # Diverged: a non-finite (or too large) new state, or a rule that met a non-finite
        # loss or gradient (status 1; it then takes no step and would freeze the run).
        # A diverged run is not frozen (no per-step select): its state may turn NaN, which
        # is harmless as its summaries are reported as NaN.
        ok = _state_finite(s_new, threshold) & (diag["status"] != 1)
        # x underflowed to exactly 0 from the bottom of the float range (see
        # eosmodel.dynamics.underflow_step): it can never grow back, λ sharpens without bound.
        x, x_new = _first_field(s), _first_field(s_new)
        sunk = (x != 0) & (jnp.abs(x) < jnp.sqrt(jnp.finfo(dtype).tiny)) & (x_new == 0)
        sunk = sunk & (model_name == "self_stabilization")
        return s_new, rs_new, ok, eta.astype(dtype), lam.astype(dtype), sunk

    def run_chunk(points: dict) -> dict:
        n = jax.tree.leaves(points)[0].shape[0]
        s, rs = jax.vmap(init_one)(points)
        advance = jax.vmap(advance_one)

        def live(carry, t):
            s, rs, failed_at, under = carry
            s, rs, ok, eta, lam, sunk = advance(points, s, rs)
            # An underflowed x fails the run once ηλ > 2, where the exact x would grow again.
            under = under | sunk
            ok = ok & ~(under & (eta * lam > 2))
            # failed_at: the first step t whose update failed, −1 while none did.
            failed_at = jnp.where((failed_at < 0) & ~ok, t, failed_at)
            return (s, rs, failed_at, under), eta, lam

        def burn(carry, t):
            new, _, _ = live(carry, t)
            return new, None

        def accumulate(carry, t, output):
            core, acc = carry
            c = _first_field(core[0])
            core, eta, lam = live(core, t)
            ns = eta * lam
            acc = (acc[0] + ns, acc[1] + lam, acc[2] + eta, acc[3] + c * c,
                   jnp.minimum(acc[4], ns), jnp.maximum(acc[5], ns), eta)
            return (core, acc), (ns if output else None)

        ones = jnp.ones((n,), dtype)
        carry = (s, rs, -jnp.ones((n,), count_dtype), jnp.zeros((n,), bool))
        scan = functools.partial(_packed_scan, dtype=dtype, n=n, unroll=unroll,
                                 count_dtype=count_dtype)
        n_burn = steps - window
        if n_burn:
            carry, _ = scan(burn, carry, 0, n_burn)
        zero = jnp.zeros((n,), dtype)
        acc = (zero, zero, zero, zero, ones * jnp.inf, ones * -jnp.inf, zero)
        mid = window - record_last
        if mid:
            (carry, acc), _ = scan(functools.partial(accumulate, output=False), (carry, acc),
                                   n_burn, mid)
        if record_last:
            (carry, acc), late = scan(functools.partial(accumulate, output=True), (carry, acc),
                                      n_burn + mid, record_last)
            late = late.T
        else:
            late = jnp.zeros((n, 0), dtype)
        s, _, failed_at, under = carry
        alive = failed_at < 0
        w = jnp.asarray(window, dtype)
        nan = jnp.asarray(jnp.nan, dtype)
        keep = lambda v: jnp.where(alive, v, nan)  # noqa: E731
        return {
            "mean_normalized_sharpness": keep(acc[0] / w),
            "mean_sharpness": keep(acc[1] / w),
            "mean_stepsize": keep(acc[2] / w),
            "rms_coordinate": keep(jnp.sqrt(acc[3] / w)),
            "min_normalized_sharpness": keep(acc[4]),
            "max_normalized_sharpness": keep(acc[5]),
            "final_sharpness": keep(jax.vmap(lambda p, st: build(p)[2].sharpness(st))(points, s)),
            "final_stepsize": keep(acc[6]),
            "diverged": ~alive,
            "diverged_at": failed_at.astype(jnp.int32),
            "underflowed": ~alive & under,
            "late_normalized_sharpness": jnp.where(alive[:, None], late, nan),
        }

    if not flat_params:
        return run_chunk({"": jnp.zeros((1,), dtype)})
    total = jax.tree.leaves(flat_params)[0].shape[0]
    chunked = jax.tree.map(lambda v: v.reshape((total // chunk, chunk) + v.shape[1:]), flat_params)
    out = lax.map(run_chunk, chunked)
    return jax.tree.map(lambda v: v.reshape((total,) + v.shape[2:]), out)


def sweep(
    model: str,
    rule: str,
    grid: Mapping[str, Any],
    *,
    steps: int,
    fixed: Mapping[str, Any] | None = None,
    key: jax.Array | None = None,
    window: int | None = None,
    record_last: int | None = None,
    divergence_threshold: float | None = 1e15,
    dtype: Any = jnp.float32,
    chunk_size: int | None = None,
    unroll: int | None = None,
) -> SweepResult:
    """Run a reduced map with a tuner rule over a Cartesian grid of parameters, batched with vmap.

    Math: for each grid point, the map state_{t+1} = ``model.step(state_t, η_t)`` with η_t =
    rule(state_t) (see :mod:`eosmodel.toys._maps`; e.g. on the self-stabilisation map
    x_{t+1} = (1 − η_tλ_t)x_t, λ_{t+1} = λ_t + η_t(α − βx_t²/2)), run for ``steps`` steps and
    summarised over the last ``window`` steps on the fly (no per-step storage beyond the last
    ``record_last`` values of η_tλ_t): see :class:`SweepResult`.

    Parameter names (grid axes or ``fixed`` values): the model's constants (``alpha``, ``beta``,
    ``lambda0``, ``sharpening_limit`` | ``omega``, ``energy`` | ``target``, ``width``), the
    rule's numeric hyperparameters, ANY of them (those of :data:`eosmodel.tuners.STEPSIZE_RULES`:
    ``stepsize`` (alias ``eta``); ``sigma``; Armijo's ``c``, ``decrease_factor``,
    ``increase_factor``, ``max_stepsize``, ``max_trials``; Polyak's ``c``, ``f_star``,
    ``max_stepsize``, ``smooth_cap``, ``eps``; CDAT's ``sigma``, ``eps``, ``ema``; traced inside
    ``vmap``, resolved and validated by :func:`eosmodel.tuners.tuner_config`), initial
    conditions ``init_<field>`` (``init_x``, ``init_lam``, ...; for the self-stabilisation model
    λ_0 = ``lambda0`` unless ``init_lam`` is given, as in the toy) and ``seed`` with
    ``init_noise`` (Gaussian noise of that scale added to each initial coordinate, drawn from
    ``fold_in(key, seed)``). Non-numeric settings (``on_failure``, ``init_rule``, ``exact``,
    ``guard``) go in ``fixed`` only; ``smooth_cap``/``ema`` on a grid axis (or fixed to a number)
    turn the smoothed cap/the moving averages on.

    Numerics: in float32 a coordinate that decays for long (x while ηλ < 2 on the
    self-stabilisation map) can underflow to exactly 0, after which no oscillation can grow
    back (λ then sharpens forever, even once ηλ > 2, where x would grow again; float64 only
    postpones it): a run whose x underflowed and whose ηλ then exceeds 2 is recorded as
    diverged with ``underflowed`` true. Start near the edge (``init_x`` of order δ = √(2α/β),
    ``lambda0`` near 2/η), add ``init_noise``, or sweep in float64.

    Divergence: a run whose state becomes non-finite or exceeds ``divergence_threshold`` in
    absolute value is recorded in ``diverged``/``diverged_at`` (its summaries are NaN); it never
    raises and never disturbs the other runs.

    Args:
      model: ``"self_stabilization"``, ``"second_order"`` or ``"uv"``.
      rule: ``"constant"``, ``"oracle"``, ``"armijo"``, ``"polyak"`` or ``"cdat"``.
      grid: name → 1-D values; the runs cover their Cartesian product (axis order = dict order).
      steps: steps per run (≥ 1).
      fixed: name → value for the other parameters (defaults: the model's and rule's).
      key: PRNG key for the initial noise (required when ``init_noise`` is set).
      window: number of final steps summarised (default ``steps // 2``; 1 ≤ window ≤ steps).
      record_last: number of final η_tλ_t values kept per run (0 ≤ record_last ≤ window;
        default min(64, window)).
      divergence_threshold: bound on |state| (``None``: non-finite only).
      dtype: float32 (default, the fast path) or float64 (needs ``jax.enable_x64``).
      chunk_size: at most this many runs per chunk; each chunk runs all its steps before the
        next starts, so its carry stays in cache (default, measured on a 2-core AVX-512 CPU:
        512 for ``constant``, ``oracle`` and ``armijo``, whose ~10 carried rows of 2 KiB then
        stay in L1; 16384 otherwise).
      unroll: ``lax.scan`` unroll factor of the time loop (default: 2 for the ``constant`` rule,
        whose fused step is small; 1 otherwise: XLA's fused step recomputes the unrolled chain
        once per carried row, which slows the oracle down and makes Armijo/Polyak compile for
        ever; 16 compiles for minutes).

    Returns:
      A :class:`SweepResult`.

    Raises:
      ValueError: an unknown model, rule or parameter name, a static setting on a grid axis,
        empty or non-finite grid values, bad ``steps``/``window``/``record_last``, or a missing
        ``key`` with ``init_noise``.

    Reference: Damian, Nichani, Lee, arXiv 2209.15594; Roulet, Agarwala, Pedregosa, arXiv
    2312.00209; Kalra & Barkeshli, arXiv 2311.02076 (period doubling in the uv model).

    Example:
      Fixed η: the orbit circles (δ, 2/η) with δ = √(2α/β) = √2 ≈ 1.41, so ⟨ηλ⟩ ≈ 2.

      >>> res = sweep("self_stabilization", "constant", {"init_x": [1.2, 1.6]}, steps=4000,
      ...             fixed={"eta": 0.01, "alpha": 1.0, "beta": 1.0, "lambda0": 200.0})
      >>> res.shape, [round(float(v), 2) for v in res["mean_normalized_sharpness"]]
      ((2,), [2.0, 2.0])
      >>> [round(float(v), 1) for v in res["rms_coordinate"]], res["diverged"].tolist()
      ([1.4, 1.4], [False, False])
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}; pick one of them.")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}; pick one of them.")
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a mapping name -> values, got {type(grid).__name__}; "
                         "pass e.g. {'eta': np.linspace(0.1, 2, 64)}.")
    fixed = dict(fixed or {})
    steps = _check_int("steps", steps, 1)
    window = steps // 2 if window is None else _check_int("window", window, 1)
    if window > steps or window < 1:
        raise ValueError(f"window must lie in [1, steps={steps}], got {window}; pass a smaller window.")
    record_last = min(64, window) if record_last is None else _check_int("record_last", record_last, 0)
    if record_last > window:
        raise ValueError(
            f"record_last must lie in [0, window={window}], got {record_last}; pass a smaller value."
        )
    if chunk_size is None:
        chunk_size = 512 if rule in ("constant", "oracle", "armijo") else 16384
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    if unroll is None:
        unroll = 2 if rule == "constant" else 1
    unroll = _check_int("unroll", unroll, 1)
    if divergence_threshold is not None and not float(divergence_threshold) > 0:
        raise ValueError(f"divergence_threshold must be > 0 or None, got {divergence_threshold!r}.")
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}; pass jnp.float32.")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs x64: run inside `with jax.enable_x64(True):`.")

    roles = _classify(model, rule, list(grid) + list(fixed))
    overlap = set(grid) & set(fixed)
    if overlap:
        raise ValueError(f"parameters {sorted(overlap)} are both on the grid and fixed; keep one.")
    static_rule = {}
    for name in list(fixed):
        if _canonical(name) in STATIC_HYPER:
            static_rule[_canonical(name)] = fixed.pop(name)
    for name in grid:
        if _canonical(name) in STATIC_HYPER:
            raise ValueError(
                f"{name!r} selects a code path and cannot be a grid axis; pass it in fixed."
            )
    if ("init_noise" in roles.values()) and key is None:
        raise ValueError("key is required with init_noise; pass key=jax.random.key(seed).")
    if key is None:
        key = jax.random.key(0)  # unused: no random initial noise requested
    axes = tuple(grid)
    values = {a: _as_axis(a, grid[a]) for a in axes}
    # Validate the rule's settings on concrete values, through the tuner's config resolution
    # (eosmodel.tuners.tuner_config): the fixed values, then every value of each rule axis (the
    # ranges are per hyperparameter; integers such as max_trials are checked value by value).
    fixed_rule = {_canonical(k): v for k, v in fixed.items() if roles[k] == "rule"}
    rule_axes = [k for k in axes if roles[k] == "rule"]
    if not rule_axes:
        map_rule(rule, **fixed_rule, **static_rule)
    first = {_canonical(k): float(values[k][0]) for k in rule_axes}
    for k in rule_axes:
        for v in np.unique(values[k]):
            map_rule(rule, **{**fixed_rule, **static_rule, **first, _canonical(k): float(v)})
    mesh = np.meshgrid(*[values[a] for a in axes], indexing="ij") if axes else []
    total = int(np.prod([len(values[a]) for a in axes])) if axes else 1
    # Near-equal chunks of at most chunk_size runs, a multiple of 16 (whole SIMD vectors) when
    # that fits: little padding, and no ragged vector tail in the per-step loops.
    n_chunks = -(-total // chunk_size)
    chunk = -(-total // n_chunks)
    if chunk_size >= 16:
        chunk = min(-(-chunk // 16) * 16, chunk_size)
        n_chunks = -(-total // chunk)
    padded = n_chunks * chunk
    flat = {}
    for a, m in zip(axes, mesh):
        v = m.reshape(-1)
        v = np.concatenate([v, np.full(padded - total, v[-1])])
        flat[a] = jnp.asarray(v, jnp.int32 if roles[a] == "seed" else dtype)
    fixed_arr = {k: (jnp.asarray(v, jnp.int32) if roles[k] == "seed" else jnp.asarray(v, dtype))
                 for k, v in fixed.items() if v is not None}
    fixed_none = {k for k, v in fixed.items() if v is None}
    roles_t = tuple(sorted((k, r) for k, r in roles.items() if k not in fixed_none))
    # Parameters fixed to None (e.g. sharpening_limit=None) keep the model's static default.
    out = _sweep_jit(
        flat, fixed_arr, key, model_name=model, rule_name=rule, roles=roles_t,
        static_rule=tuple(sorted(static_rule.items())), steps=steps, window=window,
        record_last=record_last,
        threshold=None if divergence_threshold is None else float(divergence_threshold),
        unroll=unroll, chunk=chunk,
    )
    out = jax.device_get(out)
    shape = tuple(len(values[a]) for a in axes)
    summaries = {k: np.asarray(v)[:total].reshape(shape + np.asarray(v).shape[1:])
                 for k, v in out.items()}
    config = {
        "kind": "sweep",
        "model": model,
        "rule": rule,
        "fixed": {k: (v if isinstance(v, (str, type(None), bool)) else float(v)) for k, v in fixed.items()},
        "static": dict(static_rule),
        "steps": steps,
        "window": window,
        "record_last": record_last,
        "divergence_threshold": divergence_threshold,
        "dtype": str(dtype),
        "sharpness": "map variable (model.sharpness)",
    }
    return SweepResult(axes, values, summaries, config)


# ----------------------------------------------------------------------------------------------
# Figures.
# ----------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_phase_diagram(
    result: SweepResult,
    quantity: str = "mean_normalized_sharpness",
    *,
    x: str | None = None,
    y: str | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Phase diagram: a summary over a 2-D grid (or a curve over a 1-D grid), divergence marked.

    Args:
      result: a :class:`SweepResult` with one or two axes (other axes must have length 1).
      quantity: the summary to colour by (default ``mean_normalized_sharpness``, ⟨ηλ⟩).
      x, y: the axes on the horizontal/vertical direction (default: the first two).
      path: if given, the figure is saved there.
      title: the figure's title.

    Returns:
      The matplotlib ``Figure``. Diverged runs are drawn in grey (2-D) or as crosses (1-D).

    Raises:
      ValueError: an unknown quantity or axis, or more than two axes of length > 1.
    """
    plt = _pyplot()
    data = result[quantity]
    live = [a for a in result.axes if len(result.values[a]) > 1]
    x = x or (live[0] if live else result.axes[0])
    if x not in result.axes or (y is not None and y not in result.axes):
        raise ValueError(f"x and y must be grid axes {list(result.axes)}, got x={x!r}, y={y!r}.")
    others = [a for a in live if a not in (x, y)]
    if y is None and others:
        y = others.pop(0)
    if others:
        raise ValueError(
            f"the phase diagram shows two axes, but {others} also vary; sweep them separately."
        )
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    order = [result.axes.index(a) for a in ([x] if y is None else [y, x])]
    rest = [i for i in range(len(result.axes)) if i not in order]
    arr = np.transpose(data, order + rest).reshape([data.shape[i] for i in order])
    div = np.transpose(result.diverged, order + rest).reshape(arr.shape)
    if y is None:
        xs = result.values[x]
        ax.plot(xs, np.where(div, np.nan, arr), "-o", ms=3)
        if div.any():
            ax.plot(xs[div], np.zeros(div.sum()), "x", color="grey", label="diverged")
            ax.legend()
        ax.set_xlabel(x)
        ax.set_ylabel(quantity)
    else:
        xs, ys = result.values[x], result.values[y]
        mesh = ax.pcolormesh(xs, ys, np.ma.masked_where(div | ~np.isfinite(arr), arr),
                             shading="nearest", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label=quantity)
        if div.any():
            ax.pcolormesh(xs, ys, np.ma.masked_where(~div, np.ones_like(arr)), shading="nearest",
                          cmap="Greys", vmin=0, vmax=2, alpha=0.6)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    ax.set_title(title or f"{result.config.get('model')} / {result.config.get('rule')}"
                 "\n(grey or x: diverged)", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_bifurcation(
    result: SweepResult,
    param: str | None = None,
    *,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Bifurcation diagram: the late values of η_tλ_t of each run against a 1-D parameter.

    Args:
      result: a :class:`SweepResult` with one axis of length > 1 (others of length 1).
      param: that axis (default: the only varying one).
      path: if given, the figure is saved there.
      title: the figure's title.

    Returns:
      The matplotlib ``Figure`` (a dot per recorded step; ηλ = 2 dashed).

    Raises:
      ValueError: no recorded values (``record_last=0``), or not exactly one varying axis.
    """
    plt = _pyplot()
    late = result["late_normalized_sharpness"]
    if late.shape[-1] == 0:
        raise ValueError("the sweep recorded no late values; rerun it with record_last > 0.")
    live = [a for a in result.axes if len(result.values[a]) > 1]
    param = param or (live[0] if len(live) == 1 else None)
    if param is None or param not in result.axes or [a for a in live if a != param]:
        raise ValueError(
            f"a bifurcation diagram needs exactly one varying axis, got {live}; pass param= "
            "and sweep the others separately."
        )
    i = result.axes.index(param)
    pts = np.moveaxis(late, i, 0).reshape(len(result.values[param]), -1)
    xs = np.repeat(result.values[param][:, None], pts.shape[1], axis=1)
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    ax.plot(xs.ravel(), pts.ravel(), ",", color="k", alpha=0.6)
    ax.plot(xs.ravel(), pts.ravel(), ".", color="k", ms=1, alpha=0.3)
    ax.axhline(2.0, ls="--", color="tab:red", lw=0.8, label="ηλ = 2")
    ax.set_xlabel(param)
    ax.set_ylabel("late η·λ")
    ax.legend(loc="best")
    ax.set_title(title or f"{result.config.get('model')} / {result.config.get('rule')}: "
                 "bifurcation diagram")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
