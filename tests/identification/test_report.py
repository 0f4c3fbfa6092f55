"""The report's qualitative checks (spec 11.7) and regime scaling, on hand-made results."""

import numpy as np

from goaldriven.identification import report


def _r(mean):
    return {"mean": mean, "sem": 0.01, "chance": 0.25}


def test_checks_read_the_results():
    results = {
        "measures": {
            "svm": {"weights": _r(0.7), "activations": _r(0.3), "activity_change": _r(0.5), "all": _r(0.8)},
            "rf": {"weights": _r(0.9), "activations": _r(0.9), "activity_change": _r(0.8), "all": _r(0.95)},
        },
        "averaged": {"svm": {"weights": _r(0.5), "activations": _r(0.2), "activity_change": _r(0.4), "all": _r(0.6)}},
        "unit_subsampling": {
            "rf": {
                "fractions": [0.01, 1.0],
                "noises": [0.0, 1.0],
                "mean": {"weights": [[0.5, 0.5], [0.9, 0.6]], "activations": [[0.85, 0.8], [0.9, 0.88]]},
            }
        },
    }
    checks = report.qualitative_checks(results)
    assert checks == {
        "random forest is the best classifier (all measures)": True,
        "activations are the least linearly separable (SVM)": True,
        "trajectory averaging hurts the SVM (every measure)": True,
        "activations are the most robust to unit subsampling and noise (rf)": True,
    }
    results["measures"]["svm"]["all"] = _r(0.99)
    results["measures"]["svm"]["activations"] = _r(0.95)
    results["averaged"]["svm"]["weights"] = _r(0.75)
    results["unit_subsampling"]["rf"]["mean"]["activations"] = [[0.3, 0.3], [0.9, 0.3]]
    checks = report.qualitative_checks(results)
    assert not any(checks.values())
    assert "not tested" in report.tables(
        {**results, "n_examples": 4, "runs": 1, "rules": ["a", "b"], "checks": {"x": None}}
    )


def test_regimes_scale_with_the_recorded_span():
    assert report.scaled_regimes(np.arange(0, 101, 5)) == {
        "dense": (5, (2, 4, 6, 9, 11, 13, 16, 18, 21)),
        "intermediate": (15, (2, 4, 6)),
        "sparse": (25, (2, 4)),
    }
    scaled = report.scaled_regimes(np.arange(0, 21))
    assert {k: v[0] for k, v in scaled.items()} == {"dense": 1, "intermediate": 3, "sparse": 5}
