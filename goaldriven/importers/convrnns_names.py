"""Where each weight of a goaldriven ConvRNN lives in the released TF1 `model.ckpt` of neuroailab/convrnns.

The release's variables are `tnn_model/<node>/...` with <node> in conv1..conv10 and `imnetds` (the readout), named by
the TF1 variable scopes of the reference code (`utils/main.py`, `utils/cells.py`, `utils/median_rgcell.py`,
`utils/decoders.py`). The TF1 kernels are already HWIO / [in, out], and every fused kernel of the reference has the
layout goaldriven's cells use (their docstrings state the reference's split orders), so all weights are copied as
they are; only the scalars stored as shape [1] (TimeDecay's `memory_decay`, the max-confidence decoder's beta) are
reshaped to goaldriven's scalar weights:

    node (every node)         pre_0/weights_basenet, pre_0/bias      -> <node>/pre_conv/{kernel,bias}
    residual block            post_0/{weights,bias}                  -> <node>/post_conv/{kernel,bias}
                              post_1/residual_add_weights            -> <node>/projection/kernel (Cin != C only)
    TimeDecay                 memory_decay [1] (trainable)           -> <cell>/tau ()
    UGRNN, IntersectionRNN    Conv<X>Cell/{weights,bias}             -> <cell>/conv/{kernel,bias}
                              ([x; s] concatenation; UGRNN split (gate, candidate); IntersectionRNN (p, m, y, n))
    GRU                       ConvGRUCell/gates/*, candidates/*      -> <cell>/gates/*, <cell>/candidate/*
                              ([x; s] and [x; r * s]; gates split (reset, update))
    LSTM                      ConvLSTMCell/{weights,bias}            -> <cell>/gates/{kernel,bias}
                              ([x; h] concatenation, split (i, j, f, o))
                              ConvLSTMCell/{input,transform,forget,output,state}/{gamma,beta}
                                                                     -> <cell>/layer_norm_{i,j,f,o,state}/*
                              ConvLSTMCell/peepholes/w_{i,f,o}_diag  -> <cell>/peephole_{i,f,o} ([H, W, C] both)
    SimpleRNN                 ConvNormBasicCell/{i,s}/*, layer_norm/* -> <cell>/{input_conv,state_conv,layer_norm}/*
    RGC (rgc_shallow)         ReciprocalGateCell/{cell,out}/<scope>/weights (no biases), see RGC_SHALLOW
    RGC Median                ReciprocalGateCell/... depthwise_weights/pointwise_weights/bias, see RGC_MEDIAN
    readout                   imnetds/pre_1/* (shallow 2x2 conv), imnetds/pre_3/* (intermediate fc)

Frozen scalars goaldriven keeps as constants are checked, not dropped (`constants`): `memory_decay` of a node without
a cell (the reference's feedforward "memory" with decay 0) and of `imnetds`; the decoder scalars
`{probs,alpha}/softmax_beta` (1; they feed only the reference's diagnostic `alpha` tensor), the frozen
`normalize/softmax_beta` (1: the threshold decoder's softmax) and `decoder_threshold` (the model's threshold, 0.9).
"""

import numpy as np

from goaldriven import cells
from goaldriven.cells import rgc_connections
from goaldriven.importers import common

ROOT = "tnn_model"
READOUT_SCOPES = {"conv": "pre_1", "fc": "pre_3"}  # the shallow 2x2 conv, the intermediate fc
LSTM_NORMS = {"i": "input", "j": "transform", "f": "forget", "o": "output", "state": "state"}
# RGC connection (rgc_connections.py) -> TF1 scope inside ReciprocalGateCell. A trailing "/" holds `weights` (and
# `bias`); a trailing "_" is the median cell's `<scope>_weights` / `<scope>_bias`; depth-separable convs hold
# `depthwise_weights`, `pointwise_weights` and `bias`.
RGC_SHALLOW = {
    "input_to_cell": "cell/input_to_cell/",
    "tau_cell": "cell/tau/",  # s_{t-1} -> cell tau
    "gate_cell": "cell/gate/",  # h_{t-1} -> cell gate
    "gate_out": "out/gate/",  # s_{t-1} -> out gate
    "tau_out": "out/tau/",  # h_{t-1} -> out tau
    "residual_to_out_gate": "out/residual_to_out_gate/",
}
RGC_MEDIAN = {
    "input_to_cell": "cell/input_to_cell_",
    "tau_cell": "cell/tau/",
    "gate_cell": "cell/out_to_cell/",
    "input_to_out": "out/input_to_out_",
    "gate_out": "out/gate/",
    "tau_out": "out/tau/",
    "residual_projection": "out/residual_add_weights",
    "feedback": "out/feedback_to_out_",
}
_NOT_STRUCTURAL = ("weight_decay", "init_scale", "bias_init", "cell_depth")  # training settings, or shapes (checked)


def scalar(value: np.ndarray) -> np.ndarray:
    """A TF1 scalar variable of shape [1] as goaldriven's shape-() weight."""
    return np.reshape(value, ()) if np.size(value) == 1 else value


def _same(layer, key: str, weights: dict[str, str]) -> dict[str, common.Source]:
    """{variable path: Source} for the named attributes of `layer` (attribute -> key suffix)."""
    return {getattr(layer, attr).path: common.Source(f"{key}{suffix}") for attr, suffix in weights.items()}


def conv(layer, key: str, separator: str = "/") -> dict[str, common.Source]:
    """A Conv2D / SeparableConv2D / Dense under the TF1 scope `key` (`weights`, `bias`; depth-separable parts)."""
    if hasattr(layer, "depthwise_kernel"):
        names = {"depthwise_kernel": "/depthwise_weights", "pointwise_kernel": "/pointwise_weights"}
        return _same(layer, key, {**names, **({"bias": "/bias"} if layer.use_bias else {})})
    return _same(
        layer, key, {"kernel": f"{separator}weights", **({"bias": f"{separator}bias"} if layer.use_bias else {})}
    )


def _rgc_table(cell) -> dict[str, str]:
    """The name table of the released RGC preset `cell` follows; raises for a configuration that was never released."""
    config = cell.get_config()
    for table, preset in ((RGC_SHALLOW, rgc_connections.SHALLOW), (RGC_MEDIAN, rgc_connections.MEDIAN)):
        if all(config[k] == v for k, v in preset.items() if k not in _NOT_STRUCTURAL):
            return table
    raise common.WeightImportError(
        f"RGC cell {cell.name!r} matches neither released preset (rgc_shallow's ReciprocalGatedCell.shallow, "
        "rgc_intermediate's ReciprocalGatedCell.median); build the model with a released name"
    )


def cell_plan(cell, key: str) -> dict[str, common.Source]:
    """{variable path: Source} of one goaldriven cell whose TF1 node scope is `key` (`tnn_model/<node>`)."""
    if isinstance(cell, cells.TimeDecayCell):
        return {cell.tau.path: common.Source(f"{key}/memory_decay", scalar, "[1] -> ()")}
    if isinstance(cell, (cells.ConvUGRNNCell, cells.ConvIntersectionRNNCell)):
        return conv(cell.conv, f"{key}/{type(cell).__name__}")
    if isinstance(cell, cells.ConvGRUCell):
        return {**conv(cell.gates, f"{key}/ConvGRUCell/gates"), **conv(cell.candidate, f"{key}/ConvGRUCell/candidates")}
    if isinstance(cell, cells.ConvLSTMCell):
        scope = f"{key}/ConvLSTMCell"
        plan = conv(cell.gates, scope)
        for gate, norm in cell.norms.items():
            plan.update(_same(norm, f"{scope}/{LSTM_NORMS[gate]}", {"gamma": "/gamma", "beta": "/beta"}))
        for gate, weight in cell.peephole_weights.items():
            plan[weight.path] = common.Source(f"{scope}/peepholes/w_{gate}_diag")
        return plan
    if isinstance(cell, cells.ConvSimpleRNNCell):
        scope = f"{key}/ConvNormBasicCell"
        plan = {**conv(cell.input_conv, f"{scope}/i"), **conv(cell.state_conv, f"{scope}/s")}
        if cell.norm is not None:
            plan.update(_same(cell.norm, f"{scope}/layer_norm", {"gamma": "/gamma", "beta": "/beta"}))
        return plan
    if isinstance(cell, cells.ReciprocalGatedCell):
        table, plan = _rgc_table(cell), {}
        for name, layer in cell.affines.items():
            if name not in table:
                raise common.WeightImportError(f"RGC cell {cell.name!r}: connection {name!r} has no released weights")
            scope = f"{key}/ReciprocalGateCell/{table[name]}"
            if name == "residual_projection":
                plan[layer.kernel.path] = common.Source(scope)
            elif scope.endswith("_"):
                plan.update(conv(layer, scope[:-1], separator="_"))
            else:
                plan.update(conv(layer, scope.rstrip("/")))
        return plan
    raise common.WeightImportError(f"cell {cell.name!r} ({type(cell).__name__}) has no released counterpart")


def plan(model) -> tuple[dict[str, common.Source], dict[str, tuple[float, float]]]:
    """(plan, constants) of a built zoo ConvRNN: the plan {variable path: Source} covers every weight; constants
    {TF1 key: (value goaldriven fixes, tolerance)} are the frozen scalars of the release that must hold that value."""
    out: dict[str, common.Source] = {}
    constants: dict[str, tuple[float, float]] = {}
    for node in model.graph_nodes:
        key = f"{ROOT}/{node.name}"
        out[node.pre_conv.kernel.path] = common.Source(f"{key}/pre_0/weights_basenet")  # the feedforward input's part
        out[node.pre_conv.bias.path] = common.Source(f"{key}/pre_0/bias")
        if node.block == "residual":
            out.update(conv(node.post_conv, f"{key}/post_0"))
            if node.projection is not None:
                out[node.projection.kernel.path] = common.Source(f"{key}/post_1/residual_add_weights")
        if node.cell is None:
            constants[f"{key}/memory_decay"] = (0.0, 0.0)
        else:
            out.update(cell_plan(node.cell, key))
    readout = model.readout
    out.update(conv(readout.layer, f"{ROOT}/imnetds/{READOUT_SCOPES[readout.kind]}"))
    constants[f"{ROOT}/imnetds/memory_decay"] = (0.0, 0.0)
    if model.decoder != "last":
        constants[f"{ROOT}/probs/softmax_beta"] = (1.0, 0.0)
        constants[f"{ROOT}/alpha/softmax_beta"] = (1.0, 0.0)
    if model.decoder == "max_conf":
        out[model.beta.path] = common.Source(f"{ROOT}/normalize/softmax_beta", scalar, "[1] -> ()")
    elif model.decoder == "thresh":
        constants[f"{ROOT}/normalize/softmax_beta"] = (1.0, 0.0)
        constants[f"{ROOT}/decoder_threshold"] = (model.threshold, 1e-6)  # stored as float32
    return out, constants
