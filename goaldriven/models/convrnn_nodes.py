"""The layers of a ConvRNN graph: harbor (input aggregation), conv nodes with an optional implanted cell, readout.

Spec ch2 sections 2-3. One node per layer of the BaseNet; every node is

    harbor -> pre-memory conv -> memory (cell) -> post-memory ops (residual add, ELU, max-pool)

* Harbor: the feedforward input (the previous node's output at t-1, or the frame for the first node) followed by the
  feedback/skip inputs in `sorted(source names)` order, each bilinearly resized (align_corners=True) to the
  feedforward input's spatial size and concatenated along channels. For non-RGC nodes the pre-memory conv reads the
  whole concatenation (equal to the reference's per-input "component" conv); an RGC node convolves only the
  feedforward part and hands the feedback to its cell, with the raw feedforward input as the cell's `residual`.
* `block="plain"`: r = pool(cell(act(W_pre * x + b_pre)))  (shallow nets, conv1 everywhere, RGC Median nodes).
* `block="residual"` (intermediate non-RGC nets and the 11-layer BaseNet): u = ELU(W_pre * x + b), h = cell(u) (or u
  without a cell), r = pool(ELU(W_post * h + b_post + P x)), P = identity or a 1x1 bias-free, undecayed projection.
* Readout ("imnetds"): `kind="conv"` is a 2x2 VALID conv to the classes then a global average pool (shallow nets);
  `kind="fc"` is a global average pool then a dense layer with bias 1.0 (intermediate nets).

Weight decay `weight_decay` is the TF1 lambda of the backbone (pre/post convs and readout, kernels and biases, spec
A-26); cells carry their own.

Learning rules (thesis Chapter 5): every conv and dense layer comes from the factories of goaldriven/alignment/
layers.py when the node is built, so nodes built by `convrnn_zoo.build_convrnn(..., learning_rule=rule)` have aligned
layers (alignment/binding.py). The alignment path's nonlinearity is the layer's own (none: the node's ELU is not a
ReLU), ReLU only for the pre-memory conv of a plain node with activation "relu".
"""

# b: batch, h/w: space, c: channels, k: classes
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from goaldriven.alignment import layers as aligned_layers
from goaldriven.weight_decay import tf1_l2

BLOCKS = ("plain", "residual")
ACTIVATIONS = (None, "elu", "relu")


def align_corners_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) bilinear interpolation weights with source coordinate dst * (in - 1) / (out - 1) (align_corners)."""
    matrix = np.zeros((out_size, in_size), np.float64)
    if in_size == 1 or out_size == 1:
        matrix[:, 0] = 1.0
        return matrix
    coords = np.arange(out_size) * (in_size - 1) / (out_size - 1)
    low = np.minimum(np.floor(coords).astype(int), in_size - 2)
    frac = coords - low
    matrix[np.arange(out_size), low] = 1.0 - frac
    matrix[np.arange(out_size), low + 1] += frac
    return matrix


def bilinear_resize(x, size: tuple[int, int]):
    """Bilinear resize of (b, h, w, c) to `size` with align_corners=True, as two small matmuls (XLA and bf16 safe)."""
    in_h, in_w = int(x.shape[1]), int(x.shape[2])
    if (in_h, in_w) == tuple(size):
        return x
    rows = ops.convert_to_tensor(align_corners_matrix(size[0], in_h), dtype=x.dtype)  # (H, h)
    cols = ops.convert_to_tensor(align_corners_matrix(size[1], in_w), dtype=x.dtype)  # (W, w)
    return ops.einsum("Hh,bhwc,Ww->bHWc", rows, x, cols)


def harbor(feedforward, others, size: tuple[int, int] | None = None):
    """Resizes `others` (already in sorted-source-name order) to the feedforward input's size; returns them concatenated.

    Returns (feedforward, concatenated others or None).
    """
    size = size or (int(feedforward.shape[1]), int(feedforward.shape[2]))
    if not others:
        return feedforward, None
    resized = [bilinear_resize(ops.cast(o, feedforward.dtype), size) for o in others]
    return feedforward, resized[0] if len(resized) == 1 else ops.concatenate(resized, axis=-1)


def _initializer(scale: float):
    return keras.initializers.VarianceScaling(scale=scale, mode="fan_in", distribution="truncated_normal")


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvNode(keras.layers.Layer):
    """One layer of a ConvRNN graph (see the module docstring).

    Args:
      filters: output channels of the pre-memory conv (and of the node, unless the cell changes depth).
      kernel_size, strides: of the pre-memory conv (SAME padding).
      activation: after the pre-memory conv (None, "elu", "relu"); residual blocks always use ELU.
      block: "plain" or "residual".
      pool: 2x2 stride-2 SAME max-pool at the end.
      cell: a goaldriven conv cell (cells/base.py interface) or None (feedforward node).
      rgc_inputs: the cell takes the raw feedforward input as `residual` and the feedback separately (RGC cells).
      weight_decay: backbone TF1 lambda.
      init_scale: VarianceScaling scale of the backbone kernels.

    Call args:
      feedforward: (b, h, w, c_ff) the frame or the feedforward predecessor's output.
      others: list of feedback/skip outputs (any sizes), sorted by source name.
      states: the cell's state list ([] without a cell).

    Returns:
      (output (b, h', w', c_out), new states).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        activation: str | None = "elu",
        block: str = "plain",
        pool: bool = False,
        cell: keras.layers.Layer | None = None,
        rgc_inputs: bool = False,
        weight_decay: float = 1e-4,
        init_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}; received {block!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
        if rgc_inputs and cell is None:
            raise ValueError(f"node {self.name}: rgc_inputs=True needs an RGC cell; received cell=None.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = activation
        self.block = block
        self.pool = bool(pool)
        self.cell = cell
        self.rgc_inputs = bool(rgc_inputs)
        self.weight_decay = float(weight_decay)
        self.init_scale = float(init_scale)

    def _conv(self, filters, kernel_size, strides, name, alignment_relu=False):
        reg = tf1_l2(self.weight_decay)
        return aligned_layers.conv2d(
            filters,
            kernel_size,
            alignment_relu=alignment_relu,
            strides=strides,
            padding="same",
            kernel_initializer=_initializer(self.init_scale),
            bias_initializer="zeros",
            kernel_regularizer=reg,
            bias_regularizer=reg,
            dtype=self.dtype_policy,
            name=name,
        )

    @property
    def output_channels(self) -> int:
        if self.cell is not None and self.block == "plain":
            return int(self.cell.output_channels)
        return self.filters

    def build(self, feedforward_shape, other_channels: int = 0):
        """Builds for a feedforward input of `feedforward_shape` and `other_channels` concatenated feedback channels."""
        b, h, w, c_ff = feedforward_shape
        self.other_channels = int(other_channels)
        c_pre_in = c_ff if self.rgc_inputs else c_ff + self.other_channels
        relu_next = self.block == "plain" and self.activation == "relu"  # the alignment path's ReLU (spec ch5 4.1)
        self.pre_conv = self._conv(self.filters, self.kernel_size, self.strides, "pre_conv", alignment_relu=relu_next)
        self.pre_conv.build((b, h, w, c_pre_in))
        h2, w2 = -(-h // self.strides), -(-w // self.strides)
        if self.cell is not None:
            self.cell.build((b, h2, w2, self.filters))
        if self.block == "residual":
            if self.strides != 1:
                raise ValueError(f"node {self.name}: residual blocks use stride 1; received strides={self.strides}.")
            c_mem = self.cell.output_channels if self.cell is not None else self.filters
            self.post_conv = self._conv(self.filters, 3, 1, "post_conv")
            self.post_conv.build((b, h2, w2, c_mem))
            self.projection = None
            if c_pre_in != self.filters:
                self.projection = aligned_layers.conv2d(
                    self.filters,
                    1,
                    use_bias=False,
                    kernel_initializer="glorot_uniform",
                    dtype=self.dtype_policy,
                    name="projection",
                )
                self.projection.build((b, h2, w2, c_pre_in))
        self.output_size = (-(-h2 // 2), -(-w2 // 2)) if self.pool else (h2, w2)
        self.built = True

    def initial_state(self, batch_size):
        return [] if self.cell is None else list(self.cell.get_initial_state(batch_size))

    def call(self, feedforward, others=(), states=(), training=False):
        x_ff, fb = harbor(ops.cast(feedforward, self.compute_dtype), list(others))
        x_in = x_ff if (self.rgc_inputs or fb is None) else ops.concatenate([x_ff, fb], axis=-1)
        u = self.pre_conv(x_in)
        if self.block == "residual" or self.activation == "elu":
            u = ops.elu(u)
        elif self.activation == "relu":
            u = ops.relu(u)
        new_states = []
        if self.cell is not None:
            extra = {"residual": x_ff, "feedback": fb} if self.rgc_inputs else {}
            u, new_states = self.cell(u, list(states), training=training, **extra)
        if self.block == "residual":
            shortcut = x_in if self.projection is None else self.projection(x_in)
            u = ops.elu(self.post_conv(u) + shortcut)
        if self.pool:
            u = ops.max_pool(u, 2, 2, padding="same")
        return u, list(new_states)

    def get_config(self):
        config = super().get_config()
        cell = None
        if self.cell is not None:  # without its build config: `build` builds the cell, and a second build fails
            cell = keras.saving.serialize_keras_object(self.cell)
            cell.pop("build_config", None)
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            activation=self.activation,
            block=self.block,
            pool=self.pool,
            cell=cell,
            rgc_inputs=self.rgc_inputs,
            weight_decay=self.weight_decay,
            init_scale=self.init_scale,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("cell") is not None:
            config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="goaldriven")
class Readout(keras.layers.Layer):
    """The "imnetds" readout: `kind="conv"` (2x2 VALID conv, clipped to the map, then GAP) or `kind="fc"` (GAP, dense).

    Kernels RandomNormal(0.01); the fc bias starts at 1.0 (reference `model_tool.fc`), the conv bias at 0.
    """

    def __init__(self, num_classes: int = 1000, kind: str = "fc", kernel_size: int = 2, weight_decay=1e-4, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("conv", "fc"):
            raise ValueError(f"readout kind must be 'conv' or 'fc'; received {kind!r}.")
        self.num_classes = int(num_classes)
        self.kind = kind
        self.kernel_size = int(kernel_size)
        self.weight_decay = float(weight_decay)

    def build(self, input_shape):
        reg = tf1_l2(self.weight_decay)
        init = keras.initializers.RandomNormal(stddev=0.01)
        if self.kind == "conv":
            # At 64 px the shallow conv5 map is 1x1: the 2x2 kernel is clipped to the map (spec 7.1 at 128 px gives
            # 2x2 -> 1x1 output; below that the reference graph cannot be built at all).
            size = min(self.kernel_size, int(input_shape[1]), int(input_shape[2]))
            self.layer = aligned_layers.conv2d(
                self.num_classes,
                size,
                padding="valid",
                kernel_initializer=init,
                kernel_regularizer=reg,
                bias_regularizer=reg,
                dtype=self.dtype_policy,
                name="conv",
            )
            self.layer.build(input_shape)
        else:
            self.layer = aligned_layers.dense(
                self.num_classes,
                kernel_initializer=init,
                bias_initializer=keras.initializers.Constant(1.0),
                kernel_regularizer=reg,
                bias_regularizer=reg,
                dtype=self.dtype_policy,
                name="fc",
            )
            self.layer.build((input_shape[0], input_shape[-1]))
        self.built = True

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.kind == "conv":
            return ops.mean(self.layer(x), axis=(1, 2))  # (b, k)
        return self.layer(ops.mean(x, axis=(1, 2)))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, kind=self.kind, kernel_size=self.kernel_size, weight_decay=self.weight_decay
        )
        return config


def zeros_like_output(node: ConvNode, batch_size, dtype):
    """The zero stand-in for `node`'s output at t = -1 (spec 1.2)."""
    h, w = node.output_size
    return tf.zeros([batch_size, h, w, node.output_channels], dtype)
