"""Encoders described as a DAG plan of conv/pool edges, and their mirrored decoders (transposed convs, max-unpooling).

Reference: thesis Sections 3.4.1 and 3.6.5 (spec ch3 A3.1 StreamNets, A3.2 AlexNet, A4.2 sparse autoencoder, A4.3
depth prediction, C.1 padding, C.6 mirrored decoder).

The plan format (areas, edges, ops) is encoder_plans.py's.

Mirror (spec C.6). The decoder runs the graph backwards: the code is split by channels into the outputs' shares; nodes
are visited in reverse order; a node's decoded value is the sum of what its consumers' decoder edges send it (plus its
share of the code); every encoder edge source -> target becomes a decoder edge target -> source applying the mirrors
of its ops in reverse order, so sums become splits (a merged node sends its decoded value down every incoming edge)
and fan-outs become sums:

    Conv(f, k, s, p) on an (h, w, c) input  ->  Conv2DTranspose(c, k, s, valid, output_padding) -> crop p -> BN -> ReLU
        output_padding = h + 2p - ((h_out - 1) s + k) in [0, s): the exact input size comes back (64 -> 15 -> 64);
        BN / ReLU mirror the conv's flags, except for the decoder edge's last transposed conv into the image
        (a linear image-level output).
    MaxPool  ->  max-unpool by the stored indices into zeros of the pre-pool shape (argmax_pooling.py)

Learning rules: the encoder's convs come from the alignment factories (any rule). Keras has no aligned
Conv2DTranspose, so the decoder exists under backprop only and raises under any other rule.
"""

# b: batch, h/w: space, c: channels
import keras
from keras import ops

from goaldriven.alignment import layers as aligned_layers
from goaldriven.alignment import scope
from goaldriven.models import argmax_pooling
from goaldriven.models.encoder_plans import (  # noqa: F401  (the plan API, re-exported for the decoder's users)
    BN_EPSILON,
    BN_MOMENTUM,
    INPUT,
    OPS,
    Conv,
    Edge,
    MaxPool,
    Plan,
    PlanShapes,
    Shape,
    alexnet_plan,
    streamnet_plan,
    tiny_plan,
)
from goaldriven.weight_decay import tf1_l2


def torch_default_kernel() -> keras.initializers.Initializer:
    """A new initializer of PyTorch's default kernel distribution (kaiming_uniform with a = sqrt(5)):
    U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)). One per layer: Keras 3 draws the same values from one unseeded instance."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def _pool_key(edge: Edge, j: int) -> str:
    return f"{edge.name}/op{j}"


def batch_norm(name: str, synchronized: bool = False) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized, name=name
    )


def same_equivalent(kernel_size: int, strides: int, padding: int) -> bool:
    """A stride-1 conv with padding (k - 1) / 2 is exactly Keras' SAME conv, which oneDNN runs 1.4-1.55x faster than
    an explicit pad followed by a valid conv on the StreamNets' small maps (bench/streamnet_step.py)."""
    return strides == 1 and 2 * padding == kernel_size - 1


def _same(op: Conv) -> bool:
    return same_equivalent(op.kernel_size, op.strides, op.padding)


def zero_pad(x, padding: int):
    return x if not padding else ops.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])


@keras.saving.register_keras_serializable(package="goaldriven")
class PlanEncoder(keras.layers.Layer):
    """The encoder of a plan (module docstring).

    Args:
      plan: a `Plan` (or its config dict).
      weight_decay: TF1 lambda on the conv kernels.
      synchronized_bn: cross-replica BN (the StreamNets' SyncBN of SimCLR / SimSiam; one device: plain BN).
      torch_init: PyTorch's default conv kernel initialisation, U(+-1 / sqrt(fan_in)) (the StreamNets' reference);
        biases start at 0 (PyTorch draws them from the same range). False: Keras' Glorot uniform.

    Call args:
      images: (b, h, w, c) with static h, w.
      training: BN mode.

    Returns:
      {"features": {node: (b, h_n, w_n, c_n)}, "code": (b, h_o, w_o, sum of the outputs' c),
       "switches": {"<source>_to_<target>/op<j>": int32 argmax indices of that pool}}.
    """

    def __init__(
        self, plan, weight_decay: float = 0.0, synchronized_bn: bool = False, torch_init: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.plan = plan if isinstance(plan, Plan) else Plan.from_config(plan)
        self.weight_decay = weight_decay
        self.synchronized_bn = synchronized_bn
        self.torch_init = torch_init
        self.convs, self.norms = [], []
        for edge in self.plan.edges:
            convs, norms = [], []
            for j, op in enumerate(edge.ops):
                is_conv = isinstance(op, Conv)
                convs.append(
                    aligned_layers.conv2d(
                        op.filters,
                        op.kernel_size,
                        strides=op.strides,
                        padding="same" if _same(op) else "valid",
                        kernel_initializer=torch_default_kernel() if torch_init else "glorot_uniform",
                        kernel_regularizer=tf1_l2(weight_decay),
                        alignment_relu=op.relu,
                        name=f"{edge.name}_conv{j}",
                    )
                    if is_conv
                    else None
                )
                bn = is_conv and op.batch_norm
                norms.append(batch_norm(f"{edge.name}_bn{j}", synchronized_bn) if bn else None)
            self.convs.append(convs)
            self.norms.append(norms)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.plan.nodes

    def call(self, images, training=False):
        values, switches = {INPUT: images}, {}
        for node in self.plan.nodes:
            total = None
            for i in self.plan.incoming(node):
                edge = self.plan.edges[i]
                x = values[edge.source]
                for j, op in enumerate(edge.ops):
                    if isinstance(op, MaxPool):
                        x, switches[_pool_key(edge, j)] = argmax_pooling.max_pool_with_argmax(
                            x, op.pool_size, op.strides
                        )
                        continue
                    x = self.convs[i][j](x if _same(op) else zero_pad(x, op.padding))
                    if self.norms[i][j] is not None:
                        x = self.norms[i][j](x, training=training)
                    x = ops.relu(x) if op.relu else x
                total = x if total is None else total + x
            values[node] = total
        features = {node: values[node] for node in self.plan.nodes}
        outputs = [values[name] for name in self.plan.outputs]
        code = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        return {"features": features, "code": code, "switches": switches}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "plan": self.plan.get_config(),
                "weight_decay": self.weight_decay,
                "synchronized_bn": self.synchronized_bn,
                "torch_init": self.torch_init,
            }
        )
        return config


def check_backprop(what: str) -> None:
    """Raises if a learning rule other than backprop is in scope: transposed convs have no aligned layer."""
    rule = scope.current_rule()
    if rule is not None and rule.uses_backward_kernel:
        raise ValueError(
            f"{what} uses Conv2DTranspose, which has no aligned layer (goaldriven/alignment/layers.py), so it cannot "
            f"train under learning_rule={rule.name!r}; build it with learning_rule=None (backprop)."
        )


@keras.saving.register_keras_serializable(package="goaldriven")
class MirroredDecoder(keras.layers.Layer):
    """The mirror of a plan's encoder at one image size (module docstring). Backprop only.

    Args:
      plan: a `Plan` (or its config dict).
      image_shape: (h, w, c) of the encoder's images (the transposed convs' output paddings depend on it).
      weight_decay: TF1 lambda on the transposed-conv kernels.

    Call args:
      code: (b, h_o, w_o, c_o), the encoder's code (or anything of its shape).
      switches: the encoder's "switches" for the images being decoded.
      training: BN mode.

    Returns:
      (b, h, w, c) image-level output (linear).
    """

    def __init__(self, plan, image_shape, weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        check_backprop("MirroredDecoder")
        self.plan = plan if isinstance(plan, Plan) else Plan.from_config(plan)
        self.image_shape = tuple(int(n) for n in image_shape)
        self.weight_decay = weight_decay
        self.shapes = self.plan.shapes(self.image_shape)
        self.deconvs, self.norms, self.relus = [], [], []
        for i, edge in enumerate(self.plan.edges):
            convs = [j for j, op in enumerate(edge.ops) if isinstance(op, Conv)]
            deconvs, norms, relus = [], [], []
            for j, op in enumerate(edge.ops):
                if not isinstance(op, Conv):  # a pool: unpooled by its switches
                    deconvs.append(None)
                    norms.append(None)
                    relus.append(False)
                    continue
                (h, w, c), (h_out, w_out, _) = self.shapes.edges[i][j], self.shapes.edges[i][j + 1]
                extra = [
                    n + 2 * op.padding - ((m - 1) * op.strides + op.kernel_size) for n, m in ((h, h_out), (w, w_out))
                ]
                deconvs.append(
                    keras.layers.Conv2DTranspose(
                        c,
                        op.kernel_size,
                        strides=op.strides,
                        padding="valid",
                        output_padding=tuple(extra) if any(extra) else None,
                        kernel_regularizer=tf1_l2(weight_decay),
                        name=f"{edge.name}_deconv{j}",
                    )
                )
                linear = edge.source == INPUT and j == convs[0]  # the decoder edge's last conv into the image
                norms.append(batch_norm(f"{edge.name}_debn{j}") if op.batch_norm and not linear else None)
                relus.append(op.relu and not linear)
            self.deconvs.append(deconvs)
            self.norms.append(norms)
            self.relus.append(relus)

    def call(self, code, switches, training=False):
        received, start = {}, 0
        for name in self.plan.outputs:  # the concatenation becomes a split
            width = self.shapes.nodes[name][2]
            received[name] = [code[..., start : start + width]]
            start += width
        for node in reversed(self.plan.nodes):
            total = received.pop(node)
            total = total[0] if len(total) == 1 else ops.sum(ops.stack(total), axis=0)
            for i in self.plan.incoming(node):
                edge, x = self.plan.edges[i], total
                for j in reversed(range(len(edge.ops))):
                    op = edge.ops[j]
                    if isinstance(op, MaxPool):
                        x = argmax_pooling.max_unpool(x, switches[_pool_key(edge, j)], self.shapes.edges[i][j])
                        continue
                    x = self.deconvs[i][j](x)
                    h, w, _ = self.shapes.edges[i][j]
                    x = x[:, op.padding : op.padding + h, op.padding : op.padding + w, :]
                    if self.norms[i][j] is not None:
                        x = self.norms[i][j](x, training=training)
                    x = ops.relu(x) if self.relus[i][j] else x
                received.setdefault(edge.source, []).append(x)
        image = received[INPUT]
        return image[0] if len(image) == 1 else ops.sum(ops.stack(image), axis=0)

    def compute_output_shape(self, code_shape, switches_shape=None):
        return (code_shape[0], *self.image_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"plan": self.plan.get_config(), "image_shape": self.image_shape, "weight_decay": self.weight_decay}
        )
        return config
