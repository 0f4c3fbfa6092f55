"""The six architectures of the Chapter 6 ImageNet/SimCLR/WSN tasks (spec ch5 6.1-6.2, 11.1): ResNet-18/34 v2 (basic
pre-activation blocks), the Chapter 6 v1 layout, AlexNet / AlexNet-LRN (conv4 kernel 4, conv bias 0). Golden counts
from hand arithmetic, the chapter's layer counts, BasicBlockV2 against NumPy, non-square single-channel inputs."""

import json

import keras
import numpy as np
import pytest

from goaldriven.models import resnet_blocks, resnets, zoo
from tests.models import numpy_layers as ref

WIDTHS = (64, 128, 256, 512)


def _resnet_counts(blocks, version, stage1_projection, classes=1000, channels=3):
    """(trainable, non-trainable) of a basic-block ResNet from its layout, no conv biases (v1: BN after every conv,
    stem BN; v2: a pre-activation BN on each block's input, BN after conv1, a final BN, no BN on shortcuts)."""
    conv = 7 * 7 * channels * 64  # stem
    bn = 64 if version == 1 else 0  # BN channels
    c = 64
    for i, (width, count) in enumerate(zip(WIDTHS, blocks)):
        for j in range(count):
            conv += 3 * 3 * c * width + 3 * 3 * width * width
            bn += 2 * width if version == 1 else c + width
            if j == 0 and (i > 0 or stage1_projection):
                conv += c * width  # 1x1 projection
                bn += width if version == 1 else 0
            c = width
    bn += 512 if version == 2 else 0  # postnorm
    return conv + 2 * bn + 512 * classes + classes, 2 * bn


# By hand (same layout as _resnet_counts; ResNet-18 v2):
#   convs  stem 9,408; stage 1: 4 x 36,864 + proj 4,096; stage 2: 73,728 + 3 x 147,456 + proj 8,192;
#          stage 3: 294,912 + 3 x 589,824 + proj 32,768; stage 4: 1,179,648 + 3 x 2,359,296 + proj 131,072
#          = 11,171,008
#   BN     pre-activation 64+64+64+128+128+256+256+512 = 1,472, after conv1 2 x (64+128+256+512) = 1,920,
#          final 512: 3,904 channels -> 7,808 gamma/beta (trainable) and 7,808 moving mean/variance
#   dense  512 x 1000 + 1000 = 513,000;  total 11,171,008 + 7,808 + 513,000 = 11,691,816
# ResNet-34 v2: convs 21,271,744; BN (192+448+1,408+1,280) + 3,776 + 512 = 7,616 channels -> 15,232; total 21,799,976.
# Chapter 6 v1: torchvision ResNet-18/34 (11,689,512 / 21,797,672; BN moving stats 9,600 / 17,024) plus the stage-1
# projection 64 x 64 = 4,096 and its BN (128 gamma/beta, 128 moving stats).
GOLDEN = {
    "resnet18_v2": (11_691_816, 7_808),
    "resnet34_v2": (21_799_976, 15_232),
    "resnet18_v1_ch6": (11_689_512 + 4_096 + 128, 9_600 + 128),
    "resnet34_v1_ch6": (21_797_672 + 4_096 + 128, 17_024 + 128),
}
LAYOUT = {
    "resnet18_v2": ((2, 2, 2, 2), 2, True),
    "resnet34_v2": ((3, 4, 6, 3), 2, True),
    "resnet18_v1_ch6": ((2, 2, 2, 2), 1, True),
    "resnet34_v1_ch6": ((3, 4, 6, 3), 1, True),
    "resnet18_v1": ((2, 2, 2, 2), 1, False),
}
# AlexNet-Ch6 at 224 x 224 x 3, 1000 classes: conv1 11x11/4 VALID -> 54, pools 27, 14, (conv3-4 at 14), 7.
ALEXNET_CH6_224 = (
    (11 * 11 * 3 * 96 + 96)  # conv1: 34,944
    + (5 * 5 * 96 * 256 + 256)  # conv2: 614,656
    + (3 * 3 * 256 * 384 + 384)  # conv3: 885,120
    + (4 * 4 * 384 * 384 + 384)  # conv4 (kernel 4, A22): 2,359,680
    + (3 * 3 * 384 * 256 + 256)  # conv5: 884,992
    + (7 * 7 * 256 * 4096 + 4096)  # fc6: 51,384,320
    + (4096 * 4096 + 4096)  # fc7: 16,781,312
    + (4096 * 1000 + 1000)  # fc8: 4,097,000
)
# Conv2D + Dense layers, the chapter's "layers" (spec ch5 6.1 table, 6.2, 6.3).
LAYER_COUNTS = {
    "resnet18_v1_ch6": 22,
    "resnet18_v2": 22,
    "resnet34_v1_ch6": 38,
    "resnet34_v2": 38,
    "alexnet_ch6": 8,
    "alexnet_ch6_lrn": 8,
    "knet4": 4,
    "knet4_lrn": 4,
    "knet5": 5,
    "knet5_lrn": 5,
    "resnet18_v1": 21,  # the Chapter 2 (torchvision) layout: no stage-1 projection
    "resnet34_v1": 37,
}
SIX = ("resnet18_v1_ch6", "resnet18_v2", "resnet34_v1_ch6", "resnet34_v2", "alexnet_ch6", "alexnet_ch6_lrn")


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_hand_arithmetic_agrees_with_the_layout_formula():
    for name, golden in GOLDEN.items():
        assert _resnet_counts(*LAYOUT[name]) == golden, name
    assert _resnet_counts(*LAYOUT["resnet18_v1"]) == (11_689_512, 9_600)  # torchvision resnet18
    assert ALEXNET_CH6_224 == 77_042_024 == 76_009_832 + 7 * 384 * 384  # Chapter 2 AlexNet + conv4's 4x4 - 3x3


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_resnet_counts(name):
    model = zoo.build_model(name)
    assert (_count(model.trainable_weights), _count(model.non_trainable_weights)) == GOLDEN[name]
    assert model.name == name


def test_golden_alexnet_ch6_count_and_initialisers():
    model = zoo.build_model("alexnet_ch6_lrn")
    assert model.count_params() == ALEXNET_CH6_224 and model.name == "alexnet_ch6_lrn"
    assert model.conv4.kernel.shape == (4, 4, 384, 384)
    assert all(not np.any(getattr(model, f"conv{i}").bias) for i in range(1, 6))  # conv bias 0 (Chapter 2: 1.0)
    np.testing.assert_allclose([float(np.mean(model.fc6.bias)), float(np.mean(model.fc7.bias))], 0.1, rtol=1e-6)
    assert not np.any(model.fc8.bias)
    assert model.use_lrn and not zoo.build_model("alexnet_ch6", image_size=32).use_lrn
    chapter2 = zoo.build_model("alexnet", image_size=32)
    assert chapter2.conv4.kernel.shape[:2] == (3, 3) and float(np.min(chapter2.conv1.bias)) == 1.0


FAST_ALIGNED = ("resnet18_v1_ch6", "resnet18_v2", "alexnet_ch6_lrn", "knet4", "knet5_lrn")


@pytest.mark.parametrize(
    "rule, names",
    [
        (None, tuple(LAYER_COUNTS)),
        ("fa", FAST_ALIGNED),
        pytest.param("fa", tuple(LAYER_COUNTS), marks=pytest.mark.slow),
    ],
    ids=["backprop", "aligned", "aligned_all"],
)
def test_layer_counts_of_the_chapter(rule, names):
    for name in names:
        expected = LAYER_COUNTS[name]
        size = 32 if name.startswith(("alexnet", "knet")) else 224
        model = zoo.build_model(name, num_classes=10, image_size=size, learning_rule=rule)
        layers = [
            layer for layer in model._flatten_layers() if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        ]
        assert len(layers) == expected, name
        if rule is not None:
            assert all(hasattr(layer, "backward_kernel") for layer in layers), name


def _expected_v2_sizes(blocks, h, w):
    """TF official layout: stem /2, pool /2, stride 2 in the first block of stages 2-4 (ceil(n / 2) each)."""
    half = lambda n: -(-n // 2)  # noqa: E731
    h, w = half(half(h)), half(half(w))
    sizes = {"stem": (h, w, 64)}
    for i, count in enumerate(blocks):
        for j in range(count):
            if i > 0 and j == 0:
                h, w = half(h), half(w)
            sizes[f"stage{i + 1}_block{j + 1}"] = (h, w, WIDTHS[i])
    return sizes


@pytest.mark.parametrize("name", ["resnet18_v2", "resnet34_v2"])
def test_v2_feature_shapes_on_non_square_single_channel_input(name):
    model = zoo.build_model(name, num_classes=5, image_size=(45, 80), channels=1)
    out = model(np.random.default_rng(0).normal(size=(1, 45, 80, 1)).astype("float32"))
    expected = _expected_v2_sizes(LAYOUT[name][0], 45, 80)
    assert tuple(out["features"]) == tuple(expected) + ("pool",)
    for key, shape in expected.items():
        assert tuple(out["features"][key].shape) == (1,) + shape, key
    assert out["logits"].shape == (1, 5) and model.stem_conv.kernel.shape == (7, 7, 1, 64)


@pytest.mark.parametrize("name", SIX)
def test_the_six_wsn_architectures_take_non_square_cochleagram_like_inputs(name):
    """The WSN task feeds (b, 203, 400, 1); a smaller non-square size exercises the same code path here."""
    model = zoo.build_model(name, num_classes=794, image_size=(45, 80), channels=1)
    out = model(np.random.default_rng(1).normal(size=(1, 45, 80, 1)).astype("float32"))
    assert out["logits"].shape == (1, 794) and np.all(np.isfinite(out["logits"]))
    if name.startswith("alexnet"):  # conv1 (45 - 11) // 4 + 1 = 9 x 18, pools 5 x 9, 3 x 5, 2 x 3
        assert model.fc6.kernel.shape == (2 * 3 * 256, 4096)
        assert model.conv1.kernel.shape == (11, 11, 1, 96)


def test_basic_block_v2_matches_numpy():
    block = resnet_blocks.BasicBlockV2(4, strides=2, projection=True, weight_decay=0.0)
    block.build((None, 7, 6, 3))
    rng = np.random.default_rng(3)
    block.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in block.get_weights()])
    for layer in (block.preact_bn, block.bn1):  # positive moving variances
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([gamma, beta, mean, np.abs(var) + 0.5])
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")

    def bn(layer, v):  # inference mode: gamma (v - mean) / sqrt(var + eps) + beta
        gamma, beta, mean, var = (np.asarray(w, np.float64) for w in layer.get_weights())
        return gamma * (v - mean) / np.sqrt(var + 1e-5) + beta

    preact = ref.relu(bn(block.preact_bn, x))
    shortcut = ref.conv2d(preact, np.asarray(block.shortcut_conv.kernel), 0.0, stride=2, padding="valid")
    padded = np.pad(preact, [(0, 0), (1, 1), (1, 1), (0, 0)])  # fixed padding k - 1 = 2 for the stride-2 3x3 conv
    y = ref.relu(bn(block.bn1, ref.conv2d(padded, np.asarray(block.conv1.kernel), 0.0, stride=2, padding="valid")))
    expected = shortcut + ref.conv2d(y, np.asarray(block.conv2.kernel), 0.0)
    np.testing.assert_allclose(block(x, training=False), expected, rtol=1e-4, atol=1e-4)
    identity = resnet_blocks.BasicBlockV2(3, weight_decay=0.0)
    identity.build((None, 5, 5, 3))
    assert len(identity.get_weights()) == 2 * 4 + 2  # preact BN, conv1, BN1, conv2: the shortcut is the input
    with pytest.raises(ValueError, match="projection=True"):
        resnet_blocks.BasicBlockV2(4, strides=2)


def test_chapter6_v1_settings_and_config_round_trip():
    model = zoo.build_model("resnet18_v1_ch6", num_classes=3)
    assert model.first_stage_projection and model.blocks[0].projection and model.bn_momentum == 0.9
    assert model.decay_biases and model.weight_decay == 1e-4
    v2 = resnets.resnet18_v2(num_classes=3)
    assert [block.projection for block in v2.blocks] == [True, False] * 4
    assert [block.strides for block in v2.blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    config = json.loads(json.dumps(v2.get_config()))
    clone = resnets.ResNet.from_config(config)
    images = np.random.default_rng(2).normal(size=(1, 40, 48, 3)).astype("float32")
    clone(images)
    clone.set_weights(v2.get_weights())
    np.testing.assert_allclose(clone(images)["logits"], v2(images)["logits"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="v1 option"):
        resnets.ResNet(18, 2, first_stage_projection=True)


def test_zoo_rejects_non_square_inputs_for_square_only_models():
    with pytest.raises(ValueError, match="square 3-channel"):
        zoo.build_model("small_resnet8", num_classes=10, image_size=(32, 40))
    with pytest.raises(ValueError, match="square 3-channel"):
        zoo.build_model("small_resnet8", num_classes=10, image_size=32, channels=1)
