"""The OST fit (pipeline/ost_fit.py) on planted solution times, its layer choice and mappings, and the OST file."""

import dataclasses

import h5py
import numpy as np
import pytest

from goaldriven.models import zoo
from goaldriven.neural_fits.data import ost_data, synthetic_ost
from goaldriven.neural_fits.data.hdf5_io import NeuralDataError
from goaldriven.neural_fits.data.ost_data import OSTTargets
from goaldriven.neural_fits.ost.dprime import decode_dprime
from goaldriven.neural_fits.ost.solution_times import ost_splits
from goaldriven.neural_fits.pipeline import extraction, ost_fit, ost_report
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform

# n: images, t: steps, p: features

FAST = dict(n_splits=3, n_train_per_class=16, selection_splits=2, selection_boot=4, pls_components=10)


def _quiet(_):
    pass


@pytest.fixture(scope="module")
def planted():
    return synthetic_ost.planted_ost(seed=0)


def _store(arrays, data):
    return FeatureStore(arrays, stimulus_ids=data.stimulus_ids, presentation=Presentation())


def _shuffled(targets, seed=1):
    """The IT OSTs permuted among the IT-solved images: a truth unrelated to the model's solution times."""
    ost = targets.it_ost_ms.copy()
    solved = np.flatnonzero(np.isfinite(ost))
    ost[solved] = ost[np.random.default_rng(seed).permutation(solved)]
    return dataclasses.replace(targets, it_ost_ms=ost)


@pytest.fixture(scope="module")
def recurrent_fit(planted):
    store = _store(planted.recurrent, planted.recurrent_data)
    config = ost_fit.OSTFitConfig(layers=planted.it_layers, **FAST)
    return ost_fit.fit_ost(store, planted.recurrent_data, planted.recurrent_targets, config, log=_quiet)


def test_planted_recurrent_solution_times_are_recovered(recurrent_fit, planted):
    fit = recurrent_fit
    assert fit.recurrent and set(fit.variants) == {"convrnn", "pls_convrnn"}
    result = fit.variants["convrnn"]
    assert result.mean > 0.55 and result.pooled.rho > 0.55, (result.mean, result.pooled)  # seeds 0, 1: 0.70, 0.78
    assert result.pooled.n_common > 0.8 * np.isfinite(planted.recurrent_targets.it_ost_ms).sum()
    # Every bin concatenates both IT layers at one step, bins start at 70 ms (steps 7..25).
    assert fit.assignment["convrnn"][0] == {"it_a": 1.0, "it_b": 1.0}
    np.testing.assert_array_equal(fit.bin_ms, 70.0 + 10.0 * np.arange(19))
    # The PLS variant decodes predicted IT responses, which follow the same planted signal.
    assert fit.variants["pls_convrnn"].pooled.rho > 0.4
    # OSTs are never defined for images without an IT d' (the PLS training images).
    untested = planted.recurrent_targets.pls_training_images
    assert np.isnan(planted.recurrent_targets.it_ost_ms[untested]).all()


def test_a_shuffled_truth_gives_consistency_near_zero(planted):
    store = _store(planted.recurrent, planted.recurrent_data)
    config = ost_fit.OSTFitConfig(layers=planted.it_layers, pls=False, **FAST)
    shuffled = _shuffled(planted.recurrent_targets)
    result = ost_fit.fit_ost(store, planted.recurrent_data, shuffled, config, log=_quiet).variants["convrnn"]
    assert abs(result.pooled.rho) < 0.3 and abs(result.mean) < 0.35, (result.mean, result.pooled)


def test_it_preferred_layers_are_the_ones_it_units_read(planted):
    store = _store(planted.recurrent, planted.recurrent_data)
    config = ost_fit.OSTFitConfig(**FAST)
    layers, table = ost_fit.select_it_layers(store, planted.recurrent_data, config, log=_quiet)
    assert layers == ("it_a", "it_b")
    assert table["v4"]["V4"] > table["v4"]["IT"] and not table["v4"]["preferred"]


def test_layer_selection_without_v4_units_names_the_fix(planted):
    data = planted.recurrent_data.select_units(area="IT")
    with pytest.raises(ValueError, match="--ost_layers"):
        ost_fit.select_it_layers(_store(planted.recurrent, data), data, ost_fit.OSTFitConfig(**FAST), log=_quiet)


def test_uniform_and_graded_mappings_give_the_documented_assignment():
    names = ["ff1", "ff2", "ff3", "ff4"]
    config = ost_fit.OSTFitConfig()
    uniform = ost_fit.bin_assignment(names, [32] * 4, "uniform", config)
    # spec 9.3: bin j gets layer floor(4 j / 19): j = 0..4 -> ff1, 5..9 -> ff2, 10..14 -> ff3, 15..18 -> ff4
    expected = ["ff1"] * 5 + ["ff2"] * 5 + ["ff3"] * 5 + ["ff4"] * 4
    assert [list(b) for b in uniform] == [[name] for name in expected]
    graded = ost_fit.bin_assignment(names, [32] * 4, "graded", config)
    # pos = j (k - 1) / 18 = j / 6; m = round(w * 32) units of the next layer
    assert graded[0] == {"ff1": 1.0}
    assert graded[1] == {"ff1": 27 / 32, "ff2": 5 / 32}  # w = 1/6, m = round(5.33) = 5
    assert graded[3] == {"ff1": 0.5, "ff2": 0.5}
    assert graded[6] == {"ff2": 1.0} and graded[12] == {"ff3": 1.0} and graded[18] == {"ff4": 1.0}
    # 19 or more layers: both mappings are one layer per bin
    many = [f"l{i}" for i in range(19)]
    assert ost_fit.bin_assignment(many, [8] * 19, "graded", config) == [{n: 1.0} for n in many]


def test_planted_feedforward_ost_under_both_mappings_and_the_report(planted, tmp_path):
    store = _store(planted.feedforward, planted.recurrent_data)
    config = ost_fit.OSTFitConfig(layers=tuple(planted.feedforward), **{**FAST, "pls": False})
    fit = ost_fit.fit_ost(store, planted.recurrent_data, planted.feedforward_targets, config, log=_quiet)
    assert not fit.recurrent
    assert set(fit.variants) == {"uniform", "graded"}
    for name in ("uniform", "graded"):
        assert fit.variants[name].pooled.rho > 0.35, (name, fit.variants[name].pooled)  # seed 0: 0.45, 0.49
    paths = ost_report.write_all(fit, str(tmp_path), config)
    summary = ost_report.summary(fit, config)
    assert summary["variants"]["graded"]["pooled_n_common"] == fit.variants["graded"].pooled.n_common
    assert summary["assignment"]["uniform"][4] == {"ff1": 1.0} and summary["config"]["n_splits"] == 3
    with open(paths[0]) as f:
        header, *rows = f.read().splitlines()
    assert header.split(",")[-2:] == ["ost_uniform", "ost_graded"]
    assert len(rows) == planted.labels.size
    assert (tmp_path / "ost_scatter.png").stat().st_size > 1000


def test_convrnn_features_of_a_real_model_map_steps_7_to_25(tmp_path):
    model = zoo.build_model("timedecay_shallow", num_classes=4, image_size=32, width_multiplier=1 / 16)
    rng = np.random.default_rng(0)
    n = 32
    labels = np.repeat(np.arange(4), n // 4)
    stimuli = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32) * 0.3
    stimuli[np.arange(n), :, :, labels % 3] += 0.6  # the object is the dominant colour channel
    store = extraction.extract_features(
        model,
        stimuli,
        transform=StimulusTransform(32),
        layers=["conv4", "conv5"],
        presentation=Presentation(),
        log=_quiet,
    )
    data = planted_like(labels, store.stimulus_ids, rng)
    config = ost_fit.OSTFitConfig(
        layers=("conv4", "conv5"), pls=False, n_splits=3, n_train_per_class=5, n_test_per_class=3, pca_components=20
    )
    fit = ost_fit.fit_ost(store, data[0], data[1], config, log=_quiet)
    assert fit.recurrent and list(fit.variants) == ["convrnn"]
    dprime = fit.variants["convrnn"].dprime  # (s, b, n)
    assert dprime.shape == (3, 19, n)
    bins = ost_fit.time_bins(store, ("conv4", "conv5"), None, config)
    np.testing.assert_allclose(
        bins[0][:, : int(np.prod(store["conv4"].shape[2:]))], np.asarray(store["conv4"])[:, 7].reshape(n, -1)
    )


def test_constant_features_decode_at_chance():
    labels = np.repeat(np.arange(3), 8)
    splits = ost_splits(labels, n_train_per_class=5, n_splits=3)
    d = decode_dprime(np.ones((24, 4)), labels, splits)  # no information: Phi^-1(0.5) - Phi^-1(0.5) = 0
    np.testing.assert_array_equal(d[np.isfinite(d)], 0.0)
    assert np.isfinite(d).sum() == 3 * 9


def planted_like(labels, ids, rng):
    """A minimal OST NeuralData + targets for the given stimuli (random IT responses and OSTs)."""
    n = labels.size
    data = synthetic_ost.planted_ost(n_objects=4, per_object=n // 4, seed=3).recurrent_data
    data = dataclasses.replace(data, stimulus_ids=np.asarray(ids), stimulus_labels=np.array([f"o{y}" for y in labels]))
    targets = OSTTargets.create(rng.uniform(1, 2, n), rng.uniform(80, 200, n))
    return data, targets


# ------------------------------------------------------------------------------------------------- the OST file
def test_ost_file_round_trip(planted, tmp_path):
    path = str(tmp_path / "ost.h5")
    ost_data.save_ost_data(path, planted.recurrent_data, planted.recurrent_targets)
    data, targets = ost_data.load_ost_data(path)
    np.testing.assert_array_equal(data.stimulus_ids, planted.recurrent_data.stimulus_ids)
    np.testing.assert_array_equal(targets.behavioral_dprime, planted.recurrent_targets.behavioral_dprime)
    np.testing.assert_array_equal(targets.it_ost_ms, planted.recurrent_targets.it_ost_ms)
    np.testing.assert_array_equal(targets.it_dprime_defined, planted.recurrent_targets.it_dprime_defined)
    assert targets.bin_times == "start"


def _damage(f, what):
    group = f["ost"]
    if what == "no_group":
        del f["ost"]
    elif what == "dprime_beyond_5":
        group["behavioral_dprime"][0] = 7.0
    elif what == "short":
        data = group["it_ost_ms"][:-1]
        del group["it_ost_ms"]
        group.create_dataset("it_ost_ms", data=data)
    elif what == "ost_without_it_dprime":
        defined = group["it_dprime_defined"][()]
        defined[np.flatnonzero(np.isfinite(group["it_ost_ms"][()]))[0]] = False
        group["it_dprime_defined"][...] = defined
    elif what == "seconds":
        group["it_ost_ms"][...] = -group["it_ost_ms"][()] / 1000.0
    elif what == "no_labels":
        del f["stimulus_labels"]
    elif what == "string_dprime":
        del group["behavioral_dprime"]
        group.create_dataset("behavioral_dprime", data=np.array(["1.0"] * 96, dtype=object), dtype=h5py.string_dtype())
    elif what == "bin_times":
        group.attrs["bin_times"] = "middle"


@pytest.mark.parametrize(
    "what, fragment",
    [
        ("no_group", "no root group 'ost'"),
        ("dprime_beyond_5", "clip it to [-5, 5]"),
        ("short", "one entry per stimulus"),
        ("ost_without_it_dprime", "IT OST but no IT d'"),
        ("seconds", "convert seconds to ms"),
        ("no_labels", "no stimulus_labels"),
        ("string_dprime", "expected float"),
        ("bin_times", "bin_times must be one of"),
    ],
)
def test_a_bad_ost_file_is_one_line_naming_the_fix(planted, tmp_path, what, fragment):
    path = str(tmp_path / "ost.h5")
    ost_data.save_ost_data(path, planted.recurrent_data, planted.recurrent_targets)
    with h5py.File(path, "a") as f:
        _damage(f, what)
    with pytest.raises(NeuralDataError) as info:
        ost_data.load_ost_data(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
