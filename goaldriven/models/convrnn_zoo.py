"""The named ConvRNNs of thesis Chapter 2 (the reference zoo neuroailab/convrnns) and the BaseNets they extend.

Spec ch2 sections 3 and 5 (graphs), 1.3 (timing), 4 (cells), 11 (parameter counts).

* Shallow (6 nodes: conv1-conv5, imnetds; cells in conv3-conv5): `<cell>_shallow`. Pre-conv depths 64, 128, 256,
  256, 512; conv1/conv2 ELU; conv3-conv5 pre-convs are linear for every family but the RGC (and the FF BaseNet),
  spec 3.2 / A-8; SimpleRNN and LSTM ("LSTM Opt", spec 4.4 table) cells output 128/256/256; readout 2x2 VALID conv.
  Training unroll 16 steps, image off at 12; minimal 7.
* Intermediate (11 nodes: conv1-conv10, imnetds; cells in conv4-conv10): `<cell>_intermediate`, residual blocks
  around the cell on the 11-layer BaseNet (depths 64, 64, 64, 128, 128, 256, 256, 512, 512, 512; pools after conv1,
  4, 6, 7, 10); readout GAP + fc. Training unroll 17, image off 12; minimal 12.
* `rgc_intermediate` ("RGC Median", spec 3.4/4.8): depths 64, 128, 128, 128, 128, 256, 256, 256, 512, 512, RGC
  Median cells in conv4-conv10 and the searched long-range feedback conv8->conv5, conv9->conv6, conv10->conv7,
  conv7->conv6, conv10->conv9. Decoder variants `_dthresh` / `_tmaxconf`; `_t22` / `_t30` use a constant image.
* Feedforward: `basenet6`, `basenet6_wider`, `basenet6_deeper`, `basenet11` (ELU after every conv, spec 5.1-5.4),
  built from the same nodes and run as one feedforward pass (`unroll="feedforward"`, times 1) unless asked otherwise.

`width_multiplier` scales every channel count (for tests and small CPU runs); parameter counts in the spec hold at 1.
"""

import dataclasses
from typing import Any, Mapping, Sequence

from goaldriven import cells
from goaldriven.alignment import binding
from goaldriven.models import convrnn, convrnn_nodes

SHALLOW_DEPTHS = (64, 128, 256, 256, 512)
INTERMEDIATE_DEPTHS = (64, 64, 64, 128, 128, 256, 256, 512, 512, 512)
INTERMEDIATE_POOLS = (1, 4, 6, 7, 10)
RGC_MEDIAN_DEPTHS = (64, 128, 128, 128, 128, 256, 256, 256, 512, 512)
RGC_MEDIAN_FEEDBACK = (
    ("conv8", "conv5"),
    ("conv9", "conv6"),
    ("conv10", "conv7"),
    ("conv7", "conv6"),
    ("conv10", "conv9"),
)
RECURRENT_CELLS = ("timedecay", "simplernn", "gru", "lstm", "ugrnn", "intersectionrnn", "rgc")
# "LSTM Opt" (spec 4.4, reference configs/lstm_shallow.npz): per-layer searched cell hyperparameters. The forget biases
# are the released configuration's full-precision values (they are added to the gate pre-activation of trained weights);
# the others are the spec table's 5 decimals.
LSTM_OPT = (
    dict(filters=128, kernel_size=2, peepholes=False, forget_bias=1.3561755203084322, init_scale=0.70088,
         bias_init=1.64277, weight_decay=5.434e-6),
    dict(filters=256, kernel_size=3, peepholes=True, forget_bias=0.977962918535079, init_scale=1.83146,
         bias_init=-1.16602, weight_decay=7.613e-6),
    dict(filters=256, kernel_size=4, peepholes=False, forget_bias=0.9249280259963113, init_scale=0.89376,
         bias_init=-1.34950, weight_decay=3.038e-6),
)  # fmt: skip
TIMING = {  # name suffix -> (training times, image_off, minimal times)
    "shallow": (16, 12, 7),
    "intermediate": (17, 12, 12),
}


@dataclasses.dataclass(frozen=True)
class ModelName:
    """A parsed zoo name: <cell>_<depth>[_t<T>][_dthresh|_tmaxconf], or a BaseNet name."""

    cell: str | None
    depth: str
    times: int | None = None
    decoder: str = "last"

    @classmethod
    def parse(cls, name: str) -> "ModelName":
        if name in FEEDFORWARD:
            return cls(cell=None, depth=name)
        parts = name.split("_")
        if len(parts) < 2 or parts[0] not in RECURRENT_CELLS or parts[1] not in TIMING:
            raise ValueError(f"unknown ConvRNN {name!r}; known models: {', '.join(model_names())}.")
        times, decoder = None, "last"
        for part in parts[2:]:
            if part.startswith("t") and part[1:].isdigit():
                times = int(part[1:])
            elif part in ("dthresh", "tmaxconf"):
                decoder = {"dthresh": "thresh", "tmaxconf": "max_conf"}[part]
            else:
                raise ValueError(f"unknown ConvRNN variant {part!r} in {name!r}; use _t<steps>, _dthresh or _tmaxconf.")
        return cls(cell=parts[0], depth=parts[1], times=times, decoder=decoder)


FEEDFORWARD = ("basenet6", "basenet6_wider", "basenet6_deeper", "basenet11")
RELEASED_VARIANTS = (
    "ugrnn_intermediate_t30",
    "ugrnn_intermediate_t30_dthresh",
    "ugrnn_intermediate_t30_tmaxconf",
    "rgc_intermediate_dthresh",
    "rgc_intermediate_tmaxconf",
    "rgc_intermediate_t22_tmaxconf",
)


def model_names() -> tuple[str, ...]:
    """The named models of the zoo."""
    return (
        FEEDFORWARD
        + tuple(f"{c}_shallow" for c in RECURRENT_CELLS)
        + tuple(f"{c}_intermediate" for c in RECURRENT_CELLS)
        + RELEASED_VARIANTS
    )


@binding.builds_under_rule
def build_convrnn(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    unroll_length: str | int = "full",
    width_multiplier: float = 1.0,
    weight_decay: float = 1e-4,
    cell_weight_decay: float | None = None,
    blank_value: float = 0.5,
    decoder: str | None = None,
    decoder_start: int | None = None,
    remat: bool | int = False,
    unroll: str | None = None,
    build: bool = True,
    learning_rule: Any = None,
    cell_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    feedback: Sequence[Sequence[str]] | None = None,
    image_off: int | None = None,
) -> convrnn.ConvRNN:
    """Builds the named model (see the module docstring).

    Args:
      name: a zoo name (`model_names()`).
      num_classes: readout classes.
      image_size: input side in pixels (224 for the thesis, 128 for the searches, 64/32 for small runs).
      unroll_length: "full" (the training unroll), "minimal" (L + 1 steps) or a number of steps.
      width_multiplier: scales every channel count.
      weight_decay: TF1 lambda of the backbone (pre/post convs, readout).
      cell_weight_decay: TF1 lambda of the cells (default: the spec's per-family value; LSTM Opt keeps its own).
      blank_value: blank frame in normalised input space (spec A-1).
      decoder: overrides the name's decoder ("last", "thresh", "max_conf").
      decoder_start: first readout step the decoders see (default L, the reference convention; lower it for short
        test unrolls).
      remat: rematerialisation: recompute segments of `remat` steps (True = 1) in the backward pass.
      unroll: "biological" (ConvRNN default) or "feedforward" (BaseNet default).
      build: create the weights for (None, image_size, image_size, 3) inputs.
      learning_rule: None or "bp" (backprop), a rule name or abbreviation ("sa", "kolen_pollack") or an
        `alignment.rules.LearningRule`: every conv and dense layer (backbone, cells, readout) is an aligned layer
        trained under it (bound by alignment/binding.py). Layers are made when the model is built, so a rule needs
        build=True.
      cell_overrides: {node name ("conv4") or "*" (every cell): cell constructor arguments} applied over the
        family's preset (RGC Median / shallow RGC, LSTM Opt, ...): the searched cells of thesis Section 2.5.4
        (goaldriven/search/spaces.py). cell_depth and filters are full-width channel counts (width_multiplier
        scales them). None: the released cells.
      feedback: rgc_intermediate's long-range feedback edges ((source, target) node names, source deeper than
        target); None = RGC Median's `RGC_MEDIAN_FEEDBACK`, () = none.
      image_off: the step after which the image is replaced by the blank (None = the family's; searched for LSTMs).
    """
    _check_learning_rule(learning_rule, remat, build)
    parsed = ModelName.parse(name)
    width = _width(width_multiplier)
    overrides = _CellOverrides(cell_overrides, width)
    requested_image_off = image_off
    if feedback is not None and name != "rgc_intermediate":
        raise ValueError(
            f"feedback edges are searched for rgc_intermediate only; received feedback={feedback!r} for {name!r}."
        )
    if parsed.cell is None:
        nodes, readout_kind, family = _feedforward_nodes(parsed.depth, width, weight_decay)
        edges, times, image_off, minimal = (), 1, 1, 1
        unroll = unroll or "feedforward"
        if unroll == "biological":
            times, image_off, minimal = TIMING[family]
    else:
        family = parsed.depth
        times, image_off, minimal = TIMING[family]
        if parsed.times is not None:
            times = image_off = parsed.times  # the _t22 / _t30 models see a constant image
        if parsed.depth == "shallow":
            nodes = _shallow_nodes(parsed.cell, width, weight_decay, cell_weight_decay, overrides)
            edges, readout_kind = (), "conv"
        elif parsed.cell == "rgc":
            edges = RGC_MEDIAN_FEEDBACK if feedback is None else tuple(tuple(edge) for edge in feedback)
            nodes, edges, readout_kind = _rgc_median_nodes(width, weight_decay, cell_weight_decay, overrides, edges)
        else:
            nodes = _intermediate_nodes(parsed.cell, width, weight_decay, cell_weight_decay, overrides)
            edges, readout_kind = (), "fc"
        unroll = unroll or "biological"
    if requested_image_off is not None:
        if parsed.cell is None and unroll == "feedforward":
            raise ValueError(f"image_off applies to ConvRNNs; received image_off={requested_image_off} for {name!r}.")
        image_off = int(requested_image_off)
    overrides.check_used()
    if unroll_length == "minimal":
        times = minimal
    elif unroll_length != "full":
        times = int(unroll_length)
    model = convrnn.ConvRNN(
        nodes,
        convrnn_nodes.Readout(num_classes, kind=readout_kind, weight_decay=weight_decay, name=convrnn.READOUT),
        edges=edges,
        times=times,
        image_off=image_off,
        blank_value=blank_value,
        decoder=decoder or parsed.decoder,
        decoder_start=0 if unroll == "feedforward" else decoder_start,
        unroll=unroll,
        remat=remat,
        name=name,
    )
    if build:
        model.build((None, image_size, image_size, 3))
    return model


def _check_learning_rule(rule, remat, build):
    if not rule.uses_backward_kernel:
        return
    if not build:
        raise ValueError(
            f"learning_rule={rule.name!r} needs build=True: ConvRNN layers are made when the model is built, so a "
            "model built later (outside the rule's scope) would silently train with backprop. Pass build=True."
        )
    if remat and rule.has_alignment_loss:
        raise ValueError(
            f"remat={remat!r} cannot train under learning_rule={rule.name!r}: a rematerialised segment's alignment "
            "losses R are computed where the tape does not record, so R would give its backward kernels no "
            "gradient. Use remat=False (or a rule without R such as feedback alignment)."
        )


def _width(multiplier: float):
    if multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0; received {multiplier}.")
    return lambda channels: max(1, int(round(channels * multiplier)))


def _node(name, filters, weight_decay, **kwargs) -> convrnn_nodes.ConvNode:
    return convrnn_nodes.ConvNode(filters, weight_decay=weight_decay, name=name, **kwargs)


def _feedforward_nodes(depth: str, width, weight_decay):
    if depth in ("basenet6", "basenet6_wider"):
        channels = SHALLOW_DEPTHS if depth == "basenet6" else (128, 512, 512, 512, 1024)
        nodes = [
            _node(f"conv{i + 1}", width(c), weight_decay, kernel_size=7 if i == 0 else 3, strides=2 if i == 0 else 1,
                  pool=True)
            for i, c in enumerate(channels)
        ]  # fmt: skip
        return nodes, "conv", "shallow"
    if depth == "basenet6_deeper":
        channels = (64, 64, 64, 128, 128, 256, 256, 512, 512, 512)
        pools = (1, 4, 6, 7, 10)
        nodes = [
            _node(f"conv{i + 1}", width(c), weight_decay, kernel_size=7 if i == 0 else 3, strides=2 if i == 0 else 1,
                  pool=(i + 1) in pools)
            for i, c in enumerate(channels)
        ]  # fmt: skip
        return nodes, "fc", "intermediate"
    return _intermediate_nodes(None, width, weight_decay, None, _CellOverrides(None, width)), "fc", "intermediate"


class _CellOverrides:
    """cell_overrides of `build_convrnn`: the arguments for one node's cell, and a check that every named node exists."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None, width):
        self.overrides = {str(k): dict(v) for k, v in (overrides or {}).items()}
        self.width = width
        self.used = {"*"}

    def get(self, node: str) -> dict[str, Any]:
        self.used.add(node)
        kwargs = {**self.overrides.get("*", {}), **self.overrides.get(node, {})}
        for key in ("filters", "cell_depth"):
            if kwargs.get(key) is not None:
                kwargs[key] = self.width(int(kwargs[key]))
        return kwargs

    def check_used(self) -> None:
        unknown = sorted(set(self.overrides) - self.used)
        if unknown:
            raise ValueError(
                f"cell_overrides names nodes without a cell: {unknown}; cells are in {sorted(self.used - {'*'})}."
            )


def _shallow_nodes(cell: str, width, weight_decay, cell_weight_decay, overrides: _CellOverrides):
    cwd = 1e-4 if cell_weight_decay is None else cell_weight_decay
    nodes = [
        _node("conv1", width(64), weight_decay, kernel_size=7, strides=2, pool=True),
        _node("conv2", width(128), weight_decay, pool=True),
    ]
    c_in = width(128)
    for i, depth in enumerate(SHALLOW_DEPTHS[2:]):
        name, filters = f"conv{i + 3}", width(depth)
        node_kwargs: dict[str, Any] = dict(pool=True, activation=None)
        extra = overrides.get(name)
        if cell == "rgc":
            extra = {"weight_decay": cwd, **extra}
            made = cells.get_cell("rgc").shallow(filters, residual_channels=c_in, name=f"{name}_cell", **extra)
            node_kwargs.update(activation="elu", rgc_inputs=True)
        elif cell == "lstm":
            opt = dict(LSTM_OPT[i])
            if cell_weight_decay is not None:
                opt["weight_decay"] = cell_weight_decay
            opt["filters"] = width(opt["filters"])
            opt = {"layer_norm": True, **opt, **extra}
            made = cells.get_cell("lstm")(name=f"{name}_cell", **opt)
        elif cell == "simplernn":
            out = width((128, 256, 256)[i])
            extra = {"filters": out, "layer_norm": True, "weight_decay": cwd, **extra}
            made = cells.get_cell("simplernn")(name=f"{name}_cell", **extra)
        else:
            made = _plain_cell(cell, filters, cwd, f"{name}_cell", extra)
        nodes.append(_node(name, filters, weight_decay, cell=made, **node_kwargs))
        c_in = nodes[-1].output_channels
    return nodes


def _plain_cell(cell: str, filters: int, cell_weight_decay: float, name: str, extra: dict[str, Any]):
    cls = cells.get_cell(cell)
    if cell == "timedecay":
        return cls(**{"filters": filters, **extra}, name=name)  # tau only; the cell keeps its input depth
    return cls(**{"filters": filters, "weight_decay": cell_weight_decay, **extra}, name=name)


def _intermediate_nodes(cell: str | None, width, weight_decay, cell_weight_decay, overrides: _CellOverrides):
    cwd = 1e-4 if cell_weight_decay is None else cell_weight_decay
    nodes = [_node("conv1", width(64), weight_decay, kernel_size=7, strides=2, pool=True)]
    for k, depth in enumerate(INTERMEDIATE_DEPTHS[1:], start=2):
        name, filters = f"conv{k}", width(depth)
        made = None
        if cell is not None and k >= 4:
            extra = overrides.get(name)
            if cell == "simplernn":  # no layer norm in the intermediate model (spec 4.2)
                extra = {"filters": filters, "layer_norm": False, "weight_decay": cwd, **extra}
                made = cells.get_cell("simplernn")(name=f"{name}_cell", **extra)
            else:
                made = _plain_cell(cell, filters, cwd, f"{name}_cell", extra)
        nodes.append(_node(name, filters, weight_decay, block="residual", pool=k in INTERMEDIATE_POOLS, cell=made))
    return nodes


def _rgc_median_nodes(width, weight_decay, cell_weight_decay, overrides: _CellOverrides, edges):
    cwd = {} if cell_weight_decay is None else {"weight_decay": cell_weight_decay}
    depths = [width(c) for c in RGC_MEDIAN_DEPTHS]
    feedback_channels = {k: 0 for k in range(1, 11)}
    for src, dst in edges:
        if not (_is_cell_node(src) and _is_cell_node(dst) and int(src[4:]) > int(dst[4:])):
            raise ValueError(
                f"feedback edge {(src, dst)!r} must run from a deeper to a shallower cell node among conv4-conv10."
            )
        feedback_channels[int(dst[4:])] += depths[int(src[4:]) - 1]
    nodes = [_node("conv1", depths[0], weight_decay, kernel_size=7, strides=2, pool=True)]
    nodes += [_node(f"conv{k}", depths[k - 1], weight_decay) for k in (2, 3)]
    for k in range(4, 11):
        name = f"conv{k}"
        kwargs = {"cell_depth": width(64), **cwd, **overrides.get(name)}
        cell = cells.get_cell("rgc").median(
            depths[k - 1],
            residual_channels=depths[k - 2],
            feedback_channels=feedback_channels[k] or None,
            name=f"{name}_cell",
            **kwargs,
        )
        nodes.append(
            _node(name, depths[k - 1], weight_decay, activation=None, pool=k in INTERMEDIATE_POOLS, cell=cell,
                  rgc_inputs=True)
        )  # fmt: skip
    return nodes, tuple(edges), "fc"


def _is_cell_node(name: str) -> bool:
    return name.startswith("conv") and name[4:].isdigit() and 4 <= int(name[4:]) <= 10
