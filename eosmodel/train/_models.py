"""Flax networks of the EOS literature: fc-*, cnn-*, VGG11(-BN), CIFAR ResNet18/34.

All modules are ``flax.linen`` modules called as ``model.apply(variables, x, train=...)``:

* ``fc-{tanh,relu,elu}``: ``depth`` hidden dense layers of width ``width`` with bias, then a
  dense read-out (Cohen et al., arXiv:2103.00065; 3072-200-200-10 has 656,810 parameters).
* ``cnn-{relu,tanh}``: two 3×3 convolutions of 32 channels, stride 1, SAME padding (padding 1),
  each followed by the activation and a 2×2 max-pool, then a dense read-out (Cohen et al.).
* ``vgg11``, ``vgg11-bn``: the CIFAR VGG11 plan 64-M-128-M-256-256-M-512-512-M-512-512-M of 3×3
  convolutions (each followed by BatchNorm for ``-bn``, then ReLU; M = 2×2 max-pool), no dropout,
  then one dense classifier (Simonyan & Zisserman 2015, arXiv:1409.1556; CIFAR variant of the
  Armijo-SGD and SPS papers).
* ``resnet18``, ``resnet34``: CIFAR ResNets (He et al. 2016, arXiv:1512.03385): 3×3 stem of 64
  channels + BatchNorm + ReLU, BasicBlocks [2,2,2,2] / [3,4,6,3] with 64/128/256/512 channels and
  strides 1/2/2/2 (1×1 conv + BatchNorm shortcut when the shape changes), global average pool,
  dense classifier.

``width_multiplier`` m scales every channel count and hidden width: c ↦ max(1, round(m·c)), so
the large networks run at small scale on a CPU.

Inputs: MLPs flatten every input. Convolutional nets take NHWC images ``(N, H, W, C)``, or 1-D
signals ``(N, L)`` / ``(N, L, C)`` (e.g. MNIST-1D), for which every kernel, pool and stride is
1-D. A 2×2 max-pool is skipped when a spatial side is already below 2 (small inputs such as
8×8 digits in VGG11).

BatchNorm (``vgg11-bn``, ``resnet*``): with ``train=True`` each layer normalises with the
statistics of the current batch, and the running averages (PyTorch convention: momentum 0.1,
i.e. flax ``momentum=0.9``, ε = 1e-5) are updated in the mutable ``batch_stats`` collection; with
``train=False`` the running averages are used. The training loss actually minimised, and whose
sharpness is measured, is the ``train=True`` loss: a function of the parameters and the batch
only (the running averages do not enter it). In a full-batch run accumulated over chunks, each
chunk is normalised with its own statistics.

Initialisation ``init = "torch"`` (default) reproduces PyTorch's default layer initialisation,
used by the reference implementations (Cohen et al.'s EOS code, the Armijo-SGD and SPS code):
weights and biases ~ U(−1/√fan_in, 1/√fan_in), BatchNorm scale 1 and shift 0. ``init = "flax"``
uses flax's defaults (LeCun-normal weights, zero biases). Sharpness values depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "MODEL_DEFAULTS",
    "ResNet",
    "VGG",
    "count_params",
    "has_batch_norm",
    "init_model",
    "make_model",
]

#: Names accepted by :func:`make_model`.
MODELS = (
    "fc-tanh",
    "fc-relu",
    "fc-elu",
    "cnn-relu",
    "cnn-tanh",
    "vgg11",
    "vgg11-bn",
    "resnet18",
    "resnet34",
)

#: Defaults of the ``[model]`` table. ``width``/``depth`` apply to the fc-* models only.
MODEL_DEFAULTS: dict[str, Any] = {
    "name": "fc-tanh",
    "width": 200,
    "depth": 2,
    "width_multiplier": 1.0,
    "init": "torch",
}

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
}
_INITS = ("torch", "flax")
_VGG11_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
_RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
_RESNET_WIDTHS = (64, 128, 256, 512)
_BN_MOMENTUM = 0.9  # flax convention: running = m*running + (1-m)*batch; PyTorch momentum 0.1
_BN_EPSILON = 1e-5


def _bias_init_torch(fan_in: int):
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# U(-1/sqrt(fan_in), 1/sqrt(fan_in)) == PyTorch's kaiming_uniform_(a=sqrt(5)).
_kernel_init_torch = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _dense(features: int, fan_in: int, init: str, name: str | None = None) -> nn.Dense:
    if init == "torch":
        return nn.Dense(
            features,
            kernel_init=_kernel_init_torch,
            bias_init=_bias_init_torch(fan_in),
            name=name,
        )
    return nn.Dense(features, name=name)


def _conv(
    features: int,
    spatial: int,
    in_features: int,
    init: str,
    *,
    kernel: int = 3,
    stride: int = 1,
    use_bias: bool = True,
    name: str | None = None,
) -> nn.Conv:
    kwargs: dict[str, Any] = {}
    if init == "torch":
        kwargs["kernel_init"] = _kernel_init_torch
        if use_bias:
            kwargs["bias_init"] = _bias_init_torch(in_features * kernel**spatial)
    return nn.Conv(
        features,
        kernel_size=(kernel,) * spatial,
        strides=(stride,) * spatial,
        padding="SAME",
        use_bias=use_bias,
        name=name,
        **kwargs,
    )


def _batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )


def _as_spatial(x: jax.Array) -> jax.Array:
    """(N, L) signals become (N, L, 1); images/signals with channels pass through."""
    if x.ndim == 2:
        return x[..., None]
    if x.ndim < 2:
        raise ValueError(f"input must have a leading batch axis and features, got shape {x.shape}.")
    return x


def _max_pool(x: jax.Array) -> jax.Array:
    spatial = x.ndim - 2
    if any(s < 2 for s in x.shape[1:-1]):
        return x  # nothing left to pool (tiny inputs)
    return nn.max_pool(x, (2,) * spatial, strides=(2,) * spatial, padding="VALID")


class MLP(nn.Module):
    """Fully-connected network f(x) = W_L σ(… σ(W_1 x + b_1) …) + b_L on flattened inputs.

    Attributes:
      widths: hidden layer widths (length = depth).
      num_classes: output dimension.
      activation: ``"tanh"``, ``"relu"`` or ``"elu"``.
      init_scheme: ``"torch"`` or ``"flax"`` (see the module docstring).
    """

    widths: Sequence[int]
    num_classes: int
    activation: str = "tanh"
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no train-dependent layers
        act = _ACTIVATIONS[self.activation]
        x = x.reshape((x.shape[0], -1))
        for w in self.widths:
            x = act(_dense(w, x.shape[-1], self.init_scheme)(x))
        return _dense(self.num_classes, x.shape[-1], self.init_scheme)(x)


class CNN(nn.Module):
    """Cohen et al.'s small CNN: [3×3 conv (SAME, stride 1) → σ → 2×2 max-pool] × len(channels) → dense.

    Attributes:
      channels: conv channel counts (default plan (32, 32)).
      num_classes: output dimension.
      activation: ``"relu"`` or ``"tanh"``.
      init_scheme: ``"torch"`` or ``"flax"``.
    """

    channels: Sequence[int]
    num_classes: int
    activation: str = "relu"
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        act = _ACTIVATIONS[self.activation]
        x = _as_spatial(x)
        spatial = x.ndim - 2
        for c in self.channels:
            x = _conv(c, spatial, x.shape[-1], self.init_scheme)(x)
            x = _max_pool(act(x))
        x = x.reshape((x.shape[0], -1))
        return _dense(self.num_classes, x.shape[-1], self.init_scheme)(x)


class VGG(nn.Module):
    """VGG feature stack from a plan (ints = 3×3 conv channels, "M" = 2×2 max-pool) + dense classifier.

    Each conv (with bias) is followed by BatchNorm when ``batch_norm`` and by ReLU. No dropout.

    Attributes:
      plan: the layer plan, e.g. VGG11's (64, "M", 128, "M", 256, 256, "M", …).
      num_classes: output dimension.
      batch_norm: insert BatchNorm after each conv.
      init_scheme: ``"torch"`` or ``"flax"``.
    """

    plan: Sequence[Any]
    num_classes: int
    batch_norm: bool = False
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _as_spatial(x)
        spatial = x.ndim - 2
        for item in self.plan:
            if item == "M":
                x = _max_pool(x)
                continue
            x = _conv(int(item), spatial, x.shape[-1], self.init_scheme)(x)
            if self.batch_norm:
                x = _batch_norm(train)(x)
            x = nn.relu(x)
        x = x.reshape((x.shape[0], -1))
        return _dense(self.num_classes, x.shape[-1], self.init_scheme)(x)


class BasicBlock(nn.Module):
    """ResNet BasicBlock: relu(BN(conv3×3(relu(BN(conv3×3(x))))) + shortcut(x)).

    The shortcut is the identity, or conv1×1(stride) + BN when the stride or width changes.
    """

    features: int
    stride: int = 1
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        spatial = x.ndim - 2
        y = _conv(self.features, spatial, x.shape[-1], self.init_scheme, stride=self.stride, use_bias=False)(x)
        y = nn.relu(_batch_norm(train)(y))
        y = _conv(self.features, spatial, y.shape[-1], self.init_scheme, use_bias=False)(y)
        y = _batch_norm(train)(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _conv(
                self.features, spatial, x.shape[-1], self.init_scheme, kernel=1, stride=self.stride,
                use_bias=False,
            )(x)
            x = _batch_norm(train)(x)
        return nn.relu(y + x)


class ResNet(nn.Module):
    """CIFAR ResNet: 3×3 stem + BN + ReLU, BasicBlock stages, global average pool, dense.

    Attributes:
      blocks: blocks per stage, (2, 2, 2, 2) for ResNet18, (3, 4, 6, 3) for ResNet34.
      widths: channels per stage (64, 128, 256, 512 at width multiplier 1).
      num_classes: output dimension.
      init_scheme: ``"torch"`` or ``"flax"``.
    """

    blocks: Sequence[int]
    widths: Sequence[int]
    num_classes: int
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _as_spatial(x)
        spatial = x.ndim - 2
        x = _conv(self.widths[0], spatial, x.shape[-1], self.init_scheme, use_bias=False)(x)
        x = nn.relu(_batch_norm(train)(x))
        for stage, (n_blocks, width) in enumerate(zip(self.blocks, self.widths, strict=True)):
            for j in range(n_blocks):
                stride = 2 if (stage > 0 and j == 0) else 1
                x = BasicBlock(width, stride, self.init_scheme)(x, train)
        x = x.mean(axis=tuple(range(1, x.ndim - 1)))
        return _dense(self.num_classes, x.shape[-1], self.init_scheme)(x)


def _scaled(c: int, multiplier: float) -> int:
    return max(1, int(round(c * multiplier)))


def make_model(cfg: dict, num_classes: int) -> nn.Module:
    """Build the flax module named by the ``[model]`` table of a run config.

    Widths after scaling by the width multiplier m: c ↦ max(1, round(m·c)) for every hidden width
    and channel count (fc: ``width``; cnn: 32; VGG/ResNet: their channel plans).

    Args:
      cfg: the ``[model]`` table: ``name`` (one of :data:`MODELS`), ``width`` (int ≥ 1, fc only,
        default 200), ``depth`` (int ≥ 1, fc only, default 2), ``width_multiplier`` (float > 0,
        default 1.0), ``init`` (``"torch"`` default or ``"flax"``). Missing keys take
        :data:`MODEL_DEFAULTS`; keys of other models are ignored.
      num_classes: output dimension (≥ 1).

    Returns:
      A ``flax.linen.Module`` called as ``model.apply(variables, x, train=bool)`` returning
      logits of shape ``(N, num_classes)``.

    Raises:
      ValueError: unknown name or init, or a non-positive width, depth, multiplier or
        num_classes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = make_model({"name": "fc-tanh", "width": 200, "depth": 2}, 10)
      >>> variables = init_model(model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
      >>> count_params(variables["params"])
      656810
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be the [model] table as a dict, got {type(cfg).__name__}.")
    name = cfg.get("name", MODEL_DEFAULTS["name"])
    if name not in MODELS:
        raise ValueError(f"model.name = {name!r} is unknown; use one of {', '.join(MODELS)}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    mult = cfg.get("width_multiplier", MODEL_DEFAULTS["width_multiplier"])
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
        raise ValueError(
            f"model.width_multiplier must be a number > 0, got {mult!r}; e.g. 1.0 (full size) "
            "or 0.125."
        )
    init = cfg.get("init", MODEL_DEFAULTS["init"])
    if init not in _INITS:
        raise ValueError(f"model.init = {init!r} is unknown; use 'torch' or 'flax'.")

    family, _, act = name.partition("-")
    if family == "fc":
        width, depth = cfg.get("width", MODEL_DEFAULTS["width"]), cfg.get("depth", MODEL_DEFAULTS["depth"])
        for key, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key} must be an integer ≥ 1 for {name}, got {value!r}.")
        return MLP((_scaled(width, mult),) * depth, num_classes, act, init)
    if family == "cnn":
        return CNN((_scaled(32, mult),) * 2, num_classes, act, init)
    if family == "vgg11":
        plan = tuple(item if item == "M" else _scaled(item, mult) for item in _VGG11_PLAN)
        return VGG(plan, num_classes, batch_norm=(act == "bn"), init_scheme=init)
    widths = tuple(_scaled(w, mult) for w in _RESNET_WIDTHS)
    return ResNet(_RESNET_BLOCKS[name], widths, num_classes, init)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` keeps a ``batch_stats`` collection (VGG11-BN, ResNets)."""
    return isinstance(model, ResNet) or (isinstance(model, VGG) and model.batch_norm)


def init_model(model: nn.Module, key: jax.Array, x_example: jax.Array) -> dict:
    """Initialise a model's variables from a key and an example input batch.

    Args:
      model: a module from :func:`make_model`.
      key: a ``jax.random`` key (the only source of randomness).
      x_example: an input batch with the data's shape, e.g. ``dataset.x_train[:1]``; only its
        shape and dtype matter.

    Returns:
      A plain dict with ``"params"`` and, for BatchNorm models, ``"batch_stats"`` (running means
      0 and variances 1).

    Raises:
      ValueError: if ``x_example`` has no batch axis.
    """
    x_example = jnp.asarray(x_example)
    if x_example.ndim < 2 or x_example.shape[0] < 1:
        raise ValueError(
            f"x_example must be a batch (N ≥ 1, features...), got shape {x_example.shape}; pass "
            "e.g. x_train[:1]."
        )
    variables = model.init(key, x_example, train=False)
    return {k: v for k, v in dict(variables).items()}


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
    return int(sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(params)))
