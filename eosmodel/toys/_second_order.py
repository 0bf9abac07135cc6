"""Second-order regression models: residuals quadratic in the parameters (docs/theory.md 4.2)."""

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
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_vector,
    float_dtype,
    key_data,
    normal_f32,
)


def _residuals(theta, z0, g, q):
    """z(theta) = z0 + G^T theta + 1/2 Q(theta, theta); g is (P, D), q is (D, P, P)."""
    return z0 + theta @ g + 0.5 * jnp.einsum("aij,i,j->a", q, theta, theta)


def _jacobian(theta, g, q):
    """J = G^T + Q(theta, .), shape (D, P)."""
    return g.T + jnp.einsum("aij,j->ai", q, theta)


def second_order_regression(
    num_data: int,
    num_params: int,
    *,
    key: jax.Array,
    residual_scale: float = 1.0,
    linear_scale: float = 1.0,
    quadratic_scale: float = 1.0,
    init_scale: float = 1.0,
) -> Toy:
    r"""A random second-order regression model: residuals quadratic in the parameters.

    .. math::

        z(\theta) = z_0 + G^\top\theta + \tfrac12 Q(\theta, \theta) \in \mathbb R^D, \qquad
        L(\theta) = \tfrac12 \lVert z(\theta) \rVert^2,

    with :math:`D` = ``num_data``, :math:`P` = ``num_params``, :math:`Q(\theta,\theta)_\alpha =
    \theta^\top Q_\alpha \theta` for symmetric :math:`Q_\alpha \in \mathbb R^{P\times P}`, the
    Jacobian :math:`J = G^\top + Q(\theta, \cdot)`, the NTK :math:`\Theta = J J^\top` and the Hessian
    :math:`\nabla^2 L = J^\top J + \sum_\alpha z_\alpha Q_\alpha`. Entries drawn from ``key``:
    :math:`z_0 \sim \mathcal N(0, s_z^2)`, :math:`G_{i\alpha} \sim \mathcal N(0, s_G^2/P)`,
    :math:`Q_\alpha = s_Q (A + A^\top)/\sqrt{2P}` with :math:`A_{ij} \sim \mathcal N(0, 1)`, so the NTK and
    the Hessian are of order one for every :math:`P`. This model generically shows progressive
    sharpening and the edge of stability under GD (Agarwala, Pedregosa, Pennington).

    Parameters are a vector :math:`\theta` of shape ``(P,)``; ``init(key)`` draws
    :math:`\theta_0 \sim \mathcal N(0, \texttt{init\_scale}^2/P\; I)`. No data (``batch=None``).

    Args:
      num_data: :math:`D >= 1`, the number of residuals.
      num_params: :math:`P >= 1`, the number of parameters.
      key: PRNG key of :math:`(z_0, G, Q)` (required).
      residual_scale: :math:`s_z >= 0` (default 1.0).
      linear_scale: :math:`s_G >= 0` (default 1.0).
      quadratic_scale: :math:`s_Q >= 0` (default 1.0).
      init_scale: scale of the initial parameters, >= 0 (default 1.0).

    Returns:
      A :class:`Toy` named ``"second_order_regression"`` with an exact ``sharpness`` (dense
      ``eigh`` of the closed-form Hessian above).

    Raises:
      ValueError: non-positive sizes, negative scales, or a missing or invalid ``key``.

    Reference: Agarwala, Pedregosa, Pennington, arXiv:2210.04860.
    """
    num_data = check_positive_int(num_data, "num_data")
    num_params = check_positive_int(num_params, "num_params")
    key = check_key(key)
    residual_scale = check_nonnegative(residual_scale, "residual_scale")
    linear_scale = check_nonnegative(linear_scale, "linear_scale")
    quadratic_scale = check_nonnegative(quadratic_scale, "quadratic_scale")
    init_scale = check_nonnegative(init_scale, "init_scale")
    k_z, k_g, k_q = jax.random.split(key, 3)
    z0 = residual_scale * normal_f32(k_z, (num_data,))
    g = linear_scale * normal_f32(k_g, (num_params, num_data)) / np.sqrt(num_params)
    a = normal_f32(k_q, (num_data, num_params, num_params))
    q = quadratic_scale * (a + np.swapaxes(a, 1, 2)) / np.sqrt(2.0 * num_params)

    def init(init_key: jax.Array) -> jax.Array:
        return init_scale / np.sqrt(num_params) * default_normal(init_key, (num_params,))

    def loss(params: jax.Array, batch=None) -> jax.Array:
        dtype = float_dtype(params)
        theta = jnp.asarray(params, dtype)
        z = _residuals(theta, as_dtype(z0, dtype), as_dtype(g, dtype), as_dtype(q, dtype))
        return 0.5 * jnp.sum(z**2)

    def sharpness(params: jax.Array) -> jax.Array:
        dtype = float_dtype(params)
        theta = jnp.asarray(params, dtype)
        g_, q_ = as_dtype(g, dtype), as_dtype(q, dtype)
        z = _residuals(theta, as_dtype(z0, dtype), g_, q_)
        jac = _jacobian(theta, g_, q_)
        hess = jac.T @ jac + jnp.einsum("a,aij->ij", z, q_)
        return jnp.linalg.eigvalsh(hess)[-1]

    hyper = {
        "num_data": num_data,
        "num_params": num_params,
        "key": key_data(key),
        "residual_scale": residual_scale,
        "linear_scale": linear_scale,
        "quadratic_scale": quadratic_scale,
        "init_scale": init_scale,
    }
    return Toy(
        name="second_order_regression",
        init=init,
        loss=loss,
        batch=None,
        hyper=hyper,
        sharpness=sharpness,
    )


def second_order_regression_1d(
    omega: float,
    z0: float,
    g=(1.0, 0.5),
    *,
    init_scale: float = 1.0,
) -> Toy:
    r"""The one-datum, two-parameter second-order regression model whose GD reduces to a 2-D map.

    .. math::

        z(\theta) = z_0 + g^\top\theta + \tfrac12\,\omega\,(\theta_1^2 - \theta_2^2), \qquad
        L(\theta) = \tfrac12 z(\theta)^2,

    i.e. :math:`D = 1`, :math:`P = 2`, :math:`Q = \mathrm{diag}(\omega, -\omega)` (eigenvalues
    :math:`\pm\omega`, written in its eigenbasis without loss of generality). With
    :math:`J = g + Q\theta`, :math:`T = \lVert J\rVert^2` (the NTK, the sharpness at :math:`z = 0`) and
    :math:`E = z_0 - \tfrac12 g^\top Q^{-1} g = z_0 - (g_1^2 - g_2^2)/(2\omega)`, the normalised
    variables :math:`x = \eta\omega z`, :math:`y = \eta T - 2`, :math:`e = \eta\omega E` (see
    :func:`second_order_1d_normalized`) follow GD with stepsize :math:`\eta` exactly:

    .. math::

        x_{t+1} = -(1 + y_t)x_t + x_t^2 (x_t - e), \qquad
        y_{t+1} = y_t + x_t^2 (y_t + 2) - 4 x_t (x_t - e).

    To realise a given :math:`e` at stepsize :math:`\eta`, pass
    ``z0 = e/(eta*omega) + (g1**2 - g2**2)/(2*omega)``; :func:`second_order_1d_params` maps a
    normalised :math:`(x, y)` back to parameters.

    Parameters are :math:`\theta` of shape ``(2,)``; ``init(key)`` draws
    :math:`\theta_0 \sim \mathcal N(0, \texttt{init\_scale}^2 I)`. No data (``batch=None``).

    Args:
      omega: :math:`\omega > 0`, the magnitude of the eigenvalues of :math:`Q`.
      z0: :math:`z_0`, the residual at :math:`\theta = 0` (finite).
      g: :math:`g = G \in \mathbb R^2`, the linear term (default ``(1.0, 0.5)``).
      init_scale: scale of the initial parameters, >= 0 (default 1.0).

    Returns:
      A :class:`Toy` named ``"second_order_regression_1d"`` with an exact ``sharpness`` (closed-form
      2x2 Hessian :math:`J J^\top + z Q`).

    Raises:
      ValueError: ``omega <= 0``, a non-finite ``z0``, or ``g`` not two finite floats.

    Reference: Agarwala, Pedregosa, Pennington, arXiv:2210.04860 (section 3).
    """
    omega = check_positive(omega, "omega")
    z0 = check_finite(z0, "z0")
    g_vec = check_vector(g, "g", size=2)
    init_scale = check_nonnegative(init_scale, "init_scale")
    q_diag = np.array([omega, -omega])

    def init(init_key: jax.Array) -> jax.Array:
        return init_scale * default_normal(init_key, (2,))

    def loss(params: jax.Array, batch=None) -> jax.Array:
        dtype = float_dtype(params)
        theta = jnp.asarray(params, dtype)
        z = z0 + theta @ as_dtype(g_vec, dtype) + 0.5 * jnp.sum(as_dtype(q_diag, dtype) * theta**2)
        return 0.5 * z**2

    def sharpness(params: jax.Array) -> jax.Array:
        dtype = float_dtype(params)
        theta = jnp.asarray(params, dtype)
        qd = as_dtype(q_diag, dtype)
        z = z0 + theta @ as_dtype(g_vec, dtype) + 0.5 * jnp.sum(qd * theta**2)
        jac = as_dtype(g_vec, dtype) + qd * theta
        hess = jnp.outer(jac, jac) + z * jnp.diag(qd)
        return jnp.linalg.eigvalsh(hess)[-1]

    hyper = {"omega": omega, "z0": z0, "g": g_vec.tolist(), "init_scale": init_scale}
    return Toy(
        name="second_order_regression_1d",
        init=init,
        loss=loss,
        batch=None,
        hyper=hyper,
        sharpness=sharpness,
    )


def _check_1d_toy(toy: Toy) -> tuple[float, float, np.ndarray]:
    if toy.name != "second_order_regression_1d":
        raise ValueError(
            f"toy must come from second_order_regression_1d(), got {toy.name!r}; build it with "
            "second_order_regression_1d()."
        )
    return toy.hyper["omega"], toy.hyper["z0"], np.asarray(toy.hyper["g"], dtype=np.float64)


def second_order_1d_energy(toy: Toy) -> float:
    r"""The offset :math:`E = z_0 - \tfrac12 g^\top Q^{-1} g = z_0 - (g_1^2 - g_2^2)/(2\omega)`.

    :math:`z = E + \tfrac12 \varphi^\top Q \varphi` with :math:`\varphi = \theta + Q^{-1}g`: the
    residual vanishes on a hyperbola when :math:`E \ne 0`.
    """
    omega, z0, g = _check_1d_toy(toy)
    return z0 - (g[0] ** 2 - g[1] ** 2) / (2.0 * omega)


def second_order_1d_normalized(toy: Toy, params: jax.Array, stepsize) -> tuple[jax.Array, ...]:
    r"""The normalised variables :math:`(x, y, e)` of :func:`second_order_regression_1d` at ``params``.

    .. math::

        x = \eta\,\omega\,z(\theta), \qquad y = \eta \lVert J(\theta)\rVert^2 - 2, \qquad
        e = \eta\,\omega\,E,

    with :math:`\eta` = ``stepsize``; :math:`y` is the normalised centred NTK (sharpness at
    :math:`z = 0`).

    Args:
      toy: a :func:`second_order_regression_1d` toy.
      params: :math:`\theta`, shape ``(2,)`` (may carry leading batch axes).
      stepsize: :math:`\eta` (scalar or broadcastable array).

    Returns:
      ``(x, y, e)`` as arrays in the dtype of ``params``.

    Raises:
      ValueError: ``toy`` is not a ``second_order_regression_1d`` toy.
    """
    omega, z0, g = _check_1d_toy(toy)
    energy = second_order_1d_energy(toy)
    dtype = float_dtype(params)
    theta = jnp.asarray(params, dtype)
    eta = jnp.asarray(stepsize, dtype)
    qd = as_dtype(np.array([omega, -omega]), dtype)
    z = z0 + theta @ as_dtype(g, dtype) + 0.5 * jnp.sum(qd * theta**2, axis=-1)
    ntk = jnp.sum((as_dtype(g, dtype) + qd * theta) ** 2, axis=-1)
    return eta * omega * z, eta * ntk - 2.0, eta * omega * energy * jnp.ones_like(z)


def second_order_1d_params(toy: Toy, x, y, stepsize) -> jax.Array:
    r"""Parameters :math:`\theta` of :func:`second_order_regression_1d` with given normalised :math:`(x, y)`.

    Inverts :func:`second_order_1d_normalized`: with :math:`\varphi = \theta + Q^{-1} g`,
    :math:`z = x/(\eta\omega)`, :math:`\lVert\varphi\rVert^2 = T/\omega^2 = (y + 2)/(\eta\omega^2)` and
    :math:`\varphi_1^2 - \varphi_2^2 = 2(z - E)/\omega`, so

    .. math::

        \varphi_{1,2}^2 = \tfrac12\bigl(\lVert\varphi\rVert^2 \pm 2(z - E)/\omega\bigr), \qquad
        \theta = \varphi - Q^{-1} g,

    taking :math:`\varphi_1, \varphi_2 \ge 0` (the other three sign choices give the same
    :math:`(x, y)`).

    Args:
      toy: a :func:`second_order_regression_1d` toy.
      x, y: the normalised residual and centred NTK (scalars or arrays).
      stepsize: :math:`\eta > 0`.

    Returns:
      :math:`\theta` with a trailing axis of size 2. Entries are NaN where no parameters realise
      :math:`(x, y)`, i.e. where :math:`|2(z - E)/\omega| > \lVert\varphi\rVert^2`.

    Raises:
      ValueError: ``toy`` is not a ``second_order_regression_1d`` toy.
    """
    omega, z0, g = _check_1d_toy(toy)
    energy = second_order_1d_energy(toy)
    x, y, eta = jnp.asarray(x), jnp.asarray(y), jnp.asarray(stepsize)
    dtype = jnp.result_type(x, y, eta, float)
    x, y, eta = x.astype(dtype), y.astype(dtype), eta.astype(dtype)
    z = x / (eta * omega)
    norm_sq = (y + 2.0) / (eta * omega**2)
    diff = 2.0 * (z - energy) / omega
    phi1 = jnp.sqrt(0.5 * (norm_sq + diff))
    phi2 = jnp.sqrt(0.5 * (norm_sq - diff))
    shift = as_dtype(np.array([g[0] / omega, -g[1] / omega]), dtype)
    return jnp.stack([phi1, phi2], axis=-1) - shift
