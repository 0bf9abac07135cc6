"""Named tuner settings, complete JSON configs, and building a tuner from a config.

The one place where a tuner config is resolved: :func:`tuner_config` fills the defaults (those of
the tuner's rule class in :data:`STEPSIZE_RULES`), applies presets and validates (by building the
rule); :func:`make_tuner` (optax transformations), :func:`eosmodel.toys.map_rule` (reduced-map
rules) and :func:`eosmodel.dynamics.sweep` all go through it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable

import jax
import optax

from eosmodel.tuners._armijo import ArmijoRule, armijo
from eosmodel.tuners._cdat import CDATRule, cdat
from eosmodel.tuners._constant import ConstantRule, constant
from eosmodel.tuners._oracle import OracleRule, oracle
from eosmodel.tuners._polyak import PolyakRule, polyak

#: Optax tuner factories by config name: the tuners a training run can use (they need only
#: ``value``, ``grad`` and ``value_fn`` at each step).
TUNERS: Mapping[str, Callable[..., optax.GradientTransformationExtraArgs]] = MappingProxyType(
    {"constant": constant, "armijo": armijo, "polyak": polyak, "cdat": cdat}
)

#: The stepsize rule of every tuner by config name (the oracle η = σ/λ included): the single
#: definition of each rule, and of its hyperparameters and their defaults (the class fields).
#: The optax factories and the reduced-map rules are adapters around them.
STEPSIZE_RULES: Mapping[str, type] = MappingProxyType(
    {"constant": ConstantRule, "oracle": OracleRule, "armijo": ArmijoRule, "polyak": PolyakRule, "cdat": CDATRule}
)

#: Every optax transformation by config name (``oracle`` needs ``sharpness=`` at every update).
_FACTORIES = {**TUNERS, "oracle": oracle}

#: Named settings: ``{preset: {"name": tuner, **hyperparameters}}`` (read-only; copy to edit).
#: "armijo-vaswani" also needs ``batch_size`` and ``n`` (its γ is 2^{b/n}), see ``PRESET_ARGUMENTS``.
PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # The JAX-era default of Roulet et al. (arXiv 2312.00209).
        "armijo-jax": MappingProxyType(
            {"name": "armijo", "c": 0.1, "decrease_factor": 0.8, "increase_factor": 1.5, "max_stepsize": 1.0}
        ),
        # Vaswani et al. (arXiv 1905.09997): γ = 2^{b/n} from batch_size b and data set size n.
        "armijo-vaswani": MappingProxyType(
            {"name": "armijo", "c": 0.1, "decrease_factor": 0.9, "max_stepsize": 10.0}
        ),
        # SPS_max (Loizou et al., arXiv 2002.10542) with the cap of the seed paper's figure 2.
        "sps-0.2": MappingProxyType({"name": "polyak", "c": 0.2, "f_star": 0.0, "max_stepsize": 1.0}),
        "sps-0.5": MappingProxyType({"name": "polyak", "c": 0.5, "f_star": 0.0, "max_stepsize": 1.0}),
        # CDAT (arXiv 2407.06183): on edge (σ = 2) and greedy (σ = 1).
        "cdat-edge": MappingProxyType({"name": "cdat", "sigma": 2.0}),
        "cdat-greedy": MappingProxyType({"name": "cdat", "sigma": 1.0}),
    }
)

#: Extra arguments a preset needs (recorded under ``"preset_args"`` in its config).
PRESET_ARGUMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType({"armijo-vaswani": ("batch_size", "n")})

_INT_HYPER = frozenset({"max_trials"})
_METADATA = ("preset", "preset_args")


def _derived(preset: str, args: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters computed from a preset's extra arguments."""
    if preset == "armijo-vaswani":
        b, n = args["batch_size"], args["n"]
        for key, v in (("batch_size", b), ("n", n)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {v!r}; pass the batch size and the data set size.")
        if b > n:
            raise ValueError(f"batch_size must be <= n, got batch_size={b}, n={n}; pass the data set size as n.")
        return {"increase_factor": 2.0 ** (b / n)}
    return {}


def _normalize(key: str, value: Any) -> Any:
    """A JSON-serialisable Python value (str, None, int for counts, float otherwise); a traced
    value is kept as it is (it is resolved inside ``jit``/``vmap``)."""
    if value is None or isinstance(value, (str, bool)) or isinstance(value, jax.core.Tracer):
        return value  # a bool or a string is left for the factory to reject
    if key in _INT_HYPER:
        return int(value) if not isinstance(value, bool) and int(value) == value else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # left for the factory to reject with a clear message


def tuner_config(name_or_preset: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The complete, normalized, JSON-serialisable config of a tuner (all defaults filled).

    The result is ``{"name": tuner, **every hyperparameter of its rule}``, plus ``"preset"`` (and
    ``"preset_args"``, e.g. ``{"batch_size": 128, "n": 50000}``) when built from a preset.
    ``make_tuner(tuner_config(...))`` rebuilds exactly the same tuner, and the config is what a
    trace stores under ``"tuner"``. The defaults and ranges are those of the tuner's rule class
    (:data:`STEPSIZE_RULES`; the optax factory of the same name has the same signature).

    Hyperparameters may be traced JAX values (a ``vmap``-ed sweep): they are kept as they are and
    not validated; the result is then not JSON-serialisable.

    Args:
      name_or_preset: a tuner name (``"constant"``, ``"oracle"``, ``"armijo"``, ``"polyak"``,
        ``"cdat"``), a preset (``PRESETS``), or a config mapping ``{"name": tuner, **hyper}`` /
        ``{"preset": preset, "preset_args": {...}, **overrides}`` (as stored in a trace; a
        ``"preset"`` next to a ``"name"`` is provenance and must describe that tuner).
      **overrides: hyperparameters replacing the preset's or the defaults; for a preset listed in
        ``PRESET_ARGUMENTS``, also its extra arguments (``batch_size=..., n=...``).

    Returns:
      The config dict.

    Raises:
      ValueError: unknown name/preset, a missing required hyperparameter or preset argument, or a
        hyperparameter out of range (checked by building the rule).
      TypeError: a hyperparameter the tuner does not have, or a config that is neither a string
        nor a mapping.

    Example:
      >>> tuner_config("sps-0.5")
      {'name': 'polyak', 'c': 0.5, 'f_star': 0.0, 'max_stepsize': 1.0, 'smooth_cap': None, 'eps': 0.0, 'preset': 'sps-0.5'}
      >>> tuner_config({"name": "oracle"})
      {'name': 'oracle', 'sigma': 2.0}
    """
    if isinstance(name_or_preset, Mapping):
        return _from_mapping(name_or_preset, overrides)
    overrides = dict(overrides)
    preset, preset_args = None, {}
    if isinstance(name_or_preset, str) and name_or_preset in PRESETS:
        preset = name_or_preset
        hyper = dict(PRESETS[preset])
        name = hyper.pop("name")
        for arg in PRESET_ARGUMENTS.get(preset, ()):
            if arg not in overrides:
                needed = ", ".join(f"{a}=..." for a in PRESET_ARGUMENTS[preset])
                raise ValueError(f"preset {preset!r} needs {arg}; pass {needed}.")
            preset_args[arg] = overrides.pop(arg)
        hyper.update(_derived(preset, preset_args))
        hyper.update(overrides)
    elif isinstance(name_or_preset, str) and name_or_preset in STEPSIZE_RULES:
        name, hyper = name_or_preset, overrides
    else:
        raise ValueError(
            f"name_or_preset must be a tuner name {sorted(STEPSIZE_RULES)} or a preset "
            f"{sorted(PRESETS)}, got {name_or_preset!r}."
        )
    signature = inspect.signature(STEPSIZE_RULES[name])
    for key in hyper:
        if key not in signature.parameters:
            raise TypeError(
                f"tuner {name!r} has no hyperparameter {key!r}; valid ones: {list(signature.parameters)}."
            )
    config: dict[str, Any] = {"name": name}
    for key, param in signature.parameters.items():
        if key in hyper:
            config[key] = _normalize(key, hyper[key])
        elif param.default is inspect.Parameter.empty:
            raise ValueError(f"tuner {name!r} needs the hyperparameter {key}; pass {key}=....")
        else:
            config[key] = _normalize(key, param.default)
    build_rule(config)  # validates the ranges (concrete values only)
    if preset is not None:
        config["preset"] = preset
    if preset_args:
        config["preset_args"] = dict(preset_args)  # validated integers (see _derived)
    return config


def _from_mapping(config: Mapping[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """:func:`tuner_config` of a ``{"name": ...}`` or ``{"preset": ...}`` mapping."""
    config = {**config, **overrides}
    if "name" in config:
        name = config.pop("name")
        preset = config.pop("preset", None)
        args = config.pop("preset_args", None)  # provenance only: the derived values are in config
        if preset is not None and (preset not in PRESETS or PRESETS[preset]["name"] != name):
            raise ValueError(f"preset {preset!r} does not describe tuner {name!r}; drop 'preset' or fix 'name'.")
        if name not in STEPSIZE_RULES:
            raise ValueError(f"name must be one of {sorted(STEPSIZE_RULES)}, got {name!r}.")
        full = tuner_config(name, **config)
        if preset is not None:
            full["preset"] = preset
            if args:
                full["preset_args"] = dict(args)
        return full
    if "preset" in config:
        preset = config.pop("preset")
        args = dict(config.pop("preset_args", None) or {})
        return tuner_config(preset, **args, **config)
    raise ValueError("config needs a 'name' (a tuner) or a 'preset' key, e.g. {'preset': 'armijo-jax'}.")


def _hyper(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("name", *_METADATA)}


def build_rule(config: Mapping[str, Any]) -> Any:
    """The stepsize rule (a :data:`STEPSIZE_RULES` instance) of a complete config's hyperparameters.

    Args:
      config: ``{"name": tuner, **hyper}`` as returned by :func:`tuner_config` (values may be
        traced; concrete ones are validated).

    Returns:
      The rule object, e.g. ``ArmijoRule(c=0.1, ...)``.

    Example:
      >>> build_rule(tuner_config("cdat-greedy"))
      CDATRule(sigma=1.0, eps=0.0, ema=None)
    """
    return STEPSIZE_RULES[config["name"]](**_hyper(config))


def make_tuner(config: Mapping[str, Any]) -> optax.GradientTransformationExtraArgs:
    """Build a tuner from ``{"name": tuner, **hyper}`` or ``{"preset": preset, **overrides}``.

    A complete config from :func:`tuner_config` (with ``"name"``, and possibly ``"preset"`` and
    ``"preset_args"`` as provenance) rebuilds the same tuner; a ``{"preset": ...}`` config is
    first completed by :func:`tuner_config` (its ``"preset_args"`` and other keys become
    arguments).

    Args:
      config: the mapping described above.

    Returns:
      The ``optax.GradientTransformationExtraArgs`` of the tuner.

    Raises:
      ValueError: neither ``"name"`` nor ``"preset"`` given, an unknown one, a ``"preset"`` that
        does not belong to ``"name"``, or invalid hyperparameters (see :func:`tuner_config`).
      TypeError: ``config`` is not a mapping, or holds a hyperparameter the tuner does not have.

    Example:
      >>> opt = make_tuner({"preset": "armijo-vaswani", "batch_size": 128, "n": 50000})
      >>> opt2 = make_tuner(tuner_config("armijo", c=0.1, decrease_factor=0.9, max_stepsize=10.0))
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping such as {{'name': 'armijo'}}, got {type(config).__name__}.")
    full = tuner_config(config)
    return _FACTORIES[full["name"]](**_hyper(full))
