"""Tests of the losses (MSE with the factor 1/2, cross-entropy, accuracy) and of make_loss_fn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eosmodel.train._losses import LOSSES, accuracy, cross_entropy, make_loss_fn, mse
from eosmodel.train._models import init_model, make_model

_dims = st.tuples(st.integers(1, 9), st.integers(2, 6))  # (n, K)


# float64 via the jax.enable_x64 context inside hypothesis tests (a function-scoped fixture such as
# conftest's ``x64`` is rejected by hypothesis's health check).


# Jitted once per shape and reused across hypothesis examples (an eager call compiles each op anew
# for every new shape); num_classes is static.
_mse = jax.jit(mse, static_argnums=2)
_mse_grad = jax.jit(jax.grad(mse), static_argnums=2)
_cross_entropy = jax.jit(cross_entropy, static_argnums=2)
_ce_alias = jax.jit(LOSSES["ce"], static_argnums=2)
_accuracy = jax.jit(accuracy)


def _draw(n, k, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) * 3.0, rng.integers(0, k, size=n)


@settings(max_examples=10)  # each new shape recompiles
@given(dims=_dims, seed=st.integers(0, 2**31 - 1))
def test_mse_equals_its_formula_by_hand(dims, seed):
    with jax.enable_x64(True):
        n, k = dims
        logits, labels = _draw(n, k, seed)
        expected = 0.0
        for i in range(n):  # (1/n) sum_i 1/2 sum_k (f_k(x_i) - [y_i == k])^2, literally
            for c in range(k):
                expected += 0.5 * (logits[i, c] - (1.0 if labels[i] == c else 0.0)) ** 2
        expected /= n
        value = _mse(jnp.asarray(logits), jnp.asarray(labels), k)
        assert value.dtype == jnp.float64
        np.testing.assert_allclose(float(value), expected, rtol=1e-12)


@settings(max_examples=10)  # each new shape recompiles the ops
@given(dims=_dims, seed=st.integers(0, 2**31 - 1))
def test_mse_gradient_is_residual_over_n(dims, seed):
    """d mse / d f = (f - onehot(y)) / n: the factor 1/2 cancels the square's 2."""
    with jax.enable_x64(True):
        n, k = dims
        logits, labels = _draw(n, k, seed)
        grad = _mse_grad(jnp.asarray(logits), jnp.asarray(labels), k)
        np.testing.assert_allclose(grad, (logits - np.eye(k)[labels]) / n, rtol=1e-12, atol=1e-15)


@settings(max_examples=10)  # each new shape recompiles the ops
@given(dims=_dims, seed=st.integers(0, 2**31 - 1))
def test_cross_entropy_and_accuracy_equal_their_formulas(dims, seed):
    with jax.enable_x64(True):
        n, k = dims
        logits, labels = _draw(n, k, seed)
        lse = np.log(np.sum(np.exp(logits), axis=1))
        expected = np.mean(lse - logits[np.arange(n), labels])
        ce = _cross_entropy(jnp.asarray(logits), jnp.asarray(labels), k)
        np.testing.assert_allclose(float(ce), expected, rtol=1e-12)
        assert float(_ce_alias(jnp.asarray(logits), jnp.asarray(labels), k)) == float(ce)
        acc = _accuracy(jnp.asarray(logits), jnp.asarray(labels))
        correct = int(np.sum(np.argmax(logits, axis=1) == labels))
        assert round(float(acc) * n) == correct and abs(float(acc) - correct / n) < 1e-7


def test_loss_shape_errors_are_explicit():
    logits = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="labels must have shape \\(3,\\)"):
        mse(logits, jnp.zeros((3, 4), jnp.int32), 4)
    with pytest.raises(ValueError, match="logits have 4 columns but num_classes = 5"):
        mse(logits, jnp.zeros((3,), jnp.int32), 5)


def test_unknown_loss_name_raises():
    model = make_model({"name": "fc-tanh", "width": 3, "depth": 1}, 2)
    with pytest.raises(ValueError, match="loss.name = 'hinge' is unknown"):
        make_loss_fn(model, {"name": "hinge"}, 2)


# Small pytree reductions, jitted: eager they compile every op once per leaf shape.
@jax.jit
def _leaf_all_finite(tree):
    return [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]


@jax.jit
def _leaf_sum_squares(tree):
    return [jnp.sum(x * x) for x in jax.tree.leaves(tree)]


@jax.jit
def _unit_direction(tree):
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(tree)))
    return norm, jax.tree.map(lambda g: g / norm, tree)


@jax.jit
def _axpy_tree(p, d, eps):
    return jax.tree.map(lambda p, d: p + eps * d, p, d)


def _setup(name, loss_name, extra, shape, k=3):
    model = make_model({"name": name, **extra}, k)
    x = jax.random.normal(jax.random.key(10), shape)
    y = jnp.arange(shape[0]) % k
    variables = jax.jit(lambda k, x: init_model(model, k, x))(jax.random.key(11), x[:1])  # one compilation
    state = {c: v for c, v in variables.items() if c != "params"}
    return model, make_loss_fn(model, {"name": loss_name}, k), variables["params"], state, (x, y)


def test_stateless_model_loss_forms_agree_and_gradients_are_finite():
    model, fns, params, state, batch = _setup("cnn-tanh", "mse", {"width_multiplier": 0.25}, (4, 8, 8, 2))
    assert not fns.has_state and state == {} and fns.name == "mse"
    value, grads = jax.jit(jax.value_and_grad(fns.loss))(params, batch)
    value2, new_state = jax.jit(fns.loss_with_state)(params, state, batch)
    assert new_state == {}
    np.testing.assert_allclose(value, value2, rtol=1e-6)
    out = jax.jit(fns.logits)(params, state, batch[0])
    np.testing.assert_allclose(value, mse(out, batch[1], 3), rtol=1e-6)
    ev_loss, ev_acc = jax.jit(fns.evaluate)(params, state, batch)
    np.testing.assert_allclose(ev_loss, value, rtol=1e-6)
    assert float(ev_acc) == float(accuracy(out, batch[1]))
    assert all(bool(f) for f in _leaf_all_finite(grads))
    grad_sq = sum(float(s) for s in _leaf_sum_squares(grads))
    assert grad_sq > 0.0
    # The gradient is the derivative of the loss: a central difference agrees (float64).
    with jax.enable_x64(True):
        p64 = jax.jit(lambda t: jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), t))(params)
        b64 = (jnp.asarray(batch[0], jnp.float64), batch[1])
        loss64 = jax.jit(fns.loss)
        g64 = jax.jit(jax.grad(fns.loss))(p64, b64)
        norm, direction = _unit_direction(g64)
        eps = 1e-5
        plus = loss64(_axpy_tree(p64, direction, eps), b64)
        minus = loss64(_axpy_tree(p64, direction, -eps), b64)
        np.testing.assert_allclose((plus - minus) / (2 * eps), norm, rtol=1e-6)
        np.testing.assert_allclose(norm**2, grad_sq, rtol=1e-3)


def test_batchnorm_loss_is_the_train_mode_loss_independent_of_running_stats():
    """loss(params, batch) == loss_with_state(params, any_state, batch)[0]; the state advances."""
    model, fns, params, state, batch = _setup(
        "vgg11-bn", "cross_entropy", {"width_multiplier": 1 / 16}, (4, 8, 8, 3)
    )
    assert fns.has_state and set(state) == {"batch_stats"}
    loss_and_grad = jax.jit(jax.value_and_grad(fns.loss))
    value, grads = loss_and_grad(params, batch)
    with_state = jax.jit(fns.loss_with_state)
    value2, new_state = with_state(params, state, batch)
    np.testing.assert_allclose(value, value2, rtol=1e-6)
    # Arbitrary running statistics do not change the training loss ...
    odd_state = jax.jit(lambda t: jax.tree.map(lambda s: s + 3.0, t))(state)
    value3, _ = with_state(params, odd_state, batch)
    np.testing.assert_allclose(value3, value, rtol=1e-6)
    # ... but they do change the eval-mode loss, and the returned state moved.
    evaluate = jax.jit(fns.evaluate)
    ev_state, _ = evaluate(params, state, batch)
    ev_odd, _ = evaluate(params, odd_state, batch)
    assert abs(float(ev_state) - float(ev_odd)) > 1e-4
    moved = jax.jit(lambda u, v: jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), u, v))(new_state, state)
    assert max(float(m) for m in jax.tree.leaves(moved)) > 1e-3
    assert all(bool(f) for f in _leaf_all_finite(grads))
