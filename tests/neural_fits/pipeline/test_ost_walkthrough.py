"""The embedded OST walkthrough: the planted IT layers are chosen, planted solution times recovered, shuffled lost."""

import json

from goaldriven.neural_fits.pipeline import ost_walkthrough


def test_walkthrough_recovers_the_planted_truth(tmp_path):
    out = ost_walkthrough.run(
        str(tmp_path),
        n_splits=3,
        per_object=24,
        log=lambda _: None,
        pls_components=10,
        selection_splits=2,
        selection_boot=4,
    )
    with open(tmp_path / "walkthrough.json") as f:
        assert json.load(f)["it_preferred_layers"] == ["it_a", "it_b"]
    consistency = out["consistency"]
    assert consistency["convrnn"][0] > 0.55, consistency
    assert abs(consistency["convrnn_shuffled_truth"][0]) < 0.35, consistency
    assert set(consistency) >= {"pls_convrnn", "feedforward_uniform", "feedforward_graded", "feedforward_pls_graded"}
    for folder in ("recurrent", "feedforward"):
        assert (tmp_path / folder / "ost_scatter.png").exists() and (tmp_path / folder / "ost_summary.json").exists()
