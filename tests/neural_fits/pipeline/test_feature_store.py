"""FeatureStore views: flat, per-step and lazy map views, the Gram (in memory or streamed), and the choice by
capability flag of what each mapping is handed."""

import numpy as np
import pytest

from goaldriven.neural_fits.mappings import MAPPINGS
from goaldriven.neural_fits.mappings.gram import GramFeatures
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore, StepMaps
from goaldriven.neural_fits.pipeline.stimuli import Presentation


def test_streamed_gram_equals_the_gram_of_the_features_in_memory(tmp_path):
    rng = np.random.default_rng(5)
    arrays = {"conv": rng.standard_normal((13, 5, 3, 3, 4)).astype(np.float32)}  # (n, t, h, w, c)
    store = FeatureStore(arrays, stimulus_ids=np.arange(13), presentation=Presentation())
    steps = [1, 3, 4]
    flat = arrays["conv"][:, steps].mean(axis=1).reshape(13, -1)
    np.testing.assert_allclose(store.layer("conv").flat(steps), flat, rtol=1e-5, atol=1e-6)
    streamed = store.layer("conv").streamed_gram(
        steps, block_bytes=8 * 36 * 3 * 4
    )  # blocks of 4 rows: 4 blocks, 10 pairs
    flat64 = arrays["conv"][:, steps].astype(np.float64).mean(axis=1).reshape(13, -1)
    centred = flat64 - flat64.mean(axis=0)
    np.testing.assert_allclose(streamed.cache.gram, centred @ centred.T, rtol=1e-9, atol=1e-9)
    assert streamed.shape == (13, 36)


def _store(n=13, t=5):
    arrays = {
        "conv": np.random.default_rng(6).standard_normal((n, t, 3, 3, 4)).astype(np.float32),  # (n, t, h, w, c)
        "pool": np.random.default_rng(7).standard_normal((n, 1, 4)).astype(np.float32),  # feedforward (n, 1, p)
    }
    return arrays, FeatureStore(arrays, stimulus_ids=np.arange(n), presentation=Presentation(times=t, image_on=2))


def test_views_give_each_shape_from_the_stored_array():
    arrays, store = _store()
    conv = store.layer("conv")
    assert (conv.num_stimuli, conv.num_steps, conv.num_features) == (13, 5, 36)
    np.testing.assert_array_equal(conv.steps_at([0.0, 19.9, 20.0, 45.0]), [0, 1, 2, 4])
    np.testing.assert_allclose(conv.per_step([4, 1]), arrays["conv"][:, [4, 1]].reshape(13, 2, 36))
    maps = conv.maps([4, 1])
    assert isinstance(maps, StepMaps) and maps.shape == (13, 2, 3, 3, 4)
    np.testing.assert_array_equal(maps[[5, 2, 9]], arrays["conv"][[5, 2, 9]][:, [4, 1]])  # rows in the order asked
    np.testing.assert_array_equal(maps[3:6], arrays["conv"][3:6][:, [4, 1]])
    # a feedforward layer's single step stands for every bin and every step
    pool = store.layer("pool")
    assert pool.steps_at([0.0, 70.0, 500.0]) == [0, 0, 0]
    np.testing.assert_array_equal(pool.flat([3]), arrays["pool"][:, 0])
    np.testing.assert_array_equal(pool.maps([2, 3])[:], np.repeat(arrays["pool"], 2, axis=1))
    with pytest.raises(ValueError, match="maps to model step 9"):
        conv.steps_at([90.0])
    with pytest.raises(ValueError, match="out of range"):
        conv.flat([5])
    with pytest.raises(KeyError, match="no features of layer 'fc'"):
        store.layer("fc")


def test_the_gram_is_streamed_only_above_the_memory_budget():
    arrays, store = _store()
    flat = arrays["conv"][:, [1, 2]].astype(np.float64).mean(axis=1).reshape(13, -1)
    centred = flat - flat.mean(axis=0)
    in_memory = store.layer("conv").gram([1, 2])
    streamed = store.layer("conv", max_bytes=4 * 13 * 36 - 1).gram([1, 2])  # one byte short: streamed in blocks
    for gram, tolerance in ((in_memory, 1e-5), (streamed, 1e-9)):  # in memory: of the float32 flat features
        assert isinstance(gram, GramFeatures) and gram.shape == (13, 36)
        np.testing.assert_allclose(gram.cache.gram, centred @ centred.T, rtol=tolerance, atol=tolerance)


def test_each_mapping_is_handed_what_its_flags_ask_for():
    arrays, store = _store(n=13)
    conv, pool = store.layer("conv"), store.layer("pool")
    assert isinstance(conv.for_mapping(MAPPINGS["pls"], [1, 2]), GramFeatures)  # p = 36 > n = 13
    assert isinstance(conv.for_mapping(MAPPINGS["ridge"], [1, 2]), GramFeatures)
    np.testing.assert_array_equal(conv.for_mapping(MAPPINGS["one_to_one"], [1, 2]), conv.flat([1, 2]))
    np.testing.assert_array_equal(pool.for_mapping(MAPPINGS["pls"], [0]), arrays["pool"][:, 0])  # p = 4 <= n
    per_step = conv.for_mapping(MAPPINGS["ridge"], [1, 2], over_time=True)
    np.testing.assert_array_equal(per_step, conv.per_step([1, 2]))
    maps = conv.for_mapping(MAPPINGS["factored"], [1, 2], over_time=True)
    assert isinstance(maps, StepMaps) and maps.shape == (13, 2, 3, 3, 4)
