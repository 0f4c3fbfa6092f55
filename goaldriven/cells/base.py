"""Shared code of the convolutional recurrent cells (thesis Chapter 2; spec ch2 sections 0.2 and 4).

* `ConvCell`: the interface every conv cell implements (one time step, explicit state list):
      cell.build((b, h, w, c_in)); states = cell.get_initial_state(b)
      out, new_states = cell(x, states, feedback=None, residual=None, training=False)
  Only the RGC takes `feedback` and `residual`; the other cells refuse them.
* `tf1_l2(lam)` (models/weight_decay.py): the reference's TF1 l2_regularizer(lam) = lam * sum(w^2) / 2, i.e. Keras
  L2(lam / 2) (spec 0.2).
* `HWCLayerNorm`: tf.contrib.layers.layer_norm as the reference uses it: for each example,
      y = (x - mean) / sqrt(var + 1e-12) * gamma + beta,   mean/var over (h, w, c) jointly, gamma/beta per channel
  (spec 0.2, A-25; keras.layers.LayerNormalization(axis=[1, 2, 3]) would have (h, w, c)-shaped gamma/beta).
* `make_conv`: a stride-1 SAME Conv2D or SeparableConv2D(depth_multiplier=1; cells/separable.py, with a fast kernel
  gradient) whose kernel is clipped to the feature
  map (the reference's `_conv` / `_ds_conv` clip; spec 4.7). Clipping is applied to every cell: released non-RGC
  models never have a kernel larger than their map, so it changes nothing there.
  Both come from the factories of goaldriven/alignment/layers.py: plain layers normally, aligned layers (a backward
  kernel per kernel, thesis Chapter 5) when the cell is built by a model builder given a rule (alignment/binding.py).
* `kernel_initializer(init_scale)`: None -> Glorot uniform (the reference's xavier / tf.get_variable default);
  a float s -> VarianceScaling(s, fan_in, truncated normal) (the reference's variance_scaling; spec 0.2).
"""

# b: batch, h/w: space, c: channels
import keras
from keras import ops

from goaldriven.alignment import layers as aligned_layers
from goaldriven.cells import separable
from goaldriven.weight_decay import tf1_l2


def kernel_initializer(init_scale: float | None = None):
    """A fresh kernel initializer: Glorot uniform when init_scale is None, else fan-in truncated-normal scaling."""
    if init_scale is None:
        return keras.initializers.GlorotUniform()
    return keras.initializers.VarianceScaling(scale=init_scale, mode="fan_in", distribution="truncated_normal")


def clip_kernel_size(kernel_size: int, map_size: tuple[int, int]) -> tuple[int, int]:
    """The kernel size clipped to the feature map, per spatial axis (spec 4.7)."""
    return min(kernel_size, map_size[0]), min(kernel_size, map_size[1])


def make_conv(
    filters: int,
    kernel_size: int,
    map_size: tuple[int, int],
    *,
    name: str,
    depth_separable: bool = False,
    use_bias: bool = True,
    init_scale: float | None = None,
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
    dtype=None,
):
    """An unbuilt stride-1 SAME conv (regular, or depthwise + pointwise with depth multiplier 1).

    The depth-separable conv uses the same initializer family and regularizer for its depthwise and pointwise
    kernels (TF1 separable_conv2d with one initializer and one regularizer).
    """
    ks = clip_kernel_size(kernel_size, map_size)
    common = dict(padding="same", use_bias=use_bias, bias_initializer=bias_initializer, name=name, dtype=dtype)
    common["bias_regularizer"] = bias_regularizer
    if depth_separable:
        return aligned_layers.separable_conv2d(
            filters,
            ks,
            plain_class=separable.SeparableConv2D,
            depth_multiplier=1,
            depthwise_initializer=kernel_initializer(init_scale),
            pointwise_initializer=kernel_initializer(init_scale),
            depthwise_regularizer=kernel_regularizer,
            pointwise_regularizer=kernel_regularizer,
            **common,
        )
    return aligned_layers.conv2d(
        filters, ks, kernel_initializer=kernel_initializer(init_scale), kernel_regularizer=kernel_regularizer, **common
    )


def check_init_scale(init_scale):
    if init_scale is not None and not init_scale > 0:
        raise ValueError(f"init_scale must be None (Glorot uniform) or a positive float; received {init_scale}.")


def check_kernel_size(name: str, value: int, allow_zero: bool = False):
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; received {value!r}.")


@keras.saving.register_keras_serializable(package="goaldriven")
class HWCLayerNorm(keras.layers.Layer):
    """Layer norm over (h, w, c) jointly with per-channel gamma and beta (TF1 contrib layer_norm; spec 0.2).

    Statistics and the affine map are computed in the variable dtype (float32 under mixed precision; gamma/beta are
    never autocast); the output has the layer's compute dtype.

    Args:
      epsilon: variance epsilon (TF1 default 1e-12).
    Call args:
      inputs: (b, h, w, c).
    Returns:
      (b, h, w, c).
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0; received {epsilon}.")
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"HWCLayerNorm needs (b, h, w, c) with a known c; received {input_shape}.")
        c = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(c,), initializer="ones", autocast=False)
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros", autocast=False)

    def call(self, inputs):
        x = ops.cast(inputs, self.variable_dtype)  # (b, h, w, c); float32 under mixed precision
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)  # (b, 1, 1, 1)
        var = ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
        y = (x - mean) * ops.rsqrt(var + self.epsilon) * self.gamma + self.beta
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


class ConvCell(keras.layers.Layer):
    """Base of the conv cells: input-shape bookkeeping, zero initial states, argument checks, config.

    Subclasses define `state_channels` (channels of each state tensor, in state order) and `output_channels`, call
    `self._record_input_shape(input_shape)` first in `build`, and implement `call(inputs, states, feedback=None,
    residual=None, training=False) -> (output, new_states)` as one pure time step.

    Args:
      filters: output channels (None only for cells whose output depth is the input depth, e.g. TimeDecay).
      weight_decay: the cell's TF1 lambda (applied as L2(lambda / 2); which weights it covers is per cell, A-26).
      init_scale: None for Glorot-uniform kernels, or the scale of fan-in truncated-normal VarianceScaling.
    """

    def __init__(self, filters: int | None, weight_decay: float = 1e-4, init_scale: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if filters is not None and (not isinstance(filters, int) or isinstance(filters, bool) or filters <= 0):
            raise ValueError(f"filters must be a positive int; received {filters!r}.")
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (a TF1 lambda; 0 disables it); received {weight_decay}.")
        check_init_scale(init_scale)
        self.filters = filters
        self.weight_decay = weight_decay
        self.init_scale = init_scale
        self.state_size = -1
        self.input_channels = None
        self.map_size = None

    @property
    def state_channels(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def output_channels(self) -> int:
        return self.filters

    def _record_input_shape(self, input_shape):
        if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs a (b, h, w, c) input with static h, w and c (kernel "
                f"clipping and state shapes depend on them); received {tuple(input_shape)}."
            )
        self.map_size = (int(input_shape[1]), int(input_shape[2]))
        self.input_channels = int(input_shape[3])

    def build_conv(self, filters, kernel_size, in_channels, *, name, decay_kernel=True, decay_bias=True, **conv_kwargs):
        """A built stride-1 SAME conv of this cell, with the cell's dtype policy, initializer and weight decay.

        `conv_kwargs` go to `make_conv` (depth_separable, use_bias, bias_initializer, init_scale overrides).
        """
        reg = tf1_l2(self.weight_decay)
        conv_kwargs.setdefault("init_scale", self.init_scale)
        conv = make_conv(
            filters,
            kernel_size,
            self.map_size,
            name=name,
            kernel_regularizer=reg if decay_kernel else None,
            bias_regularizer=reg if decay_bias else None,
            dtype=self.dtype_policy,
            **conv_kwargs,
        )
        conv.build((None, *self.map_size, in_channels))
        return conv

    def get_initial_state(self, batch_size=None):
        """Zero states [(b, h, w, c_k) for c_k in state_channels] in the compute dtype (build first)."""
        if self.map_size is None:
            raise ValueError(f"build {type(self).__name__} {self.name!r} before asking for its initial state.")
        return [ops.zeros((batch_size, *self.map_size, c), dtype=self.compute_dtype) for c in self.state_channels]

    def _check_states(self, states):
        states = list(states)
        if len(states) != len(self.state_channels):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} takes {len(self.state_channels)} state tensor(s) with channels "
                f"{self.state_channels}; received {len(states)}. Start from get_initial_state(batch_size)."
            )
        for i, (s, c) in enumerate(zip(states, self.state_channels)):
            if s is None or s.shape[-1] != c:
                raise ValueError(f"state {i} of {self.name!r} must have {c} channels; received {s!r}.")
        return states

    def _reject_extra_inputs(self, feedback, residual):
        for arg, value in (("feedback", feedback), ("residual", residual)):
            if value is not None:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r} takes no `{arg}` input (only the RGC does); concatenate "
                    f"such inputs before the node's pre-memory conv instead. Received {arg} of shape {value.shape}."
                )

    def compute_output_shape(self, input_shape):
        b, h, w = input_shape[:3]
        return (b, h, w, self.output_channels), [(b, h, w, c) for c in self.state_channels]

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "weight_decay": self.weight_decay, "init_scale": self.init_scale})
        return config


class SingleConvGatedCell(ConvCell):
    """Shared constructor, state and config of the cells built on one conv over [x; s] with a forget bias
    (UGRNN, IntersectionRNN); subclasses define `build` and `call`.

    Args:
      filters: c, the state depth.
      kernel_size: square kernel (reference: 3).
      forget_bias: added to the gate pre-activations inside the sigmoid (reference: 1.0).
      weight_decay, init_scale: as ConvCell.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        forget_bias: float = 1.0,
        weight_decay: float = 1e-4,
        init_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(filters, weight_decay=weight_decay, init_scale=init_scale, **kwargs)
        check_kernel_size("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.forget_bias = float(forget_bias)

    @property
    def state_channels(self) -> tuple[int, ...]:
        return (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "forget_bias": self.forget_bias})
        return config
