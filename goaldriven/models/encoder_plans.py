"""Encoders described as a DAG plan of conv/pool edges: the format the mirrored decoder (models/mirrored.py) inverts.

Reference: thesis Sections 3.4.1 and 3.6.5 (spec ch3 A3.1 StreamNets, A3.2 AlexNet, C.1 padding).

Plan format. A `Plan` is a list of `Edge(source, target, ops)` between named areas (nodes) plus the `outputs` read
out. The input node is "image". Each edge applies its ops in order to its source's value; a node's value is the SUM
of its incoming edges' results. Ops:

    Conv(filters, kernel_size, strides=1, padding=0)   ZeroPad(padding) -> conv (valid, bias) -> BN -> ReLU
                                                       (PyTorch's explicit padding, spec C.1; batch_norm / relu flags;
                                                       stride 1 with padding (k - 1) / 2 runs as the equal SAME conv)
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
"""

# b: batch, h/w: space, c: channels
import dataclasses
from typing import Any

from goaldriven.models import argmax_pooling

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


STREAMS = {
    1: ("ventral",),
    2: ("ventral", "dorsal"),
    6: ("VISl", "VISrl", "VISal", "VISli", "VISpm", "VISpl"),
}  # the reference's parallel-module names (mouse-vision simplified_mousenet_*)


def streamnet_plan(streams: int = 2) -> Plan:
    """The StreamNet of thesis Table 3.2 (spec A3.1) with 1, 2 or 6 intermediate streams: VISp -> streams ->
    VISpor (and VISam for 2 and 6), every deep area summing one conv per stream plus a stride-2 skip from VISp.

    Edges follow the reference's connection order (input_VISp, VISp_<stream>..., VISp_VISpor, VISp_VISam, then per
    stream <stream>_VISam, <stream>_VISpor), which is also the order of the deep areas' sums.
    """
    if streams not in STREAMS:
        raise ValueError(f"streams must be one of {sorted(STREAMS)} (single, dual, six). Received: {streams!r}")
    names = STREAMS[streams]
    deep = ("VISpor",) if streams == 1 else ("VISpor", "VISam")
    edges = [Edge(INPUT, "VISp", (Conv(64, 11, 4, 2), MaxPool()))]  # 64 -> 15 -> 7
    edges += [Edge("VISp", s, (Conv(192, 5, 1, 2), MaxPool(), Conv(384, 3, 1, 1))) for s in names]  # 7 -> 3
    edges += [Edge("VISp", area, (Conv(256, 3, 2, 0),)) for area in deep]  # skip: 7 -> 3
    edges += [Edge(s, area, (Conv(256, 3, 1, 1),)) for s in names for area in reversed(deep)]
    return Plan(edges=tuple(edges), outputs=deep)


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
