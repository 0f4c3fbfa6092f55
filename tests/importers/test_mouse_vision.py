"""The mouse-vision importer on `.pt` files fabricated in the released layout (keys from the reference architectures,
written out below independently of the importer's name table), and, where PyTorch is installed, against PyTorch
forward passes of the same weights (tests/importers/torch_mouse_models.py)."""

import collections
import os

import numpy as np
import pytest

from goaldriven.importers import common, mouse_vision
from tests.importers import fabricate_pt

STREAMS = {1: ["ventral"], 2: ["ventral", "dorsal"], 6: ["VISl", "VISrl", "VISal", "VISli", "VISpm", "VISpl"]}
IMAGE = 64
CASES = ("dual_stream_ir", "six_stream_simclr", "alexnet_bn_ir", "single_stream_supervised")


def _conv_bn(keys, prefix, i, cin, cout, k):
    keys[f"{prefix}.{i}.weight"], keys[f"{prefix}.{i}.bias"] = (cout, cin, k, k), (cout,)
    for stat in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{prefix}.{i + 1}.{stat}"] = (cout,)
    keys[f"{prefix}.{i + 1}.num_batches_tracked"] = ()


def streamnet_keys(streams: int, classes: int | None) -> dict:
    """The reference MultiStreamMouseNet's state_dict {key: shape} (BN, visp_3x3)."""
    keys: dict = collections.OrderedDict()
    _conv_bn(keys, "model_layers.input_VISp", 0, 3, 64, 11)
    deep = ["VISpor"] if streams == 1 else ["VISpor", "VISam"]
    for s in STREAMS[streams]:
        _conv_bn(keys, f"model_layers.VISp_{s}", 0, 64, 192, 5)
        _conv_bn(keys, f"model_layers.VISp_{s}", 4, 192, 384, 3)
    for area in deep:
        _conv_bn(keys, f"model_layers.VISp_{area}", 0, 64, 256, 3)
    for s in STREAMS[streams]:
        for area in deep:
            _conv_bn(keys, f"model_layers.{s}_{area}", 0, 384, 256, 3)
    if classes:
        keys["classifier.2.weight"], keys["classifier.2.bias"] = (classes, len(deep) * 256 * 36), (classes,)
    return keys


def alexnet_bn_keys() -> dict:
    keys: dict = collections.OrderedDict()
    for i, cin, cout, k in ((0, 3, 64, 11), (4, 64, 192, 5), (8, 192, 384, 3), (11, 384, 256, 3), (14, 256, 256, 3)):
        _conv_bn(keys, "features", i, cin, cout, k)
    for i, cin in ((1, 9216), (5, 4096)):
        keys[f"classifier.{i}.weight"], keys[f"classifier.{i}.bias"] = (4096, cin), (4096,)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            keys[f"classifier.{i + 1}.{stat}"] = (4096,)
        keys[f"classifier.{i + 1}.num_batches_tracked"] = ()
    return keys


def release_layout(name: str) -> dict:
    """{section: {key: shape}} of release `name`."""
    if name == "alexnet_bn_ir":
        return {"model_state_dict": alexnet_bn_keys(), "embedding_func": {"weight": (128, 4096), "bias": (128,)}}
    streams = {"single": 1, "dual": 2, "six": 6}[name.split("_")[0]]
    width = (256 if streams == 1 else 512) * 36
    if name.endswith("_supervised"):
        return {"model_state_dict": streamnet_keys(streams, 1000)}
    backbone = streamnet_keys(streams, None)
    if name.endswith("_ir"):
        return {"model_state_dict": backbone, "embedding_func": {"weight": (128, width), "bias": (128,)}}
    neck = {"fc0.weight": (2048, width), "fc1.weight": (128, 2048)}
    for bn, n in (("bn0", 2048), ("bn1", 128)):
        neck.update({f"{bn}.{s}": (n,) for s in ("weight", "bias", "running_mean", "running_var")})
        neck[f"{bn}.num_batches_tracked"] = ()
    return {"model_state_dict": backbone, "neck_state_dict": neck}


def fabricate(
    name: str, path: str, seed: int = 0, prefix: str = "module.", bank_rows: int = 10, momentum: bool = False
) -> dict:
    """Random values in release `name`'s layout (DDP's `module.` prefix on the backbone), saved as the trainers do
    (IR: a memory bank of `bank_rows` x 128, 1,281,167 in the releases; `momentum`: the SGD optimizer's momentum
    buffer for every backbone tensor, as in the released files); returns {section: {key without prefix: array}}."""
    rng = np.random.default_rng(seed)
    values = {}
    for section, keys in release_layout(name).items():
        values[section] = {}
        for key, shape in keys.items():
            if key.endswith("num_batches_tracked"):
                values[section][key] = np.array(1000, np.int64)
            elif key.endswith("running_var"):
                values[section][key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            else:
                scale = np.float32(1.0 if len(shape) == 1 else float(np.prod(shape[1:])) ** -0.5)
                values[section][key] = rng.standard_normal(shape, dtype=np.float32) * scale
    saved = {
        section: collections.OrderedDict(
            ((prefix if section == "model_state_dict" else "") + k, v) for k, v in d.items()
        )
        for section, d in values.items()
    }
    parameters = [v for k, v in values["model_state_dict"].items() if not k.endswith(("running_mean", "running_var",
                  "num_batches_tracked"))] if momentum else []  # fmt: skip
    state = {i: {"momentum_buffer": np.zeros_like(v)} for i, v in enumerate(parameters)}
    extra = {
        "epoch": 199,
        "results": {"losses": [1.5, 1.2]},
        "optimizer": {"state": state, "param_groups": [{"lr": 0.1}]},
    }
    if name.endswith("_ir"):
        extra["memory_bank"] = rng.standard_normal((bank_rows, 128), dtype=np.float32)
    fabricate_pt.save({**saved, **extra}, path)
    return values


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{name: (model, values, path)}: each case fabricated and imported once."""
    cache = {}

    def get(name):
        if name not in cache:
            path = str(tmp_path_factory.mktemp(name) / f"{name}.pt")
            values = fabricate(name, path, seed=len(cache))
            cache[name] = (mouse_vision.load_model(path, name), values, path)
        return cache[name]

    return get


def _by_path(model):
    return {v.path: v.numpy() for v in model.variables}


def _check_flattened_dense(kernel, weight, c, h=6, w=6):
    """kernel (Keras, rows in (H, W, C) order) computes what weight (PyTorch, columns in (C, H, W)) computes."""
    features = np.random.default_rng(1).normal(size=(c, h, w)).astype(np.float64)
    np.testing.assert_allclose(
        features.transpose(1, 2, 0).reshape(-1) @ kernel, weight.astype(np.float64) @ features.reshape(-1), rtol=1e-9,
        atol=1e-9,
    )  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_every_weight_equals_its_source(imported, name):
    model, values, _ = imported(name)
    weights = _by_path(model)
    state = values["model_state_dict"]
    if name.startswith(("dual", "six", "single")):
        streams = {"single": 1, "dual": 2, "six": 6}[name.split("_")[0]]
        base = "streamnet_" + name.split("_")[0]
        conv = lambda e, j: weights[f"{base}/encoder/{e}_conv{j}/kernel"]  # noqa: E731
        np.testing.assert_array_equal(
            conv("image_to_VISp", 0), state["model_layers.input_VISp.0.weight"].transpose(2, 3, 1, 0)
        )
        for s in STREAMS[streams]:
            np.testing.assert_array_equal(
                conv(f"VISp_to_{s}", 2), state[f"model_layers.VISp_{s}.4.weight"].transpose(2, 3, 1, 0)
            )
            np.testing.assert_array_equal(weights[f"{base}/encoder/VISp_to_{s}_bn2/moving_variance"],
                                          state[f"model_layers.VISp_{s}.5.running_var"])  # fmt: skip
            np.testing.assert_array_equal(weights[f"{base}/encoder/{s}_to_VISpor_bn0/gamma"],
                                          state[f"model_layers.{s}_VISpor.1.weight"])  # fmt: skip
        readout = weights[f"{base}/readout/kernel"]
        if name.endswith("_supervised"):
            _check_flattened_dense(readout, state["classifier.2.weight"], 256)
            np.testing.assert_array_equal(weights[f"{base}/readout/bias"], state["classifier.2.bias"])
        else:
            assert not readout.any()  # drop_final_fc: absent from the release, set to zero
    else:
        np.testing.assert_array_equal(
            weights["alexnet_bn/conv4/kernel"], state["features.11.weight"].transpose(2, 3, 1, 0)
        )
        np.testing.assert_array_equal(weights["alexnet_bn/conv5_bn/moving_mean"], state["features.15.running_mean"])
        _check_flattened_dense(weights["alexnet_bn/fc6/kernel"], state["classifier.1.weight"], 256)
        np.testing.assert_array_equal(weights["alexnet_bn/fc7/kernel"], state["classifier.5.weight"].T)
        np.testing.assert_array_equal(weights["alexnet_bn/fc7_bn/beta"], state["classifier.6.bias"])
    if name.endswith("_ir"):
        kernel, weight = weights["self_supervised/embedding/dense0/kernel"], values["embedding_func"]["weight"]
        if name.startswith("alexnet"):
            np.testing.assert_array_equal(kernel, weight.T)
        else:
            _check_flattened_dense(kernel, weight, 512)
        np.testing.assert_array_equal(
            weights["self_supervised/embedding/dense0/bias"], values["embedding_func"]["bias"]
        )
    if name.endswith("_simclr"):
        neck = values["neck_state_dict"]
        _check_flattened_dense(weights["self_supervised/projection/dense0/kernel"], neck["fc0.weight"], 512)
        np.testing.assert_array_equal(weights["self_supervised/projection/dense1/kernel"], neck["fc1.weight"].T)
        np.testing.assert_array_equal(weights["self_supervised/projection/bn1/beta"], neck["bn1.bias"])
        assert "self_supervised/projection/dense0/bias" not in weights  # the reference neck has no fc biases


def test_the_import_covers_every_weight_and_reports_what_it_ignored(imported):
    model, values, path = imported("dual_stream_ir")
    report = mouse_vision.assign(model, path, "dual_stream_ir")
    weights = [v for v in model.variables if "seed_generator" not in v.path]
    assert report.assigned == len(weights)
    assert report.zeroed == ("streamnet_dual/readout/bias", "streamnet_dual/readout/kernel")
    tracked = [k for k in values["model_state_dict"] if k.endswith("num_batches_tracked")]
    assert set(report.ignored) == {"epoch", "results", "optimizer", "memory_bank"} | {
        f"model_state_dict/{k}" for k in tracked
    }


def _edited(name, tmp_path, edit):
    path = str(tmp_path / f"{name}.pt")
    values = fabricate(name, path, prefix="")
    edit(values)
    fabricate_pt.save(values, path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda v: v["model_state_dict"].__setitem__(
                "model_layers.VISp_ventral.4.weightx", v["model_state_dict"].pop("model_layers.VISp_ventral.4.weight")
            ),
            "model_state_dict/model_layers.VISp_ventral.4.weightx",
        ),  # fmt: skip
        (
            lambda v: v["model_state_dict"].__setitem__(
                "model_layers.VISp_VISam.0.weight", np.zeros((256, 64, 5, 5), np.float32)
            ),
            "model_state_dict/model_layers.VISp_VISam.0.weight (256, 64, 5, 5) after OIHW -> HWIO",
        ),  # fmt: skip
        (
            lambda v: v["embedding_func"].__setitem__("weight", np.zeros((128, 9216), np.float32)),
            "embedding_func/weight (128, 9216)",
        ),
        (
            lambda v: v["model_state_dict"].__setitem__("classifier.2.weight", np.zeros((1000, 18432), np.float32)),
            "match no goaldriven weight: model_state_dict/classifier.2.weight",
        ),  # a supervised file as IR
    ],
)
def test_a_mismatching_file_names_the_variable_and_assigns_nothing(imported, tmp_path, edit, message):
    model, _, _ = imported("dual_stream_ir")
    before = _by_path(model)
    path = _edited("dual_stream_ir", tmp_path, edit)
    with pytest.raises(common.WeightImportError, match="does not match") as info:
        mouse_vision.assign(model, path, "dual_stream_ir")
    assert message in str(info.value)
    after = _by_path(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_wrong_release_name_and_bad_files_are_one_line_errors(imported, tmp_path):
    model, _, path = imported("dual_stream_ir")
    with pytest.raises(common.WeightImportError, match="has no neck_state_dict .*check --name"):
        mouse_vision.assign(model, path, "dual_stream_simclr")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        mouse_vision.assign(model, str(tmp_path), "dual_stream_ir")
    fabricate_pt.save({"state": {"w": np.zeros(2, np.float32)}, "epoch": 1}, str(tmp_path / "other.pt"))
    with pytest.raises(common.WeightImportError, match="has no model_state_dict .*state, epoch"):
        mouse_vision.assign(model, str(tmp_path / "other.pt"), "dual_stream_ir")
    with pytest.raises(ValueError, match="Shi et al. MouseNet"):
        mouse_vision.load_model(path, "shi_mousenet_ir")


def test_a_bare_state_dict_is_the_model_state_dict(tmp_path):
    values = fabricate("single_stream_supervised", str(tmp_path / "full.pt"))
    path = fabricate_pt.save(dict(values["model_state_dict"]), str(tmp_path / "bare.pt"))
    model = mouse_vision.load_model(path, "single_stream_supervised")
    np.testing.assert_array_equal(
        _by_path(model)["streamnet_single/readout/bias"], values["model_state_dict"]["classifier.2.bias"]
    )


def test_the_name_tables_cover_the_released_files():
    assert {"alexnet_bn_ir", "dual_stream_ir", "six_stream_simclr"} <= set(mouse_vision.RELEASED)
    assert "mouse-vision-ckpts" in mouse_vision.RELEASED["dual_stream_ir"].files
    assert mouse_vision.RELEASED["six_stream_simclr"].experiment == "experiments/simclr__streamnet_six.gin"
    for released in mouse_vision.RELEASED.values():
        assert os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", "gin", released.experiment))


def _torch_reference(name, values):
    """The PyTorch module(s) of release `name` holding the fabricated values (state_dict keys checked by torch)."""
    torch = pytest.importorskip("torch")
    from tests.importers import torch_mouse_models as tm  # noqa: PLC0415  # needs torch

    arch = name.split("_")[0]
    classes = 1000 if name.endswith("_supervised") else None
    backbone = (
        tm.AlexNetBN(classes) if arch == "alexnet" else tm.StreamNet({"single": 1, "dual": 2, "six": 6}[arch], classes)
    )
    state = lambda section: {k: torch.from_numpy(np.array(v)) for k, v in values[section].items()}  # noqa: E731
    backbone.load_state_dict(state("model_state_dict"), strict=True)
    head = None
    if name.endswith("_ir"):
        head = torch.nn.Linear(*values["embedding_func"]["weight"].shape[::-1])
        head.load_state_dict(state("embedding_func"), strict=True)
    elif name.endswith("_simclr"):
        head = tm.SimCLRNeck(values["neck_state_dict"]["fc0.weight"].shape[1])
        head.load_state_dict(state("neck_state_dict"), strict=True)
    return torch, backbone.eval(), head.eval() if head is not None else None


@pytest.mark.parametrize("name", CASES)
def test_outputs_equal_pytorch_forward_passes(imported, name):
    """The imported Keras model and PyTorch on the same weights agree to 1e-4 on random 64 x 64 images (eval mode)."""
    model, values, _ = imported(name)
    torch, backbone, head = _torch_reference(name, values)
    images = np.random.default_rng(3).normal(size=(2, IMAGE, IMAGE, 3)).astype(np.float32)
    ours = model(images, training=False)
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        logits, areas = backbone(x)
        if name.startswith("alexnet"):
            representation = logits  # drop_final_fc: the classifier ends at relu(BN(fc7))
            np.testing.assert_allclose(ours["features"]["fc7"].numpy(), representation.numpy(), atol=1e-4, rtol=1e-4)
        else:
            for area, value in areas.items():
                if area != "input":
                    expected = value.numpy().transpose(0, 2, 3, 1)
                    np.testing.assert_allclose(ours["features"][area].numpy(), expected, atol=1e-4, rtol=1e-4)
            representation = logits  # the flattened pool (C, H, W order) when there is no classifier
        if head is None:
            np.testing.assert_allclose(ours["logits"].numpy(), logits.numpy(), atol=1e-4, rtol=1e-4)
        else:
            key = "embedding" if name.endswith("_ir") else "projection"
            expected = head(representation).numpy()
            np.testing.assert_allclose(ours[key].numpy(), expected, atol=1e-4, rtol=1e-4)
            assert np.abs(expected).max() > 0.1  # not a vacuous comparison
