"""Reciprocal Gated Circuit: presets and general configurations against a NumPy transcription of spec 4.7-4.9.

The NumPy step below follows the spec's numbered code form (input, cell input, cell update, out input, out update)
with every flag spelled out; the presets' expected settings are copied from the spec tables, not from the code.
"""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import reciprocal_gated
from tests import layer_testing
from tests.cells import cell_testing as ct

RGC = reciprocal_gated.ReciprocalGatedCell

# Flags of the thesis/code form with their "off" values; each case overrides what it uses.
OFF = dict(
    feedback_entry="out",
    feedback_activation="linear",
    input_activation="linear",
    cell_activation="elu",
    out_activation="elu",
    tau_nonlinearity="sigmoid",
    gate_nonlinearity="sigmoid",
    tau_offset=1.0,
    tau_multiplier=-1.0,
    gate_offset=1.0,
    gate_multiplier=-1.0,
    input_to_cell=False,
    input_to_out=False,
    cell_residual=False,
    out_residual=False,
    residual_to_cell_tau=False,
    residual_to_cell_gate=False,
    residual_to_out_tau=False,
    residual_to_out_gate=False,
    cell_to_out=False,
    use_current_cell_for_out=False,
)

# Spec 4.7 "Shallow RGC as released": sigmoid gates with offset 1 / multiplier -1, x -> cell conv, o^ = x, residual
# gate term on the out gate, ELU cell/out activations, identity input activation, no biases.
SHALLOW_SPEC = {**OFF, "input_to_cell": True, "residual_to_out_gate": True}
# Spec 4.8 table (+ released feedback override): tau sigmoid / gate tanh, offsets 0.9219348 / 0.7006567 with
# multiplier = -offset, x -> cell 2x2 and x -> out 3x3 convs, out_residual, ELU x3, feedback 1x1 + bias at "out".
MEDIAN_SPEC = {
    **OFF,
    "gate_nonlinearity": "tanh",
    "tau_offset": 0.9219348,
    "tau_multiplier": -0.9219348,
    "gate_offset": 0.7006567,
    "gate_multiplier": -0.7006567,
    "input_to_cell": True,
    "input_to_out": True,
    "out_residual": True,
    "input_activation": "elu",
}


def numpy_rgc_step(cfg, weights, identities, x, states, feedback=None, residual=None):
    """One RGC step, spec 4.7 steps 1-6 (code form); `identities` names the connections that are identity sums."""
    act = ct.NUMPY_ACTIVATIONS
    s, h = states

    def affine(name, t):
        return t if name in identities else ct.apply_conv(weights[name], t)

    fb = None if feedback is None else act[cfg["feedback_activation"]](affine("feedback", feedback))
    # 1. input
    if cfg["feedback_entry"] == "input" and fb is not None:
        x = x + fb
    x = act[cfg["input_activation"]](x)
    # 2. cell input
    c_hat = 0.0
    if cfg["input_to_cell"]:
        c_hat = c_hat + affine("input_to_cell", x)
    if cfg["cell_residual"]:
        c_hat = c_hat + affine("cell_residual", residual)
    if cfg["feedback_entry"] == "cell" and fb is not None:
        c_hat = c_hat + fb
    # 3. cell update
    f_tau, f_g = act[cfg["tau_nonlinearity"]], act[cfg["gate_nonlinearity"]]
    tau_pre = affine("tau_cell", s) + (affine("residual_to_cell_tau", residual) if cfg["residual_to_cell_tau"] else 0)
    gate_pre = affine("gate_cell", h) + (
        affine("residual_to_cell_gate", residual) if cfg["residual_to_cell_gate"] else 0
    )
    tau_c = cfg["tau_offset"] + cfg["tau_multiplier"] * f_tau(tau_pre)
    g_c = cfg["gate_offset"] + cfg["gate_multiplier"] * f_g(gate_pre)
    s_new = act[cfg["cell_activation"]](tau_c * s + g_c * c_hat)
    s_src = s_new if cfg["use_current_cell_for_out"] else s
    # 4. out input
    o_hat = affine("input_to_out", x) if cfg["input_to_out"] else x
    if cfg["cell_to_out"]:
        o_hat = o_hat + affine("cell_to_out", s_src)
    if cfg["out_residual"]:
        o_hat = o_hat + affine("residual_projection", residual)
    if cfg["feedback_entry"] == "out" and fb is not None:
        o_hat = o_hat + fb
    # 5. out update
    tau_pre = affine("tau_out", h) + (affine("residual_to_out_tau", residual) if cfg["residual_to_out_tau"] else 0)
    gate_pre = 0.0
    if not cfg["cell_to_out"]:
        gate_pre = gate_pre + affine("gate_out", s_src)
    if cfg["residual_to_out_gate"]:
        gate_pre = gate_pre + affine("residual_to_out_gate", residual)
    tau_o = cfg["tau_offset"] + cfg["tau_multiplier"] * f_tau(tau_pre)
    g_o = cfg["gate_offset"] + cfg["gate_multiplier"] * f_g(gate_pre)
    h_new = act[cfg["out_activation"]](tau_o * h + g_o * o_hat)
    return h_new, [s_new, h_new]


CASES = {
    "shallow": dict(
        make=lambda **kw: RGC.shallow(4, residual_channels=3, **kw),
        x_channels=4,
        extra={"residual": 3},
        cfg=SHALLOW_SPEC,
        convs={"input_to_cell", "tau_cell", "gate_cell", "gate_out", "tau_out", "residual_to_out_gate"},
        identities=set(),
        biases=set(),
    ),
    "median": dict(  # feedback + projection (c_res 3 != 4), cell depth 6, 7x7 DS convs clipped to the 6x6 map
        make=lambda **kw: RGC.median(4, residual_channels=3, feedback_channels=5, cell_depth=6, **kw),
        x_channels=4,
        extra={"feedback": 5, "residual": 3},
        cfg=MEDIAN_SPEC,
        convs={"feedback", "input_to_cell", "tau_cell", "gate_cell", "input_to_out", "gate_out", "tau_out"}
        | {"residual_projection"},
        identities=set(),
        biases={"feedback", "input_to_cell", "tau_cell", "gate_cell", "input_to_out", "gate_out", "tau_out"},
    ),
    # Feedback at the input through an ELU'd 3x3 DS conv, residual into the cell and its gate, s -> out additively,
    # the thesis s_t -> h_t edge, tanh gates with a positive gate multiplier; o^ = x; the out gate has no input.
    "input_feedback_cell_to_out": dict(
        make=lambda **kw: RGC(
            4,
            cell_depth=3,
            residual_channels=5,
            feedback_channels=2,
            feedback_entry="input",
            feedback_filter_size=3,
            feedback_depth_separable=True,
            feedback_activation="elu",
            cell_residual=True,
            residual_to_cell_gate=True,
            cell_to_out=True,
            use_current_cell_for_out=True,
            gate_nonlinearity="tanh",
            tau_offset=0.8,
            tau_multiplier=-0.5,
            gate_offset=0.6,
            gate_multiplier=0.4,
            input_activation="relu",
            out_activation="tanh",
            ff_filter_size=2,
            ff_depth_separable=True,
            use_bias=True,
            **kw,
        ),  # fmt: skip
        x_channels=4,
        extra={"feedback": 2, "residual": 5},
        cfg={
            **OFF,
            "feedback_entry": "input",
            "feedback_activation": "elu",
            "input_to_cell": True,
            "cell_residual": True,
            "residual_to_cell_gate": True,
            "cell_to_out": True,
            "use_current_cell_for_out": True,
            "gate_nonlinearity": "tanh",
            "tau_offset": 0.8,
            "tau_multiplier": -0.5,
            "gate_offset": 0.6,
            "gate_multiplier": 0.4,
            "input_activation": "relu",
            "out_activation": "tanh",
        },  # fmt: skip
        convs={"feedback", "input_to_cell", "cell_residual", "tau_cell", "gate_cell", "residual_to_cell_gate"}
        | {"cell_to_out", "tau_out"},
        identities=set(),
        biases={"feedback", "input_to_cell", "cell_residual", "tau_cell", "gate_cell", "residual_to_cell_gate"}
        | {"cell_to_out", "tau_out"},
    ),
    # Feedback into the cell, identity-sum taus (filter size 0) including residual -> taus, 1x1 gates, identity
    # out_residual (c_res = c), a DS 3x3 x -> out conv, per-connection biases, sigmoid cell activation.
    "cell_feedback_identity_taus": dict(
        make=lambda **kw: RGC(
            4,
            residual_channels=4,
            feedback_channels=3,
            feedback_entry="cell",
            tau_filter_size=0,
            residual_to_cell_tau=True,
            residual_to_out_tau=True,
            gate_filter_size=1,
            out_residual=True,
            residual_to_out_gate=True,
            input_to_out=True,
            in_out_depth_separable=True,
            cell_activation="sigmoid",
            use_bias={"gate_cell": True, "feedback": True, "input_to_out": True},
            **kw,
        ),  # fmt: skip
        x_channels=3,
        extra={"feedback": 3, "residual": 4},
        cfg={
            **OFF,
            "feedback_entry": "cell",
            "input_to_cell": True,
            "residual_to_cell_tau": True,
            "residual_to_out_tau": True,
            "out_residual": True,
            "residual_to_out_gate": True,
            "input_to_out": True,
            "cell_activation": "sigmoid",
        },  # fmt: skip
        convs={"feedback", "input_to_cell", "gate_cell", "gate_out", "input_to_out", "residual_to_out_gate"},
        identities={"tau_cell", "residual_to_cell_tau", "tau_out", "residual_to_out_tau", "residual_projection"},
        biases={"gate_cell", "feedback", "input_to_out"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_match_numpy(case):
    spec = CASES[case]
    x_shape = (2, 6, 6, spec["x_channels"])
    cell = spec["make"](dtype="float64")
    cell.build(x_shape)
    assert set(cell.affines) == spec["convs"]
    assert {name for name, layer in cell.affines.items() if layer.use_bias} == spec["biases"]
    ct.randomize_weights(cell, scale=0.4)
    weights = {name: ct.variables(layer) for name, layer in cell.affines.items()}

    def numpy_step(x, states, **extra):
        return numpy_rgc_step(spec["cfg"], weights, spec["identities"], x, states, **extra)

    ct.compare_steps(cell, numpy_step, x_shape, extra_channels=spec["extra"])


def test_median_preset_settings():
    cell = RGC.median(128, residual_channels=128)
    assert cell.cell_depth == 64 and cell.weight_decay == 2.033999e-4 and cell.init_scale == 0.6393378
    assert (cell.tau_filter_size, cell.tau_depth_separable, cell.gate_filter_size, cell.gate_depth_separable) == (
        7, True, 7, True,
    )  # fmt: skip
    assert (cell.ff_filter_size, cell.ff_depth_separable, cell.in_out_filter_size) == (2, False, 3)
    assert (cell.feedback_entry, cell.feedback_filter_size, cell.feedback_depth_separable) == ("out", 1, False)
    assert cell.use_bias is True and cell.bias_init == 0.0
    for key, value in MEDIAN_SPEC.items():
        assert getattr(cell, key) == value, key
    shallow = RGC.shallow(256, residual_channels=128)
    assert shallow.cell_depth == 256 and shallow.use_bias is False and shallow.init_scale is None
    assert (shallow.tau_filter_size, shallow.gate_filter_size, shallow.ff_filter_size) == (3, 3, 3)
    for key, value in SHALLOW_SPEC.items():
        assert getattr(shallow, key) == value, key


def test_median_initialisation_and_weight_decay():
    cell = RGC.median(64, residual_channels=32, feedback_channels=16)
    cell.build((None, 14, 14, 64))
    kernel = cell.affines["input_to_out"].kernel.numpy()  # fan_in = 3 * 3 * 64
    np.testing.assert_allclose(kernel.std(), np.sqrt(0.6393378 / 576), rtol=0.05)
    assert all(not np.any(v.numpy()) for v in cell.weights if v.name == "bias"), "biases start at zero (A-23)"
    ct.randomize_weights(cell)  # non-zero biases, so that decaying them would show
    decayed = [
        v.numpy()
        for name, layer in cell.affines.items()
        for v in layer.weights
        if v.name.endswith("kernel") and name != "residual_projection"
    ]
    expected = 2.033999e-4 / 2 * sum(np.sum(w**2) for w in decayed)  # kernels only; never the projection
    np.testing.assert_allclose(float(sum(cell.losses)), expected, rtol=1e-5)


def test_median_passthrough_at_zero_state():
    # Spec 4.8 / 11.3 item 6: zero states and zero biases give tau = 0.5 and g = 0, so
    # s_0 = ELU(0.7006567 * W_ic * x) and h_0 = ELU(0.7006567 * (W_io * x + P res + W_fb * fb)), x = ELU(input).
    cell = RGC.median(4, residual_channels=3, feedback_channels=2, cell_depth=5, dtype="float64")
    x, res, fb = ct.random((2, 8, 8, 4), 0), ct.random((2, 8, 8, 3), 1), ct.random((2, 8, 8, 2), 2)
    cell.build(x.shape)
    out, (s, h) = cell(x, cell.get_initial_state(2), feedback=fb, residual=res)
    w = {name: ct.variables(layer) for name, layer in cell.affines.items()}
    xe = ct.elu(x)
    o_hat = ct.conv2d_same(xe, w["input_to_out"]["kernel"]) + ct.conv2d_same(res, w["residual_projection"]["kernel"])
    o_hat = o_hat + ct.conv2d_same(fb, w["feedback"]["kernel"])
    np.testing.assert_allclose(h.numpy(), ct.elu(0.7006567 * o_hat), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), h.numpy())
    np.testing.assert_allclose(
        s.numpy(), ct.elu(0.7006567 * ct.conv2d_same(xe, w["input_to_cell"]["kernel"])), rtol=1e-10, atol=1e-12
    )


def test_kernels_clipped_to_the_map():
    cell = RGC.median(8, residual_channels=8, cell_depth=4)
    cell.build((None, 4, 4, 8))  # conv10's 7x7 DS convs on a 4x4 map
    assert tuple(cell.affines["tau_out"].depthwise_kernel.shape) == (4, 4, 8, 1)
    assert tuple(cell.affines["gate_cell"].depthwise_kernel.shape) == (4, 4, 8, 1)
    assert tuple(cell.affines["input_to_cell"].kernel.shape) == (2, 2, 8, 4)


def _output_and_cell(out):
    """h_t plus the channel sum of s_t: x -> cell and the cell tau reach h only at the next step."""
    h, (s, _) = out
    return h + tf.reduce_sum(s, axis=-1, keepdims=True)


def test_harness():
    x = tf.random.normal((2, 6, 6, 4))
    states = [tf.random.normal((2, 6, 6, 3)), tf.random.normal((2, 6, 6, 4))]
    layer_testing.run_layer_test(
        RGC,
        {
            "filters": 4,
            "cell_depth": 3,
            "residual_channels": 5,
            "feedback_channels": 2,
            "input_to_out": True,
            "out_residual": True,
            "tau_depth_separable": True,
            "use_bias": {"tau_cell": True},
            "weight_decay": 1e-3,
        },  # fmt: skip
        (x, states, tf.random.normal((2, 6, 6, 2)), tf.random.normal((2, 6, 6, 5))),
        # kernels of feedback, input_to_cell, gate_cell, input_to_out, gate_out, projection (6) + tau_cell dw, pw,
        # bias (3) + tau_out dw, pw (2)
        expected_output_shape=(2, 6, 6, 4),
        expected_num_trainable_weights=11,
        output_fn=_output_and_cell,
    )


def test_harness_median_preset():
    config = RGC.median(4, residual_channels=3, feedback_channels=5, cell_depth=6).get_config()
    states = [tf.random.normal((2, 6, 6, 6)), tf.random.normal((2, 6, 6, 4))]
    layer_testing.run_layer_test(
        RGC,
        config,
        (tf.random.normal((2, 6, 6, 4)), states, tf.random.normal((2, 6, 6, 5)), tf.random.normal((2, 6, 6, 3))),
        expected_output_shape=(2, 6, 6, 4),
        expected_num_trainable_weights=19,  # 2 + 2 + 3 + 3 + 2 + 3 (gate_out) + 1 (projection) + 3 (tau_out)
        output_fn=_output_and_cell,
    )


def _count(cell, c_in, size):
    cell.build((None, size, size, c_in))
    return cell.count_params()


def test_parameter_counts_median():
    # Spec 11.2, per cell layer (Cin -> C, cell depth 64; the pre-conv 9 Cin C + C belongs to the node):
    #   input->cell 4*C*64 + 64; cell-tau DS 49*64 + 64^2 + 64; cell-gate DS 49*C + 64*C + 64; in->out 9 C^2 + C;
    #   projection Cin*C if Cin != C; out-tau DS 49*C + C^2 + C; out-gate DS 49*64 + 64*C + C; feedback Cfb*C + C.
    # conv4 (Cin = C = 128): 32,832 + 7,296 + 14,528 + 147,584 + 22,784 + 11,456 = 236,480 = 384,064 - 147,584.
    # conv6 (Cin 128, C 256, Cfb 768): 65,600 + 7,296 + 28,992 + 590,080 + 32,768 + 78,336 + 19,776 + 196,864
    #   = 1,019,712 = 1,314,880 - pre-conv 295,168.
    layers = [  # (C, Cin = residual, Cfb, map) for conv4..conv10 (spec 3.4 depths, feedback edges of 3.1)
        (128, 128, None, 56), (128, 128, 256, 28), (256, 128, 768, 28), (256, 256, 512, 14),
        (256, 256, None, 7), (512, 256, 512, 7), (512, 512, None, 7),
    ]  # fmt: skip
    counts = [
        _count(RGC.median(c, residual_channels=cin, feedback_channels=fb), c, size) for c, cin, fb, size in layers
    ]
    assert counts[0] == 236_480 and counts[2] == 1_019_712
    # Spec per-layer totals minus the pre-convs: 384,064 - 147,584; 416,960 - 147,584; 1,314,880 - 295,168;
    # 1,511,488 - 590,080; 1,380,160 - 590,080; 4,454,208 - 1,180,160; 5,240,128 - 2,359,808.
    assert counts == [236_480, 269_376, 1_019_712, 921_408, 790_080, 3_274_048, 2_880_320]
    # Whole model 15,445,800 - conv1/2/3 + readout (9,472 + 73,856 + 147,584 + 513,000) - pre-convs 5,310,464.
    assert sum(counts) == 15_445_800 - 743_912 - 5_310_464


def test_parameter_counts_shallow():
    # Spec 11.2: five 3x3 [C -> C] convs without bias + a 3x3 [Cin -> C] residual gate conv.
    # conv3 (Cin 128, C 256): 5*9*256^2 + 9*128*256 = 2,949,120 + 294,912 = 3,244,032
    # conv4 (Cin 256, C 256): 6*9*256^2 = 3,538,944; conv5 (Cin 256, C 512): 5*9*512^2 + 9*256*512 = 12,976,128
    # sum 19,759,104 = rgc shallow 23,956,840 - FF 4,197,736.
    counts = [
        _count(RGC.shallow(c, residual_channels=cin), c, s)
        for c, cin, s in ((256, 128, 28), (256, 256, 14), (512, 256, 7))
    ]
    assert counts == [3_244_032, 3_538_944, 12_976_128]
    assert sum(counts) == 23_956_840 - 4_197_736


def test_xla_and_mixed_bfloat16():
    for case in ("median", "input_feedback_cell_to_out"):
        spec = CASES[case]
        x_shape = (2, 8, 8, spec["x_channels"])
        ct.check_xla_step(spec["make"](), x_shape, spec["extra"])
        ct.check_mixed_bfloat16(spec["make"], x_shape, spec["extra"])


def test_bad_inputs():
    cell = RGC.median(4, residual_channels=3, feedback_channels=5)
    cell.build((None, 8, 8, 4))
    x, states = tf.zeros((2, 8, 8, 4)), cell.get_initial_state(2)
    fb, res = tf.zeros((2, 8, 8, 5)), tf.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"`residual` must be \(b, 8, 8, 3\).*received shape \(2, 8, 8, 4\)"):
        cell(x, states, feedback=fb, residual=tf.zeros((2, 8, 8, 4)))
    with pytest.raises(ValueError, match="`residual` must be"):
        cell(x, states, feedback=fb, residual=tf.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="declares feedback_channels=5 but received feedback=None"):
        cell(x, states, residual=res)
    plain = RGC.median(4, residual_channels=3)
    plain.build((None, 8, 8, 4))
    with pytest.raises(ValueError, match="built without feedback_channels"):
        plain(x, states, feedback=fb, residual=res)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"out_residual": True}, "out_residual read"),
        ({"residual_to_out_gate": True, "cell_residual": True}, "cell_residual, residual_to_out_gate"),
        ({"feedback_entry": "gate"}, "feedback_entry must be one of"),
        ({"gate_nonlinearity": "softsign2"}, "softsign2"),
        ({"use_bias": {"tau": True}}, "unknown keys"),
        ({"use_bias": {"residual_projection": True}}, "never"),
        ({"use_bias": "yes"}, "use_bias must be"),
        ({"tau_filter_size": -1}, "tau_filter_size"),
        ({"cell_depth": 0}, "cell_depth"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RGC(4, **kwargs)


def test_identity_sum_needs_matching_depths():
    with pytest.raises(ValueError, match="input_to_out=False means o\\^ = x"):
        RGC(4).build((None, 8, 8, 3))
    with pytest.raises(ValueError, match="'residual_to_out_tau' is an identity sum"):
        RGC(4, residual_channels=3, residual_to_out_tau=True, tau_filter_size=0).build((None, 8, 8, 4))
