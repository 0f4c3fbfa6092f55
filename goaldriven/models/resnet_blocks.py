"""Residual blocks of the ImageNet ResNets (models/resnets.py) and the small CIFAR ResNets (models/small_resnets.py).

See resnets.py for the block equations, padding, BN and weight-decay conventions. Convs and dense layers are made
through the alignment factories, so a block built by a model builder given a learning rule (alignment/binding.py) has
aligned layers.
"""

# b: batch, h/w: space, c: channels
import keras
from keras import ops

from goaldriven.alignment import layers as aligned_layers
from goaldriven.weight_decay import tf1_l2


def pad_for_stride(x, kernel_size, strides):
    """Fixed padding of Slim's conv2d_same: a stride-s, size-k conv on the padded input gives ceil(n / s) outputs."""
    if strides == 1 or kernel_size == 1:
        return x
    total = kernel_size - 1
    before, after = total // 2, total - total // 2
    return ops.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])  # (b, h + k - 1, w + k - 1, c)


class Regularized:
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
        return None if bias and not self.decay_biases else tf1_l2(self.weight_decay)

    def _conv(self, filters, kernel_size, strides=1, use_bias=False, alignment_relu=False, name=None):
        # A plain Conv2D, or an aligned one under the builder's learning rule (alignment_relu: BN + ReLU follow it).
        return aligned_layers.conv2d(
            filters,
            kernel_size,
            alignment_relu=alignment_relu,
            strides=strides,
            padding="same" if strides == 1 else "valid",  # stride > 1: padded by pad_for_stride
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


class ResidualBlock(Regularized, keras.layers.Layer):
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
class BasicBlockV1(ResidualBlock):
    """He et al. (2016a) basic block: two 3x3 convs, post-activation. See ResidualBlock for the arguments."""

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
        x = ops.relu(self.bn1(self.conv1(pad_for_stride(inputs, 3, self.strides)), training=training))
        x = self.bn2(self.conv2(x), training=training)  # (b, h / s, w / s, d)
        return ops.relu(x + shortcut)


@keras.saving.register_keras_serializable(package="goaldriven")
class BottleneckV1(ResidualBlock):
    """Post-activation bottleneck (1x1 d, 3x3 d with the stride, 1x1 4d). See ResidualBlock for the arguments."""

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
        x = ops.relu(self.bn2(self.conv2(pad_for_stride(x, 3, self.strides)), training=training))  # (b, h/s, w/s, d)
        x = self.bn3(self.conv3(x), training=training)  # (b, h / s, w / s, 4d)
        return ops.relu(x + shortcut)


@keras.saving.register_keras_serializable(package="goaldriven")
class BottleneckV2(ResidualBlock):
    """TF-Slim pre-activation bottleneck unit. See ResidualBlock for the arguments.

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
        x = ops.relu(self.bn2(self.conv2(pad_for_stride(x, 3, self.strides)), training=training))  # (b, h/s, w/s, d)
        return shortcut + self.conv3(x)  # (b, h / s, w / s, 4d)


@keras.saving.register_keras_serializable(package="goaldriven")
class BasicBlockV2(ResidualBlock):
    """Pre-activation basic block of TF official `resnet_model` v2 (ResNet-18/34 v2, thesis Chapter 6; spec ch5 6.1).
    See ResidualBlock for the arguments.

        p = relu(BN(x));  y = s + conv_3x3(relu(BN(conv_3x3/stride(p))))
        s = conv_1x1/stride(p) when `projection` (the first block of every stage), else x

    No conv biases and no BN on the shortcut, as in TF official.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)
        if self.strides != 1 and not self.projection:
            raise ValueError("BasicBlockV2 with strides 2 needs projection=True (TF official projects every stride).")
        self.preact_bn = self._bn("preact_bn")
        self.conv1 = self._conv(filters, 3, self.strides, alignment_relu=True, name="conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(filters, 3, name="conv2")
        if self.projection:
            self.shortcut_conv = self._conv(filters, 1, self.strides, name="shortcut_conv")

    def build(self, input_shape):
        c, d = input_shape[-1], self.filters
        pairs = [(self.preact_bn, c), (self.conv1, c), (self.bn1, d), (self.conv2, d)]
        self._build_sublayers(pairs + ([(self.shortcut_conv, c)] if self.projection else []))

    def call(self, inputs, training=False):
        preact = ops.relu(self.preact_bn(inputs, training=training))  # (b, h, w, c)
        shortcut = self.shortcut_conv(preact) if self.projection else inputs  # (b, h / s, w / s, d)
        x = ops.relu(self.bn1(self.conv1(pad_for_stride(preact, 3, self.strides)), training=training))
        return shortcut + self.conv2(x)  # (b, h / s, w / s, d)
