"""The mec importer: TF2 `ckpt-101` layouts (fabricate_tf2) -> goaldriven UGRNN path integrators, checked against the
release's values and against a NumPy implementation of the model's equations (spec B5.5)."""

import os

import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven.importers import common, mec
from tests.importers import fabricate_tf2 as fab

UNITS, CELLS = 16, 8
SUFFIX = fab.SUFFIX

# tf.train.list_variables of the reference model (mec/models/model.py UGRNN, Ng 16, Np 8) built under tf-keras 2.21
# (Keras 2) with the Keras 2 Adam (optimizers.legacy.Adam) after one training step, saved by
# tf.train.CheckpointManager(tf.train.Checkpoint(step, optimizer, net=model)).save(); recorded outside the test
# environment (tf-keras is not a dependency). CueUGRNN differs only in net/M/kernel and its slots: [7, 16].
TF_KERAS_KEYS = """
_CHECKPOINTABLE_OBJECT_GRAPH []
net/M/bias/.ATTRIBUTES/VARIABLE_VALUE [16]
net/M/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [16]
net/M/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [16]
net/M/kernel/.ATTRIBUTES/VARIABLE_VALUE [2, 16]
net/M/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [2, 16]
net/M/kernel/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [2, 16]
net/RNN/cell/bias/.ATTRIBUTES/VARIABLE_VALUE [32]
net/RNN/cell/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [32]
net/RNN/cell/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [32]
net/RNN/cell/weight/.ATTRIBUTES/VARIABLE_VALUE [32, 32]
net/RNN/cell/weight/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [32, 32]
net/RNN/cell/weight/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [32, 32]
net/decoder/bias/.ATTRIBUTES/VARIABLE_VALUE [8]
net/decoder/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [8]
net/decoder/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [8]
net/decoder/kernel/.ATTRIBUTES/VARIABLE_VALUE [16, 8]
net/decoder/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [16, 8]
net/decoder/kernel/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [16, 8]
net/dense/bias/.ATTRIBUTES/VARIABLE_VALUE [16]
net/dense/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [16]
net/dense/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [16]
net/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE [16, 16]
net/dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [16, 16]
net/dense/kernel/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [16, 16]
net/encoder/bias/.ATTRIBUTES/VARIABLE_VALUE [16]
net/encoder/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [16]
net/encoder/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [16]
net/encoder/kernel/.ATTRIBUTES/VARIABLE_VALUE [8, 16]
net/encoder/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE [8, 16]
net/encoder/kernel/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE [8, 16]
optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE []
optimizer/beta_2/.ATTRIBUTES/VARIABLE_VALUE []
optimizer/decay/.ATTRIBUTES/VARIABLE_VALUE []
optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE []
optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE []
save_counter/.ATTRIBUTES/VARIABLE_VALUE []
step/.ATTRIBUTES/VARIABLE_VALUE []
"""


def _tf_keras_layout(input_dim: int = 2) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for line in TF_KERAS_KEYS.strip().splitlines():
        key, shape = line.split(" ", 1)
        shape = tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())
        out.append((key, (input_dim, UNITS) if key.startswith("net/M/kernel/") else shape))
    return out


def _source(key: str, input_dim: int = 2) -> np.ndarray:
    return fab.value(key, fab.shapes(UNITS, CELLS, input_dim)[key])


def _numpy_forward(velocity, init_code, input_dim=2):
    """Spec B5.5.2-3 with the release's arrays: M, the UGRNN ([a_g, a_c] = W [x; h] + b, u = sigmoid(a_g + 1)), g,
    the decoder."""
    w = {k: _source(k, input_dim) for k in fab.shapes(UNITS, CELLS, input_dim)}
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    h = init_code @ w["net/encoder/kernel"] + w["net/encoder/bias"]
    gs, logits = [], []
    for t in range(velocity.shape[1]):
        x = velocity[:, t] @ w["net/M/kernel"] + w["net/M/bias"]
        pre = np.concatenate([x, h], axis=1) @ w["net/RNN/cell/weight"] + w["net/RNN/cell/bias"]
        a_g, a_c = pre[:, :UNITS], pre[:, UNITS:]
        u = 1.0 / (1.0 + np.exp(-(a_g + 1.0)))
        h = u * h + (1.0 - u) * relu(a_c)
        g = relu(h @ w["net/dense/kernel"] + w["net/dense/bias"])
        gs.append(g)
        logits.append(g @ w["net/decoder/kernel"] + w["net/decoder/bias"])
    return np.stack(gs, 1), np.stack(logits, 1)


@pytest.mark.parametrize("input_dim", [2, 7])
def test_the_fabricated_file_has_the_keras2_layout_in_two_shards(input_dim, tmp_path):
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, input_dim=input_dim)
    written = [(key, tuple(shape)) for key, shape in tf.train.list_variables(prefix)]
    assert written == _tf_keras_layout(input_dim)
    assert sorted(os.listdir(tmp_path / "ckpts")) == [
        "ckpt-101.data-00000-of-00002", "ckpt-101.data-00001-of-00002", "ckpt-101.index"
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["UGRNN_relu", "UGRNN_relu_reward", "CueUGRNN_relu"])
def test_a_release_loads_and_computes_the_models_equations(name, tmp_path):
    input_dim = mec.INPUT_DIMS[name]
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, input_dim=input_dim)
    model = mec.load_model(prefix, name, units=UNITS, place_cells=CELLS)
    weight = _source("net/RNN/cell/weight", input_dim)
    np.testing.assert_array_equal(model.cell.kernel.numpy(), weight[:UNITS])
    np.testing.assert_array_equal(model.cell.recurrent_kernel.numpy(), weight[UNITS:])
    np.testing.assert_array_equal(model.cell.bias.numpy(), _source("net/RNN/cell/bias", input_dim))
    for layer, key in ((model.encoder, "encoder"), (model.input_dense, "M"), (model.g_dense, "dense"),
                       (model.readout, "decoder")):  # fmt: skip
        np.testing.assert_array_equal(layer.kernel.numpy(), _source(f"net/{key}/kernel", input_dim))
        np.testing.assert_array_equal(layer.bias.numpy(), _source(f"net/{key}/bias", input_dim))
    rng = np.random.default_rng(1)
    velocity = rng.normal(size=(3, 4, input_dim)).astype(np.float32)
    init_code = rng.uniform(size=(3, CELLS)).astype(np.float32)
    out = model({"inputs": velocity, "init_code": init_code})
    g, logits = _numpy_forward(velocity, init_code, input_dim)
    np.testing.assert_allclose(out["features"]["g"].numpy(), g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"].numpy(), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["UGRNN_relu", "UGRNN_relu_reward", "CueUGRNN_relu"])
def test_the_released_experiment_builds_the_model_the_import_fills(name, tmp_path):
    input_dim = mec.INPUT_DIMS[name]
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, input_dim=input_dim)
    released = mec.RELEASED[name]
    bindings = [*released.bindings, f"UNITS = {UNITS}", f"N_PLACE_CELLS = {CELLS}"]
    cli_config.parse_gin_config([released.experiment], bindings, clear=True, check_bindings=False)
    try:
        task = cli_config.configured_task()
        model = task.build_model()
    finally:
        gin.clear_config()
    # The import's config selects the centres the release was trained with (the reference's TensorFlow draw).
    assert task.place_cells.centres_kind == "reference"
    np.testing.assert_array_equal(
        task.place_cells.centres, mec.release_place_cell_centres(2.2, n_cells=CELLS).astype(np.float32)
    )
    model({"inputs": np.zeros((1, 2, input_dim), np.float32), "init_code": np.zeros((1, CELLS), np.float32)})
    report = mec.assign(model, prefix, name)
    assert report.assigned == len(model.variables) == 11
    np.testing.assert_array_equal(model.input_dense.kernel.numpy(), _source("net/M/kernel", input_dim))
    net = {key + SUFFIX for key in fab.shapes(UNITS, CELLS, input_dim)}
    assert report.ignored == tuple(sorted(key for key, _ in _tf_keras_layout(input_dim) if key not in net))
    assert len(report.ignored) == 28  # 20 Adam slots, 5 optimizer scalars, step, save_counter, the object graph


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: {("net/dense/kernel_renamed" if k == "net/dense/kernel" else k): v for k, v in s.items()},
         "net/dense/kernel_renamed/.ATTRIBUTES/VARIABLE_VALUE"),
        (lambda s: {**s, "net/M/kernel": (3, UNITS)}, "net/M/kernel/.ATTRIBUTES/VARIABLE_VALUE (3, 16)"),
        (lambda s: {**s, "net/extra/kernel": (2,)}, "match no goaldriven weight: net/extra/kernel"),
    ],
)  # fmt: skip
def test_a_renamed_reshaped_or_extra_variable_is_named(edit, message, tmp_path):
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, edit=edit)
    with pytest.raises(common.WeightImportError) as info:
        mec.load_model(prefix, "UGRNN_relu", units=UNITS, place_cells=CELLS)
    assert message in str(info.value)


def test_a_cue_release_into_a_velocity_model_fails_naming_m(tmp_path):
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, input_dim=7)
    with pytest.raises(common.WeightImportError, match="net/M/kernel/.ATTRIBUTES/VARIABLE_VALUE"):
        mec.load_model(prefix, "UGRNN_relu", units=UNITS, place_cells=CELLS)


def test_a_wrong_path_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass the prefix .../ckpts/ckpt-101"):
        mec.load_model(str(tmp_path / "ckpts"), "UGRNN_relu", units=UNITS, place_cells=CELLS)


def test_the_release_place_cell_centres_are_the_references_draw():
    tf.random.set_seed(7)
    after_seven = tf.random.uniform((3,)).numpy()
    tf.random.set_seed(7)
    centres = mec.release_place_cell_centres(box_width=2.2, n_cells=512)
    np.testing.assert_array_equal(tf.random.uniform((3,)).numpy(), after_seven)  # the caller's seed stream untouched
    tf.random.set_seed(0)  # the reference (mec/models/place_cells.py), in eager mode
    usx = tf.random.uniform((512,), -1.1, 1.1, dtype=tf.float64)
    usy = tf.random.uniform((512,), -1.1, 1.1, dtype=tf.float64)
    np.testing.assert_array_equal(centres, np.stack([usx, usy], axis=-1))
    assert centres.shape == (512, 2) and np.abs(centres).max() <= 1.1 and np.unique(centres).size == 1024
    small = mec.release_place_cell_centres(box_width=1.0, n_cells=512)
    np.testing.assert_allclose(small, (centres + 1.1) / 2.2 - 0.5, atol=1e-12)  # the same draws, rescaled
