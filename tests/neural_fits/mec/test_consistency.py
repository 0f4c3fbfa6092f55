"""Eq. 4.1-4.4 against values computed by hand on tiny arrays, and the map-averaged hyperparameter choice."""

import itertools

import numpy as np
import pytest
from sklearn.linear_model import ElasticNet

from goaldriven.neural_fits.mec import consistency, transforms
from goaldriven.neural_fits.mec.ratemap_file import Environment, MECDataError, Recording
from goaldriven.neural_fits.metrics.splits import stimulus_splits


def _r(a, b):
    return np.corrcoef(a, b)[0, 1]


def _sb(rho):
    return 2 * rho / (1 + rho)


def _box(rng, nan_bin=None):
    a = rng.random((2, 4, 4))
    b = rng.random((1, 4, 4))
    if nan_bin is not None:
        a[1].reshape(-1)[nan_bin] = np.nan
    recs = {
        "A": Recording("A", np.array(["a0", "a1"]), rate_maps=a),
        "B": Recording("B", np.array(["b0"]), rate_maps=b),
    }
    return Environment("box", "box", (0.2, 0.2), recs).check()


def test_iac_2d_one_to_one_by_hand():
    env = _box(np.random.default_rng(0), nan_bin=5)
    scores = consistency.consistency_2d(env, transforms.factory("one_to_one"), 0.5, 2, seed=3)
    a = env.recordings["A"].rate_maps.reshape(2, -1)
    b = env.recordings["B"].rate_maps.reshape(1, -1)
    valid = np.delete(np.arange(16), 5)  # the NaN bin of a source cell is dropped for every target
    expected = {"a0": [], "a1": [], "b0": []}
    for train, test in stimulus_splits(15, 0.5, 2, 3):
        tr, te = valid[train], valid[test]
        for k, cell in enumerate(("a0", "a1")):  # source of A's cells: B's only cell
            expected[cell].append(_r(b[0, te], a[k, te]))
        best = np.argmax([_r(a[k, tr], b[0, tr]) for k in range(2)])  # source of B: the better of A's cells
        expected["b0"].append(_r(a[best, te], b[0, te]))
    assert scores.recordings.tolist() == ["A", "A", "B"] and scores.cell_ids.tolist() == ["a0", "a1", "b0"]
    np.testing.assert_allclose(scores.per_split, np.array([expected[c] for c in ("a0", "a1", "b0")]).T, atol=1e-12)
    np.testing.assert_allclose(scores.values, scores.per_split.mean(axis=0), atol=1e-12)


def test_pairwise_iac_2d_averages_the_sources_by_hand():
    rng = np.random.default_rng(7)
    maps = {name: rng.random((1, 4, 4)) for name in "ABC"}
    recs = {name: Recording(name, np.array([name.lower()]), rate_maps=m) for name, m in maps.items()}
    env = Environment("box", "box", (0.2, 0.2), recs).check()
    scores = consistency.consistency_2d(env, transforms.factory("one_to_one"), 0.5, 3, seed=1, mode="pairwise")
    flat = {name: m.reshape(-1) for name, m in maps.items()}
    for value, target in zip(scores.values, "ABC"):
        per_source = [
            np.mean([_r(flat[s][test], flat[target][test]) for _, test in stimulus_splits(16, 0.5, 3, 1)])
            for s in "ABC"
            if s != target
        ]
        assert value == pytest.approx(np.mean(per_source), abs=1e-12)
    assert scores.alpha is None


def test_predictivity_2d_ridge_by_hand():
    rng = np.random.default_rng(1)
    env = _box(rng)
    model = rng.random((3, 4, 4))
    scores = consistency.predictivity_2d(model, env, transforms.factory("ridge"), 0.75, 1, seed=0)
    x = model.reshape(3, -1).T
    ((train, test),) = stimulus_splits(16, 0.75, 1, 0)
    for i, (rec, k) in enumerate((("A", 0), ("A", 1), ("B", 0))):
        y = env.recordings[rec].rate_maps.reshape(-1, 16)[k]
        xm, ym = x[train].mean(0), y[train].mean()
        w = np.linalg.solve((x[train] - xm).T @ (x[train] - xm) + np.eye(3), (x[train] - xm).T @ (y[train] - ym))
        assert scores.values[i] == pytest.approx(_r((x[test] - xm) @ w + ym, y[test]), abs=1e-10)


def _track(rng, n=12):
    a = Recording("mA", np.array(["a"]), trials=rng.random((1, 2, n)), trial_maps=np.array([0, 0]))
    b = Recording("mB", np.array(["b"]), trials=rng.random((1, 2, n)), trial_maps=np.array([0, 0]))
    return Environment("track", "track", (0.05 * n,), {"A": a, "B": b}).check()


def test_iac_1d_single_bootstrap_is_one_of_the_hand_values():
    # Two trials per map: a bootstrap's halves are the two trials in one of two orders, for each animal. A one-column
    # one-to-one mapping predicts the source half itself, so eq. 4.1 is
    #   Corr(A_h1, B_h2) / sqrt(SB(Corr(A_h1, A_h2)) x SB(Corr(B_h1, B_h2)))   on the test bins.
    env = _track(np.random.default_rng(2))
    scores = consistency.consistency_1d(env, transforms.factory("one_to_one"), 0.5, 1, n_boot=1, seed=4)
    ((train, test),) = stimulus_splits(12, 0.5, 1, 4)
    ta, tb = env.recordings["A"].trials[0][:, test], env.recordings["B"].trials[0][:, test]
    for value, (src, tgt) in zip(scores.values, ((tb, ta), (ta, tb))):  # target A (source B), target B (source A)
        candidates = []
        for (i, j), (k, m) in itertools.product([(0, 1), (1, 0)], repeat=2):
            num = _r(src[i], tgt[m])
            mapping, target = _r(src[i], src[j]), _r(tgt[k], tgt[m])
            if mapping > 0 and target > 0:
                candidates.append(num / np.sqrt(_sb(mapping) * _sb(target)))
        if candidates:
            assert np.min(np.abs(np.array(candidates) - value)) < 1e-10, (value, candidates)
        else:
            assert np.isnan(value)


def test_predictivity_1d_single_feature_by_hand():
    # A model with one unit: M(r; s1) = M(r; s2) = r (one-to-one), the mapping term is 1 and eq. 4.2 is
    # Corr(r, s2) / sqrt(SB(Corr(s1, s2))); over many bootstraps the two trial orders average out.
    rng = np.random.default_rng(5)
    truth = np.sin(np.linspace(0, 3, 12))
    trials = truth + 0.3 * rng.standard_normal((2, 12))
    env = Environment(
        "t", "track", (0.6,), {"s": Recording("m", np.array(["c"]), trials=trials[None], trial_maps=np.array([0, 0]))}
    ).check()
    model = truth[None] + 0.1 * rng.standard_normal((1, 12))
    one = consistency.predictivity_1d(model, env, transforms.factory("one_to_one"), 0.5, 1, n_boot=1, seed=0)
    many = consistency.predictivity_1d(model, env, transforms.factory("one_to_one"), 0.5, 1, n_boot=400, seed=0)
    ((train, test),) = stimulus_splits(12, 0.5, 1, 0)
    t, r = trials[:, test], model[0, test]
    hand = [_r(r, t[j]) / np.sqrt(_sb(_r(t[0], t[1]))) for j in (1, 0)]
    assert min(abs(one.values[0] - h) for h in hand) < 1e-10
    assert min(hand) - 1e-12 <= many.values[0] <= max(hand) + 1e-12
    assert many.values[0] == pytest.approx(np.mean(hand), abs=0.1 * abs(hand[0] - hand[1]) + 1e-12)


def test_hyperparameters_are_chosen_on_the_average_over_a_cells_maps():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((24, 5))
    y = np.column_stack([x[:, 0] + s * rng.standard_normal(24) for s in (0.1, 3.0, 0.5, 2.0)])
    groups = np.array([0, 1, 0, 1])  # columns 0, 2: maps of cell 0; 1, 3: maps of cell 1
    alphas, l1 = np.geomspace(1e-3, 1e2, 6), np.array([0.1, 1.0])
    plain = transforms.GroupedElasticNetCV(alphas=alphas, l1_ratios=l1).fit(x, y)
    grouped = transforms.GroupedElasticNetCV(groups=groups, alphas=alphas, l1_ratios=l1).fit(x, y)
    for g in (0, 1):
        # (alphas, l1 ratios), averaged over the maps; NaN (a constant prediction at large alpha) is ignored
        mean = np.nanmean(plain.cv_scores_[:, :, groups == g], axis=-1)
        a, k = np.unravel_index(np.argmax(mean >= np.nanmax(mean) - 1e-9), mean.shape)
        assert np.isfinite(mean).sum() > 2
        assert (grouped.alpha_[groups == g] == alphas[a]).all() and (grouped.l1_ratio_[groups == g] == l1[k]).all()
    for j in range(4):  # refit on all training bins with the group's choice
        net = ElasticNet(alpha=grouped.alpha_[j], l1_ratio=grouped.l1_ratio_[j]).fit(x, y[:, j])
        np.testing.assert_allclose(grouped.coef_[:, j], net.coef_, atol=1e-8)


def test_estimators_refuse_the_wrong_geometry():
    env = _box(np.random.default_rng(0))
    with pytest.raises(MECDataError, match="the 1-D estimators"):
        consistency.consistency_1d(env, transforms.factory("ridge"))
    with pytest.raises(MECDataError, match=r"do not match the environment's bins \(4, 4\)"):
        consistency.predictivity_2d(np.ones((2, 5, 5)), env, transforms.factory("ridge"))
    lonely = Environment("b", "box", (0.2, 0.2), {"A": env.recordings["A"]}).check()
    with pytest.raises(MECDataError, match="no recording of another animal"):
        consistency.consistency_2d(lonely, transforms.factory("ridge"))
    with pytest.raises(ValueError, match="unknown MEC transform 'lars'"):
        transforms.factory("lars")


def test_1d_fits_label_every_map_column_with_its_cell():
    rng = np.random.default_rng(8)
    trials = rng.random((3, 7, 12))  # 3 cells, 7 trials: maps 0 (3 trials), 2 (4 trials); no map 1
    rec = Recording("m", np.array(["a", "b", "c"]), trials=trials, trial_maps=np.array([0, 2, 0, 2, 0, 2, 2]))
    env = Environment("t", "track", (0.6,), {"s": rec}).check()
    seen = []

    def make(groups=None):
        seen.append(groups)
        return transforms.make("elasticnet_cv", groups=groups, grid="short")

    scores = consistency.predictivity_1d(rng.random((4, 12)), env, make, 0.5, 1, n_boot=2, seed=0)
    assert len(seen) == 4 and all(g.tolist() == [0, 1, 2, 0, 1, 2] for g in seen)  # 2 bootstraps x 2 halves
    assert scores.values.shape == (3,) and scores.per_split.shape == (1, 3)
