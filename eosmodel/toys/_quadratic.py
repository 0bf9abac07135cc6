"""Quadratic losses: the control case with a fixed Hessian (no sharpening)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.toys._base import (
    default_normal,
    Toy,
    as_dtype,
    check_finite,
    check_key,
    check_vector,
    float_dtype,
    key_data,
    normal_f32,
)


def quadratic(eigenvalues, *, init_scale: float = 1.0, key: jax.Array | None = None) -> Toy:
    r"""A quadratic loss with a prescribed Hessian spectrum: the control case without sharpening.

    .. math::

        L(w) = \tfrac12\, w^\top H w, \qquad H = R\,\mathrm{diag}(\lambda_1, \dots, \lambda_P)\,R^\top,

    where :math:`\lambda_i` are ``eigenvalues`` and :math:`R` is the identity (``key=None``) or a
    Haar-random rotation drawn from ``key``. The Hessian is fixed, so the sharpness is
    :math:`\max_i \lambda_i` everywhere, and GD with a fixed stepsize :math:`\eta` maps the
    coordinate along eigenvector :math:`i` to :math:`(1 - \eta\lambda_i)` times itself: it
    converges iff :math:`0 < \eta\lambda_i < 2` for every :math:`\lambda_i > 0` (docs/theory.md 4.5).

    Parameters are a vector ``w`` of shape ``(P,)``; ``init(key)`` draws
    :math:`w_0 \sim \mathcal N(0, \texttt{init\_scale}^2 I)`. The toy has no data (``batch=None``).

    Args:
      eigenvalues: the spectrum :math:`(\lambda_i)`, a non-empty 1-D sequence of finite floats
        (negative values give a saddle; the sharpness is the algebraically largest).
      init_scale: standard deviation of the initial parameters (default 1.0), finite and >= 0.
      key: optional PRNG key of the rotation :math:`R`; ``None`` (default) keeps :math:`H`
        diagonal.

    Returns:
      A :class:`Toy` named ``"quadratic"`` with an exact ``sharpness`` (:math:`\max_i\lambda_i`).

    Raises:
      ValueError: an empty or non-finite spectrum, a negative ``init_scale``, or an invalid key.

    Reference: Cohen et al., arXiv:2103.00065, section 2 (the stability threshold 2/eta).

    Example:
      >>> import jax
      >>> toy = quadratic([4.0, 1.0])
      >>> float(toy.loss(jax.numpy.array([1.0, 2.0]), None))
      4.0
      >>> float(toy.sharpness(jax.numpy.array([1.0, 2.0])))
      4.0
    """
    lams = check_vector(eigenvalues, "eigenvalues")
    init_scale = check_finite(init_scale, "init_scale")
    if init_scale < 0:
        raise ValueError(f"init_scale must be >= 0, got {init_scale!r}; pass a non-negative float.")
    num_params = lams.size
    rotated = key is not None
    if rotated:
        key = check_key(key)
        # Haar rotation: QR of a Gaussian matrix with the sign of diag(R) fixed.
        q, r = np.linalg.qr(normal_f32(key, (num_params, num_params)))
        rotation = q * np.sign(np.diag(r))[None, :]
    else:
        rotation = np.eye(num_params)
    hessian = (rotation * lams[None, :]) @ rotation.T
    hessian = 0.5 * (hessian + hessian.T)
    top = float(lams.max())

    def init(init_key: jax.Array) -> jax.Array:
        return init_scale * default_normal(init_key, (num_params,))

    def loss(params: jax.Array, batch=None) -> jax.Array:
        dtype = float_dtype(params)
        w = jnp.asarray(params, dtype)
        return 0.5 * w @ (as_dtype(hessian, dtype) @ w)

    def sharpness(params: jax.Array) -> jax.Array:
        return jnp.asarray(top, float_dtype(params))

    hyper = {
        "eigenvalues": lams.tolist(),
        "init_scale": init_scale,
        "rotation_key": key_data(key) if rotated else None,
    }
    return Toy(name="quadratic", init=init, loss=loss, batch=None, hyper=hyper, sharpness=sharpness)


def quadratic_hessian(toy: Toy) -> np.ndarray:
    r"""The (constant) Hessian :math:`H` of a :func:`quadratic` toy, as a float64 numpy array.

    Computed as the exact Hessian of ``toy.loss`` at the origin in float64, so it is the matrix
    the loss uses, rotation included.

    Raises:
      ValueError: ``toy`` is not a quadratic toy.
    """
    if toy.name != "quadratic":
        raise ValueError(f"toy must be a quadratic toy, got {toy.name!r}; build it with quadratic().")
    num_params = len(toy.hyper["eigenvalues"])
    with jax.enable_x64(True):
        hess = jax.hessian(toy.loss)(jnp.zeros(num_params, jnp.float64), None)
        return np.asarray(hess, dtype=np.float64)
