"""The simulated-MEC walkthrough's known truth: the true tuning curves reach the ceiling, shuffled bins score ~0."""

import json
import os

import numpy as np
import pytest

from goaldriven.neural_fits.mec import fit, walkthrough

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # ElasticNet-CV's tiny alphas


def test_box_true_tuning_reaches_its_ceiling_and_shuffled_scores_zero(tmp_path):
    spec = fit.MECFit(grid="short", n_splits=3, consistency_transforms=("one_to_one", "ridge"))
    out = walkthrough.run(
        str(tmp_path), "box", spec, log=lambda _: None, n_animals=3, cells_per_animal=8, noise=0.3, seed=0
    )
    assert out["median_true_tuning_over_ceiling"] > 0.9, out
    assert abs(out["median_shuffled"]) < 0.15, out
    assert out["median_shuffled"] < out["median_inter_animal"] < out["median_true_tuning"], out
    with open(tmp_path / "mec_summary.json") as f:
        summary = json.load(f)
    assert summary["best_layer"] == "true_tuning" and summary["cell_types"]["grid"] >= 1
    assert summary["ks"]["grid"]["ks"] >= 0 and "t" in summary["grid_vs_heterogeneous"]
    assert summary["inter_animal"]["ridge"]["median_n_source_units"] == 16  # pooled: 2 other animals x 8 cells
    assert "median_n_source_units" not in summary["inter_animal"]["one_to_one"]
    for name in ("fig4_1.png", "score_distributions.png", "mec_units.csv", "mec_rate_maps.h5", "walkthrough.json"):
        assert os.path.getsize(tmp_path / name) > 0


def test_track_true_tuning_reaches_the_spearman_brown_expectation(tmp_path):
    spec = fit.MECFit(
        transform="one_to_one", consistency_transforms=(), n_splits=2, n_boot=6, train_fraction=0.25, seed=1
    )
    env, truth, expected = walkthrough.simulate_track(n_sessions=2, cells=3, length=4.0, trials_per_map=8, seed=1)
    result = fit.fit_environment(env, walkthrough.known_models(truth), spec, log=lambda _: None)
    true, shuffled = result.predictivity["true_tuning"].values, result.predictivity["shuffled"].values
    np.testing.assert_allclose(np.median(true / expected), 1.0, atol=0.1)
    assert abs(np.nanmedian(shuffled)) < 0.25
    assert result.summary["tanh"] and np.isfinite(result.summary["inter_animal"]["one_to_one"]["median"])
