"""Classification losses (MSE with the factor ½, cross-entropy), accuracy, and model loss functions.

Conventions of Cohen et al.'s edge-of-stability code (docs/theory.md section 2), with f(x) ∈ ℝ^K the
logits, e_y the one-hot label and n the number of examples:

    mse           = (1/n) Σ_i ½ Σ_k (f_k(x_i) − [e_{y_i}]_k)²
    cross_entropy = (1/n) Σ_i ( log Σ_k exp f_k(x_i) − f_{y_i}(x_i) )

The ½ matters: sharpness values and 2/η comparisons depend on it.

Reference: Cohen et al., ICLR 2021, arXiv:2103.00065.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from eosmodel.train._models import has_batch_norm

__all__ = [
    "LOSSES",
    "LossFns",
    "accuracy",
    "cross_entropy",
    "make_loss_fn",
    "mse",
]


def _check_labels(logits: jax.Array, labels: jax.Array, num_classes: int | None = None) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, num_classes), got {logits.shape}.")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must have shape ({logits.shape[0]},) to match logits {logits.shape}, got "
            f"{labels.shape}; pass integer class labels, not one-hot vectors."
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} columns but num_classes = {num_classes}; build the "
            "model with the dataset's num_classes."
        )


def mse(logits: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """Mean over examples of half the squared distance between logits and one-hot labels.

    mse = (1/n) Σ_i ½ ‖f(x_i) − e_{y_i}‖², with e_y = onehot(y, K).

    Args:
      logits: f(x), shape ``(n, K)``.
      labels: integer labels in ``[0, K)``, shape ``(n,)``.
      num_classes: K (must equal ``logits.shape[1]``).

    Returns:
      A scalar in the dtype of ``logits``.

    Raises:
      ValueError: on mismatched shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> float(mse(jnp.array([[1.0, 0.0], [0.0, 0.0]]), jnp.array([1, 0]), 2))  # (½·2 + ½·1)/2
      0.75
    """
    _check_labels(logits, labels, num_classes)
    target = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    return 0.5 * jnp.mean(jnp.sum(jnp.square(logits - target), axis=-1))


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int | None = None) -> jax.Array:
    """Mean softmax cross-entropy with integer labels.

    ce = (1/n) Σ_i (logsumexp_k f_k(x_i) − f_{y_i}(x_i)), via
    ``optax.softmax_cross_entropy_with_integer_labels`` (numerically stable).

    Args:
      logits: shape ``(n, K)``.
      labels: integer labels in ``[0, K)``, shape ``(n,)``.
      num_classes: K, checked against ``logits`` when given.

    Returns:
      A scalar.

    Raises:
      ValueError: on mismatched shapes.
    """
    _check_labels(logits, labels, num_classes)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max logit is the label: (1/n) Σ_i 1[argmax_k f_k(x_i) = y_i]."""
    _check_labels(logits, labels)
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


#: Loss name → ``fn(logits, labels, num_classes) -> scalar``. ``"ce"`` aliases cross-entropy.
LOSSES: dict[str, Callable[[jax.Array, jax.Array, int], jax.Array]] = {
    "mse": mse,
    "cross_entropy": cross_entropy,
    "ce": cross_entropy,
}


class LossFns(NamedTuple):
    """The loss of a model on a batch ``(x, y)``, in the forms the training loop needs.

    Attributes:
      loss: ``loss(params, batch) -> scalar``: the training loss (``train=True``). For BatchNorm
        models it normalises with the batch's statistics and discards the running averages, so it
        equals the first output of ``loss_with_state`` for any ``model_state``: a pure function of
        (params, batch) whose Hessian is the sharpness of the loss being minimised.
      loss_with_state: ``loss_with_state(params, model_state, batch) -> (scalar, new_model_state)``
        where ``model_state`` holds the non-parameter collections (``{"batch_stats": …}``, or ``{}``
        for models without BatchNorm, returned unchanged).
      logits: ``logits(params, model_state, x) -> (n, K)`` in evaluation mode (``train=False``:
        BatchNorm uses its running averages).
      evaluate: ``evaluate(params, model_state, batch) -> (loss, accuracy)`` in evaluation mode.
      has_state: whether the model keeps ``batch_stats``.
      name: the loss name.
    """

    loss: Callable[[Any, tuple], jax.Array]
    loss_with_state: Callable[[Any, dict, tuple], tuple[jax.Array, dict]]
    logits: Callable[[Any, dict, jax.Array], jax.Array]
    evaluate: Callable[[Any, dict, tuple], tuple[jax.Array, jax.Array]]
    has_state: bool
    name: str


def make_loss_fn(model: nn.Module, loss_cfg: dict, num_classes: int) -> LossFns:
    """Bind a model and a loss (``[loss]`` table) into pure functions of (params, batch).

    loss(w; x, y) = ℓ(f_w(x), y) with f_w the model in training mode and ℓ one of
    :data:`LOSSES` (mean over the batch).

    Args:
      model: a module from :func:`~eosmodel.train._models.make_model`.
      loss_cfg: the ``[loss]`` table, ``{"name": "mse" | "cross_entropy" | "ce"}`` (default mse).
      num_classes: K, the model's output dimension.

    Returns:
      A :class:`LossFns`. ``batch`` is a pair ``(x, y)`` of inputs and int labels.

    Raises:
      ValueError: unknown loss name.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from eosmodel.train._models import make_model, init_model
      >>> model = make_model({"name": "fc-relu", "width": 4, "depth": 1}, 3)
      >>> variables = init_model(model, jax.random.key(0), jnp.zeros((1, 5)))
      >>> fns = make_loss_fn(model, {"name": "mse"}, 3)
      >>> batch = (jnp.ones((2, 5)), jnp.array([0, 2]))
      >>> value = fns.loss(variables["params"], batch)
      >>> bool(value == mse(fns.logits(variables["params"], {}, batch[0]), batch[1], 3))
      True
    """
    if not isinstance(loss_cfg, dict):
        raise TypeError(f"loss_cfg must be the [loss] table as a dict, got {type(loss_cfg).__name__}.")
    name = loss_cfg.get("name", "mse")
    if name not in LOSSES:
        raise ValueError(f"loss.name = {name!r} is unknown; use one of {', '.join(LOSSES)}.")
    criterion = LOSSES[name]
    stateful = has_batch_norm(model)

    def loss_with_state(params, model_state, batch):
        x, y = batch
        if stateful:
            out, updates = model.apply(
                {"params": params, **model_state}, x, train=True, mutable=["batch_stats"]
            )
            return criterion(out, y, num_classes), {**model_state, **updates}
        out = model.apply({"params": params}, x, train=True)
        return criterion(out, y, num_classes), model_state

    def loss(params, batch):
        x, y = batch
        if stateful:
            # Running averages are outputs only in train mode: start them from fresh values.
            out, _ = model.apply({"params": params}, x, train=True, mutable=["batch_stats"])
        else:
            out = model.apply({"params": params}, x, train=True)
        return criterion(out, y, num_classes)

    def logits(params, model_state, x):
        return model.apply({"params": params, **model_state}, x, train=False)

    def evaluate(params, model_state, batch):
        x, y = batch
        out = logits(params, model_state, x)
        return criterion(out, y, num_classes), accuracy(out, y)

    return LossFns(loss, loss_with_state, logits, evaluate, stateful, name)
