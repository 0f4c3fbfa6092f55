"""Encoders described as a DAG plan of conv/pool edges, and their mirrored decoders (transposed convs, max-unpooling).

Reference: thesis Sections 3.4.1 and 3.6.5 (spec ch3 A3.1 StreamNets, A3.2 AlexNet, A4.2 sparse autoencoder, A4.3
depth prediction, C.1 padding, C.6 mirrored decoder).

Plan format. A `Plan` is a list of `Edge(source, target, ops)` between named areas (nodes) plus the `outputs` read
out. The input node is "image". Each edge applies its ops in order to its source's value; a node's value is the SUM
of its incoming edges' results. Ops:

    Conv(filters, kernel_size, strides=1, padding=0)   ZeroPad(padding) -> conv (valid, bias) -> BN -> ReLU
                                                       (PyTorch's explicit padding, spec C.1; batch_norm / relu flags)
    MaxPool(pool_size=3, strides=2)                    valid max-pool that stores its argmax indices

Nodes are ordered by their first appearance as a target; every edge's source must come before its target in that
order (the input comes first), so the plan is a DAG read top to bottom. Every node but the outputs needs a consumer.
The encoder output ("code") is the channel concatenation of the outputs (same spatial size). The named features are
the node values. A StreamNet (A3.1) is a plan:

    Plan(edges=(
        Edge("image", "VISp", (Conv(64, 11, 4, 2), MaxPool())),                              # 64 -> 15 -> 7
        Edge("VISp", "ventral", (Conv(192, 5, 1, 2), MaxPool(), Conv(384, 3, 1, 1))),         # 7 -> 7 -> 3 -> 3
        Edge("VISp", "dorsal", (Conv(192, 5, 1, 2), MaxPool(), Conv(384, 3, 1, 1))),
        Edge("ventral", "VISpor", (Conv(256, 3, 1, 1),)), Edge("dorsal", "VISpor", (Conv(256, 3, 1, 1),)),
        Edge("VISp", "VISpor", (Conv(256, 3, 2, 0),)),                                        # skip: 7 -> 3
        Edge("ventral", "VISam", (Conv(256, 3, 1, 1),)), Edge("dorsal", "VISam", (Conv(256, 3, 1, 1),)),
        Edge("VISp", "VISam", (Conv(256, 3, 2, 0),)),
    ), outputs=("VISpor", "VISam"))

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
import dataclasses
from typing import Any

import keras
from keras import ops

from goaldriven.alignment import layers as aligned_layers
from goaldriven.alignment import scope
from goaldriven.models import argmax_pooling
from goaldriven.weight_decay import tf1_l2

INPUT = "image"
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5  # PyTorch's BN momentum 0.1 and eps 1e-5 (spec A3.1)
Shape = tuple[int, int, int]  # (h, w, c)


@dataclasses.dataclass(frozen=True)
class Conv:
    """ZeroPad(padding) -> Conv2D(filters, kernel_size, strides, valid, bias) -> [BN] -> [ReLU]."""

    filters: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    batch_norm: bool = True
    relu: bool = True

    def __post_init__(self):
        for name in ("filters", "kernel_size", "strides"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"Conv.{name} must be a positive int. Received: {getattr(self, name)!r}")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"Conv.padding must be an int >= 0. Received: {self.padding!r}")

    def output_shape(self, shape: Shape) -> Shape:
        h, w, _ = shape
        size = lambda n: (n + 2 * self.padding - self.kernel_size) // self.strides + 1  # noqa: E731
        return size(h), size(w), self.filters


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Valid max-pool that stores its argmax indices for the decoder's max-unpool."""

    pool_size: int = 3
    strides: int = 2

    def __post_init__(self):
        if any(not isinstance(n, int) or n < 1 for n in (self.pool_size, self.strides)):
            raise ValueError(f"MaxPool sizes must be positive ints. Received: {self.pool_size}, {self.strides}")

    def output_shape(self, shape: Shape) -> Shape:
        h, w, c = shape
        size = lambda n: argmax_pooling.pooled_size(n, self.pool_size, self.strides)  # noqa: E731
        return size(h), size(w), c


OPS = {"conv": Conv, "max_pool": MaxPool}


@dataclasses.dataclass(frozen=True)
class Edge:
    """source -> target through `ops` (a tuple of Conv / MaxPool, applied in order)."""

    source: str
    target: str
    ops: tuple

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops or any(not isinstance(op, (Conv, MaxPool)) for op in self.ops):
            raise ValueError(f"edge {self.name} needs a non-empty tuple of Conv / MaxPool ops. Received: {self.ops}")

    @property
    def name(self) -> str:
        return f"{self.source}_to_{self.target}"


@dataclasses.dataclass(frozen=True)
class PlanShapes:
    """Static shapes of a plan at one image size: nodes[name] = (h, w, c); edges[e][j] = the shape before op j of
    edge e (edges[e][-1]: after its last op)."""

    nodes: dict[str, Shape]
    edges: tuple[tuple[Shape, ...], ...]
    code: Shape


@dataclasses.dataclass(frozen=True)
class Plan:
    """A DAG encoder (module docstring for the format and the mirror)."""

    edges: tuple[Edge, ...]
    outputs: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "edges", tuple(self.edges))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [e.name for e in self.edges]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a plan needs edges, each (source, target) once. Received: {names}")
        order = self.nodes
        position = {name: i for i, name in enumerate((INPUT, *order))}
        for edge in self.edges:
            if edge.target == INPUT:
                raise ValueError(f"edge {edge.name}: {INPUT!r} is the input and cannot be a target.")
            if edge.source not in position or position[edge.source] >= position[edge.target]:
                raise ValueError(
                    f"edge {edge.name}: its source must be {INPUT!r} or a node that is the target of an earlier edge "
                    f"(plans are DAGs listed in order; node order: {order})."
                )
        if not self.outputs or any(name not in order for name in self.outputs):
            raise ValueError(f"outputs {self.outputs} must be nodes of the plan: {order}.")
        used = {e.source for e in self.edges} | set(self.outputs)
        unused = [name for name in order if name not in used]
        if unused:
            raise ValueError(f"nodes {unused} feed no edge and are not outputs; the mirror needs every node used.")

    @property
    def nodes(self) -> tuple[str, ...]:
        """Nodes (not the input) in order of their first appearance as a target."""
        return tuple(dict.fromkeys(e.target for e in self.edges))

    def incoming(self, node: str) -> list[int]:
        """Indices of the edges into `node`, in plan order."""
        return [i for i, e in enumerate(self.edges) if e.target == node]

    def shapes(self, image_shape: Shape) -> PlanShapes:
        """Static shapes at `image_shape` (h, w, c); raises if a node's incoming edges disagree or a size reaches 0."""
        nodes = {INPUT: tuple(image_shape)}
        edge_shapes: list[tuple[Shape, ...]] = [()] * len(self.edges)
        for node in self.nodes:
            for i in self.incoming(node):
                edge = self.edges[i]
                shapes = [nodes[edge.source]]
                for j, op in enumerate(edge.ops):
                    shapes.append(op.output_shape(shapes[-1]))
                    if min(shapes[-1][:2]) < 1:
                        raise ValueError(
                            f"edge {edge.name}, op {j} ({op}) gets a {shapes[-2][0]} x {shapes[-2][1]} input and "
                            f"leaves nothing: the image ({image_shape[0]} x {image_shape[1]}) is too small."
                        )
                edge_shapes[i] = tuple(shapes)
                if node in nodes and nodes[node] != shapes[-1]:
                    raise ValueError(
                        f"edges into {node!r} give different shapes ({nodes[node]} and {shapes[-1]} from "
                        f"{edge.name}); summed edges must agree."
                    )
                nodes[node] = shapes[-1]
        sizes = {nodes[name][:2] for name in self.outputs}
        if len(sizes) != 1:
            raise ValueError(f"outputs {self.outputs} have different spatial sizes {sizes}; they are concatenated.")
        h, w = sizes.pop()
        return PlanShapes(nodes, tuple(edge_shapes), (h, w, sum(nodes[name][2] for name in self.outputs)))

    def get_config(self) -> dict[str, Any]:
        kinds = {cls: kind for kind, cls in OPS.items()}
        edges = [
            {"source": e.source, "target": e.target, "ops": [{"kind": kinds[type(op)], **vars(op)} for op in e.ops]}
            for e in self.edges
        ]
        return {"edges": edges, "outputs": list(self.outputs)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Plan":
        def op(spec):
            spec = dict(spec)
            return OPS[spec.pop("kind")](**spec)

        edges = [Edge(e["source"], e["target"], tuple(op(s) for s in e["ops"])) for e in config["edges"]]
        return cls(edges=tuple(edges), outputs=tuple(config["outputs"]))


def alexnet_plan(batch_norm: bool = True) -> Plan:
    """torchvision AlexNet's feature stack (spec A3.2) with BN after each conv (AlexNet-BN) by default; nodes are
    named as its neural-fit layers: pool1, pool2, conv3, conv4, pool5 (7, 3, 3, 3, 1 px at 64 px)."""
    conv = lambda *args: Conv(*args, batch_norm=batch_norm)  # noqa: E731
    return Plan(
        edges=(
            Edge(INPUT, "pool1", (conv(64, 11, 4, 2), MaxPool())),
            Edge("pool1", "pool2", (conv(192, 5, 1, 2), MaxPool())),
            Edge("pool2", "conv3", (conv(384, 3, 1, 1),)),
            Edge("conv3", "conv4", (conv(256, 3, 1, 1),)),
            Edge("conv4", "pool5", (conv(256, 3, 1, 1), MaxPool())),
        ),
        outputs=("pool5",),
    )


def tiny_plan(width: int = 4) -> Plan:
    """A small StreamNet-shaped DAG for tests and smoke runs (32 px: 16 -> 7 -> 3): a shallow area, two streams
    (fan-out) and a deep area summing both streams and a skip from the shallow area (merge)."""
    stream = (Conv(width, 3, 1, 1), MaxPool(), Conv(2 * width, 3, 1, 1))
    return Plan(
        edges=(
            Edge(INPUT, "shallow", (Conv(width, 5, 2, 2), MaxPool())),
            Edge("shallow", "stream1", stream),
            Edge("shallow", "stream2", stream),
            Edge("stream1", "deep", (Conv(2 * width, 3, 1, 1),)),
            Edge("stream2", "deep", (Conv(2 * width, 3, 1, 1),)),
            Edge("shallow", "deep", (Conv(2 * width, 3, 2, 0),)),
        ),
        outputs=("deep",),
    )


def _pool_key(edge: Edge, j: int) -> str:
    return f"{edge.name}/op{j}"


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _pad(x, padding: int):
    return x if not padding else ops.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])


@keras.saving.register_keras_serializable(package="goaldriven")
class PlanEncoder(keras.layers.Layer):
    """The encoder of a plan (module docstring).

    Args:
      plan: a `Plan` (or its config dict).
      weight_decay: TF1 lambda on the conv kernels.

    Call args:
      images: (b, h, w, c) with static h, w.
      training: BN mode.

    Returns:
      {"features": {node: (b, h_n, w_n, c_n)}, "code": (b, h_o, w_o, sum of the outputs' c),
       "switches": {"<source>_to_<target>/op<j>": int32 argmax indices of that pool}}.
    """

    def __init__(self, plan, weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.plan = plan if isinstance(plan, Plan) else Plan.from_config(plan)
        self.weight_decay = weight_decay
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
                        padding="valid",
                        kernel_regularizer=tf1_l2(weight_decay),
                        alignment_relu=op.relu,
                        name=f"{edge.name}_conv{j}",
                    )
                    if is_conv
                    else None
                )
                norms.append(_batch_norm(f"{edge.name}_bn{j}") if is_conv and op.batch_norm else None)
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
                    x = self.convs[i][j](_pad(x, op.padding))
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
        config.update({"plan": self.plan.get_config(), "weight_decay": self.weight_decay})
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
                norms.append(_batch_norm(f"{edge.name}_debn{j}") if op.batch_norm and not linear else None)
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
