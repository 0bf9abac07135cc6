"""Run configs of the training loop: ONE schema (types, defaults, meaning, valid range, aliases)
behind validation, ``eosmodel train --show-config`` and docs/config.md.

A run config is a dict of six tables (TOML or JSON on disk): ``[data] [model] [loss] [tuner]
[train] [sharpness]``. :data:`SCHEMA` lists every key of every table but ``[tuner]`` (whose keys
are the hyperparameters of the tuner's factory in ``eosmodel.tuners``; :func:`describe_config`
lists them too). :func:`normalize_config` fills every default and validates every value against
the schema (a ``ValueError`` whose one sentence names the key, the valid range and the fix); the
normalized config is what a run directory stores in ``config.json``. :func:`load_config` reads a
file and applies overrides ``"train.steps=200"`` (values parsed as TOML literals, bare words as
strings).

Typing rules (the same for every key, the tuner's hyperparameters included): a boolean is not a
number (``tuner.stepsize = true`` is refused); a string is never a number (``"0.1"`` is refused:
write the number without quotes); an integer key takes an integer (a float with an integral value,
``2.0``, is accepted as 2; ``1.7`` is refused, never floored). A key that the chosen dataset or
model ignores (``data.num_classes`` with MNIST-1D, ``model.width`` with a CNN) is refused unless it
holds its default, and is not recorded in the normalized config. Common names from the literature
are accepted as aliases and stored under the canonical name (``tuner.name = "gd"`` is "constant",
``data.name = "cifar10-5k"`` is cifar10 with ``n_train = 5000``, ``sharpness.eig_freq`` is
``sharpness.every``); see :data:`SCHEMA` and :data:`TUNER_ALIASES`.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from eosmodel.errors import InputError, describe_cause
from eosmodel.train._data import DATA_DEFAULTS, DATASETS
from eosmodel.train._losses import LOSSES
from eosmodel.train._models import _INITS, MODEL_DEFAULTS, MODELS
from eosmodel.tuners import PRESET_ARGUMENTS, PRESETS, TUNERS, tuner_config

__all__ = [
    "DEFAULTS",
    "SCHEMA",
    "TUNER_ALIASES",
    "Key",
    "config_mismatch",
    "describe_config",
    "load_config",
    "load_factory",
    "normalize_config",
    "parse_override",
    "resolve_tuner",
]


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: its type, default, meaning, valid range, aliases and when it applies.

    Attributes:
      table, name: ``table.name`` in the config.
      kind: "int", "float", "bool", "str", "choice", "shape" (list of ints >= 1) or "table" (a
        table of keyword arguments).
      default: the default value.
      meaning: one line saying what the key does.
      lo, hi: the valid range of a number (``lo <= x <= hi`` for ints; for floats ``lo < x < hi``
        when ``open`` else ``lo <= x <= hi``).
      choices: the values of a "choice" key.
      aliases: other names of the key accepted in a config (stored under ``name``).
      value_aliases: other names of a "choice" value, ``{alias: value}``, or
        ``{alias: (value, {other_key: value})}`` when the alias also sets other keys.
      when: (description, predicate of the table) saying when the key applies; a key that does
        not apply must hold its default and is not recorded.
    """

    table: str
    name: str
    kind: str
    default: Any
    meaning: str
    lo: float | None = None
    hi: float | None = None
    open: bool = False
    choices: tuple = ()
    aliases: tuple[str, ...] = ()
    value_aliases: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    when: tuple[str, Callable[[Mapping[str, Any]], bool]] | None = None

    @property
    def path(self) -> str:
        return f"{self.table}.{self.name}"

    def valid(self) -> str:
        """The valid range in words."""
        if self.kind == "int":
            return f"integer >= {int(self.lo)}" if self.hi is None else f"integer in [{int(self.lo)}, {int(self.hi)}]"
        if self.kind == "float":
            if self.hi is None or math.isinf(self.hi):
                return f"number > {self.lo:g}" if self.open else f"number >= {self.lo:g}"
            lo, hi = ("(" if self.open else "["), (")" if self.open else "]")
            return f"number in {lo}{self.lo:g}, {self.hi:g}{hi}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "shape":
            return "list of integers >= 1"
        if self.kind == "table":
            return "table of keyword arguments"
        return "string"


def _not_factory(table: Mapping[str, Any]) -> bool:
    return not table.get("factory")


def _has_factory(table: Mapping[str, Any]) -> bool:
    return bool(table.get("factory"))


def _data_is(*names: str):
    return lambda t: not t.get("factory") and t.get("name") in names


def _fc_model(t: Mapping[str, Any]) -> bool:
    return not t.get("factory") and str(t.get("name", "")).startswith("fc-")


_BUILTIN_DATA = ("without data.factory", _not_factory)
_BUILTIN_MODEL = ("without model.factory", _not_factory)

#: Every key of the run config but the tuner's hyperparameters (see :data:`TUNER_ALIASES`).
SCHEMA: tuple[Key, ...] = (
    # [data]
    Key("data", "name", "choice", DATA_DEFAULTS["name"], "the dataset (CIFAR-10 from a local copy, see data.path)",
        choices=DATASETS, when=_BUILTIN_DATA,
        value_aliases={"mnist-1d": "mnist1d", "cifar-10": "cifar10", "cifar": "cifar10",
                       "cifar10-1k": ("cifar10", {"n_train": 1000}), "cifar10-5k": ("cifar10", {"n_train": 5000}),
                       "cifar10-10k": ("cifar10", {"n_train": 10000})}),
    Key("data", "factory", "str", "", 'your own data: "package.module:function" returning an eosmodel.train.Dataset '
        "or a dict with x_train, y_train, x_test, y_test (labels 0..C-1); called as function(**data.args)"),
    Key("data", "args", "table", {}, "keyword arguments of data.factory (recorded in config.json)",
        when=("with data.factory", _has_factory)),
    Key("data", "n_train", "int", DATA_DEFAULTS["n_train"], "training examples kept (the first ones; 0 = all)", lo=0,
        aliases=("train_size",)),
    Key("data", "n_test", "int", DATA_DEFAULTS["n_test"], "test examples kept (0 = all)", lo=0, aliases=("test_size",)),
    Key("data", "balanced", "bool", DATA_DEFAULTS["balanced"], "class-balanced subsets instead of the first examples",
        when=_BUILTIN_DATA),
    Key("data", "path", "str", DATA_DEFAULTS["path"],
        "local CIFAR-10 folder or .tar.gz (empty: $EOSMODEL_CIFAR10); nothing is downloaded",
        when=('with data.name = "cifar10"', _data_is("cifar10"))),
    Key("data", "seed", "int", DATA_DEFAULTS["seed"], "seed of the synthetic data", lo=0,
        when=('with data.name = "synthetic"', _data_is("synthetic"))),
    Key("data", "num_classes", "int", DATA_DEFAULTS["num_classes"], "classes of the synthetic data", lo=2,
        when=('with data.name = "synthetic"', _data_is("synthetic"))),
    Key("data", "input_shape", "shape", DATA_DEFAULTS["input_shape"], "input shape of the synthetic data",
        when=('with data.name = "synthetic"', _data_is("synthetic"))),
    # [model]
    Key("model", "name", "choice", MODEL_DEFAULTS["name"], "the network (fc: MLP; cnn; VGG11 with or without BatchNorm; ResNet)",
        choices=MODELS, when=_BUILTIN_MODEL, value_aliases={"vgg11_bn": "vgg11-bn", "resnet-18": "resnet18", "resnet-34": "resnet34"}),
    Key("model", "factory", "str", "", 'your own model: "package.module:function" returning a flax.linen.Module '
        "called as module(x, train=bool); called as function(num_classes=C, **model.args)"),
    Key("model", "args", "table", {}, "keyword arguments of model.factory (recorded in config.json)",
        when=("with model.factory", _has_factory)),
    Key("model", "width", "int", MODEL_DEFAULTS["width"], "hidden width of the fc-* MLPs", lo=1,
        when=("with an fc-* model", _fc_model)),
    Key("model", "depth", "int", MODEL_DEFAULTS["depth"], "hidden layers of the fc-* MLPs", lo=1,
        when=("with an fc-* model", _fc_model)),
    Key("model", "width_multiplier", "float", MODEL_DEFAULTS["width_multiplier"],
        "scales every hidden width and channel count", lo=0.0, hi=math.inf, open=True, when=_BUILTIN_MODEL),
    Key("model", "init", "choice", MODEL_DEFAULTS["init"],
        'initialisation: "torch" (the PyTorch default, to match PyTorch runs such as Cohen et al.) or "flax" (LeCun normal)',
        choices=_INITS, when=_BUILTIN_MODEL, value_aliases={"pytorch": "torch", "lecun": "flax"}),
    Key("model", "init_from", "str", "", "start from the parameters in this .npz file (keys = parameter paths such as "
        "Dense_0/kernel, shapes checked; write one with eosmodel.train.save_params)"),
    # [loss]
    Key("loss", "name", "choice", "mse", "mse: mean of 1/2 sum_c (f_c(x) - onehot(y)_c)^2; cross_entropy: mean softmax CE",
        choices=LOSSES, value_aliases={"ce": "cross_entropy", "cross-entropy": "cross_entropy", "xent": "cross_entropy",
                                       "square": "mse", "l2": "mse"}),
    # [train]
    Key("train", "steps", "int", 1000, "steps to run (a resumed run may raise it)", lo=1, aliases=("num_steps", "max_steps")),
    Key("train", "batch_size", "int", 0, "examples per step (0 = full batch)", lo=0),
    Key("train", "chunk_size", "int", 1000, "physical batch: examples per accumulated gradient/HVP chunk (memory bound)",
        lo=1, aliases=("physical_batch_size",)),
    Key("train", "seed", "int", 0, "seed of the initialisation, data order and sharpness start vectors", lo=0),
    Key("train", "log_every", "int", 10, "host sync cadence: non-finite check, progress bar, trace flush", lo=1),
    Key("train", "eval_every", "int", 100, "held-out loss and accuracy every this many steps (0 = never)", lo=0),
    Key("train", "checkpoint_every", "int", 200, "checkpoint every this many steps (0 = only at the end)", lo=0),
    Key("train", "devices", "int", 0, "data-parallel over this many local devices (0 = all)", lo=0),
    # [sharpness]
    Key("sharpness", "every", "int", 10, "estimate the top Hessian eigenvalues every this many steps (0 = never)", lo=0,
        aliases=("eig_freq", "freq")),
    Key("sharpness", "k", "int", 1, "top eigenvalues tracked (columns sharpness, sharpness_2, ...)", lo=1, aliases=("neigs",)),
    Key("sharpness", "tol", "float", 1e-3, "relative accuracy of each estimate", lo=0.0, hi=1.0, open=True),
    Key("sharpness", "subset", "int", 0, "measure on the first this many training examples (0 = all)", lo=0,
        aliases=("abridged_size",)),
    Key("sharpness", "max_iters", "int", 40, "Lanczos basis size: HVP cap per estimate (memory = max_iters x params); >= k",
        lo=1),
    Key("sharpness", "grad_curvature", "bool", False, "also record g'Hg/|g|^2 at each estimate (one more HVP)"),
)

#: The tables of a run config, in order.
TABLES = ("data", "model", "loss", "tuner", "train", "sharpness")
_KEYS: dict[str, dict[str, Key]] = {t: {k.name: k for k in SCHEMA if k.table == t} for t in TABLES}

#: Defaults of every table (the tuner table's defaults come from ``eosmodel.tuners``).
DEFAULTS: dict[str, dict[str, Any]] = {
    t: ({"name": "constant", "stepsize": 0.05} if t == "tuner" else {k.name: copy.deepcopy(k.default) for k in _KEYS[t].values()})
    for t in TABLES
}

#: Names of tuners in the literature, accepted as ``tuner.name`` and stored as eosmodel's name.
TUNER_ALIASES: dict[str, str] = {
    "gd": "constant", "sgd": "constant", "fixed": "constant",
    "sps": "polyak", "sps_max": "polyak", "sps-max": "polyak", "polyak-sps": "polyak",
    "linesearch": "armijo", "line-search": "armijo", "sls": "armijo", "armijo-ls": "armijo",
    "curvature-aware": "cdat",
}

#: Names of a tuner hyperparameter in the literature: ``{tuner: {alias: hyperparameter}}``.
TUNER_KEY_ALIASES: dict[str, dict[str, str]] = {
    "constant": {"lr": "stepsize", "learning_rate": "stepsize", "eta": "stepsize"},
}

#: What each tuner hyperparameter means (for --show-config and the docs).
TUNER_MEANINGS: dict[str, str] = {
    "stepsize": "the fixed stepsize eta",
    "c": "Armijo's sufficient-decrease constant, or Polyak's c in (f - f*) / (c |g|^2)",
    "decrease_factor": "backtracking factor beta in (0, 1)",
    "increase_factor": "initial guess gamma * eta_{t-1} (gamma >= 1)",
    "max_stepsize": "cap on the stepsize (eta_max, gamma_max)",
    "max_trials": "backtracking trials per step",
    "on_failure": "what to do when no trial passes",
    "init_rule": "initial guess of each line search",
    "f_star": "lower bound f* of the loss",
    "smooth_cap": "smoothed cap tau of the stochastic SPS variant (none: off)",
    "eps": "added to the denominator",
    "sigma": "the sigma of eta = sigma |g|^2 / g'Hg (1 greedy, 2 on the edge)",
    "ema": "exponential moving average of numerator and denominator (none: off)",
}


def _fail(key: str, value: Any, need: str, fix: str) -> None:
    raise ValueError(f"{key} must be {need}, got {value!r}; {fix}.")


def _number_kind(key: str, value: Any, need: str, fix: str) -> None:
    """Refuse booleans and strings where a number is needed, with the reason."""
    if isinstance(value, bool):
        _fail(key, value, need, f"a boolean is not a number: {fix}")
    if isinstance(value, str):
        _fail(key, value, need, f"write the number without quotes ({fix})")


def _integral(value: Any) -> Any:
    """A float with an integral value (2.0) as the int 2; anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def check_int(key: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int >= lo (<= hi); integral floats (2.0) are accepted, 1.7 and booleans are not."""
    fix = f"set e.g. {key}={max(int(lo), 1)}"
    need = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    _number_kind(key, value, need, fix)
    value = _integral(value)
    if not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        _fail(key, value, need, fix)
    return int(value)


def check_float(key: str, value: Any, lo: float, hi: float, *, open: bool = True) -> float:
    """``value`` as a finite float in (lo, hi) (``open``) or [lo, hi]; booleans and strings refused."""
    need = f"a number in ({lo:g}, {hi:g})" if open else f"a number in [{lo:g}, {hi:g}]"
    if math.isinf(hi):
        need = f"a number > {lo:g}" if open else f"a number >= {lo:g}"
    fix = f"set e.g. {key}={0.001 if hi <= 1 else 1.0}"
    _number_kind(key, value, need, fix)
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (lo < value < hi if open else lo <= value <= hi)
    if not ok:
        _fail(key, value, need, fix)
    return float(value)


def _check_value(spec: Key, value: Any) -> Any:
    key = spec.path
    if spec.kind == "int":
        return check_int(key, value, int(spec.lo), None if spec.hi is None else int(spec.hi))
    if spec.kind == "float":
        return check_float(key, value, spec.lo, math.inf if spec.hi is None else spec.hi, open=spec.open)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            _fail(key, value, "true or false", f"set {key}={str(spec.default).lower()} (without quotes)")
        return value
    if spec.kind == "str":
        if not isinstance(value, str):
            _fail(key, value, "a string", f'set {key}="..." (in quotes)')
        return value
    if spec.kind == "choice":
        if value not in spec.choices:
            hint = f" (aliases: {', '.join(spec.value_aliases)})" if spec.value_aliases else ""
            _fail(key, value, f"one of {list(spec.choices)}{hint}", f"e.g. {key}={spec.default!r}")
        return value
    if spec.kind == "shape":
        if (not isinstance(value, (list, tuple)) or not value
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            _fail(key, value, "a list of integers >= 1", f"e.g. {key}=[16]")
        return [int(v) for v in value]
    if spec.kind == "table":
        if not isinstance(value, Mapping):
            _fail(key, value, "a table of keyword arguments", f"e.g. [{spec.table}.args] or {key}={{}}")
        try:
            return json.loads(json.dumps(dict(value), allow_nan=False))
        except (TypeError, ValueError):
            _fail(key, value, "a table of JSON values (numbers, strings, booleans, lists, tables)", "simplify it")
    raise AssertionError(spec.kind)  # a schema entry of an unknown kind is a bug


def load_factory(spec: str, key: str) -> Callable[..., Any]:
    """Import the function named ``"package.module:function"`` (for ``model.factory``/``data.factory``).

    Raises:
      ValueError: the text is not of that form, the module cannot be imported, or it has no such
        callable (one sentence naming the key and the fix).
    """
    if not isinstance(spec, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
        _fail(key, spec, 'of the form "package.module:function"', f'e.g. {key}="mypackage.models:make_model"')
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not module_name.startswith(err.name):
            raise  # the module exists but fails to import one of its own imports: its bug, shown whole
        raise ValueError(
            f"{key} = {spec!r}: module {module_name!r} cannot be imported (no module {err.name!r}); install it or add "
            "its folder to PYTHONPATH."
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{key} = {spec!r}: module {module_name!r} has no attribute {attr!r}; check the name after ':'.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{key} = {spec!r} names {type(obj).__name__} {attr!r}, not a function; name a function.")
    return obj


def _apply_key_aliases(table: str, given: dict[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in given.items():
        canon = aliases.get(key, key)
        if canon in out or (canon != key and canon in given):
            raise ValueError(f"{table}.{key} and {table}.{canon} name the same key; keep only {table}.{canon}.")
        out[canon] = value
    return out


def _normalize_table(table: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one table against :data:`SCHEMA`: aliases resolved, defaults filled, keys that do not apply dropped."""
    specs = _KEYS[table]
    key_aliases = {a: spec.name for spec in specs.values() for a in spec.aliases}
    given = _apply_key_aliases(table, dict(given), key_aliases)
    for key in given:
        if key not in specs:
            raise ValueError(f"{table}.{key} is not a key of [{table}]; valid keys: {', '.join(specs)} "
                             "(eosmodel train --show-config lists them).")
    # Value aliases that set other keys (data.name = "cifar10-5k").
    for spec in specs.values():
        value = given.get(spec.name)
        if isinstance(value, str) and value in spec.value_aliases:
            target = spec.value_aliases[value]
            canon, implied = (target if isinstance(target, tuple) else (target, {}))
            for other, v in implied.items():
                if other in given and given[other] != v:
                    raise ValueError(
                        f"{spec.path} = {value!r} means {spec.path} = {canon!r} with {table}.{other} = {v!r}, but "
                        f"{table}.{other} = {given[other]!r} is given; drop one of them."
                    )
                given[other] = v
            given[spec.name] = canon
    full = {name: copy.deepcopy(spec.default) for name, spec in specs.items()}
    full.update(given)
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec.when is not None and not spec.when[1](full):
            if name in given and given[name] != spec.default:
                raise ValueError(
                    f"{spec.path} = {given[name]!r} has no effect here: it applies only {spec.when[0]}; remove it."
                )
            continue
        out[name] = _check_value(spec, full[name])
    return out


def _check_tuner_types(table: Mapping[str, Any]) -> dict[str, Any]:
    """The tuner table with its hyperparameters typed like the factory's annotations.

    The same typing rules as every other key: no booleans or strings for numbers, integers for
    integer hyperparameters (2.0 becomes 2, 1.7 is refused). Ranges are checked by the tuner.
    """
    table = dict(table)
    name = table.get("name")
    if name is None and table.get("preset") in PRESETS:
        name = PRESETS[table["preset"]]["name"]
    if name not in TUNERS:
        return table
    params = inspect.signature(TUNERS[name]).parameters
    for key, value in table.items():
        if key not in params:
            continue
        ann = str(params[key].annotation).replace(" ", "").split("|")
        path = f"tuner.{key}"
        default = params[key].default
        example = default if default is not inspect.Parameter.empty and default is not None else 0.1
        if value is None and "None" in ann:
            continue
        if "int" in ann:
            _number_kind(path, value, "an integer", f"e.g. {path}={example}")
            value = table[key] = _integral(value)
            if not isinstance(value, int):
                _fail(path, value, "an integer", f"e.g. {path}={example}")
        elif "float" in ann:
            _number_kind(path, value, "a number", f"e.g. {path}={example}")
            if not isinstance(value, (int, float)):
                _fail(path, value, "a number", f"e.g. {path}={example}")
        elif "str" in ann and not isinstance(value, str):
            _fail(path, value, "a string", f'e.g. {path}="{example}"')
    return table


def _tuner_aliases(table: Mapping[str, Any]) -> dict[str, Any]:
    table = dict(table)
    name = table.get("name")
    if isinstance(name, str) and name.lower() in TUNER_ALIASES and name not in TUNERS:
        table["name"] = name = TUNER_ALIASES[name.lower()]
    if name in TUNER_KEY_ALIASES:
        table = _apply_key_aliases("tuner", table, TUNER_KEY_ALIASES[name])
    return table


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
        raise ValueError(f"config must be a mapping of tables {list(TABLES)}, got {type(config).__name__}; pass a dict.")
    for table in config:
        if table not in DEFAULTS:
            raise ValueError(f"config table [{table}] is unknown; use only {', '.join(TABLES)}.")
        if not isinstance(config[table], Mapping):
            raise ValueError(f"config [{table}] must be a table of key = value pairs, got {config[table]!r}.")
    out: dict[str, Any] = {}
    for table in TABLES:
        given = dict(copy.deepcopy(config.get(table, {})))
        if table == "tuner":
            if "name" not in given and "preset" not in given:
                given = {**DEFAULTS["tuner"], **given}  # the default tuner, with the keys given
            out[table] = _tuner_aliases(given)
        else:
            out[table] = _normalize_table(table, given)

    data, model, train, sharp = out["data"], out["model"], out["train"], out["sharpness"]
    for table in (data, model):
        if table.get("factory"):
            load_factory(table["factory"], f"{'data' if table is data else 'model'}.factory")
    if data["n_train"] and train["batch_size"] > data["n_train"]:
        _fail("train.batch_size", train["batch_size"], f"<= data.n_train = {data['n_train']}", "lower it or use 0 (full batch)")
    if sharp["max_iters"] < sharp["k"]:
        _fail("sharpness.max_iters", sharp["max_iters"], f">= sharpness.k = {sharp['k']}", "raise it")
    if data["n_train"] and sharp["subset"] > data["n_train"]:
        _fail("sharpness.subset", sharp["subset"], f"<= data.n_train = {data['n_train']}", "lower it or use 0 (all)")

    out["tuner"] = _check_tuner_types(out["tuner"])
    n = data["n_train"] or None
    b = (train["batch_size"] or n) if n else None
    out["tuner"] = resolve_tuner(out["tuner"], n=n, batch_size=b)
    json.dumps(out)  # JSON-serialisable by construction
    return out


def _comparable(config: Mapping[str, Any]) -> dict:
    """A config without the keys a resumed run may change (the number of steps)."""
    out = json.loads(json.dumps(config))
    out.get("train", {}).pop("steps", None)
    for table in ("data", "model"):
        section = out.get(table)
        if isinstance(section, dict):
            for spec in _KEYS[table].values():
                if spec.when is not None and not spec.when[1](section) and section.get(spec.name) == spec.default:
                    section.pop(spec.name, None)
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
            f"override {text!r} must name table.key with a table among {', '.join(TABLES)}; "
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


def _fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "(none)"
    return json.dumps(value)


def _tuner_rows() -> list[tuple[str, str, str, str]]:
    rows = [
        ("tuner.name", '"constant"', "one of " + ", ".join(TUNERS) + " (aliases: " + ", ".join(
            f"{a} = {t}" for a, t in TUNER_ALIASES.items()) + ")", "the stepsize tuner (eosmodel.tuners)"),
        ("tuner.preset", "(none)", "one of " + ", ".join(PRESETS), "named settings, instead of or with tuner.name "
         "(other keys override the preset's)"),
    ]
    for name, factory in TUNERS.items():
        for key, param in inspect.signature(factory).parameters.items():
            default = "(required)" if param.default is inspect.Parameter.empty else _fmt_value(param.default)
            if name == "constant" and key == "stepsize":
                default = _fmt_value(DEFAULTS["tuner"]["stepsize"])
            ann = str(param.annotation).replace("'", "")
            alias = [a for a, k in TUNER_KEY_ALIASES.get(name, {}).items() if k == key]
            valid = ann + (f" (aliases: {', '.join(alias)})" if alias else "")
            rows.append((f"tuner.{key}", default, valid, f"({name}) {TUNER_MEANINGS.get(key, key)}"))
    return rows


def describe_config(config: Mapping[str, Any] | None = None, *, markdown: bool = False) -> str:
    """Every key of a run config with its default, valid range and meaning (from :data:`SCHEMA`).

    Args:
      config: a run config; when given, its normalized value is shown next to each key ("-" for
        a key that does not apply to it).
      markdown: a Markdown table per config table (docs/config.md) instead of plain text.

    Returns:
      The text (``eosmodel train --show-config [CONFIG]`` prints it).
    """
    normalized = normalize_config(config) if config is not None else None
    lines: list[str] = []
    for table in TABLES:
        if table == "tuner":
            rows = _tuner_rows()
        else:
            rows = []
            for spec in _KEYS[table].values():
                valid = spec.valid()
                if spec.value_aliases:
                    valid += " (aliases: " + ", ".join(
                        f"{a} = {v[0] + ' with ' + ', '.join(f'{k} = {x}' for k, x in v[1].items()) if isinstance(v, tuple) else v}"
                        for a, v in spec.value_aliases.items()
                    ) + ")"
                meaning = spec.meaning
                if spec.when is not None:
                    meaning += f"; applies only {spec.when[0]}"
                if spec.aliases:
                    meaning += f" (also accepted as {', '.join(spec.table + '.' + a for a in spec.aliases)})"
                rows.append((spec.path, _fmt_value(spec.default), valid, meaning))
        if normalized is not None:
            section = normalized[table]
            rows = [(k, _fmt_value(section[k.split(".", 1)[1]]) if k.split(".", 1)[1] in section else "-", d, v, m)
                    for k, d, v, m in rows]
        if markdown:
            lines.append(f"\n## [{table}]\n")
            head = ("key", "value", "default", "valid", "meaning") if normalized is not None else ("key", "default", "valid", "meaning")
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for row in rows:
                lines.append("| " + " | ".join(f"`{row[0]}`" if i == 0 else str(c).replace("|", "\\|") for i, c in enumerate(row)) + " |")
        else:
            lines.append(f"[{table}]")
            for row in rows:
                if normalized is not None:
                    key, value, default, valid, meaning = row
                    lines.append(f"  {key} = {value}   (default {default}; {valid})\n      {meaning}")
                else:
                    key, default, valid, meaning = row
                    lines.append(f"  {key} = {default}   ({valid})\n      {meaning}")
    return "\n".join(lines).lstrip("\n") + "\n"
