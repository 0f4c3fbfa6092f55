"""NeuralData: construction, derived arrays against NumPy, HDF5 round trip, every validation message, atomic writes."""

import os

import h5py
import numpy as np
import pytest

from goaldriven.neural_fits.data import neural_data as data_module
from goaldriven.neural_fits.data.neural_data import (
    NeuralData,
    NeuralDataError,
    load_neural_data,
    save_neural_data,
    validate,
)

# n: stimuli, u: units, t: time bins, r: trials


def make_data(**overrides):
    rng = np.random.default_rng(0)
    fields = dict(
        responses=rng.standard_normal((5, 4, 3, 6)).astype(np.float32),
        stimulus_ids=["s0", "s1", "s2", "s3", "s4"],
        unit_ids=["a/u0", "a/u1", "b/u0", "b/u1"],
        animal=["a", "a", "b", "b"],
        area=["V4", "IT", "V4", "IT"],
        time_bins_ms=[[70, 80], [80, 90], [100, 110]],
        stimuli=rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8),
        stimulus_labels=["cat", "dog", "cat", "dog", "cat"],
        presentation={"image_on_ms": 100.0, "trial_ms": 260, "normalization": "blank subtracted"},
        attrs={
            "note": "héllo",  # non-ASCII survives the UTF-8 strings
            "flag": True,
            "values": np.arange(3.0),
            "names": np.array(["x", "yz"]),
            "nested": {"depth": 2, "inner": {"ratio": 0.5}},
            "per_unit": {"snr": np.array([1.0, 2.0, 3.0, 4.0]), "tag": np.array(["p", "q", "r", "s"])},
        },
    )
    fields.update(overrides)
    return NeuralData(**fields)


def assert_tree_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_tree_equal(a[key], b[key])
        elif isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        else:
            assert type(a[key]) is type(b[key]) and a[key] == b[key], key


def test_round_trip_preserves_every_field(tmp_path):
    data = make_data()
    path = save_neural_data(tmp_path / "rec.h5", data)
    loaded = load_neural_data(path)
    assert loaded.responses.dtype == np.float32 and np.array_equal(loaded.responses, data.responses)
    for name in ("stimulus_ids", "unit_ids", "animal", "area", "stimulus_labels", "time_bins_ms", "stimuli"):
        original, back = getattr(data, name), getattr(loaded, name)
        assert back.dtype == original.dtype and np.array_equal(back, original), name
    assert loaded.has_trials is True and loaded.stimuli_path is None
    assert_tree_equal(loaded.presentation, data.presentation)
    assert_tree_equal(loaded.attrs, data.attrs)
    with h5py.File(path, "r") as f:  # compressed, chunked, plain (no pickled objects)
        assert f["responses"].compression == "gzip" and f["responses"].chunks is not None
        assert f.attrs["format_version"] == data_module.FORMAT_VERSION


def test_round_trip_trial_averaged_and_float_stimuli(tmp_path):
    rng = np.random.default_rng(1)
    data = make_data(responses=rng.random((5, 4, 3, 1)), stimuli=rng.random((5, 2, 2, 1)).astype(np.float32))
    assert data.has_trials is False and data.responses.dtype == np.float32
    loaded = load_neural_data(save_neural_data(tmp_path / "avg.h5", data))
    assert loaded.has_trials is False and np.array_equal(loaded.stimuli, data.stimuli)


def test_stimuli_path_resolves_against_the_data_file(tmp_path, monkeypatch):
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    np.save(tmp_path / "images.npy", images)
    data = make_data(stimuli=None, stimuli_path="images.npy", base_dir=str(tmp_path))
    save_neural_data(tmp_path / "rec.h5", data)
    monkeypatch.chdir(tmp_path.parent)  # the working directory no longer holds images.npy
    loaded = load_neural_data(tmp_path / "rec.h5")
    assert loaded.stimuli_path == "images.npy"
    assert np.array_equal(loaded.load_stimuli(), images)
    os.remove(tmp_path / "images.npy")
    with pytest.raises(NeuralDataError, match="images.npy.*does not exist"):
        load_neural_data(tmp_path / "rec.h5")


def test_stimuli_path_hdf5_count_mismatch(tmp_path):
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["stimuli"] = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    with pytest.raises(NeuralDataError, match="holds 4 images but responses has n = 5"):
        make_data(stimuli=None, stimuli_path=str(tmp_path / "images.h5"))


def test_derived_arrays_match_numpy():
    data = make_data()
    r = data.responses.astype(np.float64)
    np.testing.assert_allclose(data.trial_mean(), r.mean(axis=3), rtol=1e-6)
    np.testing.assert_allclose(data.time_window(70, 90), (r[:, :, 0] + r[:, :, 1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.time_window(0, 500), r.mean(axis=2), rtol=1e-5, atol=1e-6)
    assert data.time_window(70, 90).shape == (5, 4, 6)
    with pytest.raises(NeuralDataError, match="no time bin lies inside"):
        data.time_window(71, 79)
    assert (data.num_stimuli, data.num_units, data.num_time_bins, data.num_trials) == (5, 4, 3, 6)
    assert data.areas() == ["IT", "V4"] and data.animals() == ["a", "b"]


def test_select_units_subsets_units_and_per_unit_attrs():
    data = make_data()
    it = data.select_units(area="IT")
    assert it.unit_ids.tolist() == ["a/u1", "b/u1"]
    assert np.array_equal(it.responses, data.responses[:, [1, 3]])
    assert it.attrs["per_unit"]["snr"].tolist() == [2.0, 4.0] and it.attrs["names"].tolist() == ["x", "yz"]
    both = data.select_units(np.array([True, False, True, True]), area="V4", animal=["b"])
    assert both.unit_ids.tolist() == ["b/u0"]
    assert data.select_units([0, 3]).unit_ids.tolist() == ["a/u0", "b/u1"]
    with pytest.raises(NeuralDataError, match="unknown area"):
        data.select_units(area="MT")
    with pytest.raises(NeuralDataError, match="matched no units"):
        data.select_units(area="V4", animal="a", mask=[1])


def test_summary_names_sizes_areas_and_animals():
    text = make_data().summary()
    assert "5 stimuli x 4 units x 3 time bins (70-110 ms) x 6 trials" in text
    assert "IT (2), V4 (2)" in text and "a (2), b (2)" in text


def _responses_with(value, index=(2, 1, 0, 3)):
    responses = np.zeros((5, 4, 3, 6), dtype=np.float32)
    responses[index] = value
    return responses


def check_messages(cases):
    """Each (overrides, regex) case must raise NeuralDataError whose message matches the regex."""
    for overrides, message in cases:
        with pytest.raises(NeuralDataError, match=message):
            make_data(**overrides)


# One test per subject (not per case): conftest's per-test Keras teardown costs ~0.5 s on a loaded machine.
def test_validation_messages_responses():
    check_messages(
        [
            ({"responses": np.zeros((5, 4, 3))}, r"must be 4-D .* received 3-D shape \(5, 4, 3\)"),
            ({"responses": np.zeros((5, 4, 0, 6))}, "empty axis"),
            ({"responses": np.array([["a"]])}, "numeric NumPy array"),
            (
                {"responses": _responses_with(np.nan)},
                r"1 non-finite .*\[stimulus 2, unit 1, bin 0, trial 3\].*trials='min'",
            ),
            ({"responses": _responses_with(np.inf, (4, 3, 2, 5))}, r"\[stimulus 4, unit 3, bin 2, trial 5\]"),
        ]
    )


def test_validation_messages_ids_and_labels():
    check_messages(
        [
            (
                {"unit_ids": ["a", "b", "c"]},
                r"unit_ids: expected shape \(4,\) .* axis 1 \(units\) = 4; received shape \(3,\)",
            ),
            ({"stimulus_ids": ["s0", "s1"]}, r"stimulus_ids: expected shape \(5,\) .* axis 0 \(stimuli\)"),
            ({"animal": ["a"]}, r"animal: expected shape \(4,\)"),
            ({"area": ["V4", "IT", "V4", "IT", "V4"]}, r"area: expected shape \(4,\)"),
            ({"stimulus_labels": ["c"] * 4}, r"stimulus_labels: expected shape \(5,\)"),
            ({"unit_ids": ["u1", "u1", "u2", "u2"]}, "unit_ids must be unique; 2 id.*'u1', 'u2'"),
            ({"stimulus_ids": ["s", "s", "t", "u", "v"]}, "stimulus_ids must be unique; 1 id.*'s'"),
        ]
    )


def test_validation_messages_time_bins_and_trials():
    check_messages(
        [
            ({"time_bins_ms": [[0, 10], [10, 20]]}, r"time_bins_ms: expected shape \(3, 2\)"),
            ({"time_bins_ms": [[0, 10], [20, 30], [10, 20]]}, "must be sorted by start time; bin 2"),
            ({"time_bins_ms": [[0, 10], [5, 15], [20, 30]]}, "bins 0 .* and 1 .* overlap"),
            ({"time_bins_ms": [[0, 10], [10, 10], [20, 30]]}, r"bin 1 = \[10, 10\) has end <= start"),
            ({"time_bins_ms": [[0, np.nan], [10, 20], [20, 30]]}, "NaN/inf"),
            ({"has_trials": False}, "has_trials is False but responses has r = 6"),
        ]
    )


def test_validation_messages_stimuli():
    check_messages(
        [
            ({"stimuli": np.zeros((4, 2, 2, 3), np.uint8)}, "holds 4 images but responses has n = 5"),
            ({"stimuli": np.zeros((5, 2, 2), np.uint8)}, r"must be 4-D \(n, h, w, c\)"),
            ({"stimuli": np.zeros((5, 2, 2, 3), np.int32)}, "uint8 .* or float32 .* received dtype int32"),
            (
                {"stimuli": np.full((5, 2, 2, 3), 255.0, np.float32)},
                r"must lie in \[0, 1\]; received range \[255, 255\]",
            ),
            ({"stimuli_path": "x.npy"}, "both stimuli and stimuli_path"),
            (
                {"stimuli": None, "stimuli_path": "/nonexistent/x.npy"},
                "resolves to '/nonexistent/x.npy', which does not",
            ),
        ]
    )


def test_validation_messages_metadata():
    check_messages(
        [
            ({"attrs": {"missing": None}}, r"attrs\['missing'\]: a value of type NoneType cannot be stored"),
            ({"attrs": {"a/b": 1}}, "key 'a/b' must be a non-empty str without '/'"),
            ({"attrs": {"per_unit": {"snr": np.ones(3)}}}, r"per_unit'\]\['snr'\]: .* u = 4 .* received shape \(3,\)"),
            ({"presentation": "100 ms"}, "presentation must be a dict"),
        ]
    )


def test_validate_catches_changes_after_construction():
    data = make_data()
    validate(data)
    data.responses[0, 0, 0, 0] = np.nan
    with pytest.raises(NeuralDataError, match="1 non-finite"):
        validate(data)
    with pytest.raises(NeuralDataError, match="non-finite"):
        save_neural_data("never_written.h5", data)
    assert not os.path.exists("never_written.h5")


def test_overwrite_is_refused_unless_asked(tmp_path):
    path = tmp_path / "rec.h5"
    save_neural_data(path, make_data())
    replacement = make_data(responses=np.ones((5, 4, 3, 6), np.float32))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_neural_data(path, replacement)
    assert not np.all(load_neural_data(path).responses == 1)
    save_neural_data(path, replacement, overwrite=True)
    assert np.all(load_neural_data(path).responses == 1)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def explode(group, tree):
        raise RuntimeError("disk full")

    monkeypatch.setattr(data_module, "write_tree", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        save_neural_data(tmp_path / "new.h5", make_data())
    assert os.listdir(tmp_path) == []  # neither the target nor a temp file

    monkeypatch.undo()
    save_neural_data(tmp_path / "old.h5", make_data())
    monkeypatch.setattr(data_module, "write_tree", explode)
    with pytest.raises(RuntimeError):
        save_neural_data(tmp_path / "old.h5", make_data(responses=np.ones((5, 4, 3, 6))), overwrite=True)
    assert os.listdir(tmp_path) == ["old.h5"]
    monkeypatch.undo()
    np.testing.assert_array_equal(load_neural_data(tmp_path / "old.h5").responses, make_data().responses)


def write_minimal_file(path, version=1, skip=()):
    """A file written by hand with plain h5py, as docs/neural_data_format.md describes (fixed-length byte strings)."""
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = version
        fields = {
            "responses": np.arange(2 * 3 * 1 * 1, dtype=np.float32).reshape(2, 3, 1, 1),
            "stimulus_ids": np.array([b"im0", b"im1"]),
            "unit_ids": np.array([b"n0", b"n1", b"n2"]),
            "animal": np.array([b"m1", b"m1", b"m2"]),
            "area": np.array([b"IT", b"IT", b"IT"]),
            "time_bins_ms": np.array([[70.0, 170.0]]),
        }
        for name, value in fields.items():
            if name not in skip:
                f[name] = value


def test_hand_written_file_loads(tmp_path):
    write_minimal_file(tmp_path / "hand.h5")
    data = load_neural_data(tmp_path / "hand.h5")
    assert data.unit_ids.tolist() == ["n0", "n1", "n2"] and data.has_trials is False
    assert data.responses.shape == (2, 3, 1, 1) and data.presentation == {} and data.attrs == {}


def test_file_level_errors(tmp_path):
    write_minimal_file(tmp_path / "v9.h5", version=9)
    with pytest.raises(NeuralDataError, match="unknown format_version 9; this goaldriven reads version 1"):
        load_neural_data(tmp_path / "v9.h5")
    write_minimal_file(tmp_path / "partial.h5", skip=("area", "time_bins_ms"))
    with pytest.raises(NeuralDataError, match=r"missing required dataset\(s\) \['area', 'time_bins_ms'\]"):
        load_neural_data(tmp_path / "partial.h5")
    with h5py.File(tmp_path / "noversion.h5", "w") as f:
        f["responses"] = np.zeros((1, 1, 1, 1))
    with pytest.raises(NeuralDataError, match="'format_version' is missing"):
        load_neural_data(tmp_path / "noversion.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(NeuralDataError, match="not a readable HDF5 file"):
        load_neural_data(tmp_path / "text.h5")
    with pytest.raises(FileNotFoundError):
        load_neural_data(tmp_path / "absent.h5")


def _corrupt_a_chunk(path, dataset):
    """Overwrites 64 bytes in the middle of the first stored chunk of `dataset` (a damaged copy or disk)."""
    with h5py.File(path, "r") as f:
        chunk = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as raw:
        raw.seek(chunk.byte_offset + chunk.size // 2)
        raw.write(b"\xff" * 64)


def test_a_corrupted_chunk_names_the_file_and_the_dataset(tmp_path):
    path = str(tmp_path / "damaged.h5")
    save_neural_data(path, make_data(responses=np.random.default_rng(1).standard_normal((5, 4, 3, 600))))
    _corrupt_a_chunk(path, "responses")
    with pytest.raises(NeuralDataError, match=rf"{path}: dataset 'responses' cannot be read .*damaged") as error:
        load_neural_data(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "version, described",
    [
        ("1", "the string '1'"),
        (1.0, "the float 1.0"),
        (np.float32(1.0), "the float 1.0"),
        (True, "the bool True"),
        (2, "unknown format_version 2; this goaldriven reads version 1"),
    ],
)
def test_format_version_must_be_the_integer_1(tmp_path, version, described):
    write_minimal_file(tmp_path / "v.h5", version=version)
    with pytest.raises(NeuralDataError, match=described) as error:
        load_neural_data(tmp_path / "v.h5")
    assert "integer 1" in str(error.value) or "version 1" in str(error.value)


@pytest.mark.parametrize("version", [1, np.int32(1), np.uint8(1), np.array([1], np.int64)])
def test_format_version_1_loads_from_any_integer_type(tmp_path, version):
    write_minimal_file(tmp_path / "v.h5", version=version)  # MATLAB writes int32 and 1-element arrays
    assert load_neural_data(tmp_path / "v.h5").num_units == 3


def test_duplicate_stimulus_ids_are_named_as_stimulus_ids(tmp_path):
    with pytest.raises(
        NeuralDataError, match=r"stimulus_ids must be unique; 1 id.*'s1' \(stimulus ids\)\. Fix: give every stimulus"
    ) as error:
        make_data(stimulus_ids=["s0", "s1", "s2", "s1", "s4"])
    assert "unit" not in str(error.value)
    with pytest.raises(
        NeuralDataError, match=r"unit_ids must be unique; 1 id.*'a/u0' \(unit ids\)\. Fix: make the unit ids unique"
    ):
        make_data(unit_ids=["a/u0", "a/u0", "b/u0", "b/u1"])


def test_a_damaged_stimuli_file_names_the_file(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((5, 4, 4, 3), np.uint8))
    data = save_neural_data(tmp_path / "rec.h5", make_data(stimuli=None, stimuli_path=str(tmp_path / "images.npy")))
    with open(tmp_path / "images.npy", "r+b") as raw:
        raw.truncate(140)  # the 128-byte header survives, the pixels do not
    with pytest.raises(NeuralDataError, match=r"stimuli file .*images\.npy cannot be read"):
        load_neural_data(data).load_stimuli()
    with open(tmp_path / "images.npy", "r+b") as raw:
        raw.truncate(100)  # now the header is cut too: the loader's check of the image count fails
    with pytest.raises(NeuralDataError, match=r"stimuli file .*images\.npy cannot be read"):
        load_neural_data(data)


def _file_naming_stimuli(folder, stimuli_path):
    """A data file in `folder` whose root attribute stimuli_path is `stimuli_path` (written as a stranger would)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rec.h5"
    save_neural_data(path, make_data(), overwrite=True)
    with h5py.File(path, "a") as f:
        del f["stimuli"]
        f.attrs["stimuli_path"] = stimuli_path
    return path


def test_stimuli_path_is_confined_to_the_data_files_folder(tmp_path):
    images = np.zeros((5, 4, 4, 3), np.uint8)
    (tmp_path / "elsewhere").mkdir()
    np.save(tmp_path / "elsewhere" / "images.npy", images)
    (tmp_path / "data" / "images").mkdir(parents=True)
    np.save(tmp_path / "data" / "images" / "inside.npy", images)
    os.symlink(tmp_path / "elsewhere" / "images.npy", tmp_path / "data" / "link.npy")
    folder = os.path.realpath(tmp_path / "data")
    for outside in (
        "../elsewhere/images.npy",
        str(tmp_path / "elsewhere" / "images.npy"),
        "link.npy",  # a link inside the folder to a file outside it
        "../../../../../../../../etc/passwd",
    ):
        path = _file_naming_stimuli(tmp_path / "data", outside)
        with pytest.raises(NeuralDataError) as error:
            load_neural_data(path)
        message = str(error.value)
        assert f"stimuli_path {outside!r}" in message and f"outside {folder}" in message, message
        assert "allow_external_stimuli=True" in message and "--allow_external_stimuli" in message
        assert "\n" not in message
    # The explicit opt-in follows the path; inside the folder (and below) no opt-in is needed.
    path = _file_naming_stimuli(tmp_path / "data", "../elsewhere/images.npy")
    assert load_neural_data(path, allow_external_stimuli=True).load_stimuli().shape == (5, 4, 4, 3)
    for inside in ("images/inside.npy", str(tmp_path / "data" / "images" / "inside.npy")):
        path = _file_naming_stimuli(tmp_path / "data", inside)
        assert load_neural_data(path).load_stimuli().shape == (5, 4, 4, 3)
