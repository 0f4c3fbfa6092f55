"""ResNet v1/v2: golden parameter counts, stride placement, blocks against NumPy, XLA / mirrored / bfloat16 steps."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import resnet_blocks, resnets
from tests import layer_testing, strategies

# Trainable parameters (conv kernels and biases, BN gamma/beta, dense) at 1000 classes.
GOLDEN_TRAINABLE = {
    (18, 1): 11_689_512,  # spec ch2 11.1 (He et al. basic blocks, no conv biases); = torchvision resnet18
    (34, 1): 21_797_672,  # spec ch2 11.1; = torchvision resnet34
    (50, 1): 25_557_032,  # torchvision resnet50 (no conv biases, BN gamma/beta)
    (50, 2): 25_568_360,  # spec ch2 11.1 table; = keras.applications.ResNet50V2 trainable
    (101, 2): 44_577_896,  # spec ch2 11.1 table; = keras.applications.ResNet101V2 trainable
    (152, 2): 60_236_904,  # spec ch2 11.1 table; = keras.applications.ResNet152V2 trainable
}
# Non-trainable parameters = BN moving mean + variance (2 per BN channel).
GOLDEN_NON_TRAINABLE = {
    (18, 1): 9_600,  # spec ch2 11.1
    (34, 1): 17_024,  # spec ch2 11.1
    (50, 1): 53_120,  # keras.applications.ResNet50 non-trainable (same BN layout; 2 x 26,560 BN channels)
    (50, 2): 45_440,  # spec ch2 11.1 table
    (101, 2): 97_664,  # spec ch2 11.1 table
    (152, 2): 143_744,  # spec ch2 11.1 table
}
SHORTCUTS = {
    (18, 1): resnets.resnet18_v1,
    (34, 1): resnets.resnet34_v1,
    (50, 1): resnets.resnet50_v1,
    (50, 2): resnets.resnet50_v2,
    (101, 2): resnets.resnet101_v2,
    (152, 2): resnets.resnet152_v2,
}
FAST = [(18, 1), (34, 1), (50, 1), (50, 2)]
DEEP = [(101, 2), (152, 2)]
ALL = [pytest.param(key, id=f"resnet{key[0]}_v{key[1]}") for key in FAST] + [
    pytest.param(key, id=f"resnet{key[0]}_v{key[1]}", marks=pytest.mark.slow) for key in DEEP
]


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def built():
    """The FAST ResNets (1000 classes), each built once for the read-only tests (counts, symbolic shapes): a key ->
    model function. The deep ones are built afresh, not kept."""
    models = {}

    def get(key):
        if key not in FAST:
            return SHORTCUTS[key]()
        if key not in models:
            keras.utils.set_random_seed(0)
            models[key] = SHORTCUTS[key]()
        return models[key]

    return get


@pytest.mark.parametrize("key", ALL)
def test_golden_parameter_counts(key, built):
    model = built(key)
    assert (model.depth, model.version) == key
    assert _count(model.trainable_weights) == GOLDEN_TRAINABLE[key]
    assert _count(model.non_trainable_weights) == GOLDEN_NON_TRAINABLE[key]


def _expected_sizes(depth, version, image_size):
    """Spatial size of every feature, from the spec's rules (5.6: stride 2 in the first block of stages 2-4;
    5.7: stride 2 in the last unit of stages 1-3), with ceil(n / 2) per stride-2 op."""
    half = lambda n: -(-n // 2)  # noqa: E731
    size = half(half(image_size))  # stem conv /2, max pool /2
    sizes = {"stem": size}
    counts = resnets.STAGES[version][depth][1]
    for i, count in enumerate(counts):
        for j in range(count):
            if (version == 1 and i > 0 and j == 0) or (version == 2 and i < 3 and j == count - 1):
                size = half(size)
            sizes[f"stage{i + 1}_block{j + 1}"] = size
    return sizes


@pytest.mark.parametrize("key", FAST)
def test_feature_shapes_and_stride_placement(key, built):
    model = built(key)  # 1000 classes
    expansion = 1 if key[0] < 50 else 4
    for image_size in (224, 64, 32):
        out = model(keras.KerasTensor((2, image_size, image_size, 3)))  # symbolic: shapes only
        expected = _expected_sizes(*key, image_size)
        assert model.feature_names == tuple(expected) + ("pool",)
        assert tuple(out["features"]) == model.feature_names  # forward order
        for name, size in expected.items():
            stage = 0 if name == "stem" else int(name[5])
            channels = 64 if name == "stem" else resnets.WIDTHS[stage - 1] * expansion
            assert tuple(out["features"][name].shape) == (2, size, size, channels), (image_size, name)
        assert tuple(out["features"]["pool"].shape) == (2, 512 * expansion)
        assert tuple(out["logits"].shape) == (2, 1000)
        assert out["logits"].dtype == "float32"


def test_v1_and_v2_place_the_stride_differently(built):
    """At 224 px: v1 halves at the entry of stages 2-4, v2 at the exit of stages 1-3 (spec 5.6 vs 5.7)."""
    sizes = {}
    for key in [(50, 1), (50, 2)]:
        out = built(key)(keras.KerasTensor((1, 224, 224, 3)))
        sizes[key] = {name: t.shape[1] for name, t in out["features"].items() if name != "pool"}
    assert [sizes[(50, 1)][f"stage{i}_block1"] for i in (1, 2, 3, 4)] == [56, 28, 14, 7]
    assert [sizes[(50, 2)][f"stage{i}_block1"] for i in (1, 2, 3, 4)] == [56, 28, 14, 7]
    assert [sizes[(50, 1)][n] for n in ("stage1_block3", "stage2_block4", "stage3_block6")] == [56, 28, 14]
    assert [sizes[(50, 2)][n] for n in ("stage1_block3", "stage2_block4", "stage3_block6")] == [28, 14, 7]


@pytest.mark.parametrize(
    "cls, kwargs, channels, n_weights",
    [
        (resnet_blocks.BasicBlockV1, dict(filters=8, strides=2, projection=True), 4, 9),
        (resnet_blocks.BasicBlockV1, dict(filters=4, strides=1, projection=False), 4, 6),
        (resnet_blocks.BottleneckV1, dict(filters=4, strides=2, projection=True), 8, 12),
        (resnet_blocks.BottleneckV2, dict(filters=4, strides=1, projection=True), 8, 12),
        (resnet_blocks.BottleneckV2, dict(filters=4, strides=2, projection=False), 16, 10),
    ],
)
def test_blocks_with_layer_harness(cls, kwargs, channels, n_weights):
    x = tf.random.normal((2, 7, 7, channels))
    out_channels = kwargs["filters"] * cls.expansion
    size = 4 if kwargs["strides"] == 2 else 7  # ceil(7 / 2)
    layer_testing.run_layer_test(
        cls,
        kwargs,
        (x,),
        expected_output_shape=(2, size, size, out_channels),
        expected_num_trainable_weights=n_weights,
    )


def test_bottleneck_v2_identity_shortcut_subsamples():
    """With the residual branch zeroed, a non-projection stride-2 v2 unit returns x[:, ::2, ::2] (Slim subsample)."""
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 16)).astype("float32")
    block = resnet_blocks.BottleneckV2(4, strides=2, projection=False)
    block(x)
    block.conv3.kernel.assign(np.zeros(block.conv3.kernel.shape, "float32"))
    block.conv3.bias.assign(np.zeros(block.conv3.bias.shape, "float32"))
    np.testing.assert_allclose(block(x, training=True).numpy(), x[:, ::2, ::2, :], rtol=0, atol=0)


def test_basic_block_v1_is_post_activation():
    """With the last BN's gamma = beta = 0, an identity v1 block returns relu(x): the ReLU follows the addition."""
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 4)).astype("float32")
    block = resnet_blocks.BasicBlockV1(4)
    block(x)
    block.bn2.gamma.assign(np.zeros(4, "float32"))
    block.bn2.beta.assign(np.zeros(4, "float32"))
    np.testing.assert_allclose(block(x, training=True).numpy(), np.maximum(x, 0), rtol=0, atol=0)


@pytest.mark.parametrize("key, decay_biases", [((18, 1), False), ((50, 2), False), ((50, 2), True)])
def test_weight_decay_is_half_tf1_lambda_on_kernels(key, decay_biases):
    lam = 1e-4
    model = resnets.build_resnet(*key, num_classes=10, weight_decay=lam, decay_biases=decay_biases)
    decayed = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    if decay_biases:
        decayed += [w for w in model.trainable_weights if w.path.endswith("bias")]
    expected = lam * sum(np.sum(np.square(w.numpy().astype(np.float64))) for w in decayed) / 2
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    assert all(
        layer.synchronized for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_config_round_trip_rebuilds_the_same_model():
    # ResNet-18 v2: the same config path as ResNet-50 v2 (ResNet.get_config), a quarter of the layers to rebuild.
    model = resnets.build_resnet(18, 2, num_classes=5, weight_decay=2e-4, decay_biases=True, bn_momentum=0.9)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, resnets.ResNet) and clone.get_config() == model.get_config()
    images = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype("float32")
    clone(images)
    # Stable weight names. Keras builds a deserialised model from its build config outside the model's name scope,
    # so the clone's paths lack the leading "<model name>/".
    strip = lambda path: path.removeprefix(f"{model.name}/")  # noqa: E731
    assert [strip(w.path) for w in clone.weights] == [strip(w.path) for w in model.weights]
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(images)["logits"], model(images)["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(sum(clone.losses)), float(sum(model.losses)), rtol=1e-6)


def test_invalid_arguments_name_the_fix():
    with pytest.raises(ValueError, match="one of \\[18, 34, 50, 101, 152\\]"):
        resnets.ResNet(depth=200, version=2)
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        resnets.ResNet(depth=50, version=3)
    with pytest.raises(ValueError, match="strides must be 1 or 2"):
        resnet_blocks.BottleneckV2(4, strides=3)
    with pytest.raises(ValueError, match="at least 32 px"):
        resnets.ResNet(18, 1)(np.zeros((1, 16, 16, 3), "float32"))


# ---------------------------------------------------------------------------------------------------------------------
# Training steps: XLA on one device, MirroredStrategy over 2 logical CPUs, and a mixed_bfloat16 forward.


def _data(global_batch_size=2, size=64, classes=10):
    """64 px, not 32: at 32 px stage 4 is 1x1, so training-mode BN normalises 2 values per channel and amplifies
    float32 rounding (order 1e-5) into O(1) differences between any two correct implementations."""
    rng = np.random.default_rng(3)
    images = rng.normal(size=(global_batch_size, size, size, 3)).astype("float32")
    images[global_batch_size // 2 :] += 2.0  # the replicas see different statistics: unsynchronised BN would differ
    return images, rng.integers(0, classes, size=global_batch_size).astype("int32")


def _make_step(model, optimizer, global_batch_size, num_replicas):
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)["logits"]
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            # Mean over the GLOBAL batch; regularisation split over replicas, whose gradients are summed.
            loss = tf.reduce_sum(per_example) / global_batch_size + sum(model.losses) / num_replicas
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def _eager_reference(model, images, labels):
    """One eager SGD step on the full batch; returns (loss, weights after) and restores the initial weights."""
    initial = model.get_weights()
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    loss = _make_step(model, optimizer, len(images), 1)(tf.constant(images), tf.constant(labels))
    after = model.get_weights()
    model.set_weights(initial)
    return float(loss), after


def _relative_error(actual, expected, initial):
    delta = lambda ws: np.concatenate([(w - w0).ravel() for w, w0 in zip(ws, initial)])  # noqa: E731
    expected_delta = delta(expected)
    assert np.linalg.norm(expected_delta) > 0, "the step changed nothing"
    return np.linalg.norm(delta(actual) - expected_delta) / np.linalg.norm(expected_delta)


def _assert_same_step(model, after, expected_after, initial):
    """Compares the CHANGES made by one step, per group of weights.

    Deep BN nets at initialisation with a batch of 2 have exploding, chaotic gradients (the stem gradient of
    ResNet-50 is ~25 for a loss of ~2), so two correct float32 implementations (eager, graph, XLA) give early-layer
    gradients that differ by several percent. The well-conditioned parts must agree tightly: the BN moving statistics
    (forward quantities; unsynchronised BN would differ by O(1), since the replicas' images differ by a shift of 2) and
    the logits layer (a gradient that was not summed over replicas would be half as large).
    """
    groups = {"moving statistics": ([], 1e-2), "logits": ([], 1e-2), "all trainable": ([], 0.15)}
    trainable = {id(w) for w in model.trainable_weights}
    for i, w in enumerate(model.weights):
        if id(w) not in trainable:
            groups["moving statistics"][0].append(i)
        else:
            groups["all trainable"][0].append(i)
            if w.path.split("/")[-2] in ("logits", "fc8"):
                groups["logits"][0].append(i)
    for name, (indices, tolerance) in groups.items():
        if not indices:
            assert name == "moving statistics", f"no {name} weights found"  # models without BN have none
            continue
        pick = lambda ws: [ws[i] for i in indices]  # noqa: E731
        error = _relative_error(pick(after), pick(expected_after), pick(initial))
        assert error < tolerance, f"{name}: relative error of the step {error:.3g} >= {tolerance}"
    assert all(np.all(np.isfinite(w)) for w in after)


def _jit_step_matches_eager(build, images, labels):
    model = build()
    initial = model.get_weights()
    expected_loss, expected = _eager_reference(model, images, labels)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    step = tf.function(_make_step(model, optimizer, len(images), 1), jit_compile=True)
    loss = step(tf.constant(images), tf.constant(labels))
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-4)
    _assert_same_step(model, model.get_weights(), expected, initial)


def _mirrored_step_matches_single_device(build, images, labels):
    """With cross-replica BN and summed replica gradients, 2 replicas x 1 image equal one device x 2 images."""
    reference = build()
    initial = reference.get_weights()
    expected_loss, expected = _eager_reference(reference, images, labels)
    strategy = strategies.mirrored()
    with strategy.scope():
        model = build()
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
    model.set_weights(initial)
    step = _make_step(model, optimizer, len(images), strategy.num_replicas_in_sync)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(images))
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def distributed_step(images, labels):
        return strategy.reduce("SUM", strategy.run(step, args=(images, labels)), axis=None)

    loss = distributed_step(*batch)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-4)
    _assert_same_step(model, model.get_weights(), expected, initial)


def _bfloat16_forward_is_float32_and_close(build):
    images, _ = _data(size=32)
    reference = build()
    expected = reference(images)["logits"].numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build()
    model.set_weights(reference.get_weights())
    out = model(images)
    assert out["logits"].dtype == "float32"
    assert all(f.dtype == "bfloat16" for f in out["features"].values())
    logits = out["logits"].numpy()
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits, expected, atol=0.1 * np.abs(expected).max() + 1e-3)
    xla = tf.function(lambda x: model(x)["logits"], jit_compile=True)(tf.constant(images))
    assert xla.dtype == "float32"
    np.testing.assert_allclose(xla.numpy(), expected, atol=0.1 * np.abs(expected).max() + 1e-3)
    assert all(w.dtype == "float32" for w in model.weights)


def _tiny(key):
    return lambda: resnets.build_resnet(*key, num_classes=10)


# XLA compilation of a whole ResNet's backward pass takes 10-30 s on CPU: only ResNet-18 runs by default; the blocks'
# own XLA test below covers every block type quickly.
STEP_KEYS = [pytest.param((18, 1), id="resnet18_v1")] + [
    pytest.param(key, id=f"resnet{key[0]}_v{key[1]}", marks=pytest.mark.slow) for key in FAST[1:] + DEEP
]


@pytest.mark.parametrize("key", STEP_KEYS)
def test_xla_train_step_matches_eager(key):
    _jit_step_matches_eager(_tiny(key), *_data())


@pytest.mark.parametrize("key", STEP_KEYS)
def test_mirrored_train_step_matches_single_device(key):
    _mirrored_step_matches_single_device(_tiny(key), *_data())


@pytest.mark.parametrize("cls", [resnet_blocks.BasicBlockV1, resnet_blocks.BottleneckV1, resnet_blocks.BottleneckV2])
def test_blocks_xla_and_mirrored(cls):
    """Every block type (padding, strided shortcut, sync BN) under XLA and under the MirroredStrategy."""
    channels = 4 * cls.expansion

    def build():
        inputs = keras.Input((8, 8, channels))
        block = cls(4, strides=2, projection=True, name="block")
        pooled = keras.layers.GlobalAveragePooling2D()(block(inputs))
        outputs = {"logits": keras.layers.Dense(10, name="logits")(pooled)}
        return keras.Model(inputs, outputs)

    rng = np.random.default_rng(4)
    images = rng.normal(size=(4, 8, 8, channels)).astype("float32")
    images[2:] += 2.0
    labels = rng.integers(0, 10, size=4).astype("int32")
    _jit_step_matches_eager(build, images, labels)
    _mirrored_step_matches_single_device(build, images, labels)


# ResNet-18 v1 keeps the bfloat16 forward (eager and XLA) in the fast suite; the bottleneck and v2 variants are slow.
@pytest.mark.parametrize(
    "key",
    [pytest.param((18, 1), id="resnet18_v1")]
    + [
        pytest.param(key, id=f"resnet{key[0]}_v{key[1]}", marks=pytest.mark.slow)
        for key in [(50, 2), (34, 1), (50, 1)] + DEEP
    ],
)
def test_mixed_bfloat16_forward(key):
    _bfloat16_forward_is_float32_and_close(_tiny(key))
