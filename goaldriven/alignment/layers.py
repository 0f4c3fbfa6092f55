"""Aligned layers: Keras Dense, Conv2D and SeparableConv2D with a backward kernel B, trained under a learning rule.

`AlignedDense(units, rule=...)`, `AlignedConv2D(filters, kernel_size, rule=...)` and `AlignedSeparableConv2D` take
every argument of the Keras layer they extend (same weight names and regularisers) plus `rule` (a
`rules.LearningRule`, a rule name, or None for backprop) and `alignment_relu` (the alignment path uses ReLU as its
nonlinearity: convs followed by BN + ReLU in ResNets, spec 6.1). With a rule that uses B, `build` adds
`backward_kernel` (dense: (units, in); convs: the kernel's shape; separable: `depthwise_backward_kernel` and
`pointwise_backward_kernel`), drawn from the kernel's initializer independently, never regularised. The forward pass
is the Keras layer's; the input gradient goes through B (alignment/ops.py). Under a `collect_alignment_losses()`
context (the training step) each call also adds the layer's alignment loss R.

The factories `dense`, `conv2d` and `separable_conv2d` return these layers inside `scope.learning_rule(rule)` and the
plain Keras layers otherwise: model code calls the factories and any rule is one argument of the model builder
(alignment/binding.py enters the scope and checks that every layer of the built model honours the rule).
"""

# n: batch, h/w: space, c: channels, kh/kw: kernel
import keras
import tensorflow as tf
from keras import ops

from goaldriven.alignment import ops as aligned_ops
from goaldriven.alignment import rules, scope


def _independent(initializer):
    """A fresh copy of the initializer with a new seed: Keras 3 random initializers fix their seed at construction
    (even when unseeded), so reusing W's would make B a copy of W."""
    initializer = keras.initializers.get(initializer)
    config = initializer.get_config()
    if "seed" not in config:
        return initializer  # deterministic (zeros, constant, ...)
    config["seed"] = None
    return type(initializer).from_config(config)


def _batch_of(y: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    """The shape of `inputs` with y's batch size: a reconstruction's shape when R runs on part of the batch."""
    return tf.concat([tf.shape(y)[:1], tf.shape(inputs)[1:]], axis=0)


class _AlignedMixin:
    """Shared rule handling: argument checks, B creation, the R hook and the config."""

    def _init_rule(self, rule, alignment_relu):
        self.rule = rules.get_rule(rule)
        self.alignment_relu = bool(alignment_relu)

    @property
    def uses_backward_kernel(self) -> bool:
        return self.rule.uses_backward_kernel

    def _add_backward_kernel(self, name, shape, initializer, transpose=False):
        init = _independent(initializer)
        draw_shape = tuple(reversed(shape)) if transpose else tuple(shape)

        def initial(shape, dtype=None):
            del shape
            value = init(draw_shape, dtype=dtype)
            return ops.transpose(value) if transpose else value

        return self.add_weight(name=name, shape=tuple(shape), initializer=initial, regularizer=None)

    def _exact(self) -> bool:
        return not self.uses_backward_kernel or scope.in_exact_gradients()

    def _alignment_activation(self):
        if self.alignment_relu:
            return ops.relu
        activation = getattr(self, "activation", None)
        return None if activation in (None, keras.activations.linear) else activation

    def _finish(self, pre, training, part="", **alignment_kwargs):
        """Adds the bias, the layer's R (under a training collector) and the activation to the linear output `pre`.

        `alignment_kwargs` go to the rule's alignment_loss (x, w, b, project, ...); `forward_output` defaults to
        x W + bias, i.e. `pre` with its bias.
        """
        bias = None if self.bias is None else ops.cast(self.bias, self.compute_dtype)
        if bias is not None:
            pre = pre + bias
        if self.uses_backward_kernel:
            alignment_kwargs.setdefault("forward_output", pre)
            self._maybe_add_alignment_loss(training, part=part, bias=bias, **alignment_kwargs)
        return pre if self.activation is None else self.activation(pre)

    def _maybe_add_alignment_loss(self, training, part="", **kwargs):
        collector = scope.current_collector()
        if collector is None or not training or not self.rule.has_alignment_loss:
            return
        activation = None if part == "depthwise" else self._alignment_activation()
        collector.add(self, self.rule.alignment_loss(activation=activation, **kwargs), part=part)

    def get_config(self):
        config = super().get_config()
        config.update({"rule": self.rule.get_config(), "alignment_relu": self.alignment_relu})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("rule"), dict):
            config["rule"] = rules.from_config(config["rule"])
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="goaldriven")
class AlignedDense(_AlignedMixin, keras.layers.Dense):
    """keras.layers.Dense whose input gradient uses `backward_kernel` (units, in) under `rule`."""

    def __init__(self, units, rule=None, alignment_relu=False, **kwargs):
        super().__init__(units, **kwargs)
        self._init_rule(rule, alignment_relu)

    def build(self, input_shape):
        super().build(input_shape)
        self.backward_kernel = None
        if self.uses_backward_kernel:
            shape = (self.units, int(input_shape[-1]))
            self.backward_kernel = self._add_backward_kernel("backward_kernel", shape, self.kernel_initializer, True)

    def call(self, inputs, training=None):
        scope.record_input(self, inputs)
        w = ops.cast(self.kernel, self.compute_dtype)
        if self._exact():
            pre = ops.matmul(inputs, w)
        else:
            b = ops.cast(self.backward_kernel, self.compute_dtype)  # (out, in)
            pre = aligned_ops.aligned_matmul(inputs, w, b, tie_grad=self.rule.tie_grad)
        if not self.uses_backward_kernel:
            return self._finish(pre, training)
        bias = None if self.bias is None else ops.cast(self.bias, self.compute_dtype)
        return self._finish(
            pre,
            training,
            x=inputs,
            w=w,
            b=ops.transpose(ops.cast(self.backward_kernel, self.compute_dtype)),
            project=lambda x, k: tf.matmul(tf.reshape(x, [-1, k.shape[0]]), k),
            reconstruct=lambda y, k: tf.matmul(y, k, transpose_b=True),
            forward_output=tf.reshape(pre if bias is None else pre + bias, [-1, self.units]),  # (n, out)
            kernel_adjoint=lambda x, y: tf.matmul(tf.reshape(x, [-1, w.shape[0]]), y, transpose_a=True),
        )


@keras.saving.register_keras_serializable(package="goaldriven")
class AlignedConv2D(_AlignedMixin, keras.layers.Conv2D):
    """keras.layers.Conv2D (channels_last, groups 1) whose input gradient is the transposed conv with
    `backward_kernel` (same shape as the kernel) under `rule`."""

    def __init__(self, filters, kernel_size, rule=None, alignment_relu=False, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.data_format != "channels_last" or self.groups != 1:
            raise ValueError(
                f"AlignedConv2D supports channels_last and groups=1; received data_format={self.data_format!r}, "
                f"groups={self.groups}."
            )
        self._init_rule(rule, alignment_relu)

    def build(self, input_shape):
        super().build(input_shape)
        self.backward_kernel = None
        if self.uses_backward_kernel:
            self.backward_kernel = self._add_backward_kernel(
                "backward_kernel", self.kernel.shape, self.kernel_initializer
            )

    def _conv_args(self):
        return {"strides": list(self.strides), "padding": self.padding.upper()}

    def call(self, inputs, training=None):
        scope.record_input(self, inputs)
        args, dilations = self._conv_args(), list(self.dilation_rate)
        w = ops.cast(self.kernel, self.compute_dtype)
        if self._exact():
            pre = tf.nn.conv2d(inputs, w, args["strides"], args["padding"], dilations=dilations)
        else:
            b = ops.cast(self.backward_kernel, self.compute_dtype)
            pre = aligned_ops.aligned_conv2d(inputs, w, b, dilations=dilations, tie_grad=self.rule.tie_grad, **args)
        if not self.uses_backward_kernel:
            return self._finish(pre, training)
        return self._finish(
            pre,
            training,
            x=inputs,
            w=w,
            b=ops.cast(self.backward_kernel, self.compute_dtype),
            project=lambda x, k: tf.nn.conv2d(x, k, args["strides"], args["padding"], dilations=dilations),
            reconstruct=lambda y, k: aligned_ops.conv2d_transpose(
                y, k, _batch_of(y, inputs), dilations=dilations, **args
            ),
            kernel_adjoint=lambda x, y: aligned_ops.conv2d_kernel_gradient(x, y, w.shape, dilations=dilations, **args),
        )


@keras.saving.register_keras_serializable(package="goaldriven")
class AlignedSeparableConv2D(_AlignedMixin, keras.layers.SeparableConv2D):
    """keras.layers.SeparableConv2D (channels_last) as an aligned depthwise conv then an aligned 1x1 conv, each
    with its own backward kernel and alignment loss (the depthwise step has no bias and no nonlinearity)."""

    def __init__(self, filters, kernel_size, rule=None, alignment_relu=False, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.data_format != "channels_last" or tuple(self.dilation_rate) != (1, 1):
            raise ValueError("AlignedSeparableConv2D supports channels_last without dilation.")
        self._init_rule(rule, alignment_relu)

    def build(self, input_shape):
        super().build(input_shape)
        self.depthwise_backward_kernel = self.pointwise_backward_kernel = None
        if self.uses_backward_kernel:
            self.depthwise_backward_kernel = self._add_backward_kernel(
                "depthwise_backward_kernel", self.depthwise_kernel.shape, self.depthwise_initializer
            )
            self.pointwise_backward_kernel = self._add_backward_kernel(
                "pointwise_backward_kernel", self.pointwise_kernel.shape, self.pointwise_initializer
            )

    def call(self, inputs, training=None):
        scope.record_input(self, inputs)
        strides, padding = [1, *self.strides, 1], self.padding.upper()
        wd = ops.cast(self.depthwise_kernel, self.compute_dtype)  # (kh, kw, c, m)
        wp = ops.cast(self.pointwise_kernel, self.compute_dtype)  # (1, 1, c * m, filters)
        if self._exact():
            mid = tf.nn.depthwise_conv2d(inputs, wd, strides, padding)
            pre = tf.nn.conv2d(mid, wp, 1, "VALID")
        else:
            bd = ops.cast(self.depthwise_backward_kernel, self.compute_dtype)
            bp = ops.cast(self.pointwise_backward_kernel, self.compute_dtype)
            mid = aligned_ops.aligned_depthwise_conv2d(inputs, wd, bd, self.strides, padding, self.rule.tie_grad)
            pre = aligned_ops.aligned_conv2d(mid, wp, bp, 1, "VALID", tie_grad=self.rule.tie_grad)
        if not self.uses_backward_kernel:
            return self._finish(pre, training)
        self._maybe_add_alignment_loss(
            training,
            part="depthwise",
            x=inputs,
            w=wd,
            b=ops.cast(self.depthwise_backward_kernel, self.compute_dtype),
            bias=None,
            project=lambda x, k: tf.nn.depthwise_conv2d(x, k, strides, padding),
            reconstruct=lambda y, k: aligned_ops.depthwise_conv2d_transpose(
                y, k, _batch_of(y, inputs), self.strides, padding
            ),
            forward_output=mid,
            kernel_adjoint=lambda x, y: tf.nn.depthwise_conv2d_backprop_filter(x, wd.shape, y, strides, padding),
        )
        return self._finish(
            pre,
            training,
            part="pointwise",
            x=mid,
            w=wp,
            b=ops.cast(self.pointwise_backward_kernel, self.compute_dtype),
            project=lambda x, k: tf.nn.conv2d(x, k, 1, "VALID"),
            reconstruct=lambda y, k: aligned_ops.conv2d_transpose(y, k, _batch_of(y, mid), 1, "VALID"),
            kernel_adjoint=lambda x, y: aligned_ops.conv2d_kernel_gradient(x, y, wp.shape, 1, "VALID"),
        )


ALIGNED_CLASSES = (AlignedDense, AlignedConv2D, AlignedSeparableConv2D)


def _use_aligned(alignment_relu: bool):
    rule = scope.current_rule()
    if rule is None or not rule.uses_backward_kernel:
        return None
    return {"rule": rule, "alignment_relu": alignment_relu}


def dense(units, *, alignment_relu=False, **kwargs) -> keras.layers.Dense:
    """keras.layers.Dense, or AlignedDense under the current `scope.learning_rule`."""
    aligned = _use_aligned(alignment_relu)
    return keras.layers.Dense(units, **kwargs) if aligned is None else AlignedDense(units, **aligned, **kwargs)


def conv2d(filters, kernel_size, *, alignment_relu=False, **kwargs) -> keras.layers.Conv2D:
    """keras.layers.Conv2D, or AlignedConv2D under the current `scope.learning_rule`."""
    aligned = _use_aligned(alignment_relu)
    if aligned is None:
        return keras.layers.Conv2D(filters, kernel_size, **kwargs)
    return AlignedConv2D(filters, kernel_size, **aligned, **kwargs)


def separable_conv2d(filters, kernel_size, *, plain_class=keras.layers.SeparableConv2D, alignment_relu=False, **kwargs):
    """`plain_class(...)` (a SeparableConv2D), or AlignedSeparableConv2D under the current `scope.learning_rule`."""
    aligned = _use_aligned(alignment_relu)
    if aligned is None:
        return plain_class(filters, kernel_size, **kwargs)
    return AlignedSeparableConv2D(filters, kernel_size, **aligned, **kwargs)


def aligned_layers(model: keras.layers.Layer) -> list:
    """The aligned layers (with a backward kernel) of `model`, in tracking order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=True)  # pylint: disable=protected-access
        if isinstance(layer, _AlignedMixin) and layer.uses_backward_kernel
    ]


def layer_backward_kernels(layer) -> list:
    """The backward kernel variables of one aligned layer."""
    names = ("backward_kernel", "depthwise_backward_kernel", "pointwise_backward_kernel")
    return [getattr(layer, name) for name in names if getattr(layer, name, None) is not None]


def backward_kernels(model: keras.layers.Layer) -> list:
    """Every backward kernel variable of `model`."""
    return [v for layer in aligned_layers(model) for v in layer_backward_kernels(layer)]
