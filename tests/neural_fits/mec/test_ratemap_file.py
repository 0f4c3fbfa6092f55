"""MEC rate-map layout: the checks and their one-line errors, the HDF5 round trip, the reader's refusals."""

import h5py
import numpy as np
import pytest

from goaldriven.neural_fits.mec import ratemap_file
from goaldriven.neural_fits.mec.ratemap_file import Environment, MECDataError, Recording


def _box(**changes):
    rng = np.random.default_rng(0)
    recs = {
        "m1": Recording("m1", np.array(["a", "b"]), rate_maps=rng.random((2, 4, 6)).astype(np.float32)),
        "m2": Recording("m2", np.array(["c"]), rate_maps=rng.random((1, 4, 6)).astype(np.float32)),
    }
    recs["m1"].rate_maps[0, 0, 0] = np.nan
    fields = dict(name="box", kind="box", extent_m=(0.3, 0.2), recordings=recs, bin_size_m=0.05)
    fields.update(changes)
    return Environment(**fields)


def _track():
    rng = np.random.default_rng(1)
    rec = Recording("mouse1", np.array(["x", "y"]), trials=rng.random((2, 5, 8)), trial_maps=np.array([0, 0, 1, 1, 1]))
    return Environment("track", "track", (0.4,), {"s1": rec}, 0.05)


def test_round_trip_keeps_every_field(tmp_path):
    path = str(tmp_path / "mec.h5")
    box, track = _box(), _track()
    ratemap_file.write_ratemaps(path, [box, track])
    back = ratemap_file.read_ratemaps(path)
    assert sorted(back) == ["box", "track"]
    b = back["box"]
    assert (b.kind, b.extent_m, b.bins_shape, b.n_bins) == ("box", (0.3, 0.2), (4, 6), 24)
    np.testing.assert_array_equal(b.recordings["m1"].rate_maps, box.recordings["m1"].rate_maps)  # NaN kept
    assert b.recordings["m1"].cell_ids.tolist() == ["a", "b"] and b.animal_of("m2") == "m2"
    t = back["track"].recordings["s1"]
    assert t.maps == [0, 1]
    np.testing.assert_allclose(t.map_trials(1), np.transpose(track.recordings["s1"].trials[:, 2:], (2, 0, 1)), 1e-6)
    assert ratemap_file.select_environment(back, "track") is back["track"]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(kind="arena"), "kind must be one of"),
        (dict(extent_m=(0.3,)), "extent_m must be 2 positive lengths"),
        (dict(extent_m=(0.32, 0.2)), "not a whole number of 0.05 m bins"),
        (dict(recordings={}), "has no recordings"),
        (dict(extent_m=(0.2, 0.2)), "rate_maps must be float (2, 4, 4)"),
    ],
)
def test_environment_errors_are_one_line(change, message):
    with pytest.raises(MECDataError, match=None) as info:
        _box(**change).check()
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("duplicate_ids", "cell_ids repeat"),
        ("inf", "has inf values"),
        ("unvisited", "< 3 visited bins"),
        ("trials_in_box", "a box recording holds rate_maps"),
    ],
)
def test_recording_errors_name_environment_recording_and_field(damage, message):
    env = _box()
    rec = env.recordings["m1"]
    if damage == "duplicate_ids":
        rec.cell_ids = np.array(["a", "a"])
    elif damage == "inf":
        rec.rate_maps[1, 2, 2] = np.inf
    elif damage == "unvisited":
        rec.rate_maps[1] = np.nan
        rec.rate_maps[1, 0, :2] = 1.0
    else:
        rec.trials = rec.rate_maps[:, None]
    with pytest.raises(MECDataError) as info:
        env.check()
    text = str(info.value)
    assert message in text and "environment 'box', recording 'm1'" in text and "\n" not in text


def test_track_maps_need_two_trials_each():
    env = _track()
    env.recordings["s1"].trial_maps = np.array([0, 0, 0, 0, 1])
    with pytest.raises(MECDataError, match="every map needs >= 2 trials"):
        env.check()


def test_reader_refuses_other_files(tmp_path):
    text = tmp_path / "not.h5"
    text.write_text("hello")
    with pytest.raises(MECDataError, match="not a readable HDF5 file"):
        ratemap_file.read_ratemaps(str(text))
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(MECDataError, match="is not a MEC rate-map file"):
        ratemap_file.read_ratemaps(other)
    broken = str(tmp_path / "broken.h5")
    ratemap_file.write_ratemaps(broken, _box())
    with h5py.File(broken, "a") as f:
        del f["box"]["m2"]["rate_maps"]
    with pytest.raises(MECDataError, match="broken.h5: environment 'box', recording 'm2'"):
        ratemap_file.read_ratemaps(broken)


def test_select_environment_lists_the_choices():
    envs = {"a": _box(name="a"), "b": _box(name="b")}
    with pytest.raises(MECDataError, match=r"environments \['a', 'b'\]; choose one"):
        ratemap_file.select_environment(envs, None)
    with pytest.raises(MECDataError, match="no environment 'c'"):
        ratemap_file.select_environment(envs, "c")
