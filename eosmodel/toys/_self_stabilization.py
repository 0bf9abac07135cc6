"""An exact loss for the self-stabilisation model of Damian, Nichani and Lee (docs/theory.md 4.1)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.toys._base import (
    default_normal,
    Toy,
    as_dtype,
    check_finite,
    check_nonnegative,
    check_positive,
    check_vector,
    float_dtype,
    top_eigenvalue_2x2,
)


def self_stabilization(
    alpha: float,
    beta: float,
    lambda0: float,
    *,
    bulk_eigenvalues=None,
    sharpening_limit: float | None = None,
    init_x: float = 0.01,
    bulk_init_scale: float = 1.0,
) -> Toy:
    r"""A loss on which GD follows the self-stabilisation map exactly, with optional bounded additions.

    The exact model (both options off):

    .. math::

        L(x, s) = -\frac{\alpha}{\sqrt\beta}\, s + \tfrac12\,(\lambda_0 + \sqrt\beta\, s)\, x^2,
        \qquad \lambda = \lambda_0 + \sqrt\beta\, s,

    with :math:`\alpha` = ``alpha`` (progressive-sharpening rate), :math:`\beta` = ``beta``
    (self-stabilisation strength), :math:`\lambda_0` = ``lambda0``. GD with stepsize :math:`\eta_t`
    (fixed or chosen by any tuner) gives exactly

    .. math::

        x_{t+1} = (1 - \eta_t\lambda_t)\, x_t, \qquad
        \lambda_{t+1} = \lambda_t + \eta_t\,(\alpha - \beta x_t^2/2),

    the map of Damian et al. in the variables :math:`(x, y = \lambda - 2/\eta)`. :math:`\lambda` is
    the x-x entry of the Hessian; the exact top eigenvalue (``toy.sharpness``) is
    :math:`\lambda/2 + \sqrt{\lambda^2/4 + \beta x^2} = \lambda + O(\beta x^2/\lambda)`.

    This loss is unbounded below (:math:`L \to -\infty` as :math:`s \to \infty` at :math:`x = 0`), so
    a tuner that needs a lower bound (Polyak with :math:`f^* = 0`) is not well defined on it. Two
    optional additions, each documented by what it changes:

    * ``sharpening_limit`` :math:`\lambda_\infty > \lambda_0` replaces the linear term by the
      quadratic well :math:`\tfrac12\kappa(s - s_\infty)^2`, :math:`\kappa = \alpha/(\lambda_\infty -
      \lambda_0)`, :math:`s_\infty = (\lambda_\infty - \lambda_0)/\sqrt\beta`. The gradient at
      :math:`s = 0` is unchanged and GD gives :math:`\lambda_{t+1} = \lambda_t + \eta_t(\alpha
      (\lambda_\infty - \lambda_t)/(\lambda_\infty - \lambda_0) - \beta x_t^2/2)`: the sharpening rate
      is :math:`\alpha` at :math:`\lambda_0` and decays linearly to 0 at :math:`\lambda_\infty` (as
      the loss of a real network approaches its floor); the x-update is unchanged. The loss is then
      :math:`\ge 0` wherever :math:`\lambda \ge 0`, with minimum 0 at :math:`(0, s_\infty)`, so
      :math:`f^* = 0` is exact. The Hessian gains the entry :math:`\kappa` in the s-s position.
    * ``bulk_eigenvalues`` :math:`\mu_1..\mu_k > 0` add :math:`\tfrac12\sum_i \mu_i z_i^2` in extra
      coordinates :math:`z` (decoupled: the (x, λ) map is unchanged): the stable bulk of a
      network's loss and gradient, which a loss-based tuner such as Polyak sees. It is bounded but
      does not by itself bound the loss below; combine it with ``sharpening_limit`` for Polyak.

    Parameters are ``{"x": x, "s": s}`` (scalars) plus ``"z"`` (shape ``(k,)``) with a bulk;
    ``init(key)`` returns :math:`x_0` = ``init_x``, :math:`s_0 = 0` (:math:`\lambda = \lambda_0`) and
    :math:`z_0 \sim \mathcal N(0, \texttt{bulk\_init\_scale}^2 I)` (the key is used for the bulk
    only). :func:`self_stabilization_state` reads :math:`(x, \lambda)`,
    :func:`self_stabilization_params` builds parameters from them.

    Args:
      alpha: :math:`\alpha > 0`.
      beta: :math:`\beta > 0`.
      lambda0: :math:`\lambda_0`, finite (the sharpness at :math:`s = 0`).
      bulk_eigenvalues: optional non-empty sequence of :math:`\mu_i > 0` (default ``None``: none).
      sharpening_limit: optional :math:`\lambda_\infty > \lambda_0` (default ``None``: the exact,
        unbounded model).
      init_x: :math:`x_0`, finite (default 0.01).
      bulk_init_scale: scale of :math:`z_0`, >= 0 (default 1.0).

    Returns:
      A :class:`Toy` named ``"self_stabilization"`` with an exact ``sharpness`` (closed-form top
      eigenvalue of the block-diagonal Hessian).

    Raises:
      ValueError: non-positive ``alpha``/``beta``/bulk eigenvalues, ``sharpening_limit <= lambda0``,
      or non-finite values.

    Reference: Damian, Nichani, Lee, "Self-Stabilization: The Implicit Bias of Gradient Descent at
    the Edge of Stability", arXiv:2209.15594.

    Example:
      >>> import jax.numpy as jnp
      >>> toy = self_stabilization(alpha=1.0, beta=4.0, lambda0=10.0)
      >>> p = {"x": jnp.array(0.5), "s": jnp.array(0.0)}
      >>> g = jax.grad(toy.loss)(p, None)
      >>> float(p["x"] - 0.1 * g["x"])  # (1 - eta*lambda) x with eta = 0.1, lambda = 10
      0.0
    """
    alpha = check_positive(alpha, "alpha")
    beta = check_positive(beta, "beta")
    lambda0 = check_finite(lambda0, "lambda0")
    init_x = check_finite(init_x, "init_x")
    bulk_init_scale = check_nonnegative(bulk_init_scale, "bulk_init_scale")
    bulk = None
    if bulk_eigenvalues is not None:
        bulk = check_vector(bulk_eigenvalues, "bulk_eigenvalues")
        if np.any(bulk <= 0):
            raise ValueError(
                f"bulk_eigenvalues must all be > 0, got {bulk.tolist()}; pass positive curvatures."
            )
    if sharpening_limit is not None:
        sharpening_limit = check_finite(sharpening_limit, "sharpening_limit")
        if sharpening_limit <= lambda0:
            raise ValueError(
                f"sharpening_limit must be > lambda0 = {lambda0}, got {sharpening_limit}; pass a "
                "larger limit or None for the exact unbounded model."
            )
    sqrt_beta = math.sqrt(beta)
    if sharpening_limit is None:
        kappa, s_inf = 0.0, None
    else:
        kappa = alpha / (sharpening_limit - lambda0)
        s_inf = (sharpening_limit - lambda0) / sqrt_beta

    def init(key: jax.Array) -> dict:
        dtype = jnp.result_type(float)
        params = {"x": jnp.asarray(init_x, dtype), "s": jnp.zeros((), dtype)}
        if bulk is not None:
            params["z"] = bulk_init_scale * default_normal(key, bulk.shape)
        return params

    def loss(params: dict, batch=None) -> jax.Array:
        dtype = float_dtype(params)
        x, s = jnp.asarray(params["x"], dtype), jnp.asarray(params["s"], dtype)
        lam = lambda0 + sqrt_beta * s
        if s_inf is None:
            value = -(alpha / sqrt_beta) * s + 0.5 * lam * x**2
        else:
            value = 0.5 * kappa * (s - s_inf) ** 2 + 0.5 * lam * x**2
        if bulk is not None:
            z = jnp.asarray(params["z"], dtype)
            value = value + 0.5 * jnp.sum(as_dtype(bulk, dtype) * z**2)
        return value

    def sharpness(params: dict) -> jax.Array:
        dtype = float_dtype(params)
        x, s = jnp.asarray(params["x"], dtype), jnp.asarray(params["s"], dtype)
        top = top_eigenvalue_2x2(lambda0 + sqrt_beta * s, sqrt_beta * x, jnp.asarray(kappa, dtype))
        if bulk is not None:
            top = jnp.maximum(top, jnp.asarray(bulk.max(), dtype))
        return top

    hyper = {
        "alpha": alpha,
        "beta": beta,
        "lambda0": lambda0,
        "bulk_eigenvalues": None if bulk is None else bulk.tolist(),
        "sharpening_limit": sharpening_limit,
        "init_x": init_x,
        "bulk_init_scale": bulk_init_scale,
    }
    return Toy(
        name="self_stabilization", init=init, loss=loss, batch=None, hyper=hyper, sharpness=sharpness
    )


def _check_toy(toy: Toy) -> None:
    if toy.name != "self_stabilization":
        raise ValueError(
            f"toy must come from self_stabilization(), got {toy.name!r}; build it with "
            "self_stabilization()."
        )


def self_stabilization_state(toy: Toy, params: dict) -> tuple[jax.Array, jax.Array]:
    r"""The model coordinates :math:`(x, \lambda = \lambda_0 + \sqrt\beta\, s)` of a self-stabilisation toy.

    Args:
      toy: a :func:`self_stabilization` toy.
      params: its parameters (``{"x", "s"[, "z"]}``; leaves may carry batch axes).

    Returns:
      ``(x, lam)`` in the dtype of ``params``.

    Raises:
      ValueError: ``toy`` is not a self-stabilisation toy.
    """
    _check_toy(toy)
    dtype = float_dtype(params)
    x, s = jnp.asarray(params["x"], dtype), jnp.asarray(params["s"], dtype)
    return x, toy.hyper["lambda0"] + math.sqrt(toy.hyper["beta"]) * s


def self_stabilization_params(toy: Toy, x, lam, z=None) -> dict:
    r"""Parameters of a self-stabilisation toy at given :math:`(x, \lambda)`: :math:`s = (\lambda - \lambda_0)/\sqrt\beta`.

    Args:
      toy: a :func:`self_stabilization` toy.
      x, lam: :math:`x` and :math:`\lambda` (scalars or arrays of one shape).
      z: the bulk coordinates (required iff the toy has a bulk).

    Returns:
      ``{"x": x, "s": s[, "z": z]}``.

    Raises:
      ValueError: wrong toy, or ``z`` missing for a toy with a bulk (or given without one).
    """
    _check_toy(toy)
    x, lam = jnp.asarray(x), jnp.asarray(lam)
    dtype = jnp.result_type(x, lam, float)
    params = {
        "x": x.astype(dtype),
        "s": ((lam - toy.hyper["lambda0"]) / math.sqrt(toy.hyper["beta"])).astype(dtype),
    }
    has_bulk = toy.hyper["bulk_eigenvalues"] is not None
    if has_bulk and z is None:
        raise ValueError("z is required for a toy with bulk_eigenvalues; pass z of shape (k,).")
    if not has_bulk and z is not None:
        raise ValueError("z must be None for a toy without bulk_eigenvalues; drop the z argument.")
    if has_bulk:
        params["z"] = jnp.asarray(z, dtype)
    return params
