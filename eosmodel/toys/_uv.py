"""The two-layer linear "uv" model of the catapult mechanism (docs/theory.md 4.3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eosmodel.toys._base import (
    default_normal,
    Toy,
    check_finite,
    check_nonnegative,
    check_positive_int,
    float_dtype,
)


def uv_output(params) -> jax.Array:
    r"""The output :math:`f = u^\top v/\sqrt n` of the uv model (``params = {"u": u, "v": v}``)."""
    u, v = params["u"], params["v"]
    return jnp.sum(u * v, axis=-1) / jnp.sqrt(jnp.asarray(u.shape[-1], u.dtype))


def uv_residual(params, target) -> jax.Array:
    r"""The residual :math:`r = f - y` of the uv model, :math:`y` = ``target``."""
    return uv_output(params) - target


def uv_lambda(params) -> jax.Array:
    r"""The uv model's :math:`\lambda = (\lVert u\rVert^2 + \lVert v\rVert^2)/n` (the sharpness at :math:`r = 0`)."""
    u, v = params["u"], params["v"]
    return (jnp.sum(u**2, axis=-1) + jnp.sum(v**2, axis=-1)) / u.shape[-1]


def uv(width: int, target: float = 0.0, *, init_scale: float = 1.0) -> Toy:
    r"""The two-layer linear "uv" model with one example: the minimal model of the catapult.

    .. math::

        f = \frac{u^\top v}{\sqrt n}, \qquad L(u, v) = \tfrac12 (f - y)^2, \qquad r = f - y, \qquad
        \lambda = \frac{\lVert u\rVert^2 + \lVert v\rVert^2}{n},

    with :math:`n` = ``width``, :math:`y` = ``target``. The Hessian is
    :math:`\nabla f\nabla f^\top + r\,\nabla^2 f` with :math:`\nabla f = (v, u)/\sqrt n`; its top
    eigenvalue equals :math:`\lambda` at :math:`r = 0`. GD with stepsize :math:`\eta` gives exactly

    .. math::

        f_{t+1} = f_t - \eta\lambda_t r_t + \eta^2 r_t^2 f_t/n, \qquad
        \lambda_{t+1} = \lambda_t - 4\eta r_t f_t/n + \eta^2 r_t^2\lambda_t/n,

    so (for :math:`n` large) it converges for :math:`\eta < 2/\lambda_0`, catapults (the loss spikes,
    :math:`\lambda` drops below :math:`2/\eta`, then it converges) for
    :math:`2/\lambda_0 < \eta < 4/\lambda_0`, and diverges beyond.

    Parameters are ``{"u": u, "v": v}`` with :math:`u, v \in \mathbb R^n`; ``init(key)`` draws
    their entries i.i.d. :math:`\mathcal N(0, \texttt{init\_scale}^2)`, so
    :math:`\lambda_0 \approx 2\,\texttt{init\_scale}^2`. No data (``batch=None``); see
    :func:`uv_output`, :func:`uv_residual`, :func:`uv_lambda` for :math:`f, r, \lambda`.

    Args:
      width: :math:`n >= 1`.
      target: :math:`y`, finite (default 0.0).
      init_scale: standard deviation of the initial entries, >= 0 (default 1.0).

    Returns:
      A :class:`Toy` named ``"uv"`` with an exact closed-form ``sharpness``:
      :math:`\lambda/2 + \sqrt{(f + r)^2/n + ab}` with :math:`a = \lVert u+v\rVert^2/(2n)`,
      :math:`b = \lVert u-v\rVert^2/(2n)`.

    Raises:
      ValueError: ``width < 1``, a non-finite ``target`` or a negative ``init_scale``.

    Reference: Lewkowycz et al., arXiv:2003.02218; Kalra & Barkeshli, arXiv:2311.02076.
    """
    width = check_positive_int(width, "width")
    target = check_finite(target, "target")
    init_scale = check_nonnegative(init_scale, "init_scale")

    def init(key: jax.Array) -> dict:
        k_u, k_v = jax.random.split(key)
        return {
            "u": init_scale * default_normal(k_u, (width,)),
            "v": init_scale * default_normal(k_v, (width,)),
        }

    def loss(params: dict, batch=None) -> jax.Array:
        dtype = float_dtype(params)
        p = {"u": jnp.asarray(params["u"], dtype), "v": jnp.asarray(params["v"], dtype)}
        return 0.5 * (uv_output(p) - target) ** 2

    def sharpness(params: dict) -> jax.Array:
        # H = w w^T + s S with w = (v, u)/sqrt(n), s = r/sqrt(n), S the swap of u and v. S has
        # eigenvalue +1 on {(a, a)} and -1 on {(a, -a)}; H acts on span(w+, w-) as
        # [[a + s, sqrt(ab)], [sqrt(ab), b - s]] (a = |w+|^2, b = |w-|^2), and as +-s elsewhere.
        dtype = float_dtype(params)
        u, v = jnp.asarray(params["u"], dtype), jnp.asarray(params["v"], dtype)
        p = {"u": u, "v": v}
        f = uv_output(p)
        r = f - target
        a = jnp.sum((u + v) ** 2) / (2.0 * width)
        b = jnp.sum((u - v) ** 2) / (2.0 * width)
        s = r / jnp.sqrt(jnp.asarray(width, dtype))
        top = 0.5 * (a + b) + jnp.hypot(0.5 * (a - b) + s, jnp.sqrt(a * b))
        return top  # >= a + s >= s: the eigenvalues +-s off the block never exceed it

    hyper = {"width": width, "target": target, "init_scale": init_scale}
    return Toy(name="uv", init=init, loss=loss, batch=None, hyper=hyper, sharpness=sharpness)
