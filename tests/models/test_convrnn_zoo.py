"""Golden parameter counts and trainability (XLA, MirroredStrategy, bfloat16) of every named model of the zoo."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import convrnn_zoo
from tests import strategies

# Spec ch2 section 11.1 (feedforward BaseNets, arithmetic written out there; 1000 classes, 224 px).
FEEDFORWARD_PARAMS = {
    "basenet6": 4_197_736,
    "basenet6_wider": 14_145_512,
    "basenet6_deeper": 7_602_792,
    "basenet11": 16_403_432,
}
# Spec ch2 section 11.2 (released ConvRNNs; derived there from the reference JSONs and cells, 224 px).
SHALLOW_PARAMS = {
    "timedecay_shallow": 4_197_739,
    "simplernn_shallow": 6_272_872,
    "ugrnn_shallow": 18_355_560,
    "lstm_shallow": 21_126_248,
    "rgc_shallow": 23_956_840,
    "gru_shallow": 25_434_472,
    "intersectionrnn_shallow": 32_513_384,
}
INTERMEDIATE_PARAMS = {
    "timedecay_intermediate": 16_403_439,
    "simplernn_intermediate": 33_512_936,
    "ugrnn_intermediate": 50_617_832,
    "gru_intermediate": 67_725_032,
    "lstm_intermediate": 84_832_232,
    "intersectionrnn_intermediate": 84_832_232,
    "rgc_intermediate": 15_445_800,  # "RGC Median"
}
GOLDEN = {**FEEDFORWARD_PARAMS, **SHALLOW_PARAMS, **INTERMEDIATE_PARAMS}


def _trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_every_named_model_has_a_golden_count_or_is_a_variant():
    for name in convrnn_zoo.model_names():
        assert name in GOLDEN or name in convrnn_zoo.RELEASED_VARIANTS, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_parameter_count(name):
    model = convrnn_zoo.build_convrnn(name)
    assert _trainable(model) == GOLDEN[name]


@pytest.mark.slow
def test_rgc_median_feedback_convs_hold_623744_parameters():
    """Spec 11.2: RGC Median without its feedback convs has 14,822,056 parameters."""
    model = convrnn_zoo.build_convrnn("rgc_intermediate")
    feedback = sum(int(np.prod(v.shape)) for v in model.trainable_variables if "feedback" in v.path)
    assert feedback == 623_744


@pytest.mark.slow
def test_variants_share_the_base_models_weights():
    assert _trainable(convrnn_zoo.build_convrnn("rgc_intermediate_tmaxconf")) == GOLDEN["rgc_intermediate"] + 1
    assert _trainable(convrnn_zoo.build_convrnn("ugrnn_intermediate_t30_dthresh")) == GOLDEN["ugrnn_intermediate"]


def test_timing_of_the_named_models():
    build = dict(width_multiplier=1 / 16, image_size=16, build=False)
    shallow, inter = (
        convrnn_zoo.build_convrnn("gru_shallow", **build),
        convrnn_zoo.build_convrnn("rgc_intermediate", **build),
    )
    assert (shallow.times, shallow.image_off, shallow.decoder_start) == (16, 12, 6)
    assert (inter.times, inter.image_off, inter.decoder_start) == (17, 12, 11)
    t30 = convrnn_zoo.build_convrnn("ugrnn_intermediate_t30_tmaxconf", **build)
    assert (t30.times, t30.image_off, t30.decoder) == (30, 30, "max_conf")
    assert convrnn_zoo.build_convrnn("rgc_intermediate", unroll_length="minimal", **build).times == 12
    assert convrnn_zoo.build_convrnn("rgc_shallow", unroll_length="minimal", **build).times == 7


TINY = dict(num_classes=5, width_multiplier=1 / 16, image_size=16)


def _tiny(name, **kwargs):
    """The named model at 1/16 width on 16 px with 3 time steps (every step has the same ops, so XLA and the strategy
    see the whole model; the image does not reach the readout in 3 steps, which these tests do not need)."""
    kwargs.setdefault("unroll_length", 3)
    kwargs.setdefault("decoder_start", 0 if name.startswith("basenet") else 2)
    return convrnn_zoo.build_convrnn(name, **TINY, **kwargs)


def _train_step(model, optimizer):
    images = tf.random.stateless_normal([2, 16, 16, 3], [0, 1])
    labels = tf.constant([1, 4])

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)["logits"]
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            loss += tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, model.trainable_variables)]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step, images, labels


FAST = ["basenet6", "ugrnn_shallow", "rgc_intermediate"]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in convrnn_zoo.model_names()]
)
def test_train_step_compiles_with_xla(name):
    model = _tiny(name)
    before = [v.numpy() for v in model.trainable_variables]
    step, images, labels = _train_step(model, keras.optimizers.SGD(0.1, momentum=0.9))
    loss = tf.function(step, jit_compile=True)(images, labels)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))


@pytest.mark.parametrize(
    "name", ["rgc_intermediate", pytest.param("lstm_shallow", marks=pytest.mark.slow), "gru_intermediate"]
)
def test_every_weight_learns_in_the_training_unroll(name):
    """With the training unroll every weight gets a gradient (the minimal unroll leaves zero states in the last
    layers, so their recurrent kernels would see only zeros)."""
    model = convrnn_zoo.build_convrnn(name, **TINY)
    before = [v.numpy() for v in model.trainable_variables]
    step, images, labels = _train_step(model, keras.optimizers.SGD(0.1, momentum=0.9))
    step(images, labels)  # eagerly: tracing 17 steps takes longer than running them at this size
    frozen = [v.path for b, v in zip(before, model.trainable_variables) if np.array_equal(b, v.numpy())]
    assert not frozen


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in convrnn_zoo.model_names()]
)
def test_train_step_under_mirrored_strategy(name):
    strategy = strategies.mirrored()
    with strategy.scope():
        model = _tiny(name)
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        optimizer.build(model.trainable_variables)
    step, images, labels = _train_step(model, optimizer)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((images, labels)).unbatch().batch(2, drop_remainder=True)
    )

    @tf.function
    def run(batch):
        return strategy.reduce("SUM", strategy.run(step, args=batch), axis=None)

    assert np.isfinite(float(run(next(iter(dataset)))))


@pytest.mark.parametrize("name", ["rgc_intermediate", "lstm_shallow", "basenet11"])
def test_mixed_bfloat16_forward(name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _tiny(name)
    out = model(tf.random.stateless_normal([2, 16, 16, 3], [0, 1]), feature_layers=("conv5",))
    assert out["logits"].dtype == tf.float32 and np.all(np.isfinite(out["logits"]))
    assert out["features"]["conv5"].dtype == tf.bfloat16
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
