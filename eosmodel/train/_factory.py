"""Build the data, model and initial parameters a run config describes: built-in or your own.

``data.factory`` / ``model.factory`` name a function ``"package.module:function"`` (validated by
:func:`eosmodel.train.load_factory`); ``model.init_from`` names an ``.npz`` of initial parameters.
A run directory records these strings and their ``args`` in ``config.json``, so a resumed run
rebuilds the same data and model.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from eosmodel.train._config import load_factory
from eosmodel.train._data import Dataset, load_dataset
from eosmodel.train._models import make_model

__all__ = ["build_dataset", "build_model", "load_params", "save_params"]

_SEP = "/"


def _select(x: np.ndarray, n: int) -> np.ndarray:
    return x if not n else x[:n]


def build_dataset(cfg: Mapping[str, Any]) -> Dataset:
    """The dataset of the ``[data]`` table: :func:`load_dataset`, or ``data.factory(**data.args)``.

    A factory returns an :class:`eosmodel.train.Dataset` or a mapping with ``x_train``,
    ``y_train``, ``x_test``, ``y_test`` (labels int in 0..C−1) and optionally ``num_classes``
    (default: the largest label + 1). Its arrays are used as given (no standardisation), the first
    ``n_train``/``n_test`` examples kept (0 = all).

    Raises:
      ValueError: the factory returns something else, labels out of range, or fewer examples
        than ``n_train``/``n_test`` (one sentence naming ``data.factory``).
    """
    cfg = dict(cfg)
    if not cfg.get("factory"):
        return load_dataset(cfg)
    spec = cfg["factory"]
    out = load_factory(spec, "data.factory")(**cfg.get("args", {}))
    if isinstance(out, Dataset):
        out = out._asdict()
    names = ("x_train", "y_train", "x_test", "y_test")
    if not isinstance(out, Mapping) or any(k not in out for k in names):
        raise ValueError(
            f"data.factory = {spec!r} returned {type(out).__name__}; it must return an eosmodel.train.Dataset or a "
            "dict with x_train, y_train, x_test, y_test."
        )
    x_tr, y_tr, x_te, y_te = (np.asarray(out[k]) for k in names)
    n_train, n_test = int(cfg.get("n_train", 0)), int(cfg.get("n_test", 0))
    for what, n, have in (("n_train", n_train, len(y_tr)), ("n_test", n_test, len(y_te))):
        if n > have:
            raise ValueError(f"data.{what} = {n} but data.factory = {spec!r} gave {have} examples; lower data.{what} (0 = all).")
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te) or y_tr.ndim != 1 or y_tr.dtype.kind not in "iu":
        raise ValueError(
            f"data.factory = {spec!r} returned inputs and labels that do not match (need x of shape (n, ...) and int "
            "labels of shape (n,)); fix the factory."
        )
    num_classes = int(out.get("num_classes") or int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1)
    if y_tr.min(initial=0) < 0 or y_tr.max(initial=0) >= num_classes or y_te.min(initial=0) < 0 or y_te.max(initial=0) >= num_classes:
        raise ValueError(f"data.factory = {spec!r} returned labels outside 0..{num_classes - 1}; fix the factory or num_classes.")
    x_tr, y_tr, x_te, y_te = _select(x_tr, n_train), _select(y_tr, n_train), _select(x_te, n_test), _select(y_te, n_test)
    meta = {"source": spec, "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "input_shape": list(x_tr.shape[1:])}
    return Dataset(
        x_train=x_tr.astype(np.float32), y_train=y_tr.astype(np.int32), x_test=x_te.astype(np.float32),
        y_test=y_te.astype(np.int32), num_classes=num_classes, name=str(out.get("name", spec)), meta=meta,
    )


def build_model(cfg: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The model of the ``[model]`` table: :func:`make_model`, or ``model.factory(num_classes=C, **model.args)``.

    Raises:
      ValueError: the factory does not return a ``flax.linen.Module`` whose ``__call__`` takes ``train``.
    """
    cfg = dict(cfg)
    if not cfg.get("factory"):
        return make_model({k: v for k, v in cfg.items() if k not in ("factory", "args", "init_from")}, num_classes)
    spec = cfg["factory"]
    model = load_factory(spec, "model.factory")(num_classes=num_classes, **cfg.get("args", {}))
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model.factory = {spec!r} returned {type(model).__name__}; it must return a flax.linen.Module."
        )
    if "train" not in inspect.signature(type(model).__call__).parameters:
        raise ValueError(
            f"model.factory = {spec!r} returned {type(model).__name__}, whose __call__ has no train argument; "
            "add train: bool = False (BatchNorm and dropout use it)."
        )
    return model


def _flat(params: Any) -> dict[str, Any]:
    return {_SEP.join(map(str, k)): v for k, v in traverse_util.flatten_dict(params).items()}


def save_params(params: Any, path: str | os.PathLike) -> Path:
    """Write a parameter dict (flax ``params``) to ``path`` as ``.npz``, keys ``"Dense_0/kernel"``.

    The file ``model.init_from`` reads. To start from another framework's weights, write the same
    keys and shapes (e.g. a PyTorch ``nn.Linear`` weight, transposed, as ``Dense_i/kernel``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in _flat(params).items()})
    return path


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Read ``path`` (``.npz`` by :func:`save_params`) into the structure, shapes and dtypes of ``like``.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not an npz, or its keys or shapes differ from the model's (one
        sentence naming the first difference and ``model.init_from``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from = {str(path)!r} does not exist; give the path of an .npz file.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"model.init_from = {str(path)!r} is not a readable .npz file ({err}); write it with np.savez.") from None
    want = _flat(like)
    missing, extra = sorted(set(want) - set(arrays)), sorted(set(arrays) - set(want))
    if missing or extra:
        raise ValueError(
            f"model.init_from = {str(path)!r} does not match the model's parameters (missing {missing[:4]}, unexpected "
            f"{extra[:4]}); its keys must be {sorted(want)[:6]}{'...' if len(want) > 6 else ''}."
        )
    for key, ref in want.items():
        if tuple(arrays[key].shape) != tuple(np.shape(ref)):
            raise ValueError(
                f"model.init_from = {str(path)!r}: {key} has shape {tuple(arrays[key].shape)}, the model needs "
                f"{tuple(np.shape(ref))}; fix the file (a PyTorch Linear weight is the transpose of a Dense kernel)."
            )
    nested = traverse_util.unflatten_dict({tuple(k.split(_SEP)): arrays[k].astype(np.asarray(v).dtype) for k, v in want.items()})
    return jax.tree.map(lambda a, ref: jax.numpy.asarray(a, dtype=ref.dtype), nested, like) if isinstance(like, dict) else nested
