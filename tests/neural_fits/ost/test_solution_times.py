"""Tests for goaldriven.neural_fits.ost: solution_times.py and dprime.py (object solution times, spec ch2 Section 9)."""

import numpy as np
import pytest
import scipy.stats
from sklearn.decomposition import PCA

from goaldriven.neural_fits.ost import dprime
from goaldriven.neural_fits.ost import solution_times as ost
from goaldriven.neural_fits.ost.dprime import decode_dprime, image_dprime
from goaldriven.neural_fits.ost.solution_times import (
    convrnn_to_time,
    layer_to_time,
    object_solution_times,
    ost_consistency,
    ost_pipeline,
    ost_splits,
)

# n: images, k: classes, p: features, b: bins, s: splits


def brute_force_dprime(probs, labels, clip=5.0):
    """Spec 9.5 written out with loops and scipy.stats.norm (no shared code with the module)."""
    n, k = probs.shape
    out = np.full(n, np.nan)
    for i in range(n):
        o = labels[i]
        values = []
        for d in range(k):
            others = [j for j in range(n) if labels[j] == d]
            if d == o or not others:
                continue
            hr = 1 - probs[i, d] / (probs[i, d] + probs[i, o])
            far_obj = np.mean([probs[j, o] / (probs[j, o] + probs[j, d]) for j in others])
            dp = scipy.stats.norm.ppf(hr) - scipy.stats.norm.ppf(far_obj)
            values.append(min(max(dp, -clip), clip))
        if values:
            out[i] = np.mean(values)
    return out


def simulated_features(tau, labels, n_bins=8, p=10, noise=0.3, seed=0):
    """Bin b: class mean scaled by max(b - tau_i, 0) plus noise, so image i becomes separable after bin tau_i."""
    rng = np.random.default_rng(seed)
    means = np.linalg.qr(rng.normal(size=(p, labels.max() + 1)))[0].T  # orthonormal class directions
    amp = np.clip(np.arange(n_bins)[:, None] - tau[None, :], 0, None)  # (b, n)
    return [amp[b][:, None] * means[labels] + noise * rng.normal(size=(labels.size, p)) for b in range(n_bins)]


@pytest.fixture(scope="module")
def sim():
    k, per = 5, 30
    labels = np.repeat(np.arange(k), per)
    tau = np.random.default_rng(1).uniform(1, 6, labels.size)
    splits = ost_splits(labels, n_train_per_class=20, n_splits=3, seed=0)
    return labels, tau, splits


def test_image_dprime_matches_brute_force():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    probs = rng.dirichlet(np.ones(4), size=labels.size)
    np.testing.assert_allclose(image_dprime(probs, labels), brute_force_dprime(probs, labels), rtol=1e-10)
    # class 3 absent: its column is a choice but not a distractor with images, so it leaves the mean
    keep = labels < 3
    np.testing.assert_allclose(image_dprime(probs[keep], labels[keep]), brute_force_dprime(probs[keep], labels[keep]))


def test_image_dprime_hand_value():
    # image 0: FAR(0, 1) = 0.2 -> HR 0.8; FAR_obj(1 -> 0) = 0.3 / (0.3 + 0.7) = 0.3
    # d' = Phi^-1(0.8) - Phi^-1(0.3) = 0.8416212 + 0.5244005; image 1 symmetric: Phi^-1(0.7) - Phi^-1(0.2)
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_allclose(image_dprime(probs, np.array([0, 1])), [1.3660217, 1.3660217], atol=1e-6)


def test_image_dprime_clips_at_bounds_and_handles_exact_zeros():
    labels = np.array([0, 0, 1, 1, 2, 2])
    eye = np.eye(3)[labels]
    np.testing.assert_array_equal(image_dprime(eye, labels), 5.0)  # exact 0/1: finite and clipped
    np.testing.assert_array_equal(image_dprime(eye[:, [1, 2, 0]], labels), -5.0)  # always wrong
    near = 0.998 * eye + 0.001  # FAR = FAR_obj = 0.001 -> d' = 2 Phi^-1(0.999) = 6.18, clipped to 5
    np.testing.assert_array_equal(image_dprime(near, labels), 5.0)
    np.testing.assert_allclose(image_dprime(near, labels, clip=1.0), 1.0)
    zeros = np.zeros((2, 2))  # P_i(d) = P_i(o) = 0: FAR = 0.5, d' = 0
    np.testing.assert_array_equal(image_dprime(zeros, np.array([0, 1])), 0.0)


def test_image_dprime_errors():
    good = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match="k >= 2"):
        image_dprime(np.ones((3, 1)), [0, 0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        image_dprime(np.array([[1.0, -0.1], [0.5, 0.5]]), [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        image_dprime(good, np.array([0, 2]))
    with pytest.raises(TypeError, match="integer"):
        image_dprime(good, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="one entry per image"):
        image_dprime(good, np.array([0, 1, 1]))


def test_object_solution_times_interpolation():
    d = np.array(
        [
            [0.5, 1.2, 0.0, 0.0, 0.0, np.nan],
            [1.5, 2.0, 0.2, 0.5, 1.0, np.nan],
            [1.7, 2.5, 0.6, 0.9, 1.0, np.nan],
            [2.0, 3.0, 2.0, 0.9, 1.0, np.nan],
        ]
    )  # (b = 4, n = 6)
    beh = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    # 0: 70 + 10 * 0.5 = 75; 1: solved in the first bin -> 70; 2: 90 + 10 * 0.4 / 1.4; 3: never; 4: equal at 80
    # 5: never tested
    expected = [75.0, 70.0, 90.0 + 4.0 / 1.4, np.nan, 80.0, np.nan]
    np.testing.assert_allclose(object_solution_times(d, beh), expected)
    # bin centres / uneven bins: 0 interpolates between 75 and 90 ms
    np.testing.assert_allclose(object_solution_times(d, beh, [75.0, 90.0, 95.0, 105.0])[0], 82.5)
    beh_nan = beh.copy()
    beh_nan[0] = np.nan
    assert np.isnan(object_solution_times(d, beh_nan)[0])


def test_object_solution_times_errors():
    with pytest.raises(ValueError, match="some bins only"):
        object_solution_times(np.array([[0.0, 1.0], [np.nan, 2.0]]), [1.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        object_solution_times(np.zeros((2, 3)), np.ones(3), [80.0, 70.0])
    with pytest.raises(ValueError, match=r"\(b, n\)"):
        object_solution_times(np.zeros((2, 3)), np.ones(2))


def test_ost_consistency_against_rank_correlation():
    model = np.array([80.0, 95.0, np.nan, 120.0, 71.0, 150.0, np.nan, 101.0])
    it = np.array([90.0, 85.0, 100.0, np.nan, 72.0, 140.0, np.nan, 130.0])
    both = np.isfinite(model) & np.isfinite(it)  # images 0, 1, 4, 5, 7
    ranks = [scipy.stats.rankdata(x[both]) for x in (model, it)]
    rho = np.corrcoef(*ranks)[0, 1]
    result = ost_consistency(model, it)
    np.testing.assert_allclose(result.rho, rho)
    assert result.n_common == 5
    np.testing.assert_allclose(result.fraction_solved, 5 / 6)  # IT solves 6 images
    assert np.isnan(ost_consistency(model[:2], it[:2]).rho)  # fewer than 3 common images
    assert np.isnan(ost_consistency(np.ones(4), np.arange(4.0)).rho)  # constant model OST
    with pytest.raises(ValueError, match="matching"):
        ost_consistency(model, it[:3])


def test_layer_to_time_uniform():
    layers = [np.full((4, 2 + i), float(i)) for i in range(3)]
    bins = layer_to_time(layers, n_bins=7, mapping="uniform")
    assert [int(b[0, 0]) for b in bins] == [0, 0, 0, 1, 1, 2, 2]  # floor(j * 3 / 7)
    assert bins[3] is layers[1]
    same = [np.full((4, 3), float(i)) for i in range(5)]
    for mapping in ("uniform", "graded"):
        assert [int(b[0, 0]) for b in layer_to_time(same, n_bins=5, mapping=mapping)] == [0, 1, 2, 3, 4]
        many = [np.full((4, 3), float(i)) for i in range(10)]
        assert [int(b[0, 0]) for b in layer_to_time(many, n_bins=4, mapping=mapping)] == [0, 3, 6, 9]


def coded_layers(sizes, n=3):
    """Layer l, unit u holds the value 1000 l + u for every image."""
    return [np.tile(1000.0 * layer + np.arange(p), (n, 1)) for layer, p in enumerate(sizes)]


def test_layer_to_time_graded_mixtures():
    bins = layer_to_time(coded_layers([4, 6, 8]), n_bins=5, mapping="graded", seed=3)
    # pos = j * 2 / 4: units from (layer 0, 1, 2) = (4,0,0) (2,2,0) (0,4,0) (0,2,2) (0,0,4), N = 4 (smallest layer)
    expected = [(4, 0, 0), (2, 2, 0), (0, 4, 0), (0, 2, 2), (0, 0, 4)]
    for b, counts in zip(bins, expected):
        codes = b[0].astype(int)
        assert b.shape == (3, 4) and len(set(codes)) == 4
        assert tuple(np.bincount(codes // 1000, minlength=3)) == counts
    # one random unit order per layer: bin 1's layer-1 units are the first of bin 2's
    assert set(bins[1][0, 2:]) <= set(bins[2][0])
    assert set(bins[3][0, :2]) <= set(bins[2][0])
    # rounding half up: k = 2, 5 bins, N = 3 -> w = 0, .25, .5, .75, 1 -> (0, 1, 2, 2, 3) units of layer 1
    half = layer_to_time(coded_layers([3, 5]), n_bins=5, mapping="graded", seed=0)
    assert [int((b[0] >= 1000).sum()) for b in half] == [0, 1, 2, 2, 3]
    n2 = layer_to_time(coded_layers([4, 6, 8]), n_bins=5, mapping="graded", seed=3, n_units=2)
    assert all(b.shape == (3, 2) for b in n2)


def test_layer_to_time_graded_is_seeded():
    layers = coded_layers([10, 12])
    a = layer_to_time(layers, n_bins=6, mapping="graded", seed=0)
    b = layer_to_time(layers, n_bins=6, mapping="graded", seed=0)
    c = layer_to_time(layers, n_bins=6, mapping="graded", seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_layer_to_time_errors():
    with pytest.raises(ValueError, match="mapping"):
        layer_to_time([np.zeros((2, 2))], mapping="linear")
    with pytest.raises(ValueError, match="same images"):
        layer_to_time([np.zeros((2, 2)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match="flatten"):
        layer_to_time([np.zeros((2, 2, 2))])
    with pytest.raises(ValueError, match="n_units"):
        layer_to_time([np.zeros((2, 2)), np.zeros((2, 3))], n_bins=4, mapping="graded", n_units=3)
    with pytest.raises(ValueError, match="empty"):
        layer_to_time([])


def test_convrnn_to_time_steps_and_concatenation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 26, 2, 2)), rng.normal(size=(3, 26, 5))
    bins = convrnn_to_time([a, b])
    assert len(bins) == 19
    np.testing.assert_array_equal(bins[0], np.concatenate([a[:, 7].reshape(3, 4), b[:, 7]], axis=1))  # 70 ms
    np.testing.assert_array_equal(bins[18], np.concatenate([a[:, 25].reshape(3, 4), b[:, 25]], axis=1))  # 250 ms
    with pytest.raises(ValueError, match="unroll the model longer"):
        convrnn_to_time([a[:, :25]])


def test_ost_splits_cover_every_image():
    labels = np.repeat(np.arange(4), [30, 30, 32, 31])
    splits = ost_splits(labels, n_train_per_class=20, n_splits=3, seed=0)
    tested = np.zeros(labels.size, int)
    for train, test in splits:
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.bincount(labels[train]), [20, 20, 20, 20])
        np.testing.assert_array_equal(np.bincount(labels[test]), [10, 10, 12, 11])
        tested[test] += 1
    assert tested.min() >= 1
    again = ost_splits(labels, n_train_per_class=20, n_splits=3, seed=0)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(splits, again))
    fixed = ost_splits(labels, n_train_per_class=20, n_splits=7, seed=0, n_test_per_class=5)
    assert all(np.bincount(labels[te]).tolist() == [5] * 4 for _, te in fixed)
    with pytest.raises(ValueError, match="never be tested"):
        ost_splits(labels, n_train_per_class=20, n_splits=2)
    with pytest.raises(ValueError, match="Lower n_train_per_class"):
        ost_splits(labels, n_train_per_class=30)


@pytest.mark.parametrize("n_train,p", [(20, 50), (40, 8)])
def test_pca_projection_matches_sklearn(n_train, p):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_train + 10, p)) @ rng.normal(size=(p, p))
    c = min(n_train - 1, p) - 1
    z_train, z_test = dprime.pca_fit_transform(x[:n_train], x[n_train:], c)
    pca = PCA(n_components=c, svd_solver="full").fit(x[:n_train])
    np.testing.assert_allclose(np.abs(z_train), np.abs(pca.transform(x[:n_train])), atol=1e-8)
    np.testing.assert_allclose(np.abs(z_test), np.abs(pca.transform(x[n_train:])), atol=1e-8)


def test_decode_dprime_rises_over_bins_and_is_deterministic(sim):
    labels, tau, splits = sim
    feats = simulated_features(tau, labels, n_bins=6)
    d = np.stack([decode_dprime(f, labels, splits, pca_components=8, seed=0) for f in feats], axis=1)  # (s, b, n)
    for s, (_, test) in enumerate(splits):
        untested = np.setdiff1d(np.arange(labels.size), test)
        assert np.isnan(d[s][:, untested]).all() and np.isfinite(d[s][:, test]).all()
    per_bin = np.nanmean(d, axis=(0, 2))
    assert abs(per_bin[0]) < 0.3  # no signal yet (tau >= 1)
    assert np.all(np.diff(per_bin[1:]) > 0) and per_bin[-1] > 1.0
    again = decode_dprime(feats[3], labels, splits, pca_components=8, seed=0)
    np.testing.assert_array_equal(again, d[:, 3])


def test_decode_dprime_separable_data_hits_the_bound():
    labels = np.repeat(np.arange(4), 15)
    x = 10.0 * np.eye(4)[labels] + 0.01 * np.random.default_rng(0).normal(size=(60, 4))
    splits = ost_splits(labels, n_train_per_class=10, n_splits=3)
    d = decode_dprime(x, labels, splits, pca_components=4)
    np.testing.assert_allclose(d[np.isfinite(d)], 5.0)


def test_ost_pipeline_orders_images_like_it(sim):
    labels, tau, splits = sim
    beh = np.full(labels.size, 2.0)
    it_ost = 70.0 + 10.0 * tau
    matched = ost_pipeline(simulated_features(tau, labels), labels, beh, it_ost, splits, pca_components=8)
    shuffled_tau = np.random.default_rng(5).permutation(tau)
    shuffled = ost_pipeline(simulated_features(shuffled_tau, labels), labels, beh, it_ost, splits, pca_components=8)
    assert matched.mean > 0.8 and matched.pooled.rho > 0.8
    assert abs(shuffled.mean) < 0.3 and abs(shuffled.pooled.rho) < 0.3
    assert matched.dprime.shape == (3, 8, labels.size) and matched.ost.shape == (3, labels.size)
    np.testing.assert_allclose(matched.sem, np.std(matched.rho, ddof=1) / np.sqrt(3))
    np.testing.assert_allclose(matched.fraction_solved, matched.n_common / 50)  # 50 test images, IT solves all
    for s, (_, test) in enumerate(splits):  # per split: Spearman over that split's test images only
        np.testing.assert_allclose(matched.rho[s], scipy.stats.spearmanr(matched.ost[s, test], it_ost[test])[0])


def test_ost_pipeline_with_layer_mapping():
    labels = np.repeat(np.arange(4), 15)
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(60, 6 + i)) for i in range(3)]
    splits = ost_splits(labels, n_train_per_class=10, n_splits=3)
    beh, it_ost = np.ones(60), 70.0 + rng.uniform(0, 100, 60)
    result = ost_pipeline(layers, labels, beh, it_ost, splits, mapping="graded", n_bins=4, pca_components=5)
    assert result.dprime.shape == (3, 4, 60)
    with pytest.raises(ValueError, match=r"\(60,\)"):
        ost_pipeline(layers, labels, beh[:5], it_ost, splits, mapping="uniform", n_bins=4)


def test_decode_dprime_errors():
    labels = np.repeat(np.arange(2), 10)
    x = np.random.default_rng(0).normal(size=(20, 3))
    overlapping = [(np.arange(15), np.arange(10, 20))]
    with pytest.raises(ValueError, match="overlap"):
        decode_dprime(x, labels, overlapping)
    one_class_train = [(np.arange(10), np.arange(10, 20))]
    with pytest.raises(ValueError, match="training images"):
        decode_dprime(x, labels, one_class_train)
    with pytest.raises(ValueError, match="flatten"):
        decode_dprime(x[:, :, None], labels, ost_splits(labels, 5, 2))
    with pytest.raises(ValueError, match="empty"):
        decode_dprime(x, labels, [])
    assert ost.N_BINS == len(ost.BIN_START_MS) == 19
