"""Each figure is written (non-empty PNG) from hand-built result dicts of the protocols' shapes."""

import os

import pytest

from goaldriven.identification import figures

RULES = ["adam", "fa", "ia", "sgdm"]


def _result(mean, n_rules=4):
    confusion = [[5 if i == j else 1 for j in range(n_rules)] for i in range(n_rules)]
    return {"mean": mean, "sem": 0.02, "chance": 1 / n_rules, "confusion": confusion, "rules": RULES[:n_rules]}


def _written(path):
    assert os.path.getsize(path) > 1000
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp.png")]


def test_accuracy_bars_and_confusions(tmp_path):
    results = {c: {m: _result(0.5 + 0.1 * i) for i, m in enumerate(["weights", "activations", "activity_change",
                                                                      "all"])} for c in ("svm", "rf", "conv1d")}  # fmt: skip
    figures.accuracy_bars(results, str(tmp_path / "bars.png"))
    figures.confusion_matrices({f"{c} all": results[c]["all"] for c in results}, str(tmp_path / "confusion.png"))
    _written(str(tmp_path / "bars.png"))
    _written(str(tmp_path / "confusion.png"))


def test_importances(tmp_path):
    values = {"weights_raw_median": 0.3, "activations_abs_norm": 0.2, "gradavg_abs": 0.1, "position": 0.01}
    figures.importances(values, str(tmp_path / "imp.png"))
    _written(str(tmp_path / "imp.png"))


def test_holdout_bars(tmp_path):
    held = {"held_out": {"imagenet": _result(0.8), "cifar10": _result(0.4)}, "mean": 0.6, "sem": 0.2}
    results = {"task": {"weights": held, "all": held}, "curriculum": {"all": {"group": "curriculum", "skipped": "x"}}}
    figures.holdout_bars(results, str(tmp_path / "holdout.png"), reference={"all": {"mean": 0.9, "sem": 0.01}})
    _written(str(tmp_path / "holdout.png"))
    with pytest.raises(ValueError, match="skipped"):
        figures.holdout_bars({"curriculum": results["curriculum"]}, str(tmp_path / "none.png"))


def test_subsampling_curves_and_noise_heatmaps(tmp_path):
    curves = {"dense": {"period": 5, "counts": {"2": _result(0.4), "21": _result(0.9)}, "skipped": []},
              "sparse": {"period": 25, "counts": {"2": _result(0.6)}, "skipped": [6]}}  # fmt: skip
    portions = {
        "thirds": {"portions": 3, "samples_per_portion": 7, "mean": [[0.9, 0.5, 0.3]] * 3, "sem": [[0] * 3] * 3}
    }
    figures.subsampling_curves(curves, str(tmp_path / "sub.png"), portions=portions)
    _written(str(tmp_path / "sub.png"))
    noise = {"fractions": [3e-5, 1.0], "noises": [0.0, 10.0],
             "mean": {"weights": [[0.5, None], [0.9, 0.6]], "activations": [[0.7, 0.6], [1.0, 0.9]]}}  # fmt: skip
    figures.noise_heatmaps(noise, str(tmp_path / "noise.png"), title="FA vs IA")
    _written(str(tmp_path / "noise.png"))
