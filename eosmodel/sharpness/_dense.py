"""Dense Hessians and their exact top eigenpairs: the reference for small models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree

from eosmodel.sharpness._lanczos import EigResult

PyTree = Any

__all__ = ["dense_hessian", "dense_top_eigenpairs"]


def dense_hessian(loss: Callable[[PyTree, PyTree], jax.Array], params: PyTree, batch: PyTree) -> jax.Array:
    """The full Hessian ``∇²_w f(w, batch)`` as a ``[d, d]`` matrix in ``ravel_pytree`` order.

    ``H[a, b] = ∂² f / ∂w_a ∂w_b`` with ``f`` = ``loss``, ``w`` = ``params`` flattened by
    ``jax.flatten_util.ravel_pytree`` (d entries). Costs d HVPs and d² memory: small models only.

    Args:
      loss: ``loss(params, batch) -> scalar``.
      params: the point ``w`` (pytree).
      batch: data passed to ``loss``.

    Returns:
      The symmetric ``[d, d]`` Hessian.
    """
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda f: loss(unravel(f), batch))(flat)


def dense_top_eigenpairs(
    loss: Callable[[PyTree, PyTree], jax.Array], params: PyTree, batch: PyTree, k: int = 1
) -> EigResult:
    """Exact top-k (algebraically largest) eigenpairs of the dense Hessian, by LAPACK ``eigh``.

    Computes ``H = dense_hessian(loss, params, batch)`` in float64 numpy, symmetrises it
    (``(H + Hᵀ)/2``) and calls ``scipy.linalg.eigh(subset_by_index=[d-k, d-1])``.

    Args:
      loss, params, batch: as in ``dense_hessian``.
      k: number of eigenpairs, ``1 <= k <= d``.

    Returns:
      ``EigResult`` with eigenvalues ``[k]`` descending, eigenvectors unravelled to pytrees with a
      leading axis k (dtype of ``params``), the residuals ``||H y - θ y||`` of the dense matrix,
      ``num_hvps = 0``, ``converged = True``, ``error_bounds`` = residuals.

    Raises:
      ValueError: k outside ``[1, d]``.
    """
    flat, unravel = ravel_pytree(params)
    d = flat.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (1 <= k <= d):
        raise ValueError(f"k must be an int in [1, {d}] (number of parameters); got {k!r}.")
    h = np.asarray(dense_hessian(loss, params, batch), dtype=np.float64)
    h = 0.5 * (h + h.T)
    vals, vecs = scipy.linalg.eigh(h, subset_by_index=[d - k, d - 1])
    vals, vecs = vals[::-1], vecs[:, ::-1]
    res = np.linalg.norm(h @ vecs - vecs * vals, axis=0)
    eigvecs = jax.vmap(unravel)(jnp.asarray(vecs.T, flat.dtype))
    return EigResult(
        eigenvalues=jnp.asarray(vals, flat.dtype),
        eigenvectors=eigvecs,
        residuals=jnp.asarray(res, flat.dtype),
        num_hvps=jnp.asarray(0, jnp.int32),
        converged=jnp.asarray(True),
        error_bounds=jnp.asarray(res, flat.dtype),
    )
