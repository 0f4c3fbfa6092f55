"""LARS: several steps against a float64 NumPy re-implementation of SimCLR's equations, exclusion rules frozen at
build, XLA, MirroredStrategy, mixed_bfloat16, checkpoint resume and config round trip."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import optimizers
from goaldriven.tasks import schedules
from tests import strategies

NAMES = ("kernel", "conv", "bias")
SHAPES = ((3, 4), (2, 2, 2, 3), (4,))  # a dense kernel, a conv kernel, a bias (rank 1: excluded by default)
HYPER = dict(momentum=0.9, weight_decay=0.1, eta=0.1)  # large decay and eta: a wrong term shows at rtol 1e-5


@keras.saving.register_keras_serializable(package="goaldriven_tests")
def is_conv_kernel(variable):
    return len(variable.shape) == 4


def _problem(steps=3, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[rng.normal(size=s).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    return weights, grads


def _reference(weights, grads, *, lr, momentum, weight_decay, eta, decayed, adapted, nesterov=False, epsilon=0.0):
    """LARS in float64, written from the equations of SimCLR Appendix B.1 (not from the code under test)."""
    w = [np.asarray(x, np.float64) for x in weights]
    v = [np.zeros_like(x) for x in w]
    for step, step_grads in enumerate(grads):
        rate = lr(step) if callable(lr) else lr
        for i, g in enumerate(step_grads):
            g = np.asarray(g, np.float64) + (weight_decay * w[i] if decayed[i] else 0.0)
            w_norm, g_norm = np.sqrt(np.sum(w[i] ** 2)), np.sqrt(np.sum(g**2))
            trust = eta * w_norm / (g_norm + epsilon) if adapted[i] and w_norm > 0 and g_norm > 0 else 1.0
            v[i] = momentum * v[i] + rate * trust * g
            w[i] = w[i] - (momentum * v[i] + rate * trust * g if nesterov else v[i])
    return w


def _variables(weights):
    return [keras.Variable(w, name=n) for n, w in zip(NAMES, weights)]


def _run(optimizer, weights, grads):
    variables = _variables(weights)
    optimizer.build(variables)
    for step_grads in grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step_grads], variables))
    return [v.numpy() for v in variables]


def _assert_weights_close(ours, theirs, rtol=1e-5):
    for name, a, b in zip(NAMES, ours, theirs):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("nesterov", [False, True])
def test_steps_match_the_numpy_reference(nesterov):
    # Also shows that Keras' decoupled decay (w -= lr * wd * w) does not run on top: it would move w by 5 %.
    weights, grads = _problem()
    optimizer = optimizers.LARS(0.5, nesterov=nesterov, **HYPER)
    ours = _run(optimizer, weights, grads)
    flags = dict(decayed=(True, True, False), adapted=(True, True, False))
    _assert_weights_close(ours, _reference(weights, grads, lr=0.5, nesterov=nesterov, **flags, **HYPER))
    assert optimizer.excluded_variables() == {"decay": ("bias",), "adaptation": ("bias",)}


def test_epsilon_enters_the_trust_ratio():
    weights, grads = _problem(steps=2)
    ours = _run(optimizers.LARS(0.5, epsilon=2.0, **HYPER), weights, grads)
    flags = dict(decayed=(True, True, False), adapted=(True, True, False))
    _assert_weights_close(ours, _reference(weights, grads, lr=0.5, epsilon=2.0, **flags, **HYPER))


def test_zero_weight_and_zero_gradient_use_trust_one():
    lr, momentum = 0.5, 0.9
    optimizer = optimizers.LARS(lr, momentum=momentum, weight_decay=0.0, eta=0.1)
    zero_weight = keras.Variable(np.zeros((2, 3), np.float32), name="zero_weight")
    zero_grad = keras.Variable(np.ones((2, 3), np.float32), name="zero_grad")
    g = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    optimizer.build([zero_weight, zero_grad])
    optimizer.apply_gradients([(tf.constant(g), zero_weight), (tf.zeros((2, 3)), zero_grad)])
    # ||w|| = 0: trust 1, so w = -lr * g; ||g|| = 0: no move, and no 0/0 NaN in the velocity.
    np.testing.assert_allclose(zero_weight.numpy(), -lr * g, rtol=1e-6)
    np.testing.assert_array_equal(zero_grad.numpy(), np.ones((2, 3)))
    optimizer.apply_gradients([(tf.zeros((2, 3)), zero_weight), (tf.zeros((2, 3)), zero_grad)])
    # Second step, zero gradient: trust 1 again and the velocity alone moves w by momentum * lr * g.
    np.testing.assert_allclose(zero_weight.numpy(), -lr * g - momentum * lr * g, rtol=1e-6)
    np.testing.assert_array_equal(zero_grad.numpy(), np.ones((2, 3)))


def test_custom_exclusion_callables():
    weights, grads = _problem()
    optimizer = optimizers.LARS(
        0.5, exclude_from_adaptation=lambda v: False, exclude_from_decay=is_conv_kernel, **HYPER
    )
    ours = _run(optimizer, weights, grads)
    assert optimizer.excluded_variables() == {"decay": ("conv",), "adaptation": ()}
    flags = dict(decayed=(True, False, True), adapted=(True, True, True))
    _assert_weights_close(ours, _reference(weights, grads, lr=0.5, **flags, **HYPER))


def test_keras_exclude_from_weight_decay_adds_to_the_decay_rule_only():
    weights, grads = _problem()
    optimizer = optimizers.LARS(0.5, **HYPER)
    variables = _variables(weights)
    optimizer.exclude_from_weight_decay(var_list=[variables[1]], var_names=["kern"])
    optimizer.build(variables)
    assert optimizer.excluded_variables() == {"decay": ("kernel", "conv", "bias"), "adaptation": ("bias",)}
    for step_grads in grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step_grads], variables))
    flags = dict(decayed=(False, False, False), adapted=(True, True, False))
    _assert_weights_close([v.numpy() for v in variables], _reference(weights, grads, lr=0.5, **flags, **HYPER))


def test_the_exclusion_decision_is_frozen_at_build():
    weights, grads = _problem()
    exclude = {"now": False}
    rule = lambda v: exclude["now"]
    optimizer = optimizers.LARS(0.5, exclude_from_adaptation=rule, exclude_from_decay=rule, **HYPER)
    variables = _variables(weights)
    optimizer.build(variables)
    exclude["now"] = True  # the rules would now exclude everything; the built optimizer must not ask again
    optimizer.build(variables)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_weight_decay(var_names=["kernel"])
    for step_grads in grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step_grads], variables))
    assert optimizer.excluded_variables() == {"decay": (), "adaptation": ()}
    flags = dict(decayed=(True,) * 3, adapted=(True,) * 3)
    _assert_weights_close([v.numpy() for v in variables], _reference(weights, grads, lr=0.5, **flags, **HYPER))


def test_xla_matches_eager_with_a_schedule():
    weights, grads = _problem()
    make = lambda: optimizers.LARS(
        schedules.WarmupCosine(1.0, 1, 5, warmup_ratio=0.1),
        nesterov=True,
        exclude_from_adaptation=lambda v: False,
        **HYPER,
    )
    eager = _run(make(), weights, grads)
    variables, optimizer = _variables(weights), make()
    optimizer.build(variables)
    step = tf.function(lambda gs: optimizer.apply_gradients(zip(gs, variables)), jit_compile=True)
    for step_grads in grads:
        step([tf.constant(g) for g in step_grads])
    _assert_weights_close([v.numpy() for v in variables], eager, rtol=1e-6)
    lr = lambda s: [0.1, 1.0, 0.5 * (1 + np.cos(np.pi / 4))][s]  # WarmupCosine(1, W=1, T=5) at steps 0, 1, 2
    flags = dict(decayed=(True, True, False), adapted=(True, True, True))
    _assert_weights_close(eager, _reference(weights, grads, lr=lr, nesterov=True, **flags, **HYPER))


def test_mirrored_strategy_matches_one_device():
    weights, grads = _problem()
    one_device = _run(optimizers.LARS(0.5, **HYPER), weights, grads)
    strategy = strategies.mirrored()
    with strategy.scope():
        variables = _variables(weights)
        optimizer = optimizers.LARS(0.5, **HYPER)
        optimizer.build(variables)

    @tf.function
    def step(per_replica_grads):
        strategy.run(lambda gs: optimizer.apply_gradients(zip(gs, variables)), args=(per_replica_grads,))

    shares = (0.25, 0.75)  # the replicas' gradients differ; the optimizer's all-reduce sums them to the global one
    for step_grads in grads:
        step(
            strategy.experimental_distribute_values_from_function(
                lambda ctx: [tf.constant(shares[ctx.replica_id_in_sync_group] * g) for g in step_grads]
            )
        )
    _assert_weights_close([v.numpy() for v in variables], one_device)
    for v in variables:
        replicas = [r.numpy() for r in v.value.values]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])


def test_mixed_bfloat16_trains_and_excludes_biases_and_batch_norm():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    conv, norm, dense = keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(), keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((6, 6, 3)), conv, norm, keras.layers.GlobalAveragePooling2D(), dense])
    optimizer = optimizers.LARS(0.5, eta=0.01)
    optimizer.build(model.trainable_variables)
    excluded = {conv.bias.path, norm.gamma.path, norm.beta.path, dense.bias.path}
    assert set(optimizer.excluded_variables()["decay"]) == excluded
    assert set(optimizer.excluded_variables()["adaptation"]) == excluded
    before = [v.numpy() for v in model.trainable_variables]

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.ops.square(keras.ops.cast(model(x, training=True), "float32") - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    x, y = tf.random.normal((2, 6, 6, 3)), tf.random.normal((2, 2))
    losses = [float(step(x, y)) for _ in range(2)]
    assert np.all(np.isfinite(losses))
    for v, old in zip(model.trainable_variables, before):
        assert v.dtype == "float32" and np.all(np.isfinite(v.numpy())), v.path
        assert not np.array_equal(v.numpy(), old), v.path
    assert all(m.dtype == "float32" for m in optimizer.momentums)


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    weights, grads = _problem(steps=4)

    def make(initial):
        variables = _variables(initial)
        optimizer = optimizers.LARS(schedules.WarmupCosine(1.0, 2, 6, warmup_ratio=0.1), **HYPER)
        optimizer.build(variables)
        return variables, optimizer

    def train(variables, optimizer, steps_grads):
        for step_grads in steps_grads:
            optimizer.apply_gradients(zip([tf.constant(g) for g in step_grads], variables))

    straight = make(weights)
    train(*straight, grads)
    first = make(weights)
    train(*first, grads[:2])
    path = tf.train.Checkpoint(optimizer=first[1], variables=first[0]).write(str(tmp_path / "ckpt"))
    resumed = make([np.full_like(w, 7.0) for w in weights])
    tf.train.Checkpoint(optimizer=resumed[1], variables=resumed[0]).read(path).assert_consumed()
    assert int(resumed[1].iterations) == 2
    train(*resumed, grads[2:])
    for name, ours, theirs in zip(NAMES, resumed[0], straight[0]):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=name)


def test_config_round_trip():
    optimizer = optimizers.LARS(
        schedules.WarmupCosine(4.8, 10, 200, warmup_ratio=1e-4),
        momentum=0.8,
        weight_decay=1e-4,
        eta=0.02,
        nesterov=True,
        epsilon=1e-9,
        exclude_from_decay=is_conv_kernel,
        clipnorm=1.0,
        name="lars_test",
    )
    payload = json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer)))
    restored = keras.saving.deserialize_keras_object(payload)
    assert isinstance(restored, optimizers.LARS)
    assert restored.get_config() == optimizer.get_config()
    got = {k: getattr(restored, k) for k in ("momentum", "weight_decay", "eta", "nesterov", "epsilon", "clipnorm")}
    assert got == {
        "momentum": 0.8,
        "weight_decay": 1e-4,
        "eta": 0.02,
        "nesterov": True,
        "epsilon": 1e-9,
        "clipnorm": 1.0,
    }
    assert restored.exclude_from_decay is is_conv_kernel and restored.exclude_from_adaptation is None
    assert float(restored.learning_rate) == pytest.approx(4.8e-4)  # iteration 0: base x warm-up ratio
    defaults = optimizers.LARS(4.8).get_config()
    assert (defaults["momentum"], defaults["weight_decay"], defaults["eta"], defaults["nesterov"]) == (
        0.9,
        1e-6,
        0.001,
        False,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(momentum=-0.1), "momentum"),
        (dict(weight_decay=-1e-6), "weight_decay"),
        (dict(eta=0.0), "eta"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(exclude_from_decay="bias"), "exclude_from_decay"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.LARS(0.1, **kwargs)


def test_excluded_variables_needs_a_built_optimizer():
    with pytest.raises(ValueError, match="build"):
        optimizers.LARS(0.1).excluded_variables()
