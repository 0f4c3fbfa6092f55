"""The torch-free `.pt` reader: values, lazy reads, refusing to run anything the file names, errors; and, where PyTorch
is installed, agreement with torch.save / torch.load both ways (which also checks the test fabricator's layout)."""

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from goaldriven.importers import torch_files
from tests.importers import fabricate_pt


def _sample():
    rng = np.random.default_rng(0)
    return {
        "model_state_dict": collections.OrderedDict(
            conv=rng.normal(size=(4, 3, 5, 5)).astype(np.float32),
            double=rng.normal(size=(3,)),
            steps=np.array(7, np.int64),
            empty=np.zeros((0, 2), np.float32),
            mask=np.array([True, False]),
            small=np.arange(6, dtype=np.int32).reshape(2, 3),
        ),
        "epoch": 12,
        "results": {"losses": [0.5, 0.25], "name": "ir"},
    }


def test_fabricated_files_read_back_exactly(tmp_path):
    saved = _sample()
    loaded = torch_files.load(fabricate_pt.save(saved, str(tmp_path / "a.pt")))
    assert loaded["epoch"] == 12 and loaded["results"] == saved["results"]
    assert list(loaded["model_state_dict"]) == list(saved["model_state_dict"])
    for key, value in saved["model_state_dict"].items():
        tensor = loaded["model_state_dict"][key]
        assert isinstance(tensor, torch_files.LazyTensor) and tensor.shape == value.shape
        got = torch_files.as_array(tensor)
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)


def test_nothing_the_file_names_is_imported_or_called(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = str(tmp_path / "evil.pt")
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("evil/data.pkl", pickle.dumps({"model_state_dict": {}, "payload": Payload()}, protocol=2))
    loaded = torch_files.load(path)
    assert not marker.exists()
    assert isinstance(loaded["payload"], torch_files.Opaque) and loaded["payload"].global_name.endswith(".system")


def test_tensors_are_read_only_when_asked_for(tmp_path):
    full = fabricate_pt.save(
        {"big": np.zeros((1000, 128), np.float32), "w": np.ones(3, np.float32)}, str(tmp_path / "b.pt")
    )
    path = str(tmp_path / "partial.pt")
    with zipfile.ZipFile(full) as source, zipfile.ZipFile(path, "w") as copy:
        for entry in source.namelist():
            if entry != "b/data/0":  # the big tensor's bytes are gone
                copy.writestr(entry, source.read(entry))
    loaded = torch_files.load(path)  # reading the object does not touch the storages
    np.testing.assert_array_equal(torch_files.as_array(loaded["w"]), np.ones(3, np.float32))
    with pytest.raises(torch_files.TorchFileError, match="lacks b/data/0; the file is truncated or corrupt"):
        torch_files.as_array(loaded["big"])


def test_bad_paths_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        torch_files.load(str(tmp_path / "missing.pt"))
    fabricate_pt.save({"w": np.ones(1, np.float32)}, str(tmp_path / "x.pt"))
    with pytest.raises(FileNotFoundError, match=r"is a folder: pass one \.pt file \(it holds x\.pt\)"):
        torch_files.load(str(tmp_path))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(torch_files.TorchFileError, match="junk.pt"):
        torch_files.load(str(tmp_path / "junk.pt"))
    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as zipped:
        zipped.writestr("readme.txt", "hello")
    with pytest.raises(torch_files.TorchFileError, match="not a torch.save file"):
        torch_files.load(str(tmp_path / "zip.pt"))


def test_agrees_with_pytorch_both_ways(tmp_path):
    torch = pytest.importorskip("torch")
    # PyTorch's files, with what trainers put in them: views on shared storages, parameters, half precision,
    # bfloat16 and a NumPy scalar in the results (which torch's own weights_only loading refuses).
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    saved = {
        "model_state_dict": collections.OrderedDict(
            w=base,
            transposed=base.t(),
            row=base[2],
            column=base[:, 3],
            weight=torch.nn.Parameter(torch.randn(3, 2)),
            half=torch.randn(5).half(),
            bf16=torch.randn(5).bfloat16(),
            count=torch.tensor(9),
        ),
        "results": {"acc": np.float64(0.25)},
    }
    path = str(tmp_path / "real.pt")
    torch.save(saved, path)
    loaded = torch_files.load(path)
    for key, value in saved["model_state_dict"].items():
        expected = value.detach().float().numpy() if value.dtype == torch.bfloat16 else value.detach().numpy()
        np.testing.assert_array_equal(torch_files.as_array(loaded["model_state_dict"][key]), expected)
    assert isinstance(loaded["results"]["acc"], torch_files.Opaque)

    fabricated = _sample()
    reread = torch.load(fabricate_pt.save(fabricated, str(tmp_path / "ours.pt")), weights_only=True)
    assert reread["results"] == fabricated["results"]
    for key, value in fabricated["model_state_dict"].items():
        np.testing.assert_array_equal(reread["model_state_dict"][key].numpy(), value)
