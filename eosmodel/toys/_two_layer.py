"""Small two-layer networks on synthetic data: the smallest "real" networks that sharpen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from eosmodel.toys._base import (
    Toy,
    check_key,
    check_nonnegative,
    check_positive_int,
    dense_top_eigenvalue,
    float_dtype,
    key_data,
)

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
_LOSSES = ("mse", "cross_entropy")


def two_layer_net(
    activation: str = "tanh",
    width: int = 16,
    *,
    key: jax.Array,
    num_data: int = 32,
    input_dim: int = 4,
    output_dim: int = 1,
    loss: str = "mse",
    init_scale: float = 1.0,
) -> Toy:
    r"""A two-layer network on synthetic teacher data, trained with the MSE of docs/theory.md 2.

    .. math::

        f(x) = W_2^\top \sigma(W_1^\top x + b_1) + b_2, \qquad
        L = \frac1N \sum_{n=1}^N \tfrac12 \sum_{k=1}^K (f(x_n)_k - y_{nk})^2 \quad (\texttt{loss="mse"}),

    or :math:`L = -\frac1N\sum_n \log\mathrm{softmax}(f(x_n))_{c_n}` (``loss="cross_entropy"``), with
    :math:`\sigma` = ``activation``, :math:`N` = ``num_data``, :math:`K` = ``output_dim``,
    :math:`W_1 \in \mathbb R^{d\times m}` (:math:`d` = ``input_dim``, :math:`m` = ``width``),
    :math:`W_2 \in \mathbb R^{m\times K}`. Data drawn from ``key``: inputs
    :math:`x_n \sim \mathcal N(0, I_d)`; a random teacher of the same architecture (width
    :math:`m`) gives the outputs :math:`t_n`; MSE regresses :math:`y_n = t_n` standardised per output
    (zero mean, unit variance), cross-entropy predicts :math:`c_n = \arg\max_k t_{nk}` and stores
    :math:`y_n = \mathrm{onehot}(c_n)`.

    Parameters are ``{"w1", "b1", "w2", "b2"}``; ``init(key)`` draws LeCun-normal weights
    (:math:`W_1 \sim \mathcal N(0, s^2/d)`, :math:`W_2 \sim \mathcal N(0, s^2/m)`, :math:`s` =
    ``init_scale``) and zero biases. ``batch = (inputs (N, d), targets (N, K))`` in float32; the loss
    is a mean over the leading example axis, so it may be evaluated on chunks and averaged.

    Args:
      activation: ``"tanh"`` (default) or ``"relu"``.
      width: :math:`m >= 1` (default 16).
      key: PRNG key of the data and the teacher (required).
      num_data: :math:`N >= 1` (default 32).
      input_dim: :math:`d >= 1` (default 4).
      output_dim: :math:`K >= 1` (default 1; >= 2 for cross-entropy).
      loss: ``"mse"`` (default) or ``"cross_entropy"``.
      init_scale: :math:`s >= 0` (default 1.0).

    Returns:
      A :class:`Toy` named ``"two_layer_net"`` whose ``sharpness`` is the top eigenvalue of the dense
      Hessian (exact; cost cubic in the number of parameters, meant for small widths).

    Raises:
      ValueError: an unknown activation or loss, non-positive sizes, a negative ``init_scale``,
      ``output_dim < 2`` with cross-entropy, or a missing key.

    Reference: Cohen et al., arXiv:2103.00065 (the MSE convention and progressive sharpening).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}; pass 'tanh' or 'relu'."
        )
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {list(_LOSSES)}, got {loss!r}; pass 'mse' or 'cross_entropy'.")
    width = check_positive_int(width, "width")
    num_data = check_positive_int(num_data, "num_data")
    input_dim = check_positive_int(input_dim, "input_dim")
    output_dim = check_positive_int(output_dim, "output_dim")
    if loss == "cross_entropy" and output_dim < 2:
        raise ValueError(
            f"output_dim must be >= 2 for loss='cross_entropy', got {output_dim}; pass output_dim=2 or more."
        )
    init_scale = check_nonnegative(init_scale, "init_scale")
    key = check_key(key)
    act = _ACTIVATIONS[activation]

    def forward(params: dict, inputs: jax.Array) -> jax.Array:
        hidden = act(inputs @ params["w1"] + params["b1"])
        return hidden @ params["w2"] + params["b2"]

    def draw(init_key: jax.Array, dtype=None) -> dict:
        # Drawn in float32 then cast: the same initial values with and without x64.
        k1, k2 = jax.random.split(init_key)
        dtype = jnp.result_type(float) if dtype is None else dtype
        w1 = jax.random.normal(k1, (input_dim, width), jnp.float32).astype(dtype)
        w2 = jax.random.normal(k2, (width, output_dim), jnp.float32).astype(dtype)
        return {
            "w1": init_scale / np.sqrt(input_dim) * w1,
            "b1": jnp.zeros((width,), dtype),
            "w2": init_scale / np.sqrt(width) * w2,
            "b2": jnp.zeros((output_dim,), dtype),
        }

    k_x, k_teacher, k_bias = jax.random.split(key, 3)
    inputs = jax.random.normal(k_x, (num_data, input_dim), jnp.float32)
    teacher = draw(k_teacher, jnp.float32)
    teacher["b1"] = 0.5 * jax.random.normal(k_bias, (width,), jnp.float32)
    outputs = forward(teacher, inputs)
    if loss == "mse":
        std = jnp.std(outputs, axis=0)
        targets = (outputs - jnp.mean(outputs, axis=0)) / jnp.where(std > 0, std, 1.0)
    else:
        targets = jax.nn.one_hot(jnp.argmax(outputs, axis=-1), output_dim, dtype=jnp.float32)
    batch = (inputs, targets)

    def init(init_key: jax.Array) -> dict:
        return draw(init_key)

    def loss_fn(params: dict, batch) -> jax.Array:
        dtype = float_dtype(params)
        x, y = batch
        x, y = jnp.asarray(x).astype(dtype), jnp.asarray(y).astype(dtype)
        out = forward(jax.tree.map(lambda p: jnp.asarray(p, dtype), params), x)
        if loss == "mse":
            return jnp.mean(0.5 * jnp.sum((out - y) ** 2, axis=-1))
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(out, axis=-1), axis=-1))

    def sharpness(params: dict) -> jax.Array:
        return dense_top_eigenvalue(loss_fn, params, batch)

    hyper = {
        "activation": activation,
        "width": width,
        "key": key_data(key),
        "num_data": num_data,
        "input_dim": input_dim,
        "output_dim": output_dim,
        "loss": loss,
        "init_scale": init_scale,
    }
    return Toy(
        name="two_layer_net", init=init, loss=loss_fn, batch=batch, hyper=hyper, sharpness=sharpness
    )
