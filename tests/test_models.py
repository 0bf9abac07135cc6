"""Tests of the flax models: parameter counts of the reference architectures, forward passes at
small width, PyTorch-default initialisation, and BatchNorm train/eval semantics."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eosmodel.train._models import (
    MODELS,
    count_params,
    has_batch_norm,
    init_model,
    make_model,
)

CIFAR = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)


def _abstract_count(cfg: dict, x_like=CIFAR, num_classes: int = 10) -> int:
    """Parameter count from shapes only (no allocation, no compilation)."""
    model = make_model(cfg, num_classes)
    shapes = jax.eval_shape(lambda k, x: init_model(model, k, x), jax.random.key(0), x_like)
    return count_params(shapes["params"])


def _jit_init(model, key, x_example):
    """``init_model`` under jit: one compilation instead of one per eager op of the forward pass."""
    return jax.jit(lambda k, x: init_model(model, k, x))(key, x_example)


def test_fc_parameter_count_on_cifar_is_656810():
    # 3072*200 + 200 + 200*200 + 200 + 200*10 + 10 (Cohen et al.'s fc nets, docs/theory.md section 2).
    for act in ("tanh", "relu", "elu"):
        assert _abstract_count({"name": f"fc-{act}", "width": 200, "depth": 2}) == 656_810


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        # conv 3x3x3x32+32, conv 3x3x32x32+32, dense 8*8*32*10+10 (Cohen et al.'s Linear(2048, 10)).
        ({"name": "cnn-relu"}, 896 + 9248 + 20490),
        # Kuang Liu's pytorch-cifar VGG('VGG11') (conv bias + BN): 9,231,114; without BN 5504 fewer.
        ({"name": "vgg11-bn"}, 9_231_114),
        ({"name": "vgg11"}, 9_231_114 - 2 * (64 + 128 + 256 + 256 + 4 * 512)),
        # Kuang Liu's ResNet18() / ResNet34(): 11,173,962 / 21,282,122.
        ({"name": "resnet18"}, 11_173_962),
        ({"name": "resnet34"}, 21_282_122),
        # width multiplier scales widths: 3072*25+25 + 25*25+25 + 25*10+10.
        ({"name": "fc-tanh", "width": 200, "depth": 2, "width_multiplier": 0.125}, 77_735),
        # three hidden layers of width 7.
        ({"name": "fc-relu", "width": 7, "depth": 3}, 3072 * 7 + 7 + 2 * (7 * 7 + 7) + 7 * 10 + 10),
        # half-width CNN: 16 channels.
        ({"name": "cnn-tanh", "width_multiplier": 0.5}, 3 * 9 * 16 + 16 + 16 * 9 * 16 + 16 + 8 * 8 * 16 * 10 + 10),
    ],
)
def test_parameter_counts_of_reference_architectures(cfg, expected):
    assert _abstract_count(cfg) == expected


def test_cnn_on_1d_signals_uses_1d_convolutions():
    # MNIST-1D inputs (N, 40): conv 3x1x32+32, conv 3x32x32+32, 40 -> 20 -> 10 positions, dense.
    x_like = jax.ShapeDtypeStruct((1, 40), jnp.float32)
    assert _abstract_count({"name": "cnn-relu"}, x_like) == 128 + 3104 + 10 * 32 * 10 + 10


def test_torch_initialisation_bounds_and_spread():
    """Weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default."""
    model = make_model({"name": "fc-tanh", "width": 200, "depth": 2}, 10)
    params = _jit_init(model, jax.random.key(1), jnp.zeros((1, 400)))["params"]
    for layer, fan_in in (("Dense_0", 400), ("Dense_1", 200), ("Dense_2", 200)):
        bound = 1.0 / np.sqrt(fan_in)
        kernel = np.asarray(params[layer]["kernel"])
        bias = np.asarray(params[layer]["bias"])
        assert kernel.shape[0] == fan_in
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        # Uniform on [-b, b] has std b/sqrt(3); kernels have >= 2000 entries.
        np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.05)
        assert np.abs(kernel).max() > 0.95 * bound
    flax_params = _jit_init(
        make_model({"name": "fc-tanh", "width": 200, "depth": 2, "init": "flax"}, 10),
        jax.random.key(1),
        jnp.zeros((1, 400)),
    )["params"]
    assert np.all(np.asarray(flax_params["Dense_0"]["bias"]) == 0.0)


def test_init_is_a_function_of_the_key():
    model = make_model({"name": "fc-relu", "width": 8, "depth": 1}, 3)
    a = init_model(model, jax.random.key(0), jnp.zeros((1, 5)))
    b = init_model(model, jax.random.key(0), jnp.zeros((2, 5)))
    c = init_model(model, jax.random.key(1), jnp.zeros((1, 5)))
    assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b))
    assert not jnp.array_equal(a["params"]["Dense_0"]["kernel"], c["params"]["Dense_0"]["kernel"])


FORWARD_CASES = [
    ("fc-elu", {"width": 16, "depth": 2}, (3, 8, 8, 1)),
    ("cnn-relu", {}, (3, 8, 8, 3)),
    pytest.param("vgg11", {"width_multiplier": 1 / 16}, (2, 16, 16, 3), marks=pytest.mark.slow),
    ("vgg11-bn", {"width_multiplier": 1 / 16}, (3, 8, 8, 1)),
    ("resnet18", {"width_multiplier": 1 / 16}, (3, 8, 8, 3)),
    pytest.param("resnet34", {"width_multiplier": 1 / 16}, (3, 16), marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "extra", "shape"), FORWARD_CASES, ids=["fc-elu", "cnn-relu", "vgg11", "vgg11-bn", "resnet18", "resnet34"])
def test_forward_pass_eval_mode_is_per_example(name, extra, shape):
    """Logits have shape (N, K), are finite, and in eval mode each row depends on its example only."""
    model = make_model({"name": name, **extra}, 5)
    x = jax.random.normal(jax.random.key(2), shape)
    variables = init_model(model, jax.random.key(3), x[:1])
    assert set(variables) == ({"params", "batch_stats"} if has_batch_norm(model) else {"params"})
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    out = apply(variables, x)
    assert out.shape == (shape[0], 5) and bool(jnp.all(jnp.isfinite(out)))
    # Eval mode: no coupling between examples; permuting the batch permutes the logits.
    perm = jnp.array([2, 0, 1] if shape[0] == 3 else [1, 0])
    np.testing.assert_allclose(apply(variables, x[perm]), out[perm], rtol=1e-5, atol=1e-5)
    assert float(jnp.std(out)) > 0.0  # not a constant map


@pytest.mark.parametrize("name", ["vgg11-bn", "resnet18"])
def test_batchnorm_train_mode_uses_batch_statistics(name):
    """Train mode normalises with the batch's statistics, eval mode with the running averages.

    VGG11-BN's first conv has a bias, ResNet's none; either way a positive rescaling x -> a*x
    scales the first conv's output, which batch normalisation undoes (up to eps = 1e-5): train-mode
    logits are invariant, eval-mode logits (fixed running statistics) are not. Train mode also
    couples the examples of a batch, eval mode does not.
    """
    model = make_model({"name": name, "width_multiplier": 1 / 16}, 4)
    x = jax.random.normal(jax.random.key(4), (6, 8, 8, 3))
    variables = init_model(model, jax.random.key(5), x[:1])

    @jax.jit
    def train_logits(x):
        return model.apply(variables, x, train=True, mutable=["batch_stats"])[0]

    @jax.jit
    def eval_logits(x):
        return model.apply(variables, x, train=False)

    def spread(out):  # the input-dependent part of the logits
        return float(jnp.max(jnp.abs(out - out.mean(0))))

    base_train, base_eval = train_logits(x), eval_logits(x)
    assert spread(base_train) > 0.1  # the invariance below is not vacuous
    np.testing.assert_allclose(train_logits(3.0 * x), base_train, rtol=1e-3, atol=1e-4)
    # Eval mode at initial running statistics (mean 0, var 1): rescaling the input changes the
    # logits by more than half their spread across examples (torch-init signals are small there).
    assert float(jnp.max(jnp.abs(eval_logits(3.0 * x) - base_eval))) > 0.5 * spread(base_eval)
    # Coupling: changing examples 3..5 changes the train-mode logits of examples 0..2.
    x_other = x.at[3:].set(5.0 * x[3:] + 1.0)
    assert float(jnp.max(jnp.abs(train_logits(x_other)[:3] - train_logits(x)[:3]))) > 1e-3
    np.testing.assert_allclose(eval_logits(x_other)[:3], eval_logits(x)[:3], rtol=1e-5, atol=1e-6)


def test_batchnorm_running_average_update_follows_pytorch_momentum():
    """running_mean <- 0.9*running_mean + 0.1*batch_mean (PyTorch momentum 0.1), biased variance."""
    model = make_model({"name": "vgg11-bn", "width_multiplier": 1 / 16}, 3)
    x = jax.random.normal(jax.random.key(6), (4, 8, 8, 3))
    variables = init_model(model, jax.random.key(7), x[:1])
    apply = jax.jit(  # one compilation instead of one per eager op
        lambda variables, x: model.apply(
            variables,
            x,
            train=True,
            mutable=["batch_stats", "intermediates"],
            capture_intermediates=lambda mdl, _: isinstance(mdl, nn.Conv),
        )
    )
    _, state = apply(variables, x)
    conv0 = state["intermediates"]["Conv_0"]["__call__"][0]  # first BN's input
    new = state["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(new["mean"], 0.1 * conv0.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * conv0.var((0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_every_model_name_builds():
    for name in MODELS:
        model = make_model({"name": name, "width": 4, "depth": 1, "width_multiplier": 1 / 32}, 2)
        shapes = jax.eval_shape(lambda k, m=model: init_model(m, k, jnp.zeros((1, 32, 32, 3))), jax.random.key(0))
        assert count_params(shapes["params"]) > 0
        assert ("batch_stats" in shapes) == (name in ("vgg11-bn", "resnet18", "resnet34"))


@pytest.mark.parametrize(
    ("cfg", "num_classes", "match"),
    [
        ({"name": "mlp"}, 10, "model.name = 'mlp' is unknown"),
        ({"name": "fc-tanh", "width": 0}, 10, "model.width must be an integer ≥ 1"),
        ({"name": "fc-tanh", "depth": 1.5}, 10, "model.depth must be an integer ≥ 1"),
        ({"name": "vgg11", "width_multiplier": 0.0}, 10, "model.width_multiplier must be a number > 0"),
        ({"name": "vgg11", "init": "he"}, 10, "model.init = 'he' is unknown"),
        ({"name": "cnn-relu"}, 0, "num_classes must be a positive integer"),
    ],
)
def test_bad_model_config_raises_clear_error(cfg, num_classes, match):
    with pytest.raises(ValueError, match=match):
        make_model(cfg, num_classes)


def test_init_model_rejects_unbatched_example():
    model = make_model({"name": "fc-tanh", "width": 4, "depth": 1}, 2)
    with pytest.raises(ValueError, match="x_example must be a batch"):
        init_model(model, jax.random.key(0), jnp.zeros((5,)))
