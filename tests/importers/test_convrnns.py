"""The convrnns importer against the variable names and shapes of the 20 released TF1 graphs (convrnns_manifest.json)
and against TF1 Saver checkpoints fabricated in that layout (fabricate_tf1.py)."""

import os
import re
import shutil

import keras
import numpy as np
import pytest

import gin
from goaldriven import cli_config
from goaldriven.importers import common, convrnns, convrnns_names
from goaldriven.models import zoo
from tests.importers import fabricate_tf1 as fab

MANIFEST = fab.manifest()
NARROW = 16  # fabricated checkpoints of the fast tests: every channel count / 16 (zoo width_multiplier 1/16), 224 px
# One model of every cell family, both readouts and all three decoders.
REPRESENTATIVE = (
    "timedecay_intermediate",
    "simplernn_shallow",
    "gru_shallow",
    "lstm_shallow",
    "intersectionrnn_intermediate",
    "ugrnn_intermediate_t30_tmaxconf",
    "rgc_shallow",
    "rgc_intermediate_dthresh",
)

# The TF1 name of each goaldriven variable, restated here from the reference code (utils/main.py, cells.py,
# median_rgcell.py, decoders.py) independently of convrnns_names.py: (regex on the path without the model name,
# TF1 name template; {cell} is the family's TF1 cell class; a Keras `kernel` is a TF1 `weights`).
CELL_CLASS = {
    "simplernn": "ConvNormBasicCell",
    "gru": "ConvGRUCell",
    "lstm": "ConvLSTMCell",
    "ugrnn": "ConvUGRNNCell",
    "intersectionrnn": "ConvIntersectionRNNCell",
    "rgc": "ReciprocalGateCell",
}
RULES = [
    (r"(conv\d+)/pre_conv/kernel", r"\1/pre_0/weights_basenet"),
    (r"(conv\d+)/pre_conv/bias", r"\1/pre_0/bias"),
    (r"(conv\d+)/post_conv/kernel", r"\1/post_0/weights"),
    (r"(conv\d+)/post_conv/bias", r"\1/post_0/bias"),
    (r"(conv\d+)/projection/kernel", r"\1/post_1/residual_add_weights"),
    (r"(conv\d+)/conv\d+_cell/tau", r"\1/memory_decay"),
    (r"(conv\d+)/conv\d+_cell/conv/kernel", r"\1/{cell}/weights"),
    (r"(conv\d+)/conv\d+_cell/conv/bias", r"\1/{cell}/bias"),
    (r"(conv\d+)/conv\d+_cell/gates/kernel", r"\1/{cell}/{gates}weights"),
    (r"(conv\d+)/conv\d+_cell/gates/bias", r"\1/{cell}/{gates}bias"),
    (r"(conv\d+)/conv\d+_cell/candidate/(kernel|bias)", r"\1/{cell}/candidates/\2"),
    (r"(conv\d+)/conv\d+_cell/layer_norm_i/(gamma|beta)", r"\1/{cell}/input/\2"),
    (r"(conv\d+)/conv\d+_cell/layer_norm_j/(gamma|beta)", r"\1/{cell}/transform/\2"),
    (r"(conv\d+)/conv\d+_cell/layer_norm_f/(gamma|beta)", r"\1/{cell}/forget/\2"),
    (r"(conv\d+)/conv\d+_cell/layer_norm_o/(gamma|beta)", r"\1/{cell}/output/\2"),
    (r"(conv\d+)/conv\d+_cell/layer_norm_state/(gamma|beta)", r"\1/{cell}/state/\2"),
    (r"(conv\d+)/conv\d+_cell/peephole_(.)", r"\1/{cell}/peepholes/w_\2_diag"),
    (r"(conv\d+)/conv\d+_cell/input_conv/(kernel|bias)", r"\1/{cell}/i/\2"),
    (r"(conv\d+)/conv\d+_cell/state_conv/(kernel|bias)", r"\1/{cell}/s/\2"),
    (r"(conv\d+)/conv\d+_cell/layer_norm/(gamma|beta)", r"\1/{cell}/layer_norm/\2"),
    # rgc_shallow (cells.py::ReciprocalGateCell: regular convs without bias, `<scope>/weights`)
    (r"(conv\d+)/conv\d+_cell/input_to_cell/kernel", r"\1/{cell}/cell/input_to_cell{sep}weights"),
    (r"(conv\d+)/conv\d+_cell/input_to_cell/bias", r"\1/{cell}/cell/input_to_cell_bias"),
    (r"(conv\d+)/conv\d+_cell/tau_cell/kernel", r"\1/{cell}/cell/tau/weights"),
    (r"(conv\d+)/conv\d+_cell/gate_cell/kernel", r"\1/{cell}/cell/gate/weights"),
    (r"(conv\d+)/conv\d+_cell/gate_out/kernel", r"\1/{cell}/out/gate/weights"),
    (r"(conv\d+)/conv\d+_cell/tau_out/kernel", r"\1/{cell}/out/tau/weights"),
    (r"(conv\d+)/conv\d+_cell/residual_to_out_gate/kernel", r"\1/{cell}/out/residual_to_out_gate/weights"),
    # RGC Median (median_rgcell.py: depth-separable `<scope>/{depthwise,pointwise}_weights, bias`, `<scope>_weights`)
    (r"(conv\d+)/conv\d+_cell/tau_cell/(depthwise|pointwise)_kernel", r"\1/{cell}/cell/tau/\2_weights"),
    (r"(conv\d+)/conv\d+_cell/tau_cell/bias", r"\1/{cell}/cell/tau/bias"),
    (r"(conv\d+)/conv\d+_cell/gate_cell/(depthwise|pointwise)_kernel", r"\1/{cell}/cell/out_to_cell/\2_weights"),
    (r"(conv\d+)/conv\d+_cell/gate_cell/bias", r"\1/{cell}/cell/out_to_cell/bias"),
    (r"(conv\d+)/conv\d+_cell/input_to_out/kernel", r"\1/{cell}/out/input_to_out_weights"),
    (r"(conv\d+)/conv\d+_cell/input_to_out/bias", r"\1/{cell}/out/input_to_out_bias"),
    (r"(conv\d+)/conv\d+_cell/gate_out/(depthwise|pointwise)_kernel", r"\1/{cell}/out/gate/\2_weights"),
    (r"(conv\d+)/conv\d+_cell/gate_out/bias", r"\1/{cell}/out/gate/bias"),
    (r"(conv\d+)/conv\d+_cell/tau_out/(depthwise|pointwise)_kernel", r"\1/{cell}/out/tau/\2_weights"),
    (r"(conv\d+)/conv\d+_cell/tau_out/bias", r"\1/{cell}/out/tau/bias"),
    (r"(conv\d+)/conv\d+_cell/residual_projection/kernel", r"\1/{cell}/out/residual_add_weights"),
    (r"(conv\d+)/conv\d+_cell/feedback/kernel", r"\1/{cell}/out/feedback_to_out_weights"),
    (r"(conv\d+)/conv\d+_cell/feedback/bias", r"\1/{cell}/out/feedback_to_out_bias"),
    (r"imnetds/conv/(kernel|bias)", r"imnetds/pre_1/\1"),
    (r"imnetds/fc/kernel", r"imnetds/pre_3/weights"),
    (r"imnetds/fc/bias", r"imnetds/pre_3/bias"),
    (r"beta", r"normalize/softmax_beta"),
]


def expected_key(name: str, path: str) -> str:
    """The TF1 name the reference gives the goaldriven variable `path` of model `name` (RULES)."""
    family = name.split("_")[0]
    local = path.split("/", 1)[1]
    for pattern, template in RULES:
        if re.fullmatch(pattern, local):
            fields = {"cell": CELL_CLASS.get(family, ""), "gates": "" if family == "lstm" else "gates/"}
            fields["sep"] = "/" if name == "rgc_shallow" else "_"
            key = re.sub(r"/kernel$", "/weights", re.sub(pattern, template, local))  # TF1 `weights`
            return "tnn_model/" + key.replace("{cell}", fields["cell"]).replace("{gates}", fields["gates"]).replace(
                "{sep}", fields["sep"]
            )
    raise AssertionError(f"no rule for {path}")


def _shape(value):
    return tuple(np.asarray(value).shape)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_release_maps_onto_its_zoo_model_at_224px(name):
    with keras.StatelessScope():  # variables with shapes and paths, no values: cheap even for 85 M parameters
        model = zoo.build_model(name)
    plan, constants = convrnns_names.plan(model)
    released = {key: (shape, trainable) for key, shape, trainable in MANIFEST[name]}
    variables = {v.path: v for v in model.variables}
    assert set(plan) == set(variables)  # every goaldriven weight has a source
    keys = [source.key for source in plan.values()]
    assert len(set(keys)) == len(keys)
    assert sorted(set(keys) | set(constants)) == sorted(released) and not set(keys) & set(constants)
    for path, source in plan.items():
        shape, trainable = released[source.key]
        assert source.key == expected_key(name, path)
        if source.convert is not None:
            shape = _shape(source.convert(np.zeros(shape, np.float32)))
        assert shape == tuple(variables[path].shape), path
        assert trainable == variables[path].trainable, path
    for key in constants:
        assert released[key] == ((1,), False), key  # goaldriven keeps only frozen scalars as constants


def test_released_table_names_every_file_and_experiment():
    assert sorted(convrnns.RELEASED) == sorted(MANIFEST) == sorted(convrnns.PUBLISHED_TOP1_TOP5)
    assert convrnns.PUBLISHED_TOP1_TOP5["rgc_intermediate"][0] == 73.0
    assert convrnns.PUBLISHED_TOP1_TOP5["ugrnn_shallow"][0] == 60.82
    for name, released in convrnns.RELEASED.items():
        assert released.family == "convrnns" and released.experiment == f"experiments/imagenet__{name}.gin"
        assert "bucket convrnnckpts" in released.files and f".../{name}/model.ckpt" in released.files
        try:  # the experiment builds the zoo model at 224 px, full width, 1000 classes, backprop
            cli_config.parse_gin_config([released.experiment], released.bindings, clear=True)
            macros = {m: gin.query_parameter(f"{m}/macro.value") for m in ("MODEL", "IMAGE_SIZE", "NUM_CLASSES")}
            assert macros == {"MODEL": name, "IMAGE_SIZE": 224, "NUM_CLASSES": 1000}
            assert gin.query_parameter("WIDTH_MULTIPLIER/macro.value") == 1.0
            assert gin.query_parameter("LEARNING_RULE/macro.value") is None
        finally:
            gin.clear_config()


@pytest.mark.parametrize(
    "name", ["ugrnn_shallow", "lstm_shallow", "ugrnn_intermediate_t30_dthresh", "rgc_intermediate_t22_tmaxconf"]
)
def test_experiment_builds_the_zoo_model(name):
    released = convrnns.RELEASED[name]
    try:
        cli_config.parse_gin_config([released.experiment], released.bindings, clear=True)
        with keras.StatelessScope():
            built = cli_config.configured_task().build_model()
    finally:
        gin.clear_config()
    with keras.StatelessScope():
        reference = zoo.build_model(name)
    assert [(v.path, tuple(v.shape), v.trainable) for v in built.variables] == [
        (v.path, tuple(v.shape), v.trainable) for v in reference.variables
    ]
    assert (built.times, built.image_off, built.decoder) == (reference.times, reference.image_off, reference.decoder)


def _narrow_checkpoint(directory, name, **kwargs):
    return fab.write(os.path.join(directory, name, "model.ckpt"), fab.narrowed(MANIFEST[name], NARROW), **kwargs)


def _assert_all_from_file(model, name, seed=0):
    """Every variable equals the value fabricate_tf1 wrote under its reference name (RULES), reshaped [1] -> ()."""
    released = {key: (shape, trainable) for key, shape, trainable in fab.narrowed(MANIFEST[name], NARROW)}
    used = set()
    for variable in model.variables:
        key = expected_key(name, variable.path)
        shape, trainable = released[key]
        written = fab.value(key, shape, trainable, seed)
        np.testing.assert_array_equal(np.asarray(variable), written.reshape(tuple(variable.shape)), err_msg=key)
        used.add(key)
    frozen = {key for key, (_, trainable) in released.items() if not trainable}
    assert used | frozen == set(released)


@pytest.fixture(scope="module")
def narrow_files(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("convrnns"))
    return {name: _narrow_checkpoint(directory, name) for name in REPRESENTATIVE + ("ugrnn_shallow",)}


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_fabricated_release_loads_every_weight(name, narrow_files):
    model = convrnns.load_model(narrow_files[name], name, width_multiplier=1 / NARROW)
    _assert_all_from_file(model, name)


def test_experiment_model_loads_and_runs(narrow_files):
    name = "ugrnn_shallow"
    released = convrnns.RELEASED[name]
    try:
        cli_config.parse_gin_config(
            [released.experiment], [*released.bindings, f"WIDTH_MULTIPLIER = {1 / NARROW}"], clear=True
        )
        model = cli_config.configured_task().build_model()
    finally:
        gin.clear_config()
    images = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    model(np.zeros_like(images))
    report = convrnns.assign(model, narrow_files[name], name)
    _assert_all_from_file(model, name)
    assert report.assigned == len(model.variables) and report.parameters == model.count_params()
    assert len(report.ignored) == 1 + sum(trainable for _, _, trainable in MANIFEST[name])  # slots and global_step
    # conv1 at t = 0 (the image's first node): maxpool(ELU(conv7x7/2 SAME(x) + b)) with the file's weights, in NumPy.
    kernel = fab.value("tnn_model/conv1/pre_0/weights_basenet", (7, 7, 3, 64 // NARROW), True)
    bias = fab.value("tnn_model/conv1/pre_0/bias", (64 // NARROW,), True)
    padded = np.pad(images[0].astype(np.float64), ((2, 3), (2, 3), (0, 0)))  # SAME for 7x7 stride 2 on 224
    windows = np.lib.stride_tricks.sliding_window_view(padded, (7, 7), axis=(0, 1))[::2, ::2]  # (112, 112, 3, 7, 7)
    pre = np.einsum("hwcij,ijco->hwo", windows, kernel) + bias
    elu = np.where(pre > 0, pre, np.expm1(pre))
    expected = elu.reshape(56, 2, 56, 2, -1).max(axis=(1, 3))
    out = model(images, feature_layers=["conv1"])["features"]["conv1"]
    np.testing.assert_allclose(np.asarray(out)[0, 0], expected, rtol=1e-4, atol=1e-5)


def _write_variant(tmp_path, name, edit=lambda entries: entries, **kwargs):
    return fab.write(str(tmp_path / "variant" / "model.ckpt"), edit(fab.narrowed(MANIFEST[name], NARROW)), **kwargs)


def _failure(prefix, name, match):
    model = zoo.build_model(name, width_multiplier=1 / NARROW)
    before = [np.asarray(v).copy() for v in model.variables]
    with pytest.raises(common.WeightImportError, match=match):
        convrnns.assign(model, prefix, name)
    assert all(np.array_equal(a, np.asarray(v)) for a, v in zip(before, model.variables))  # nothing assigned


def test_renamed_variable_fails_naming_it(tmp_path):
    key = "tnn_model/conv4/ConvUGRNNCell/weights"

    def rename(entries):
        return [(k.replace(key, key + "_renamed"), s, t) for k, s, t in entries]

    _failure(
        _write_variant(tmp_path, "ugrnn_shallow", rename),
        "ugrnn_shallow",
        f"missing from the file.*{key} .*{key}_renamed",
    )


def test_reshaped_variable_fails_naming_it(tmp_path):
    key = "tnn_model/conv5/pre_0/bias"

    def reshape(entries):
        return [(k, (s[0] + 1,) if k == key else s, t) for k, s, t in entries]

    _failure(_write_variant(tmp_path, "ugrnn_shallow", reshape), "ugrnn_shallow", f"shape mismatches: {key} \\(33,\\)")


def test_unknown_extra_variable_fails(tmp_path):
    def extra(entries):
        return [*entries, ("tnn_model/conv6/pre_0/bias", (8,), True)]

    _failure(
        _write_variant(tmp_path, "ugrnn_shallow", extra),
        "ugrnn_shallow",
        "match no goaldriven weight: tnn_model/conv6/pre_0/bias",
    )


def test_missing_momentum_slots_are_fine(tmp_path):
    prefix = _write_variant(tmp_path, "ugrnn_shallow", momentum=False)
    _assert_all_from_file(convrnns.load_model(prefix, "ugrnn_shallow", width_multiplier=1 / NARROW), "ugrnn_shallow")


@pytest.mark.parametrize(
    "name,key,value",
    [
        ("ugrnn_shallow", "tnn_model/conv2/memory_decay", 0.25),  # a feedforward node's frozen decay
        ("ugrnn_shallow", "tnn_model/imnetds/memory_decay", -1.0),
        ("ugrnn_intermediate_t30_dthresh", "tnn_model/decoder_threshold", 0.5),
        ("ugrnn_intermediate_t30_dthresh", "tnn_model/normalize/softmax_beta", 2.0),
        ("ugrnn_intermediate_t30_tmaxconf", "tnn_model/probs/softmax_beta", 0.5),
    ],
)
def test_frozen_scalar_away_from_the_model_constant_fails(tmp_path, name, key, value):
    prefix = _write_variant(tmp_path, name, values={key: np.full((1,), value)})
    _failure(prefix, name, f"{re.escape(key)} is \\[{value}\\]")


def test_checkpoint_of_another_decoder_fails(tmp_path, narrow_files):
    _failure(narrow_files["ugrnn_intermediate_t30_tmaxconf"], "ugrnn_intermediate_t30", "softmax_beta")
    prefix = _write_variant(tmp_path, "ugrnn_intermediate_t30")
    _failure(prefix, "ugrnn_intermediate_t30_dthresh", "missing from the file.*decoder_threshold")


def test_paths_that_are_not_a_prefix_fail_with_the_fix(tmp_path, narrow_files):
    prefix = narrow_files["ugrnn_shallow"]
    folder = os.path.dirname(prefix)
    with pytest.raises(FileNotFoundError, match=f"is a folder.*it holds {re.escape(prefix)}"):
        convrnns.load_model(folder, "ugrnn_shallow")
    with pytest.raises(FileNotFoundError, match=f"pass its prefix {re.escape(prefix)}$"):
        convrnns.load_model(prefix + ".index", "ugrnn_shallow")
    with pytest.raises(FileNotFoundError, match="does not exist.*get_checkpoints.sh"):
        convrnns.load_model(str(tmp_path / "nothing" / "model.ckpt"), "ugrnn_shallow")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(prefix + ".index", partial / "model.ckpt.index")
    with pytest.raises(FileNotFoundError, match="no .*model.ckpt.data-\\* file"):
        convrnns.load_model(str(partial / "model.ckpt"), "ugrnn_shallow")
    (partial / "model.ckpt.index").write_bytes(b"not a checkpoint")
    (partial / "model.ckpt.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(common.WeightImportError, match="is not a readable TF checkpoint"):
        convrnns.load_model(str(partial / "model.ckpt"), "ugrnn_shallow")


def test_lstm_opt_forget_biases_are_the_released_full_precision_values():
    model = zoo.build_model("lstm_shallow", width_multiplier=1 / NARROW)
    forget = [node.cell.forget_bias for node in model.graph_nodes if node.cell is not None]
    assert forget == [1.3561755203084322, 0.977962918535079, 0.9249280259963113]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_full_size_release_loads(name, tmp_path):
    prefix = fab.write(str(tmp_path / name / "model.ckpt"), MANIFEST[name])
    try:
        model = convrnns.load_model(prefix, name)
    finally:
        shutil.rmtree(tmp_path / name)  # up to 680 MB each (weights and Momentum slots)
    released = {key: (shape, trainable) for key, shape, trainable in MANIFEST[name]}
    for variable in model.variables:
        key = expected_key(name, variable.path)
        written = fab.value(key, *released[key])
        np.testing.assert_array_equal(np.asarray(variable), written.reshape(tuple(variable.shape)), err_msg=key)
