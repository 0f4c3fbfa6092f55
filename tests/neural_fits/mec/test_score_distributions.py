"""KS distance against scipy.stats.ks_2samp, cell types at the thesis thresholds, scores of known maps."""

import numpy as np
import pytest
import scipy.stats

from goaldriven.neural_fits.mec import score_distributions, walkthrough


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_distance_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(0, 1, 37), 1)  # ties within and across samples
    b = np.round(rng.normal(0.4, 1.3, 23), 1)
    expected = scipy.stats.ks_2samp(a, b)
    assert score_distributions.ks_distance(a, b) == pytest.approx(expected.statistic, abs=1e-12)
    out = score_distributions.compare(np.append(a, np.nan), b)  # NaN scores are left out
    assert out["ks"] == pytest.approx(expected.statistic, abs=1e-12) and out["neg_ks"] == -out["ks"]
    assert out["p_value"] == pytest.approx(expected.pvalue) and out["n_model"] == 37
    assert out["distinguishable"] == (expected.pvalue < 0.05)


def test_ks_distance_edge_cases():
    assert score_distributions.ks_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert score_distributions.ks_distance([0, 0], [1, 1, 1]) == 1.0
    with pytest.raises(ValueError, match="finite values in both samples"):
        score_distributions.ks_distance([np.nan], [1.0])


def test_cell_types_use_the_thesis_thresholds():
    types = score_distributions.cell_types([0.31, 0.3, np.nan, 0.9, -0.2], [0.0, 0.51, 0.9, 0.9, 0.5])
    assert types.tolist() == ["grid", "border", "border", "grid", "heterogeneous"]


def test_simulated_grid_and_border_cells_score_as_such():
    rng = np.random.default_rng(0)
    centres = -0.5 + 0.05 * (np.arange(20) + 0.5)
    xy = np.stack(np.meshgrid(centres, centres), axis=-1)
    maps = np.stack([walkthrough.box_tuning(kind, xy, rng, 1.0, (0.1, 0.4)) for kind in ("grid", "border", "place")])
    scores = score_distributions.map_scores(maps)
    assert scores["grid"][0] > 0.3 and scores["border"][1] > 0.5
    assert scores["grid"][1] < 0.3
