"""The contract every tuner (and every preset) honours: jit, scan, vmap, stable state, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eosmodel.tuners import (
    PRESETS,
    STATUS_NONFINITE_INPUT,
    armijo,
    cdat,
    constant,
    make_tuner,
    oracle,
    polyak,
    read_diagnostics,
    read_stepsize,
)

# name -> zero-argument factory of the transformation.
TUNERS = {
    "constant": lambda: constant(0.05),
    "armijo": lambda: armijo(),
    "armijo-skip-max": lambda: armijo(on_failure="skip", init_rule="max", max_trials=3),
    "polyak": lambda: polyak(c=0.5, max_stepsize=2.0),
    "polyak-smooth": lambda: polyak(c=0.2, smooth_cap=1.05),
    "cdat": lambda: cdat(sigma=2.0),
    "cdat-ema": lambda: cdat(sigma=1.0, ema=0.9, eps=1e-8),
    # The oracle is fed a sharpness (here a constant 10) by its caller.
    "oracle": lambda: _with_sharpness(oracle(sigma=0.5), 10.0),
}
NAMES = sorted(TUNERS)

# Presets go through make_tuner; they share the code paths above, so the costly (compiling)
# checks run them together in one jitted function.
PRESET_TUNERS = {
    p: (lambda p=p: make_tuner({"preset": p, **({"batch_size": 4, "n": 8} if p == "armijo-vaswani" else {})}))
    for p in PRESETS
}
PRESET_NAMES = sorted(PRESET_TUNERS)
ALL = {**TUNERS, **{f"preset:{p}": f for p, f in PRESET_TUNERS.items()}}


def _with_sharpness(opt, sharpness):
    """``opt`` with ``sharpness=`` supplied at every update (for the oracle)."""
    return optax.GradientTransformationExtraArgs(
        opt.init, lambda u, s, p=None, **kw: opt.update(u, s, p, sharpness=sharpness, **kw)
    )


def _data():
    key_x, key_y = jax.random.split(jax.random.key(0))
    return jax.random.normal(key_x, (8, 3)), jax.random.normal(key_y, (8,))


def _init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (3, 4)), "w2": 0.5 * jax.random.normal(k2, (4,))}


def _loss(params, x, y):
    """MSE of a two-layer tanh network: ½ mean (w2ᵀ tanh(W1ᵀx) − y)²."""
    pred = jnp.tanh(x @ params["w1"]) @ params["w2"]
    return 0.5 * jnp.mean((pred - y) ** 2)


def _make_step(opt, counter=None):
    def step(params, state, x, y):
        if counter is not None:
            counter.append(1)  # runs once per trace, not per call
        value_fn = lambda p: _loss(p, x, y)  # noqa: E731
        value, grad = jax.value_and_grad(value_fn)(params)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
        return optax.apply_updates(params, updates), state, value

    return step


def _avals(tree):
    return [(jnp.shape(x), jnp.result_type(x), jax.typeof(x).weak_type) for x in jax.tree.leaves(tree)]


def _check_jit_scan_contract(opt, steps=3, tuner_states=lambda s: [s], check_vmap=False):
    """The shared contract, with one compile per jitted function.

    * the jitted step is traced once for several calls (state avals, weak types included, stable);
    * non-finite parameters (so non-finite value and gradient) give an exactly zero update under
      jit, with ``skipped`` and status 1, and the same compiled step;
    * ``lax.scan`` over the step reproduces the Python loop of jitted steps;
    * optionally ``vmap`` over initialisations reproduces the unbatched step.
    """
    x, y = _data()
    params = _init(jax.random.key(1))
    state0 = opt.init(params)
    traces = []
    step = _make_step(opt, traces)
    jitted = jax.jit(step)
    p_loop, s_loop, loop_stepsizes, loop_states = params, state0, [], []
    for _ in range(steps):
        p_loop, s_loop, _ = jitted(p_loop, s_loop, x, y)
        loop_stepsizes.append([read_stepsize(t) for t in tuner_states(s_loop)])
        loop_states.append(s_loop)
    nan_params = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), params)
    p_nan, s_nan, _ = jitted(nan_params, loop_states[-1], x, y)
    assert len(traces) == 1, f"the jitted step was traced {len(traces)} times"
    assert jitted._cache_size() == 1
    for state in [*loop_states, s_nan]:
        assert jax.tree.structure(state) == jax.tree.structure(state0)
        assert _avals(state) == _avals(state0)
    for a, b in zip(jax.tree.leaves(p_nan), jax.tree.leaves(nan_params)):
        np.testing.assert_array_equal(a, b)  # unchanged: the update was exactly zero
    for tuner_state in tuner_states(s_nan):
        assert bool(tuner_state.info.skipped) and int(tuner_state.info.status) == STATUS_NONFINITE_INPUT
        assert float(tuner_state.stepsize) == 0.0

    def body(carry, _):
        p, s = carry
        p, s, value = step(p, s, x, y)
        return (p, s), (value, jnp.stack([read_stepsize(t) for t in tuner_states(s)]))

    (p_scan, _), (values, stepsizes) = jax.jit(
        lambda p, s: jax.lax.scan(body, (p, s), None, length=steps)
    )(params, state0)
    np.testing.assert_allclose(stepsizes, np.array(loop_stepsizes), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p_scan), jax.tree.leaves(p_loop)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(a))
    assert np.all(np.asarray(stepsizes) > 0)
    for tuner_state in tuner_states(loop_states[-1]):
        diagnostics = read_diagnostics(tuner_state)
        assert diagnostics["skipped"].dtype == jnp.bool_ and not bool(diagnostics["skipped"])
        assert diagnostics["status"].dtype == jnp.int32 and int(diagnostics["status"]) == 0
        assert read_stepsize(tuner_state).dtype == jnp.float32

    if check_vmap:  # batched runs (parameter sweeps) give the same steps as single runs
        params_b = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, _init(jax.random.key(7)))
        _, states_b, _ = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None)))(
            params_b, jax.vmap(opt.init)(params_b), x, y
        )
        params_1 = jax.tree.map(lambda a: a[1], params_b)
        _, state_1, _ = jitted(params_1, opt.init(params_1), x, y)  # same avals: no new compile
        np.testing.assert_allclose(read_stepsize(states_b), [loop_stepsizes[0][0], read_stepsize(state_1)], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(states_b), jax.tree.leaves(state_1)):
            np.testing.assert_allclose(a[1], b, rtol=1e-5)
    return np.asarray(values)


@pytest.mark.parametrize("name", NAMES)
def test_jit_scan_contract(name):
    values = _check_jit_scan_contract(TUNERS[name](), check_vmap=name in ("armijo", "cdat-ema"))
    if name.startswith("armijo"):
        assert np.all(np.diff(values) <= 0)  # sufficient decrease makes the loss monotone


def test_presets_jit_scan_contract():
    """All presets stepped together inside one jitted scan (one compile for all of them)."""
    opts = [PRESET_TUNERS[name]() for name in PRESET_NAMES]
    multi = optax.GradientTransformationExtraArgs(
        lambda p: tuple(o.init(p) for o in opts),
        lambda u, s, p, **kw: _multi_update(opts, u, s, p, **kw),
    )
    _check_jit_scan_contract(multi, tuner_states=list)


def _multi_update(opts, updates, states, params, **kw):
    """Apply every tuner to the same gradient; the update is the mean of theirs."""
    results = [o.update(updates, s, params, **kw) for o, s in zip(opts, states)]
    mean = jax.tree.map(lambda *u: sum(u) / len(u), *[r[0] for r in results])
    return mean, tuple(r[1] for r in results)


@pytest.mark.parametrize("name", sorted(ALL))
def test_extra_keywords_are_accepted_as_by_optax(name):
    """Extra update arguments (meant for other transformations of a chain) change nothing."""
    opt = ALL[name]()
    w = jnp.array([1.0, -0.5])
    f = lambda p: jnp.sum(p**2)  # noqa: E731
    with jax.disable_jit():
        plain = opt.update(2 * w, opt.init(w), w, value=f(w), value_fn=f)
        extra = opt.update(2 * w, opt.init(w), w, value=f(w), value_fn=f, batch=(w, w), step=3)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(extra)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("factory", [armijo, cdat])
def test_extra_keywords_named_by_value_fn_reach_it(factory):
    """Armijo and CDAT evaluate ``value_fn`` themselves: the arguments it names are passed on
    (here the scale of a mini-batch loss), as optax's line searches do."""
    opt = optax.chain(optax.identity(), factory())
    w = jnp.array([1.0, -0.5])
    f = lambda p, scale: 0.5 * scale * jnp.sum(p**2)  # noqa: E731
    with jax.disable_jit():
        ours = opt.update(3.0 * w, opt.init(w), w, value=f(w, 3.0), value_fn=f, scale=3.0, other=1)
        bound = opt.update(3.0 * w, opt.init(w), w, value=f(w, 3.0), value_fn=lambda p: f(p, 3.0))
    assert float(read_stepsize(ours[1])) == float(read_stepsize(bound[1])) > 0
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(bound)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("factory", "missing", "given"),
    [
        (armijo, "value_fn", {"value": 1.0}),
        (armijo, "value", {"value_fn": lambda p: jnp.sum(p**2)}),
        (polyak, "value", {}),
        (cdat, "value_fn", {"value": 1.0}),
        (oracle, "sharpness", {"value": 1.0}),
    ],
)
def test_missing_required_keyword_is_value_error(factory, missing, given):
    opt = factory()
    w = jnp.ones(2)
    with pytest.raises(ValueError, match=missing):
        opt.update(w, opt.init(w), w, **given)


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_value_or_gradient_alone_takes_no_step(name):
    """A NaN value with a finite gradient, or an infinite gradient entry with a finite value."""
    opt = TUNERS[name]()
    f = lambda w: 0.5 * jnp.sum(jnp.array([0.5, 1.0]) * w**2)  # noqa: E731
    w = jnp.array([1.0, -1.0])
    value, grad = jax.value_and_grad(f)(w)
    with jax.disable_jit():  # eager: these primitives are shared by all tuners (no compile each)
        for v, g in [(jnp.nan, grad), (value, grad.at[1].set(jnp.inf)), (-jnp.inf, grad)]:
            updates, state = opt.update(g, opt.init(w), w, value=v, value_fn=f)
            np.testing.assert_array_equal(updates, 0.0)
            assert bool(state.info.skipped) and int(state.info.status) == STATUS_NONFINITE_INPUT
            assert float(state.stepsize) == 0.0
            assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.info))
        # The state carried on is usable: the next finite step is a regular one.
        _, state = opt.update(grad, state, w, value=value, value_fn=f)
        assert not bool(state.info.skipped) and float(state.stepsize) > 0


def test_readers_find_the_tuner_in_a_chain():
    opt = optax.chain(optax.clip_by_global_norm(10.0), armijo(), optax.identity())
    f = lambda w: 0.5 * jnp.sum(jnp.array([0.5, 1.0]) * w**2)  # noqa: E731
    w = jnp.array([1.0, -1.0])
    value, grad = jax.value_and_grad(f)(w)
    with jax.disable_jit():
        _, state = opt.update(grad, opt.init(w), w, value=value, value_fn=f)
    assert float(read_stepsize(state)) == float(state[1].stepsize) == 1.0
    diagnostics = read_diagnostics(state)
    assert set(diagnostics) == {"skipped", "status", "num_trials", "failed", "initial_stepsize"}
    assert diagnostics == state[1].info._asdict()
    assert int(diagnostics["num_trials"]) == 1


def test_readers_reject_states_without_exactly_one_tuner():
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match="no eosmodel tuner state"):
        read_stepsize(optax.sgd(0.1).init(params))
    both = optax.chain(constant(0.1), constant(0.2)).init(params)
    with pytest.raises(ValueError, match="ambiguous"):
        read_diagnostics(both)


# Every numeric hyperparameter of every tuner, injected (so traced inside the jitted step).
INJECTED = {
    "constant": (constant, {"stepsize": 0.05}),
    "oracle": (oracle, {"sigma": 0.5}),
    "armijo": (armijo, {"c": 0.3, "decrease_factor": 0.6, "increase_factor": 1.2, "max_stepsize": 2.0,
                        "max_trials": 7, "on_failure": "skip", "init_rule": "increase"}),
    "polyak": (polyak, {"c": 0.2, "f_star": -0.01, "max_stepsize": 2.0, "smooth_cap": 1.05, "eps": 1e-12}),
    "cdat": (cdat, {"sigma": 1.5, "eps": 1e-6, "ema": 0.5}),
}


@pytest.mark.parametrize("name", sorted(INJECTED))
def test_inject_hyperparams_under_jit(name):
    """``optax.inject_hyperparams(tuner)(...)`` traces the numbers: the jitted step equals the plain
    tuner's, and new hyperparameter values written into the state reuse the same compilation."""
    factory, hyper = INJECTED[name]
    opt = optax.inject_hyperparams(factory)(**hyper)
    plain = factory(**hyper)
    if name == "oracle":
        opt, plain = _with_sharpness(opt, 10.0), _with_sharpness(plain, 10.0)
    x, y = _data()
    params = _init(jax.random.key(1))
    step, plain_step = jax.jit(_make_step(opt)), jax.jit(_make_step(plain))
    state, plain_state, p, q = opt.init(params), plain.init(params), params, params
    assert set(state.hyperparams) == {k for k, v in hyper.items() if not isinstance(v, str)}
    for _ in range(3):
        p, state, _ = step(p, state, x, y)
        q, plain_state, _ = plain_step(q, plain_state, x, y)
        # ρ of CDAT's averages: 1 − ρ is formed in float32 when ρ is traced, in double otherwise.
        np.testing.assert_allclose(read_stepsize(state), read_stepsize(plain_state), rtol=1e-6 if name == "cdat" else 0)
    assert float(read_stepsize(state)) > 0
    first = float(read_stepsize(state))
    key = {"constant": "stepsize", "oracle": "sigma", "armijo": "max_stepsize", "polyak": "max_stepsize",
           "cdat": "sigma"}[name]
    state.hyperparams[key] = state.hyperparams[key] * 0.5
    _, state_half, _ = step(p, state, x, y)
    assert step._cache_size() == 1
    assert float(read_stepsize(state_half)) != first
