"""The primate-model baselines of thesis Chapter 3 as the chapter uses them: torchvision's AlexNet, AlexNet-BN, VGG16
and ResNet-18, trained at 64 px (and 224 px for the controls).

Reference: thesis Section 3.4 and Tables 3.3-3.4 (spec ch3 A3.2, C.1-C.3, Ambiguity 15); torchvision's model
definitions (Krizhevsky 2014 "one weird trick" AlexNet, Simonyan & Zisserman 2015 configuration D, He et al. 2016).
These are not the lab AlexNet of Chapter 2 (`alexnet.py`, zoo "alexnet": 96/256 filters, LRN, SAME padding).

    AlexNet (zoo "alexnet_tv")   conv_11x11/4 pad 2 -> 64, relu, maxpool_3/2 = pool1;  conv_5x5 pad 2 -> 192, relu,
                                 maxpool = pool2;  conv_3x3 pad 1 -> 384, relu = conv3;  -> 256, relu = conv4;
                                 -> 256, relu, maxpool = pool5;  adaptive_avg_pool 6x6, flatten;
                                 fc6 = relu(W6 dropout(.)), fc7 = relu(W7 dropout(fc6)), logits = W8 fc7
    AlexNet-BN ("alexnet_bn")    BN after every conv and after fc6 / fc7 (before their ReLU): the IR AlexNet
    VGG16 ("vgg16")              13 convs 3x3 pad 1 (64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3), relu, a
                                 maxpool_2/2 after each group = pool1..pool5; adaptive_avg_pool 7x7;
                                 fc6 = dropout(relu(W6 .)), fc7 = dropout(relu(W7 fc6)), logits = W8 fc7
    ResNet-18 ("resnet18_tv")    conv1 = relu(BN(conv_7x7/2 pad 3 -> 64)); maxpool_3/2 pad 1; layer1..layer4 of two
                                 basic blocks each (resnet_blocks.BasicBlockV1: stride 2 on the first 3x3 conv of
                                 layers 2-4, 1x1 projection); avgpool = global average (512)

Counts (exact, thesis Table 3.4): parameters without the last dense layer 57,003,840 (AlexNet), 57,022,528
(AlexNet-BN), 134,260,544 (VGG16), 11,176,512 (ResNet-18); units of `neural_fit_layers` 19,072 (AlexNet, 64 px) /
204,672 (224 px), 133,120 / 1,538,560 (VGG16), 143,872 (ResNet-18, 64 px). Features are post-ReLU (post-BN+ReLU in
the BN variants; Ambiguity 15). Convs and dense layers have PyTorch's biases (none in ResNet-18); BN: momentum 0.9
(PyTorch 0.1), epsilon 1e-5, cross-replica. Padding is PyTorch's: stride-1 convs with padding (k - 1) / 2 are SAME
convs (the same arithmetic, faster in oneDNN), the others zero padding then valid convs and pools: the
max pool of ResNet-18 follows a ReLU, so zero padding equals PyTorch's -inf padding there.

Learning rules: convs and dense layers come from the alignment factories (any rule of thesis Chapter 5).
"""

# b: batch, h/w: space, c: channels, k: classes
import functools
import math

import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import input_shape, mirrored, resnet_blocks
from goaldriven.models.adaptive_average_pooling2d import AdaptiveAveragePooling2D
from goaldriven.weight_decay import tf1_l2

# Initialisers as torchvision's (biases start at 0): PyTorch's default U(+-1 / sqrt(fan_in)) for AlexNet and the
# ResNet's fc; kaiming_normal_(mode="fan_out", nonlinearity="relu") for the convs of VGG16 and ResNet-18; N(0, 0.01)
# for VGG16's dense layers.
# One initializer per layer (factories): Keras 3 draws the same values from one unseeded instance.
TORCH_DEFAULT = mirrored.torch_default_kernel
KAIMING_FAN_OUT = functools.partial(keras.initializers.VarianceScaling, 2.0, "fan_out", "untruncated_normal")
NORMAL_001 = functools.partial(keras.initializers.RandomNormal, stddev=0.01)
ALEXNET_CONVS = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False))
ALEXNET_CONVS += ((256, 3, 1, 1, True),)  # (filters, kernel, stride, padding, max pool after)
ALEXNET_NAMES = ("pool1", "pool2", "conv3", "conv4", "pool5")
VGG16_GROUPS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (filters, convs) per pool
MIN_SIZE = {"alexnet": 64, "vgg16": 32, "resnet18": 32}  # AlexNet: its third max pool (thesis Section 3.4.1)


def _check_size(kind: str, images) -> None:
    known = [size for size in images.shape[1:3] if size is not None]
    if known and min(known) < MIN_SIZE[kind]:
        raise ValueError(f"{kind} needs images of at least {MIN_SIZE[kind]} px. Received shape {images.shape}")


class _Classic(keras.Model):
    """Shared parts of the AlexNets and VGG16: conv stack, adaptive pool, two hidden dense layers, the readout."""

    conv_initializer = dense_initializer = staticmethod(TORCH_DEFAULT)

    def __init__(self, num_classes, weight_decay, dropout, batch_norm, pool_size, **kwargs):
        super().__init__(**kwargs)
        input_shape.check_readout(num_classes, weight_decay, dropout)
        self.num_classes, self.weight_decay, self.dropout = num_classes, weight_decay, dropout
        self.batch_norm = bool(batch_norm)
        self.avgpool = AdaptiveAveragePooling2D(pool_size, name="avgpool")
        self.fc6 = self._dense(4096, "fc6", alignment_relu=True)
        self.fc7 = self._dense(4096, "fc7", alignment_relu=True)
        self.fc8 = self._dense(num_classes, "fc8")
        self.fc_norms = (
            [mirrored.batch_norm(f"{n}_bn", synchronized=True) for n in ("fc6", "fc7")]
            if self.batch_norm
            else [None, None]
        )
        self.drops = [keras.layers.Dropout(dropout, name=f"drop{i}") for i in (6, 7)]

    def _conv(self, filters, kernel_size, strides, padding, name):
        regularizer = tf1_l2(self.weight_decay)
        return aligned_layers.conv2d(
            filters,
            kernel_size,
            strides=strides,
            padding="same" if mirrored.same_equivalent(kernel_size, strides, padding) else "valid",
            kernel_initializer=self.conv_initializer(),
            kernel_regularizer=regularizer,
            alignment_relu=True,
            name=name,
        )

    def _dense(self, units, name, alignment_relu=False):
        regularizer = tf1_l2(self.weight_decay)
        return aligned_layers.dense(
            units,
            kernel_initializer=self.dense_initializer(),
            kernel_regularizer=regularizer,
            alignment_relu=alignment_relu,
            name=name,
        )

    @property
    def neural_fit_layers(self) -> tuple[str, ...]:
        """The layers thesis Table 3.4 counts as units."""
        return self.feature_names

    def _conv_bn_relu(self, conv, norm, x, padding, training):
        x = conv(x if conv.padding == "same" else mirrored.zero_pad(x, padding))
        return ops.relu(norm(x, training=training) if norm is not None else x)

    def _head(self, x, features, training, dropout_first):
        x = self.avgpool(x)
        x = ops.reshape(x, (-1, math.prod(x.shape[1:])))  # Keras' (h, w, c) flattening
        for name, dense, norm, drop in zip(("fc6", "fc7"), (self.fc6, self.fc7), self.fc_norms, self.drops):
            x = drop(x, training=training) if dropout_first else x
            x = dense(x)
            x = ops.relu(norm(x, training=training) if norm is not None else x)
            features[name] = x
            x = x if dropout_first else drop(x, training=training)
        return {"logits": ops.cast(self.fc8(x), "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "weight_decay": self.weight_decay, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="goaldriven")
class TorchvisionAlexNet(_Classic):
    """torchvision's AlexNet, with BN after every conv and hidden dense layer when `batch_norm` (module docstring).

    Args: num_classes; weight_decay (TF1 lambda = PyTorch weight_decay, 5e-4); dropout (0.5); batch_norm.
    Call: images (b, h, w, 3), h, w >= 64; training. Returns {"logits": (b, k) float32, "features": {pool1: (b, 7, 7,
    64), pool2: (b, 3, 3, 192), conv3: (b, 3, 3, 384), conv4: (b, 3, 3, 256), pool5: (b, 1, 1, 256), fc6, fc7: (b,
    4096)}} (sizes at 64 px).
    """

    def __init__(self, num_classes=1000, weight_decay=5e-4, dropout=0.5, batch_norm=False, **kwargs):
        super().__init__(num_classes, weight_decay, dropout, batch_norm, 6, **kwargs)
        self.convs = [self._conv(f, k, s, p, f"conv{i + 1}") for i, (f, k, s, p, _) in enumerate(ALEXNET_CONVS)]
        self.norms = [
            mirrored.batch_norm(f"conv{i + 1}_bn", synchronized=True) if self.batch_norm else None
            for i in range(len(ALEXNET_CONVS))
        ]
        self.pool = keras.layers.MaxPooling2D(3, 2, padding="valid", name="maxpool")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ALEXNET_NAMES + ("fc6", "fc7")

    def call(self, images, training=False):
        _check_size("alexnet", images)
        x, features = images, {}
        for name, conv, norm, (_, _, _, padding, pool) in zip(ALEXNET_NAMES, self.convs, self.norms, ALEXNET_CONVS):
            x = self._conv_bn_relu(conv, norm, x, padding, training)
            x = self.pool(x) if pool else x
            features[name] = x
        return self._head(x, features, training, dropout_first=True)

    def get_config(self):
        return {**super().get_config(), "batch_norm": self.batch_norm}


@keras.saving.register_keras_serializable(package="goaldriven")
class VGG16(_Classic):
    """torchvision's VGG16 (configuration D, no BN) (module docstring).

    Args: num_classes; weight_decay (5e-4); dropout (0.5). Call: images (b, h, w, 3), h, w >= 32; training.
    Returns {"logits", "features": {pool1: (b, 32, 32, 64), ..., pool5: (b, 2, 2, 512), fc6, fc7: (b, 4096)}} at 64 px.
    """

    conv_initializer = staticmethod(KAIMING_FAN_OUT)
    dense_initializer = staticmethod(NORMAL_001)

    def __init__(self, num_classes=1000, weight_decay=5e-4, dropout=0.5, **kwargs):
        super().__init__(num_classes, weight_decay, dropout, False, 7, **kwargs)
        self.groups = [
            [self._conv(filters, 3, 1, 1, f"conv{g + 1}_{j + 1}") for j in range(count)]
            for g, (filters, count) in enumerate(VGG16_GROUPS)
        ]
        self.pool = keras.layers.MaxPooling2D(2, 2, padding="valid", name="maxpool")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"pool{g + 1}" for g in range(len(VGG16_GROUPS))) + ("fc6", "fc7")

    def call(self, images, training=False):
        _check_size("vgg16", images)
        x, features = images, {}
        for g, convs in enumerate(self.groups):
            for conv in convs:
                x = self._conv_bn_relu(conv, None, x, 1, training)
            x = self.pool(x)
            features[f"pool{g + 1}"] = x
        return self._head(x, features, training, dropout_first=False)


@keras.saving.register_keras_serializable(package="goaldriven")
class TorchvisionResNet18(resnet_blocks.Regularized, keras.Model):
    """torchvision's ResNet-18 (module docstring).

    Args: num_classes; weight_decay (TF1 lambda, 1e-4). Call: images (b, h, w, 3), h, w >= 32; training.
    Returns {"logits", "features": {conv1: (b, 32, 32, 64), maxpool: (b, 16, 16, 64), layer1_0, layer1_1: (b, 16,
    16, 64), ..., layer4_1: (b, 2, 2, 512), avgpool: (b, 512)}} at 64 px.
    """

    def __init__(self, num_classes=1000, weight_decay=1e-4, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int. Received: {num_classes!r}")
        self.num_classes = num_classes
        self._make_layers_config(weight_decay, False, mirrored.BN_MOMENTUM, mirrored.BN_EPSILON)
        self.conv1 = self._conv(64, 7, 2, alignment_relu=True, name="conv1")
        self.bn1 = self._bn("bn1")
        self.maxpool = keras.layers.MaxPooling2D(3, 2, padding="valid", name="maxpool")
        self.blocks, channels = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            for j in range(2):
                strides = 2 if i > 0 and j == 0 else 1
                self.blocks.append(
                    resnet_blocks.BasicBlockV1(
                        width,
                        strides=strides,
                        projection=width != channels,
                        **self._regularization_config(),
                        name=f"layer{i + 1}_{j}",
                    )
                )
                channels = width
        self.avgpool = keras.layers.GlobalAveragePooling2D(name="avgpool")
        self.fc = aligned_layers.dense(
            num_classes,
            kernel_initializer=TORCH_DEFAULT(),
            kernel_regularizer=self._l2(),
            bias_regularizer=self._l2(bias=True),
            name="fc",
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("conv1", "maxpool") + tuple(block.name for block in self.blocks) + ("avgpool",)

    @property
    def neural_fit_layers(self) -> tuple[str, ...]:
        return self.feature_names

    def call(self, images, training=False):
        _check_size("resnet18", images)
        x = self.conv1(resnet_blocks.pad_for_stride(images, 7, 2))  # pad 3 each side: torchvision's padding=3
        x = ops.relu(self.bn1(x, training=training))  # (b, h / 2, w / 2, 64)
        features = {"conv1": x}
        x = self.maxpool(
            mirrored.zero_pad(x, 1)
        )  # (b, h / 4, w / 4, 64); x >= 0, so zero padding = PyTorch's -inf padding
        features["maxpool"] = x
        for block in self.blocks:
            x = block(x, training=training)
            features[block.name] = x
        pooled = self.avgpool(x)  # (b, 512)
        features["avgpool"] = pooled
        return {"logits": ops.cast(self.fc(pooled), "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "weight_decay": self.weight_decay})
        return config


BUILDERS = {
    "alexnet_tv": lambda **kw: TorchvisionAlexNet(batch_norm=False, **kw),
    "alexnet_bn": lambda **kw: TorchvisionAlexNet(batch_norm=True, **kw),
    "vgg16": VGG16,
    "resnet18_tv": TorchvisionResNet18,
}
DEFAULT_WEIGHT_DECAY = {"alexnet_tv": 5e-4, "alexnet_bn": 5e-4, "vgg16": 5e-4, "resnet18_tv": 1e-4}


@binding.builds_under_rule
def build_mouse_baseline(
    name: str, num_classes=1000, weight_decay=None, image_size=64, channels=3, learning_rule=None
) -> keras.Model:
    """Builds the named baseline ("alexnet_tv", "alexnet_bn", "vgg16", "resnet18_tv") with all weights created for
    (None, h, w, channels) inputs (`image_size`: int or (h, w); the weights do not depend on it)."""
    del learning_rule  # bound by the decorator: the factories see it through the scope
    if name not in BUILDERS:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BUILDERS)}.")
    height, width = input_shape.image_hw(image_size)
    decay = DEFAULT_WEIGHT_DECAY[name] if weight_decay is None else weight_decay
    model = BUILDERS[name](num_classes=num_classes, weight_decay=decay, name=name)
    model(keras.KerasTensor((None, height, width, input_shape.check_channels(channels))))
    return model
