"""The minimalist edge-of-stability function of Zhu et al. (docs/theory.md 4.4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.toys._base import Toy, check_nonnegative, check_vector, float_dtype, top_eigenvalue_2x2


def zhu_cd(params) -> tuple[jax.Array, jax.Array]:
    r"""Zhu et al.'s coordinates :math:`c = \sqrt{a^2 - b^2}`, :math:`d = ab` of ``params = (a, b)``.

    :math:`c` is NaN where :math:`a^2 < b^2` (the paper works in the region :math:`a > b > 0`).
    """
    params = jnp.asarray(params)
    a, b = params[..., 0], params[..., 1]
    return jnp.sqrt(a**2 - b**2), a * b


def zhu(*, init_center=(2.5, 0.5), init_radius: float = 0.0) -> Toy:
    r"""The minimalist two-parameter function on which GD provably operates at the edge of stability.

    .. math::

        f(a, b) = \tfrac14\,(a^2 b^2 - 1)^2 .

    Its minima are the hyperbolas :math:`ab = \pm 1`, where the Hessian has eigenvalues
    :math:`0` and :math:`2(a^2 + b^2)` (the sharpness). GD with stepsize :math:`\eta` started where
    gradient flow would reach a minimum sharper than :math:`2/\eta` oscillates along the hyperbola
    and settles near the minimum with :math:`a^2 + b^2 = 1/\eta` (sharpness :math:`2/\eta`), i.e.
    :math:`(c, d) = ((\eta^{-2} - 4)^{1/4}, 1)` in the coordinates of :func:`zhu_cd`.

    Parameters are a vector ``(a, b)`` of shape ``(2,)``; ``init(key)`` returns
    ``init_center`` plus a perturbation uniform in :math:`[-\rho, \rho]^2`, :math:`\rho` =
    ``init_radius`` (so the default ``init_radius=0.0`` ignores the key). No data (``batch=None``).

    Args:
      init_center: the initial point :math:`(a_0, b_0)` (default ``(2.5, 0.5)``: :math:`a_0 b_0 =
        1.25`; gradient flow from it ends at sharpness 12.6, so GD shows EOS for :math:`\eta > 0.16`).
      init_radius: :math:`\rho >= 0`, half-width of the random perturbation (default 0.0).

    Returns:
      A :class:`Toy` named ``"zhu"`` with an exact ``sharpness`` (closed-form 2x2 Hessian).

    Raises:
      ValueError: ``init_center`` not two finite floats, or ``init_radius < 0``.

    Reference: Zhu, Wang, Wang, Zhou, Ge, "Understanding Edge-of-Stability Training Dynamics with a
    Minimalist Example", arXiv:2210.03294.
    """
    center = check_vector(init_center, "init_center", size=2)
    init_radius = check_nonnegative(init_radius, "init_radius")

    def init(key: jax.Array) -> jax.Array:
        noise = jax.random.uniform(key, (2,), jnp.float32, minval=-1.0, maxval=1.0)
        dtype = jnp.result_type(float)
        return jnp.asarray(center, dtype) + init_radius * noise.astype(dtype)

    def loss(params: jax.Array, batch=None) -> jax.Array:
        dtype = float_dtype(params)
        p = jnp.asarray(params, dtype)
        a, b = p[0], p[1]
        return 0.25 * (a**2 * b**2 - 1.0) ** 2

    def sharpness(params: jax.Array) -> jax.Array:
        dtype = float_dtype(params)
        p = jnp.asarray(params, dtype)
        a, b = p[0], p[1]
        m = a**2 * b**2 - 1.0
        h_aa = 2.0 * a**2 * b**4 + m * b**2
        h_bb = 2.0 * a**4 * b**2 + m * a**2
        h_ab = 2.0 * a**3 * b**3 + 2.0 * m * a * b
        return top_eigenvalue_2x2(h_aa, h_ab, h_bb)

    hyper = {"init_center": np.asarray(center).tolist(), "init_radius": init_radius}
    return Toy(name="zhu", init=init, loss=loss, batch=None, hyper=hyper, sharpness=sharpness)
