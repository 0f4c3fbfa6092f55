"""The summary's two aggregations over units and splits, computed by hand on a small fabricated fit."""

import numpy as np
import pytest

from goaldriven.neural_fits.pipeline import summary
from goaldriven.neural_fits.pipeline.fitting import FitConfig

LABEL = "70-170 ms"
# Per split (rows) and unit (columns): the noise-corrected score of each unit in each split (bootstraps averaged).
PER_SPLIT = {
    "A": np.array([[0.0, 0.6, 0.7], [0.6, 0.0, 0.5]]),
    "B": np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]),
}
ANIMALS = np.array([[0.8, 0.4, 1.0], [0.6, 0.9, 0.2]])  # the inter-animal consistency of the same units, per split


def _fit(aggregation):
    rows = [
        dict(unit_id=f"u{j}", animal="m", area="IT", layer=layer, time=LABEL, raw=0.1, reliability=0.5,
             noise_corrected=float(PER_SPLIT[layer][:, j].mean()))  # the per-unit score: averaged over the splits
        for layer in ("A", "B")
        for j in range(3)
    ]  # fmt: skip
    splits = {("IT", layer, LABEL): [values] for layer, values in PER_SPLIT.items()}
    inter_animal = {("IT", LABEL): {"values": ANIMALS.mean(axis=0), "per_split": ANIMALS}}
    config = FitConfig(aggregation=aggregation)
    return summary.summarize_fit(rows, ["A", "B"], ["IT"], inter_animal, config, split_scores=splits)


def test_median_of_unit_means_the_default():
    result = _fit("median_of_unit_means")
    # unit means: A (0.3, 0.3, 0.6) -> median 0.3; B (0.5, 0.5, 0.5) -> 0.5; animals (0.7, 0.65, 0.6) -> 0.65
    assert result["aggregation"]["name"] == "median_of_unit_means"
    assert result["areas"]["IT"]["A"][LABEL]["score"] == pytest.approx(0.3)
    assert result["areas"]["IT"]["B"][LABEL]["score"] == pytest.approx(0.5)
    assert result["best_layer"] == {"IT": "B"}
    animals = result["inter_animal_consistency"]["IT"][LABEL]
    assert animals["score"] == pytest.approx(0.65) and animals["fraction_of_inter_animal"] == pytest.approx(0.5 / 0.65)


def test_mean_of_split_medians_as_brain_score():
    result = _fit("mean_of_split_medians")
    # per-split medians: A 0.6 and 0.5 -> mean 0.55, error std(0.6, 0.5) / sqrt(2) = 0.05 / sqrt(2); B 0.5, 0.5 -> 0.5
    assert result["aggregation"]["name"] == "mean_of_split_medians"
    assert "mean over splits of the median over units" in result["aggregation"]["definition"]
    a = result["areas"]["IT"]["A"][LABEL]
    assert a["score"] == pytest.approx(0.55) and a["score_error"] == pytest.approx(0.05 / np.sqrt(2))
    assert result["areas"]["IT"]["B"][LABEL]["score"] == pytest.approx(0.5)
    assert result["best_layer"] == {"IT": "A"}  # the other aggregation picks another layer
    # animals: split medians 0.8 and 0.6 -> 0.7 (error 0.1 / sqrt(2)); fraction 0.55 / 0.7
    animals = result["inter_animal_consistency"]["IT"][LABEL]
    assert animals["score"] == pytest.approx(0.7) and animals["score_error"] == pytest.approx(0.1 / np.sqrt(2))
    assert animals["fraction_of_inter_animal"] == pytest.approx(0.55 / 0.7)
    # The median over units of the unit means is still reported beside the score.
    assert a["noise_corrected"]["median"] == pytest.approx(0.3)


def test_an_unknown_aggregation_is_refused():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        FitConfig(aggregation="mean")
