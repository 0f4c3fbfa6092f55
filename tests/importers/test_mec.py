"""The mec importer: TF2 `ckpt-101` layouts (fabricate_tf2) -> goaldriven UGRNN path integrators, checked against the
release's values and against a NumPy implementation of the model's equations (spec B5.5)."""

import numpy as np
import pytest

import gin
from goaldriven import cli_config
from goaldriven.importers import common, mec
from tests.importers import fabricate_tf2 as fab

UNITS, CELLS = 16, 8
SUFFIX = fab.SUFFIX


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


@pytest.mark.parametrize("name", ["UGRNN_relu", "CueUGRNN_relu"])
def test_a_release_loads_and_computes_the_models_equations(name, tmp_path):
    input_dim = mec.INPUT_DIMS[name]
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, input_dim=input_dim)
    model = mec.load_model(prefix, name, units=UNITS, place_cells=CELLS)
    weight = _source("net/RNN/cell/weight", input_dim)
    np.testing.assert_array_equal(model.cell.kernel.numpy(), weight[:UNITS])
    np.testing.assert_array_equal(model.cell.recurrent_kernel.numpy(), weight[UNITS:])
    np.testing.assert_array_equal(model.input_dense.kernel.numpy(), _source("net/M/kernel", input_dim))
    np.testing.assert_array_equal(model.readout.bias.numpy(), _source("net/decoder/bias", input_dim))
    rng = np.random.default_rng(1)
    velocity = rng.normal(size=(3, 4, input_dim)).astype(np.float32)
    init_code = rng.uniform(size=(3, CELLS)).astype(np.float32)
    out = model({"inputs": velocity, "init_code": init_code})
    g, logits = _numpy_forward(velocity, init_code, input_dim)
    np.testing.assert_allclose(out["features"]["g"].numpy(), g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"].numpy(), logits, rtol=1e-4, atol=1e-4)


def test_the_released_experiment_builds_the_model_the_import_fills(tmp_path):
    prefix = fab.write(str(tmp_path / "ckpts" / "ckpt-101"), units=UNITS, place_cells=CELLS, input_dim=7)
    released = mec.RELEASED["CueUGRNN_relu"]
    cli_config.parse_gin_config(
        [released.experiment], [f"UNITS = {UNITS}", f"N_PLACE_CELLS = {CELLS}"], clear=True, check_bindings=False
    )
    try:
        model = cli_config.configured_task().build_model()
    finally:
        gin.clear_config()
    report = mec.assign(model, prefix, "CueUGRNN_relu")
    assert report.assigned == len(model.variables) == 11
    assert report.ignored == tuple(sorted(["optimizer/iter" + SUFFIX, "optimizer/m" + SUFFIX, "step" + SUFFIX,
                                           "_CHECKPOINTABLE_OBJECT_GRAPH"]))  # fmt: skip


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


def test_a_wrong_path_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass the prefix .../ckpts/ckpt-101"):
        mec.load_model(str(tmp_path / "ckpts"), "UGRNN_relu", units=UNITS, place_cells=CELLS)
