"""The connection graph of the general Reciprocal Gated Circuit: which affine maps exist, and how they are built.

Thesis section 2.5.4 (search space) mapped on the flags of the reference cell (spec ch2 sections 4.7 and 4.9). Every
term of the RGC step is a sum of affine maps of *sources* into *targets*:

    sources: input (x_t after the input activation), residual (the node's raw harbor input), feedback (resized,
             concatenated feedback maps), cell (s_{t-1}; s_t with use_current_cell_for_out), out (h_{t-1})
    targets: input (added to x_t before the input activation; only feedback_entry="input"), cell_input, cell_tau,
             cell_gate, out_input, out_tau, out_gate

    connection             source    -> target       family (filter size / depth-separable arguments)   when
    feedback               feedback  -> input|cell_input|out_input   feedback   feedback_channels is set
    input_to_cell          input     -> cell_input   ff                                                 input_to_cell
    cell_residual          residual  -> cell_input   ff                                                 cell_residual
    tau_cell               cell      -> cell_tau     tau                                                always
    residual_to_cell_tau   residual  -> cell_tau     tau                                                flag
    gate_cell              out       -> cell_gate    gate                                               always
    residual_to_cell_gate  residual  -> cell_gate    gate                                               flag
    input_to_out           input     -> out_input    in_out (identity when input_to_out=False: o^ = x)  always
    cell_to_out            cell      -> out_input    gate                                               cell_to_out
    gate_out               cell      -> out_gate     gate                                               not cell_to_out
    residual_projection    residual  -> out_input    1x1, no bias, Glorot, never decayed (identity when
                                                     residual_channels == filters)                      out_residual
    tau_out                out       -> out_tau      tau                                                always
    residual_to_out_tau    residual  -> out_tau      tau                                                flag
    residual_to_out_gate   residual  -> out_gate     gate                                               flag

Affine types (thesis: identity sum, 1x1 conv, KxK conv, KxK depth-separable conv): a family's filter size 0 is the
identity sum (source and target depths must match); otherwise a regular or depth-separable SAME conv whose kernel is
clipped to the map. A target with no connection contributes 0.
"""

import dataclasses

import keras

from goaldriven.cells import base

SOURCES = ("input", "residual", "feedback", "cell", "out")
FEEDBACK_ENTRIES = {"input": "input", "cell": "cell_input", "out": "out_input"}
FAMILIES = ("ff", "in_out", "tau", "gate", "feedback")
CONNECTION_NAMES = (
    "feedback",
    "input_to_cell",
    "cell_residual",
    "tau_cell",
    "residual_to_cell_tau",
    "gate_cell",
    "residual_to_cell_gate",
    "input_to_out",
    "cell_to_out",
    "gate_out",
    "residual_projection",
    "tau_out",
    "residual_to_out_tau",
    "residual_to_out_gate",
)
RESIDUAL_FLAGS = (
    "cell_residual",
    "out_residual",
    "residual_to_cell_tau",
    "residual_to_cell_gate",
    "residual_to_out_tau",
    "residual_to_out_gate",
)

# The released shallow RGC (`rgc_shallow`, spec 4.7): 3x3 regular convs without biases, gates (1 - sigmoid).
SHALLOW = dict(
    tau_filter_size=3,
    gate_filter_size=3,
    ff_filter_size=3,
    tau_nonlinearity="sigmoid",
    gate_nonlinearity="sigmoid",
    tau_offset=1.0,
    tau_multiplier=-1.0,
    gate_offset=1.0,
    gate_multiplier=-1.0,
    input_to_cell=True,
    input_to_out=False,
    residual_to_out_gate=True,
    input_activation="linear",
    cell_activation="elu",
    out_activation="elu",
    use_bias=False,
    init_scale=None,
)

# RGC Median (spec 4.8 table, with the released `model_func` feedback override; zero biases, A-23).
MEDIAN = dict(
    cell_depth=64,
    tau_filter_size=7,
    tau_depth_separable=True,
    tau_nonlinearity="sigmoid",
    tau_offset=0.9219348,
    tau_multiplier=-0.9219348,
    gate_filter_size=7,
    gate_depth_separable=True,
    gate_nonlinearity="tanh",
    gate_offset=0.7006567,
    gate_multiplier=-0.7006567,
    input_to_cell=True,
    ff_filter_size=2,
    input_to_out=True,
    in_out_filter_size=3,
    out_residual=True,
    feedback_entry="out",
    feedback_filter_size=1,
    feedback_depth_separable=False,
    feedback_activation="linear",
    input_activation="elu",
    cell_activation="elu",
    out_activation="elu",
    use_bias=True,
    bias_init=0.0,
    init_scale=0.6393378,
    weight_decay=2.033999e-4,
)


@dataclasses.dataclass(frozen=True)
class Connection:
    name: str  # stable sub-layer name
    source: str  # one of SOURCES
    target: str  # input, cell_input, cell_tau, cell_gate, out_input, out_tau or out_gate
    family: str  # one of FAMILIES, "identity" or "projection"


def get_activation(name: str):
    """keras.activations.get with "identity" as an alias of "linear"."""
    return keras.activations.get("linear" if name in (None, "identity") else name)


def connections(cell) -> tuple[Connection, ...]:
    """The connections a ReciprocalGatedCell's flags switch on, in weight-creation order."""
    on = []
    if cell.feedback_channels is not None:
        on.append(Connection("feedback", "feedback", FEEDBACK_ENTRIES[cell.feedback_entry], "feedback"))
    if cell.input_to_cell:
        on.append(Connection("input_to_cell", "input", "cell_input", "ff"))
    if cell.cell_residual:
        on.append(Connection("cell_residual", "residual", "cell_input", "ff"))
    on.append(Connection("tau_cell", "cell", "cell_tau", "tau"))
    if cell.residual_to_cell_tau:
        on.append(Connection("residual_to_cell_tau", "residual", "cell_tau", "tau"))
    on.append(Connection("gate_cell", "out", "cell_gate", "gate"))
    if cell.residual_to_cell_gate:
        on.append(Connection("residual_to_cell_gate", "residual", "cell_gate", "gate"))
    on.append(Connection("input_to_out", "input", "out_input", "in_out" if cell.input_to_out else "identity"))
    if cell.cell_to_out:
        on.append(Connection("cell_to_out", "cell", "out_input", "gate"))
    else:
        on.append(Connection("gate_out", "cell", "out_gate", "gate"))
    if cell.out_residual:
        on.append(Connection("residual_projection", "residual", "out_input", "projection"))
    on.append(Connection("tau_out", "out", "out_tau", "tau"))
    if cell.residual_to_out_tau:
        on.append(Connection("residual_to_out_tau", "residual", "out_tau", "tau"))
    if cell.residual_to_out_gate:
        on.append(Connection("residual_to_out_gate", "residual", "out_gate", "gate"))
    return tuple(on)


def channels(cell, where: str) -> int:
    """Depth of a source or target of `cell` (built)."""
    inputs = {"input": cell.input_channels, "residual": cell.residual_channels, "feedback": cell.feedback_channels}
    if where in inputs:
        return inputs[where]
    return cell.cell_depth if where.startswith("cell") else cell.filters


def build_affine(cell, conn: Connection):
    """The built conv of `conn`, or None for an identity sum (after checking that the depths match)."""
    c_src, c_dst = channels(cell, conn.source), channels(cell, conn.target)
    if conn.family == "projection":
        size = 0 if c_src == c_dst else 1
    elif conn.family == "identity":
        size = 0
    else:
        size = getattr(cell, f"{conn.family}_filter_size")
    if size == 0:
        if c_src != c_dst:
            why = "input_to_out=False means o^ = x" if conn.family == "identity" else "its filter size is 0"
            raise ValueError(
                f"ReciprocalGatedCell {cell.name!r}: connection {conn.name!r} is an identity sum ({why}), so its "
                f"source {conn.source!r} ({c_src} channels) must match its target {conn.target!r} ({c_dst} "
                f"channels). Use a conv (a positive filter size, or input_to_out=True) or matching depths."
            )
        return None
    if conn.family == "projection":  # reference residual_add: 1x1, no bias, Glorot, no weight decay
        return cell.build_conv(c_dst, 1, c_src, name=conn.name, use_bias=False, init_scale=None, decay_kernel=False)
    return cell.build_conv(
        c_dst,
        size,
        c_src,
        name=conn.name,
        depth_separable=getattr(cell, f"{conn.family}_depth_separable"),
        use_bias=uses_bias(cell.use_bias, conn.name),
        bias_initializer=keras.initializers.Constant(cell.bias_init),
        decay_bias=False,  # RGC biases are not decayed
    )


def uses_bias(use_bias, name: str) -> bool:
    return bool(use_bias.get(name, False)) if isinstance(use_bias, dict) else bool(use_bias)


def validate(cell):
    """Checks the flags of a ReciprocalGatedCell; raises ValueError naming the argument and the fix."""
    for family in FAMILIES:
        base.check_kernel_size(f"{family}_filter_size", getattr(cell, f"{family}_filter_size"), allow_zero=True)
    if cell.cell_depth is not None:
        base.check_kernel_size("cell_depth", cell.cell_depth)
    for arg in ("residual_channels", "feedback_channels"):
        value = getattr(cell, arg)
        if value is not None:
            base.check_kernel_size(arg, value)
    if cell.feedback_entry not in FEEDBACK_ENTRIES:
        raise ValueError(f"feedback_entry must be one of {tuple(FEEDBACK_ENTRIES)}; received {cell.feedback_entry!r}.")
    for arg in (
        "tau_nonlinearity",
        "gate_nonlinearity",
        "input_activation",
        "cell_activation",
        "out_activation",
        "feedback_activation",
    ):
        get_activation(getattr(cell, arg))  # raises ValueError for unknown names
    used = [flag for flag in RESIDUAL_FLAGS if getattr(cell, flag)]
    if used and cell.residual_channels is None:
        raise ValueError(
            f"ReciprocalGatedCell {cell.name!r}: {', '.join(used)} read(s) the node's raw input, so pass "
            "residual_channels (its channel count) to the constructor."
        )
    if isinstance(cell.use_bias, dict):
        unknown = sorted(set(cell.use_bias) - (set(CONNECTION_NAMES) - {"residual_projection"}))
        if unknown:
            raise ValueError(
                f"use_bias keys must be connection names among {CONNECTION_NAMES} (the residual projection never "
                f"has a bias); received unknown keys {unknown}."
            )
    elif not isinstance(cell.use_bias, bool):
        raise ValueError(f"use_bias must be a bool or a dict of connection name -> bool; received {cell.use_bias!r}.")
