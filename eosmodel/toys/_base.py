"""The `Toy` record and the validation and dtype helpers shared by the toy factories."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = Any
Batch = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Toy:
    """A toy model: a pure loss, its initialiser, its fixed data and its settings.

    Every toy exposes the same surface as a network, so that a tuner, the sharpness estimator and
    the simulator treat them alike: the training loss is ``loss(params, batch)`` evaluated at the
    toy's fixed ``batch``, and ``init(key)`` draws starting parameters.

    Attributes:
      name: short identifier of the model (``"quadratic"``, ``"uv"``, ...).
      init: ``init(key) -> params``, a pytree of floating arrays in JAX's default float dtype
        (float64 under ``jax.enable_x64``).
      loss: ``loss(params, batch) -> scalar``, pure and differentiable twice; it computes in the
        dtype of ``params`` (float32 or float64), whatever the dtype of ``batch``.
      batch: the fixed data the loss is evaluated on (a pytree whose leaves have a leading example
        axis, the loss being a mean over it), or ``None`` when the loss has no data.
      hyper: the toy's settings as a JSON-serialisable dict (stored in a trace's config).
      sharpness: optional ``sharpness(params) -> scalar``, the exact largest (algebraic) eigenvalue
        of the Hessian of ``loss(., batch)`` at ``params`` (closed form, or dense ``eigh``).

    Equality and hashing are by identity (``eq=False``), so a ``Toy`` can be a static argument of
    ``jax.jit`` even though ``hyper`` is a dict.
    """

    name: str
    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, Batch], jax.Array]
    batch: Batch = None
    hyper: dict = dataclasses.field(default_factory=dict)
    sharpness: Callable[[Params], jax.Array] | None = None

    def value(self, params: Params) -> jax.Array:
        """The training loss at ``params``: ``loss(params, batch)`` on the toy's fixed batch."""
        return self.loss(params, self.batch)


# --------------------------------------------------------------------------------------------
# dtype helpers


def float_dtype(params: Params) -> jnp.dtype:
    """The floating dtype the loss computes in: that of ``params`` (default float if not floating)."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        return jnp.result_type(float)
    dtype = jnp.result_type(*leaves)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def as_dtype(value: Any, dtype: jnp.dtype) -> jax.Array:
    """``value`` (a constant stored at construction, or data) cast to the computation dtype."""
    return jnp.asarray(value).astype(dtype)


def key_data(key: jax.Array) -> list[int]:
    """The raw integers of a PRNG key (typed or legacy uint32), for JSON-serialisable ``hyper``."""
    key = check_key(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(k) for k in np.asarray(key).ravel()]


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Validate a PRNG key argument (typed ``jax.random.key`` or legacy ``PRNGKey``)."""
    if key is None:
        raise ValueError(f"{name} is required; pass {name}=jax.random.key(seed).")
    arr = key if isinstance(key, jax.Array) else np.asarray(key)
    dtype = arr.dtype
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if arr.shape != ():
            raise ValueError(f"{name} must be a single PRNG key, got shape {arr.shape}; pass one key.")
        return arr
    if dtype != np.uint32 or arr.shape != (2,):
        raise ValueError(
            f"{name} must be a PRNG key, got dtype {dtype} and shape {arr.shape}; "
            f"pass {name}=jax.random.key(seed)."
        )
    return jnp.asarray(arr)


def default_normal(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard normal draws made in float32 and cast to the default float dtype.

    The values are the same with and without x64, so a float32 and a float64 run of a toy start
    from the same point.
    """
    return jax.random.normal(key, tuple(shape), dtype=jnp.float32).astype(jnp.result_type(float))


def normal_f32(key: jax.Array, shape: Sequence[int]) -> np.ndarray:
    """Standard normal draws, generated in float32 (identical with or without x64), as float64."""
    return np.asarray(jax.random.normal(key, tuple(shape), dtype=jnp.float32), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# argument validation (one sentence: parameter, valid range, how to fix)


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; pass {name} >= 1.")
    return int(value)


def check_finite(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite real number, got {value!r}; pass a float.") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite real number, got {value!r}; pass a finite float.")
    return out


def check_positive(value: Any, name: str) -> float:
    out = check_finite(value, name)
    if out <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; pass a positive float.")
    return out


def check_nonnegative(value: Any, name: str) -> float:
    out = check_finite(value, name)
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}; pass a non-negative float.")
    return out


def check_vector(value: Any, name: str, *, size: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a 1-D sequence of finite floats, got {value!r}; pass a list of floats."
        ) from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of floats, got shape {arr.shape}; "
            "pass a flat list of floats."
        )
    if size is not None and arr.size != size:
        raise ValueError(f"{name} must have {size} entries, got {arr.size}; pass {size} floats.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values, got {arr.tolist()}; remove inf/nan.")
    return arr


def top_eigenvalue_2x2(h11: jax.Array, h12: jax.Array, h22: jax.Array) -> jax.Array:
    """Largest eigenvalue of [[h11, h12], [h12, h22]]: (h11+h22)/2 + sqrt(((h11-h22)/2)^2 + h12^2)."""
    return 0.5 * (h11 + h22) + jnp.hypot(0.5 * (h11 - h22), h12)


def dense_top_eigenvalue(loss: Callable, params: Params, batch: Batch) -> jax.Array:
    """Largest eigenvalue of the dense Hessian of ``loss(., batch)`` at ``params`` (small models)."""
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    hess = jax.hessian(lambda w: loss(unravel(w), batch))(flat)
    return jnp.linalg.eigvalsh(0.5 * (hess + hess.T))[-1]
