"""ResNets of thesis Chapter 2 (spec ch2 5.6, 5.7, 11.1): v1 (post-activation) and v2 (TF-Slim pre-activation).

References: He et al. (2016a), "Deep Residual Learning for Image Recognition" (v1); He et al. (2016b), "Identity
Mappings in Deep Residual Networks" (v2), as laid out in TF-Slim `resnet_v2`.

v1 (18/34: basic blocks; 50: bottleneck blocks), no conv biases, BN after every conv:
    stem:        x = maxpool_3x3/2(relu(BN(conv_7x7/2(x) -> 64)))
    basic:       y = relu(s(x) + BN(conv_3x3(relu(BN(conv_3x3/stride(x))))))
    bottleneck:  y = relu(s(x) + BN(conv_1x1 -> 4d (relu(BN(conv_3x3/stride(relu(BN(conv_1x1(x) -> d))))))))
    s(x) = BN(conv_1x1/stride(x)) when the shape changes, else x. Stride 2 in the FIRST block of stages 2-4, on the
    3x3 conv of a bottleneck (the "v1.5" placement of TF official and torchvision; same parameters as He et al.).
v2 (50/101/152: bottleneck blocks, TF-Slim):
    stem:        x = maxpool_3x3/2(conv_7x7/2(x) -> 64, with bias)          (no BN or ReLU: the first unit does it)
    unit:        p = relu(BN(x));  r = conv_1x1 -> 4d, with bias (relu(BN(conv_3x3/stride(relu(BN(conv_1x1(p) -> d))))))
                 y = s + r, with s = conv_1x1/stride(p) (with bias) when the depth changes, else x[:, ::stride, ::stride]
    head:        relu(BN(x)) ("postnorm") before the global average pool. Stride 2 in the LAST unit of stages 1-3.
Both: stage widths d = 64, 128, 256, 512; global average pool; dense logits.

Stride-2 convs use the fixed symmetric padding of TF-Slim/TF official (pad k - 1, then VALID); stride-1 convs are
SAME; max pools are SAME. BN is cross-replica (`synchronized=True`), momentum 0.997 and epsilon 1e-5 (A-15).
Initialisers: conv kernels He truncated normal (Slim `variance_scaling_initializer()`), logits RandomNormal(0.01),
biases 0. Weight decay: `weight_decay` is the TF1 lambda of lambda * sum(w^2) / 2 (Slim/TF official 1e-4), applied
as `L2(lambda / 2)` to conv and dense kernels; `decay_biases=True` also decays conv and dense biases (TF official's
"every variable except BN" rule); BN gamma/beta are never decayed.

Learning rules (thesis Chapter 5, spec ch5 3 and 6.1): convs and the logits layer come from the factories of
goaldriven/alignment/layers.py, so `build_resnet(..., learning_rule="sa")` (or building inside
`alignment.scope.learning_rule`) gives aligned layers with a backward kernel each, and the default gives the plain
Keras layers (same weight names and counts). `alignment_relu=True` (the alignment path's nonlinearity is ReLU) on the
convs followed by BN + ReLU: the stem conv, conv1 of basic blocks, conv1 and conv2 of bottlenecks; v2 uses the same
positions (its stem conv is followed by the first unit's BN + ReLU after the max pool).
"""

# b: batch, h/w: space, c: channels, k: classes
import contextlib

import keras
from keras import ops

from goaldriven.alignment import layers as aligned_layers
from goaldriven.alignment import scope

# depth -> (block kind, blocks per stage)
STAGES = {
    1: {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))},
    2: {50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))},
}
WIDTHS = (64, 128, 256, 512)
MIN_IMAGE_SIZE = 32


def _pad_for_stride(x, kernel_size, strides):
    """Fixed padding of Slim's conv2d_same: a stride-s, size-k conv on the padded input gives ceil(n / s) outputs."""
    if strides == 1 or kernel_size == 1:
        return x
    total = kernel_size - 1
    before, after = total // 2, total - total // 2
    return ops.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])  # (b, h + k - 1, w + k - 1, c)


class _Regularized:
    """Mixin: conv, dense and BN factories sharing one weight-decay and BN setting."""

    def _make_layers_config(self, weight_decay, decay_biases, bn_momentum, bn_epsilon):
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (it is the TF1 lambda; 0 disables). Received: {weight_decay}")
        if not 0 <= bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in [0, 1). Received: {bn_momentum}")
        if not bn_epsilon > 0:
            raise ValueError(f"bn_epsilon must be > 0. Received: {bn_epsilon}")
        self.weight_decay = weight_decay
        self.decay_biases = decay_biases
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon

    def _l2(self, bias=False):
        if not self.weight_decay or (bias and not self.decay_biases):
            return None
        return keras.regularizers.L2(self.weight_decay / 2)

    def _conv(self, filters, kernel_size, strides=1, use_bias=False, alignment_relu=False, name=None):
        # A plain Conv2D, or an aligned one inside `scope.learning_rule` (alignment_relu: BN + ReLU follow it).
        return aligned_layers.conv2d(
            filters,
            kernel_size,
            alignment_relu=alignment_relu,
            strides=strides,
            padding="same" if strides == 1 else "valid",  # stride > 1: padded by _pad_for_stride
            use_bias=use_bias,
            kernel_initializer="he_normal",
            kernel_regularizer=self._l2(),
            bias_regularizer=self._l2(bias=True) if use_bias else None,
            name=name,
        )

    def _bn(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, synchronized=True, name=name
        )

    def _regularization_config(self):
        return {
            "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
        }


class _ResidualBlock(_Regularized, keras.layers.Layer):
    """Shared constructor and config of the residual blocks.

    Args:
      filters: d, the block's (bottleneck) width; the output has d (basic) or 4d (bottleneck) channels.
      strides: 1 or 2, the block's spatial stride.
      projection: use a 1x1 projection shortcut (the caller knows whether the shape changes).
      weight_decay, decay_biases, bn_momentum, bn_epsilon: see the module docstring.

    Call args:
      inputs: (b, h, w, c); training: BN mode.

    Returns:
      (b, ceil(h / strides), ceil(w / strides), out_channels).
    """

    expansion = 1

    def __init__(
        self,
        filters,
        strides=1,
        projection=False,
        weight_decay=1e-4,
        decay_biases=False,
        bn_momentum=0.997,
        bn_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive int. Received: {filters!r}")
        if strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2. Received: {strides!r}")
        self.filters = filters
        self.strides = strides
        self.projection = bool(projection)
        self._make_layers_config(weight_decay, decay_biases, bn_momentum, bn_epsilon)

    @property
    def out_channels(self):
        return self.filters * self.expansion

    def _build_sublayers(self, layers_and_channels):
        """Builds each (layer, input channels) pair; the weights do not depend on the spatial size."""
        for layer, channels in layers_and_channels:
            layer.build((None, None, None, channels))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides, "projection": self.projection})
        config.update(self._regularization_config())
        return config


@keras.saving.register_keras_serializable(package="goaldriven")
class BasicBlockV1(_ResidualBlock):
    """He et al. (2016a) basic block: two 3x3 convs, post-activation. See _ResidualBlock for the arguments."""

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)
        self.conv1 = self._conv(filters, 3, self.strides, alignment_relu=True, name="conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(filters, 3, name="conv2")
        self.bn2 = self._bn("bn2")
        if self.projection:
            self.shortcut_conv = self._conv(filters, 1, self.strides, name="shortcut_conv")
            self.shortcut_bn = self._bn("shortcut_bn")

    def build(self, input_shape):
        c, d = input_shape[-1], self.filters
        pairs = [(self.conv1, c), (self.bn1, d), (self.conv2, d), (self.bn2, d)]
        self._build_sublayers(pairs + ([(self.shortcut_conv, c), (self.shortcut_bn, d)] if self.projection else []))

    def call(self, inputs, training=False):
        shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training) if self.projection else inputs
        x = ops.relu(self.bn1(self.conv1(_pad_for_stride(inputs, 3, self.strides)), training=training))
        x = self.bn2(self.conv2(x), training=training)  # (b, h / s, w / s, d)
        return ops.relu(x + shortcut)


@keras.saving.register_keras_serializable(package="goaldriven")
class BottleneckV1(_ResidualBlock):
    """Post-activation bottleneck (1x1 d, 3x3 d with the stride, 1x1 4d). See _ResidualBlock for the arguments."""

    expansion = 4

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)
        self.conv1 = self._conv(filters, 1, alignment_relu=True, name="conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(filters, 3, self.strides, alignment_relu=True, name="conv2")
        self.bn2 = self._bn("bn2")
        self.conv3 = self._conv(4 * filters, 1, name="conv3")
        self.bn3 = self._bn("bn3")
        if self.projection:
            self.shortcut_conv = self._conv(4 * filters, 1, self.strides, name="shortcut_conv")
            self.shortcut_bn = self._bn("shortcut_bn")

    def build(self, input_shape):
        c, d = input_shape[-1], self.filters
        pairs = [(self.conv1, c), (self.bn1, d), (self.conv2, d), (self.bn2, d), (self.conv3, d), (self.bn3, 4 * d)]
        self._build_sublayers(pairs + ([(self.shortcut_conv, c), (self.shortcut_bn, 4 * d)] if self.projection else []))

    def call(self, inputs, training=False):
        shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training) if self.projection else inputs
        x = ops.relu(self.bn1(self.conv1(inputs), training=training))  # (b, h, w, d)
        x = ops.relu(self.bn2(self.conv2(_pad_for_stride(x, 3, self.strides)), training=training))  # (b, h/s, w/s, d)
        x = self.bn3(self.conv3(x), training=training)  # (b, h / s, w / s, 4d)
        return ops.relu(x + shortcut)


@keras.saving.register_keras_serializable(package="goaldriven")
class BottleneckV2(_ResidualBlock):
    """TF-Slim pre-activation bottleneck unit. See _ResidualBlock for the arguments.

    The shortcut is a 1x1 conv (with bias) of the pre-activation when `projection`, else the input subsampled by the
    stride (Slim's 1x1 max pool). The last 1x1 conv has a bias and no BN, as in Slim.
    """

    expansion = 4

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)
        self.preact_bn = self._bn("preact_bn")
        self.conv1 = self._conv(filters, 1, alignment_relu=True, name="conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(filters, 3, self.strides, alignment_relu=True, name="conv2")
        self.bn2 = self._bn("bn2")
        self.conv3 = self._conv(4 * filters, 1, use_bias=True, name="conv3")
        if self.projection:
            self.shortcut_conv = self._conv(4 * filters, 1, self.strides, use_bias=True, name="shortcut_conv")

    def build(self, input_shape):
        c, d = input_shape[-1], self.filters
        pairs = [(self.preact_bn, c), (self.conv1, c), (self.bn1, d), (self.conv2, d), (self.bn2, d), (self.conv3, d)]
        self._build_sublayers(pairs + ([(self.shortcut_conv, c)] if self.projection else []))

    def call(self, inputs, training=False):
        preact = ops.relu(self.preact_bn(inputs, training=training))  # (b, h, w, c)
        if self.projection:
            shortcut = self.shortcut_conv(preact)
        else:
            shortcut = inputs[:, :: self.strides, :: self.strides, :]  # (b, ceil(h / s), ceil(w / s), c)
        x = ops.relu(self.bn1(self.conv1(preact), training=training))  # (b, h, w, d)
        x = ops.relu(self.bn2(self.conv2(_pad_for_stride(x, 3, self.strides)), training=training))  # (b, h/s, w/s, d)
        return shortcut + self.conv3(x)  # (b, h / s, w / s, 4d)


BLOCKS = {(1, "basic"): BasicBlockV1, (1, "bottleneck"): BottleneckV1, (2, "bottleneck"): BottleneckV2}


@keras.saving.register_keras_serializable(package="goaldriven")
class ResNet(_Regularized, keras.Model):
    """A v1 or v2 ImageNet ResNet: images -> logits and named features.

    Args:
      depth: 18, 34 or 50 for version 1; 50, 101 or 152 for version 2.
      version: 1 (post-activation, He et al. 2016a) or 2 (pre-activation, TF-Slim).
      num_classes: number of output classes (ImageNet: 1000; Slim's 1001 background class is not used).
      weight_decay: TF1 lambda on conv and dense kernels (module docstring); 0 disables it.
      decay_biases: also decay conv and dense biases.
      bn_momentum, bn_epsilon: BatchNormalization settings (A-15: 0.997, 1e-5).

    Call args:
      images: (b, h, w, 3) float, already normalised; h, w >= 32.
      training: BN mode.

    Returns:
      {"logits": (b, k) float32, "features": {"stem": (b, h/4, w/4, 64), "stage{i}_block{j}": (b, ., ., c),
       "pool": (b, c_final)}}, features in forward order (`feature_names`).
    """

    def __init__(
        self,
        depth=50,
        version=2,
        num_classes=1000,
        weight_decay=1e-4,
        decay_biases=False,
        bn_momentum=0.997,
        bn_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if version not in STAGES:
            raise ValueError(f"version must be 1 or 2. Received: {version!r}")
        if depth not in STAGES[version]:
            raise ValueError(
                f"depth for version {version} must be one of {sorted(STAGES[version])}. Received: {depth!r}"
            )
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int. Received: {num_classes!r}")
        self.depth = depth
        self.version = version
        self.num_classes = num_classes
        self._make_layers_config(weight_decay, decay_biases, bn_momentum, bn_epsilon)

        self.stem_conv = self._conv(64, 7, 2, use_bias=version == 2, alignment_relu=True, name="stem_conv")
        self.stem_bn = self._bn("stem_bn") if version == 1 else None
        self.stem_pool = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")
        kind, counts = STAGES[version][depth]
        block_cls = BLOCKS[(version, kind)]
        self.blocks, channels = [], 64
        for i, (width, count) in enumerate(zip(WIDTHS, counts)):
            for j in range(count):
                if version == 1:
                    strides = 2 if i > 0 and j == 0 else 1
                else:
                    strides = 2 if i < len(WIDTHS) - 1 and j == count - 1 else 1
                out_channels = width * block_cls.expansion
                projection = out_channels != channels or (version == 1 and strides != 1)
                block = block_cls(
                    width,
                    strides=strides,
                    projection=projection,
                    **self._regularization_config(),
                    name=f"stage{i + 1}_block{j + 1}",
                )
                self.blocks.append(block)
                channels = out_channels
        self.postnorm = self._bn("postnorm") if version == 2 else None
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.logits = aligned_layers.dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            kernel_regularizer=self._l2(),
            bias_regularizer=self._l2(bias=True),
            name="logits",
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the returned features, in forward order."""
        return ("stem",) + tuple(block.name for block in self.blocks) + ("pool",)

    def call(self, images, training=False):
        known = [size for size in images.shape[1:3] if size is not None]
        if known and min(known) < MIN_IMAGE_SIZE:
            raise ValueError(f"ResNet needs images of at least {MIN_IMAGE_SIZE} px. Received shape {images.shape}")
        x = self.stem_conv(_pad_for_stride(images, 7, 2))  # (b, h / 2, w / 2, 64)
        if self.version == 1:
            x = ops.relu(self.stem_bn(x, training=training))
        x = self.stem_pool(x)  # (b, h / 4, w / 4, 64)
        features = {"stem": x}
        for block in self.blocks:
            x = block(x, training=training)
            features[block.name] = x
        if self.version == 2:
            x = ops.relu(self.postnorm(x, training=training))
        pooled = self.global_pool(x)  # (b, c)
        features["pool"] = pooled
        return {"logits": ops.cast(self.logits(pooled), "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update({"depth": self.depth, "version": self.version, "num_classes": self.num_classes})
        config.update(self._regularization_config())
        return config


def build_resnet(
    depth,
    version,
    num_classes=1000,
    weight_decay=1e-4,
    bn_momentum=0.997,
    bn_epsilon=1e-5,
    decay_biases=False,
    learning_rule=None,
) -> ResNet:
    """Builds a ResNet with all weights created (the weights do not depend on the image size).

    `learning_rule`: "bp" (backprop), a rule name or abbreviation ("sa", "information_alignment") or an
    `alignment.rules.LearningRule` builds the convs and the logits layer as aligned layers trained under that rule
    (alignment/scope.py); None uses the enclosing `scope.learning_rule`, i.e. backprop outside any.
    """
    context = contextlib.nullcontext() if learning_rule is None else scope.learning_rule(learning_rule)
    with context:
        model = ResNet(
            depth=depth,
            version=version,
            num_classes=num_classes,
            weight_decay=weight_decay,
            decay_biases=decay_biases,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            name=f"resnet{depth}_v{version}",
        )
        model(keras.KerasTensor((None, None, None, 3)))
    return model


def resnet18_v1(**kwargs) -> ResNet:
    return build_resnet(18, 1, **kwargs)


def resnet34_v1(**kwargs) -> ResNet:
    return build_resnet(34, 1, **kwargs)


def resnet50_v1(**kwargs) -> ResNet:
    return build_resnet(50, 1, **kwargs)


def resnet50_v2(**kwargs) -> ResNet:
    return build_resnet(50, 2, **kwargs)


def resnet101_v2(**kwargs) -> ResNet:
    return build_resnet(101, 2, **kwargs)


def resnet152_v2(**kwargs) -> ResNet:
    return build_resnet(152, 2, **kwargs)
