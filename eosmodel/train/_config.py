"""Run configs of the training loop: defaults, validation, command-line overrides, loading.

A run config is a dict of six tables (TOML or JSON on disk)::

    [data]       name, n_train, n_test, balanced, path (+ seed, num_classes, input_shape: synthetic)
    [model]      name, width, depth, width_multiplier, init
    [loss]       name                      (mse | cross_entropy)
    [tuner]      name = "armijo", c = ...  (or preset = "sps-0.5"): eosmodel.tuners.tuner_config
    [train]      steps, batch_size, chunk_size, seed, log_every, eval_every, checkpoint_every, devices
    [sharpness]  every, k, tol, subset, max_iters, grad_curvature

:func:`normalize_config` fills every default and validates every value (a ``ValueError`` whose
one sentence names the key, the valid range and the fix); the normalized config is what a run
directory stores in ``config.json``. :func:`load_config` reads a file and applies overrides
``"train.steps=200"`` (values parsed as TOML literals, bare words as strings).
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eosmodel.errors import InputError, describe_cause
from eosmodel.train._data import DATA_DEFAULTS, DATASETS
from eosmodel.train._losses import LOSSES
from eosmodel.train._models import MODEL_DEFAULTS, MODELS
from eosmodel.tuners import PRESET_ARGUMENTS, PRESETS, TUNERS, tuner_config

__all__ = ["DEFAULTS", "config_mismatch", "load_config", "normalize_config", "parse_override", "resolve_tuner"]

#: Defaults of every table (the tuner table's defaults come from ``eosmodel.tuners``).
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": dict(DATA_DEFAULTS),
    "model": dict(MODEL_DEFAULTS),
    "loss": {"name": "mse"},
    "tuner": {"name": "constant", "stepsize": 0.05},
    "train": {
        "steps": 1000,
        "batch_size": 0,  # 0 = full batch
        "chunk_size": 1000,  # physical batch of accumulated gradients / HVPs
        "seed": 0,
        "log_every": 10,  # host sync cadence: non-finite check, progress bar, trace flush
        "eval_every": 100,  # held-out loss/accuracy; 0 = never
        "checkpoint_every": 200,  # 0 = never
        "devices": 0,  # data-parallel over this many local devices; 0 = all
    },
    "sharpness": {
        "every": 10,  # 0 = never
        "k": 1,
        "tol": 1e-3,
        "subset": 0,  # 0 = the whole training set, else its first `subset` examples
        "max_iters": 40,  # Lanczos basis size: HVP cap per estimate; memory = max_iters x params
        "grad_curvature": False,  # also record g'Hg/|g|^2 at each estimate (one more HVP)
    },
}

_TABLES = tuple(DEFAULTS)


def _fail(key: str, value: Any, need: str, fix: str) -> None:
    raise ValueError(f"{key} must be {need}, got {value!r}; {fix}.")


def _int(key: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        _fail(key, value, f"an integer >= {lo}", f"set e.g. {key}={max(lo, 1)}")
    return int(value)


def _real(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo < value < hi):
        _fail(key, value, f"a number in ({lo:g}, {hi:g})", f"set e.g. {key}=0.001")
    return float(value)


def resolve_tuner(tuner: Mapping[str, Any], *, n: int | None, batch_size: int | None) -> dict[str, Any]:
    """The complete tuner table (``eosmodel.tuners.tuner_config``), preset arguments filled in.

    A preset listed in ``eosmodel.tuners.PRESET_ARGUMENTS`` (e.g. ``armijo-vaswani``, whose
    γ = 2^{b/n}) gets ``n`` (training-set size) and ``batch_size`` (b; n in full batch) unless
    the table gives them under ``preset_args``.

    Args:
      tuner: the ``[tuner]`` table: ``{"name": ..., **hyper}`` or ``{"preset": ..., **overrides}``.
      n: the training-set size, or None when not yet known (preset arguments then stay unset).
      batch_size: the batch size b (n for full batch), or None when not yet known.

    Returns:
      The normalized table, as stored in ``config.json`` and a trace's config.

    Raises:
      ValueError: an unknown tuner or preset, or a hyperparameter the tuner lacks or rejects.
    """
    table = dict(tuner)
    name = table.pop("name", None)
    preset = table.pop("preset", None)
    args = dict(table.pop("preset_args", None) or {})
    if name is None and preset is None:
        raise ValueError(
            f"tuner needs name (one of {sorted(TUNERS)}) or preset (one of {sorted(PRESETS)}); "
            'add e.g. name = "constant" to the [tuner] table.'
        )
    try:
        if preset is not None:
            if name is not None and PRESETS.get(preset, {}).get("name") != name:
                raise ValueError(f"tuner.preset = {preset!r} does not describe tuner.name = {name!r}; drop one of them")
            known = {"n": n, "batch_size": batch_size}
            for arg in PRESET_ARGUMENTS.get(preset, ()):
                if arg not in args and known.get(arg) is not None:
                    args[arg] = int(known[arg])
            if name is not None:
                # A complete table (from tuner_config): the derived values are already in it.
                return tuner_config(name, **table) | {"preset": preset, **({"preset_args": args} if args else {})}
            missing = [a for a in PRESET_ARGUMENTS.get(preset, ()) if a not in args]
            if missing and (n is None or batch_size is None):
                return {"preset": preset, **table, **({"preset_args": args} if args else {})}
            return tuner_config(preset, **args, **table)
        return tuner_config(name, **table)
    except TypeError as err:
        raise ValueError(f"tuner: {err}") from None
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith("tuner") else f"tuner: {msg}") from None


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the defaults of every table and validate every value; returns a new dict.

    Args:
      config: a (possibly partial) run config: a mapping of table name to a mapping of keys.

    Returns:
      The complete config (JSON-serialisable), with the ``[tuner]`` table completed by
      ``eosmodel.tuners.tuner_config`` (preset arguments that need the data size are filled by
      ``run_training`` once the data are loaded).

    Raises:
      ValueError: an unknown table or key, or a value out of range; the one-sentence message
        names the key (``train.steps``), the valid range and how to fix it.

    Example:
      >>> cfg = normalize_config({"train": {"steps": 20}, "tuner": {"preset": "sps-0.5"}})
      >>> cfg["train"]["steps"], cfg["train"]["log_every"], cfg["tuner"]["c"]
      (20, 10, 0.5)
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping of tables {list(_TABLES)}, got {type(config).__name__}; pass a dict.")
    for table in config:
        if table not in DEFAULTS:
            raise ValueError(f"config table [{table}] is unknown; use only {', '.join(_TABLES)}.")
        if not isinstance(config[table], Mapping):
            raise ValueError(f"config [{table}] must be a table of key = value pairs, got {config[table]!r}.")
    out: dict[str, Any] = {}
    for table, defaults in DEFAULTS.items():
        given = dict(copy.deepcopy(config.get(table, {})))
        if table == "tuner":
            out[table] = given if given else dict(defaults)
            continue
        for key in given:
            if key not in defaults:
                raise ValueError(f"{table}.{key} is not a key of [{table}]; valid keys: {', '.join(defaults)}.")
        out[table] = {**copy.deepcopy(defaults), **given}

    data, model, train, sharp = out["data"], out["model"], out["train"], out["sharpness"]
    if data["name"] not in DATASETS:
        _fail("data.name", data["name"], f"one of {list(DATASETS)}", 'e.g. data.name="mnist1d"')
    _int("data.n_train", data["n_train"], 0)
    _int("data.n_test", data["n_test"], 0)
    if not isinstance(data["balanced"], bool):
        _fail("data.balanced", data["balanced"], "true or false", "set data.balanced=false")
    if not isinstance(data["path"], str):
        _fail("data.path", data["path"], "a string (a local CIFAR-10 folder, or empty)", 'set data.path=""')
    if model["name"] not in MODELS:
        _fail("model.name", model["name"], f"one of {list(MODELS)}", 'e.g. model.name="fc-tanh"')
    _int("model.width", model["width"], 1)
    _int("model.depth", model["depth"], 1)
    _real("model.width_multiplier", model["width_multiplier"], 0.0, math.inf)
    if out["loss"].get("name") not in LOSSES or set(out["loss"]) != {"name"}:
        _fail("loss.name", out["loss"].get("name"), f"one of {list(LOSSES)} (the only key of [loss])", 'e.g. loss.name="mse"')

    _int("train.steps", train["steps"], 1)
    _int("train.batch_size", train["batch_size"], 0)
    _int("train.chunk_size", train["chunk_size"], 1)
    _int("train.seed", train["seed"], 0)
    _int("train.log_every", train["log_every"], 1)
    _int("train.eval_every", train["eval_every"], 0)
    _int("train.checkpoint_every", train["checkpoint_every"], 0)
    _int("train.devices", train["devices"], 0)
    if data["n_train"] and train["batch_size"] > data["n_train"]:
        _fail("train.batch_size", train["batch_size"], f"<= data.n_train = {data['n_train']}", "lower it or use 0 (full batch)")

    _int("sharpness.every", sharp["every"], 0)
    _int("sharpness.k", sharp["k"], 1)
    _real("sharpness.tol", sharp["tol"], 0.0, 1.0)
    _int("sharpness.subset", sharp["subset"], 0)
    _int("sharpness.max_iters", sharp["max_iters"], sharp["k"])
    if not isinstance(sharp["grad_curvature"], bool):
        _fail("sharpness.grad_curvature", sharp["grad_curvature"], "true or false", "set sharpness.grad_curvature=false")
    if data["n_train"] and sharp["subset"] > data["n_train"]:
        _fail("sharpness.subset", sharp["subset"], f"<= data.n_train = {data['n_train']}", "lower it or use 0 (all)")

    n = data["n_train"] or None
    b = (train["batch_size"] or n) if n else None
    out["tuner"] = resolve_tuner(out["tuner"], n=n, batch_size=b)
    json.dumps(out)  # JSON-serialisable by construction
    return out


def _comparable(config: Mapping[str, Any]) -> dict:
    """A config without the keys a resumed run may change (the number of steps)."""
    out = json.loads(json.dumps(config))
    out.get("train", {}).pop("steps", None)
    return out


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')} ({a!r} in config.json vs {b!r} now)"


def config_mismatch(stored: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """Where ``config`` differs from a run's ``stored`` config in a way a resume cannot follow.

    Only ``train.steps`` may differ (a resumed run may be extended). Returns None when the two
    configs describe the same run, else the first differing key with both values, e.g.
    ``"model.name ('fc-tanh' in config.json vs 'fc-relu' now)"``.
    """
    a, b = _comparable(stored), _comparable(config)
    return None if a == b else _first_difference(a, b)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``"table.key=value"`` into ``(table, key, value)``; the value is a TOML literal.

    ``train.steps=200`` gives 200, ``tuner.c=0.2`` 0.2, ``data.balanced=true`` True,
    ``tuner.name=armijo`` (not a TOML literal) the string "armijo".

    Raises:
      ValueError: the text is not of the form ``table.key=value`` with a known table.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"override {text!r} must look like table.key=value; e.g. --set train.steps=200.")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2 or not all(parts) or parts[0] not in DEFAULTS:
        raise ValueError(
            f"override {text!r} must name table.key with a table among {', '.join(_TABLES)}; "
            "e.g. --set train.steps=200."
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts[0], parts[1], value


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``"table.key=value"`` overrides in order to a copy of ``config``.

    Setting ``tuner.name`` or ``tuner.preset`` to a new value starts a fresh ``[tuner]`` table
    (the old tuner's hyperparameters would not fit the new one); later overrides add to it.
    """
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in copy.deepcopy(dict(config)).items()}
    for text in overrides:
        table, key, value = parse_override(text)
        section = out.setdefault(table, {})
        if not isinstance(section, dict):
            raise ValueError(f"config [{table}] must be a table, got {section!r}.")
        if table == "tuner" and key in ("name", "preset") and section.get(key) != value:
            section = out[table] = {}
        section[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a TOML or JSON run config, apply overrides, fill defaults and validate.

    Args:
      path: a ``.toml`` or ``.json`` file, or None for the defaults.
      overrides: strings ``"table.key=value"`` applied in order (see :func:`apply_overrides`).

    Returns:
      The normalized config (see :func:`normalize_config`).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file does not parse, or a value is invalid (one sentence naming the key).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; pass the path of a .toml or .json file.")
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        try:
            text = path.read_bytes().decode("utf-8-sig")
            raw = json.loads(text) if kind == "JSON" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            fix = "save it as UTF-8 text" if isinstance(err, UnicodeDecodeError) else "fix its syntax"
            raise InputError(f"config file {path} does not parse as {kind} ({describe_cause(err)}); {fix}.") from None
        if not isinstance(raw, dict):
            raise InputError(
                f"config file {path} holds a JSON {type(raw).__name__} at its top level, not a table of "
                "[data] [model] [loss] [tuner] [train] [sharpness]; write an object of tables."
            )
    return normalize_config(apply_overrides(raw, overrides))
