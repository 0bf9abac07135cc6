"""Warm-started sharpness tracking along a training run (pure functional)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from eosmodel.sharpness._lanczos import (
    DEFAULT_MAX_ITERS,
    EigResult,
    _check_like,
    _check_settings,
    _lanczos,
    _norm,
    _random_like,
    _scale,
)

PyTree = Any

__all__ = ["SharpnessTracker", "TrackerState"]


class TrackerState(NamedTuple):
    """State of a ``SharpnessTracker`` (a pytree: carry it through ``jit``/``lax.scan``).

    Attributes:
      eigenvectors: pytree shaped like the parameters with a leading axis ``k + guard`` (clipped to
        the dimension): the last estimate's top Ritz vectors after one power step,
        ``H y_i / ||H y_i||``, the first k converged, the others guard vectors (random unit vectors
        before the first estimate).
      eigenvalues: ``[k]`` the last estimate (NaN before the first one).
      num_estimates: int32 scalar, estimates made so far.
    """

    eigenvectors: PyTree
    eigenvalues: jax.Array
    num_estimates: jax.Array


@dataclasses.dataclass(frozen=True)
class SharpnessTracker:
    """Top-k Hessian eigenvalues along a run, each estimate warm-started from the previous one.

    ``estimate`` runs the block Lanczos solver of ``top_eigenpairs`` from the start block
    ``[u_1, ..., u_{p-1}, u_p + ρ g]``, where ``u_1..u_p`` (``p = k + guard``, block size p) are the
    previous estimate's top Ritz vectors ``y_i`` after one power step, ``u_i = H y_i / ||H y_i||``
    (state), ``g`` a unit random vector (hashed uniforms salted by ``key``) and ``ρ`` =
    ``warm_noise``. When the Hessian changes slowly, ``span{u_i}`` is nearly invariant, the first p
    products give the Rayleigh-Ritz pairs of that span, often already within the tolerance, and a
    few more products reach it otherwise.

    Why the power step: ``H y_i`` is known without a product (``H V_j = V_{j+b} C_j``, the Arnoldi
    relation of the basis already built), and it damps the components of ``y_i`` along the bulk of
    the spectrum by ``|λ|/θ_i``. Carried from estimate to estimate, the block then improves even when
    an estimate stops after its first p products (plain Ritz vectors of those p products span the
    start block again: no progress), i.e. the tracker runs a subspace iteration across training
    steps at no extra cost. Measured (fc-tanh 3072-200-200-10, 2,000 examples, GD at η = 0.01, an
    estimate per step, tol 1e-3): 3.48 HVPs per warm estimate without the power step at ρ = 0.1,
    2.93 at ρ = 0.01, 2.55 with the power step at ρ = 0.01 (24 of 29 estimates with 2 products); at
    η = 1.9/λ₀ (edge of stability), 8.2 against 7.6, errors ≤ 3e-4 against tight references.

    Why guard vectors: the stopping rule's Kato-Temple bound ``res²/gap`` needs the next eigenvalue
    ``λ_{k+1}`` to be resolved by the Krylov space. From a start close to ``u_1`` alone, the second
    Ritz value is an average of the bulk of the spectrum, far below ``λ_2``, which would overstate
    the gap and stop too early (measured on an MLP Hessian: 2 products, error 2e-3 at tol 1e-3). The
    guard directions put ``λ_{k+1}, ..`` into the space from the first steps, and are refined at every
    estimate (a subspace iteration across training steps). The random component keeps every
    eigendirection present in the start block (in its last vector: the first ones stay exact), so an
    eigenvalue that overtakes the previous top-k is still found. The stopping rule and accuracy are those of ``top_eigenpairs`` (``|λ_i - θ_i| <= tol |θ_i|``).
    The first estimate (after ``init``) starts from random vectors, i.e. it is a cold start.

    Args:
      k: number of top eigenvalues, >= 1 (default 1: the sharpness).
      tol: relative eigenvalue accuracy in (0, 1), default 1e-3.
      max_iters: cap on HVPs per estimate (basis size), default 100.
      warm_noise: relative size ρ >= 0 of the random component of the warm start, default 0.01.
      guard: number of extra Ritz vectors carried from one estimate to the next, >= 0, default 1.

    Raises:
      ValueError: at construction, for k < 1, tol outside (0, 1), max_iters < k, warm_noise < 0
        or guard < 0; at ``init``, for k > the number of parameters.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> tracker = SharpnessTracker(k=1, tol=1e-4)
      >>> state = tracker.init(jnp.zeros(3), jax.random.key(0))
      >>> estimate = jax.jit(lambda state, h, key: tracker.estimate(state, lambda v: h * v, key=key))
      >>> state, res = estimate(state, jnp.array([2.0, 1.0, 0.5]), jax.random.key(1))
      >>> round(float(res.eigenvalues[0]), 4)
      2.0
    """

    k: int = 1
    tol: float = 1e-3
    max_iters: int = DEFAULT_MAX_ITERS
    warm_noise: float = 0.01
    guard: int = 1

    def __post_init__(self):
        _check_settings(self.k, self.tol, self.max_iters)
        if isinstance(self.warm_noise, bool) or not isinstance(self.warm_noise, (int, float)) or not (
            math.isfinite(self.warm_noise) and self.warm_noise >= 0
        ):
            raise ValueError(
                f"warm_noise must be a finite float >= 0 (relative random part of the warm start); "
                f"got {self.warm_noise!r}: pass e.g. warm_noise=0.01."
            )
        if isinstance(self.guard, bool) or not isinstance(self.guard, int) or self.guard < 0:
            raise ValueError(
                f"guard must be an int >= 0 (extra Ritz vectors kept between estimates); got {self.guard!r}: "
                "pass e.g. guard=2."
            )

    def init(self, like: PyTree, key: jax.Array) -> TrackerState:
        """Initial state: ``k + guard`` random unit vectors from ``key`` shaped like ``like`` (no estimate yet).

        Raises:
          ValueError: k larger than the number of entries of ``like``, or non-float leaves.
        """
        dim = _check_like(like, self.k)
        like = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), like)
        p = min(self.k + self.guard, dim)
        vecs = [_random_like(like, key, jnp.asarray(i, jnp.int32)) for i in range(p)]
        vecs = [_scale(1.0 / _norm(v), v) for v in vecs]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *vecs)
        dtype = jnp.result_type(*jax.tree.leaves(like))
        return TrackerState(stacked, jnp.full((self.k,), jnp.nan, dtype), jnp.asarray(0, jnp.int32))

    def estimate(
        self, state: TrackerState, matvec: Callable[[PyTree], PyTree], *, key: jax.Array
    ) -> tuple[TrackerState, EigResult]:
        """One warm-started estimate of the top-k eigenpairs of ``matvec``; returns ``(state, result)``.

        Args:
          state: the previous ``TrackerState``.
          matvec: ``v -> H v`` at the current parameters (e.g. ``hessian_matvec(loss, params, data)``).
          key: PRNG key for the random part of the start vector and any breakdown restart (derive it
            per step, e.g. ``jax.random.fold_in(key, step)``).

        Returns:
          The new state (holding this estimate's eigenvectors) and the ``EigResult``.
        """
        prev = state.eigenvectors
        p = jax.tree.leaves(prev)[0].shape[0]
        like = jax.tree.map(lambda x: x[0], prev)
        # The random part goes into the last start vector only (the guard, or u_k when guard = 0): the
        # block then spans every eigendirection while u_1..u_k stay exact, so that when the Hessian
        # has barely moved the first p products (the Rayleigh-Ritz of the previous subspace) already
        # meet the tolerance.
        # Hashed uniforms salted by the key's bits: as generic as Gaussian numbers for this purpose,
        # at a tenth of the cost of a threefry normal draw per parameter.
        salt = jax.random.bits(jax.random.fold_in(key, p - 1), (), jnp.uint32)
        g = _random_like(like, None, salt)
        g = _scale(self.warm_noise / _norm(g), g)
        v0 = jax.tree.map(lambda x, gi: x.at[p - 1].add(gi), prev, g)
        result, vecs = _lanczos(
            matvec, like, self.k, p, key=jax.random.fold_in(key, p), v0=v0, tol=self.tol,
            max_iters=self.max_iters, block_size=p, power_vectors=True,
        )
        # Guard vectors the basis was too small to produce (zero) keep their previous value.
        built = sum(jnp.sum(x.reshape(p, -1) ** 2, axis=1) for x in jax.tree.leaves(vecs)) > 0
        vecs = jax.tree.map(
            lambda new, old: jnp.where(built.reshape((p,) + (1,) * (new.ndim - 1)), new, old), vecs, prev
        )
        new_state = TrackerState(vecs, result.eigenvalues, state.num_estimates + 1)
        return new_state, result
