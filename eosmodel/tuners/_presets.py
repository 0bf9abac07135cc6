"""Named tuner settings, complete JSON configs, and building a tuner from a config."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable

import optax

from eosmodel.tuners._armijo import armijo
from eosmodel.tuners._cdat import cdat
from eosmodel.tuners._constant import constant
from eosmodel.tuners._polyak import polyak

#: Tuner factories by config name.
TUNERS: Mapping[str, Callable[..., optax.GradientTransformationExtraArgs]] = MappingProxyType(
    {"constant": constant, "armijo": armijo, "polyak": polyak, "cdat": cdat}
)

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
    """A JSON-serialisable Python value (str, None, int for counts, float otherwise)."""
    if value is None or isinstance(value, str):
        return value
    if key in _INT_HYPER:
        return int(value) if not isinstance(value, bool) and int(value) == value else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # left for the factory to reject with a clear message


def tuner_config(name_or_preset: str, **overrides: Any) -> dict[str, Any]:
    """The complete, normalized, JSON-serialisable config of a tuner (all defaults filled).

    The result is ``{"name": tuner, **every hyperparameter of the factory}``, plus
    ``"preset"`` (and ``"preset_args"``, e.g. ``{"batch_size": 128, "n": 50000}``) when built from
    a preset. ``make_tuner(tuner_config(...))`` rebuilds exactly the same tuner, and the config is
    what a trace stores under ``"tuner"``.

    Args:
      name_or_preset: a tuner name (``"constant"``, ``"armijo"``, ``"polyak"``, ``"cdat"``) or a
        preset (``PRESETS``).
      **overrides: hyperparameters replacing the preset's or the defaults; for a preset listed in
        ``PRESET_ARGUMENTS``, also its extra arguments (``batch_size=..., n=...``).

    Returns:
      The config dict.

    Raises:
      ValueError: unknown name/preset, a missing required hyperparameter or preset argument, or a
        hyperparameter out of range (checked by building the tuner).
      TypeError: a hyperparameter the tuner does not have.

    Example:
      >>> tuner_config("sps-0.5")
      {'name': 'polyak', 'c': 0.5, 'f_star': 0.0, 'max_stepsize': 1.0, 'smooth_cap': None, 'eps': 0.0, 'preset': 'sps-0.5'}
    """
    overrides = dict(overrides)
    preset, preset_args = None, {}
    if name_or_preset in PRESETS:
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
    elif name_or_preset in TUNERS:
        name, hyper = name_or_preset, overrides
    else:
        raise ValueError(
            f"name_or_preset must be a tuner name {sorted(TUNERS)} or a preset {sorted(PRESETS)}, "
            f"got {name_or_preset!r}."
        )
    signature = inspect.signature(TUNERS[name])
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
    TUNERS[name](**{k: v for k, v in config.items() if k != "name"})  # validates the ranges
    if preset is not None:
        config["preset"] = preset
    if preset_args:
        config["preset_args"] = dict(preset_args)  # validated integers (see _derived)
    return config


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
    config = dict(config)
    if "name" in config:
        name = config.pop("name")
        preset = config.pop("preset", None)
        config.pop("preset_args", None)  # provenance only: the derived values are in config
        if preset is not None and (preset not in PRESETS or PRESETS[preset]["name"] != name):
            raise ValueError(f"preset {preset!r} does not describe tuner {name!r}; drop 'preset' or fix 'name'.")
        if name not in TUNERS:
            raise ValueError(f"name must be one of {sorted(TUNERS)}, got {name!r}.")
        full = tuner_config(name, **config)
    elif "preset" in config:
        preset = config.pop("preset")
        args = dict(config.pop("preset_args", None) or {})
        full = tuner_config(preset, **args, **config)
    else:
        raise ValueError("config needs a 'name' (a tuner) or a 'preset' key, e.g. {'preset': 'armijo-jax'}.")
    return TUNERS[full.pop("name")](**{k: v for k, v in full.items() if k not in _METADATA})
