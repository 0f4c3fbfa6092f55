"""Chapter 3 unit selection on planted truth: reliable / unreliable units, planted windows, the 75th-percentile
specimen rule, the VISrl exclusion and the Table 3.1 comparison (expected counts worked out by hand below)."""

import numpy as np
import pytest

from goaldriven.neural_fits.data.allen_selection import (
    THESIS_TABLE_3_1,
    compare_to_thesis,
    largest_reliable_window,
    select_calcium,
    select_neuropixels,
    specimens_at_percentile,
    table_3_1_counts,
)
from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.metrics.splits import trial_halves

N, R = 60, 10  # stimuli, trials


def _units(rng, reliable: bool, t: int = 1, good_bins=None):
    """(N, t, R) responses: a stimulus signal plus small trial noise where reliable, pure noise elsewhere."""
    out = rng.standard_normal((N, t, R))
    good = np.ones(t, bool) if good_bins is None else np.isin(np.arange(t), good_bins)
    if reliable:
        out[:, good, :] = 0.2 * out[:, good, :] + rng.standard_normal((N, good.sum(), 1))
    return out


def _data(spec, t=1, p_run=None):
    """spec: list of (specimen, area, reliable or good_bins) per unit."""
    rng = np.random.default_rng(0)
    responses = []
    for _, _, planted in spec:
        if isinstance(planted, bool):
            responses.append(_units(rng, planted, t))
        else:
            responses.append(_units(rng, True, t, planted))
    per_unit = {} if p_run is None else {"p_run_mod_ns": np.asarray(p_run, float)}
    return NeuralData(
        responses=np.stack(responses, axis=1),
        stimulus_ids=np.arange(N).astype(str),
        unit_ids=[f"{s}/{k}" for k, (s, _, _) in enumerate(spec)],
        animal=[s for s, _, _ in spec],
        area=[a for _, a, _ in spec],
        time_bins_ms=np.stack([10.0 * np.arange(t), 10.0 * np.arange(1, t + 1)], axis=1),
        attrs={"per_unit": per_unit},
    )


def test_largest_reliable_window_by_hand():
    # medians over 3 units per bin: [0.1, 0.4, 0.5, 0.2, 0.3, 0.35, 0.31, 0.0]
    rel = np.array([[0.1, 0.4, 0.5, 0.2, 0.3, 0.35, 0.31, 0.0], [0.0, 0.5, 0.9, 0.9, 0.4, 0.3, 0.6, 0.9]])
    rel = np.concatenate([rel, [[0.2, 0.3, 0.4, -1, 0.3, 0.5, 0.2, -1]]])
    assert largest_reliable_window(rel, 0.3) == (4, 7)
    assert largest_reliable_window(rel[:, :4], 0.3) == (1, 3)
    assert largest_reliable_window(np.array([[0.5, 0.1, 0.5]]), 0.3) == (0, 1)  # tie: the earliest
    assert largest_reliable_window(np.zeros((2, 5)), 0.3) is None


def test_specimens_at_percentile_by_hand():
    # np.percentile([1, 2, 3, 4, 10], 75) = 4 (position 3 of the sorted counts)
    assert specimens_at_percentile({"a": 1, "b": 2, "c": 3, "d": 4, "e": 10}) == {"d", "e"}
    # [0, 2, 3]: position 1.5 -> 2.5
    assert specimens_at_percentile({"a": 0, "b": 2, "c": 3}) == {"c"}
    assert specimens_at_percentile({"a": 0, "b": 0}) == set()


CALCIUM = (
    [("s1", "VISp", True)] + [("s1", "VISp", False)] * 2 + [("s2", "VISp", True)] * 2 + [("s3", "VISp", True)] * 5
    + [("s4", "VISp", True)] * 4 + [("s1", "VISl", True)] * 3 + [("s5", "VISl", False)] * 2
    + [("s5", "VISrl", True)] * 3
)  # fmt: skip
P_RUN = [0.5] * 3 + [0.9] * 2 + [0.2] * 4 + [0.01] + [0.3] * 3 + [np.nan] + [0.6] * 3 + [0.7] * 2 + [0.8] * 3


def test_select_calcium_planted_counts():
    data = _data(CALCIUM, p_run=P_RUN)
    out, report = select_calcium(data, n_boot=10, seed=1)
    # selected per specimen: VISp s1 1, s2 2, s3 4 (one p = 0.01), s4 4 (NaN p kept) -> 75th pct of [1, 2, 4, 4]
    # = 4 -> s3, s4; VISl s1 3, s5 0 -> 2.25 -> s1; VISrl dropped
    assert table_3_1_counts(calcium=out) == {("calcium", "VISp"): (8, 2), ("calcium", "VISl"): (3, 1)}
    assert out.unit_ids.tolist() == [f"s3/{k}" for k in (5, 6, 7, 8)] + [f"s4/{k}" for k in (10, 11, 12, 13)] + [
        f"s1/{k}" for k in (14, 15, 16)
    ]
    stages = dict(report.stages)
    assert stages["recorded"] == {"VISp": (14, 4), "VISl": (5, 2), "VISrl": (3, 1)}
    assert stages["consistency >= 0.3"] == {"VISp": (12, 4), "VISl": (3, 1), "VISrl": (3, 1)}
    assert stages["and p_run_mod_ns > 0.05"]["VISp"] == (11, 4)
    assert "VISrl" not in stages["VISrl excluded"]
    rel = out.attrs["per_unit"]["reliability"]
    assert rel.min() > 0.9  # SB-corrected consistency of the planted signal units
    halves = trial_halves(R, 10, 1)  # the halves seed 1 draws; the consistency by hand for unit s3/5
    x = data.responses[:, 5, 0, :]
    rhos = [np.corrcoef(x[:, h[0]].mean(1), x[:, h[1]].mean(1))[0, 1] for h in halves]
    assert rel[0] == pytest.approx(np.mean([2 * r / (1 + r) for r in rhos]), rel=1e-9)
    # NaN p dropped: s4 has 3 -> [1, 2, 4, 3] -> 3.25 -> s3 only; VISrl kept when asked
    out, _ = select_calcium(data, n_boot=10, seed=1, nan_p="drop", exclude_visrl=False)
    assert table_3_1_counts(calcium=out) == {
        ("calcium", "VISp"): (4, 1),
        ("calcium", "VISl"): (3, 1),
        ("calcium", "VISrl"): (3, 1),
    }
    assert "VISrl" in report.format() and "8/2" in report.format()


NEUROPIXELS = (
    [("A", "VISp", [2, 3, 4])] * 3 + [("A", "VISp", [6])] + [("A", "VISl", [0, 1, 5, 6])] * 2
    + [("B", "VISp", [5, 6, 7])] * 3 + [("C", "VISp", False)] * 3
)  # fmt: skip


def test_select_neuropixels_planted_windows():
    p_run = [0.5] * 6 + [0.5, 0.01, np.nan] + [0.5] * 3
    data = _data(NEUROPIXELS, t=8, p_run=p_run)
    out, report = select_neuropixels(data, n_boot=10, seed=2)
    # A/VISp: bins 2-4 reliable in 3 of 4 units (bin 6 only in 1) -> 20-50 ms; A/VISl: 0-1 and 5-6 tie -> 0-20 ms;
    # B/VISp: 50-80 ms; C: no window. VISp counts A 4, B 3, C 0 -> 75th pct of [4, 3, 0] = 3.5 -> A only.
    assert report.windows_ms == {("A", "VISp"): (20.0, 50.0), ("A", "VISl"): (0.0, 20.0), ("B", "VISp"): (50.0, 80.0),
                                 ("C", "VISp"): None}  # fmt: skip
    assert table_3_1_counts(neuropixels=out) == {("neuropixels", "VISp"): (4, 1), ("neuropixels", "VISl"): (2, 1)}
    assert out.responses.shape == (N, 6, 1, R) and out.time_bins_ms.tolist() == [[0.0, 80.0]]
    np.testing.assert_allclose(out.responses[:, 0, 0], data.responses[:, 0, 2:5].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out.responses[:, 4, 0], data.responses[:, 4, 0:2].mean(axis=1), rtol=1e-6)
    assert out.attrs["per_unit"]["window_start_ms"].tolist() == [20.0] * 4 + [0.0] * 2
    # reference filters: the bin-6-only unit keeps max >= 0.5; B loses its p = 0.01 unit (NaN kept), C all fail
    out, report = select_neuropixels(data, n_boot=10, seed=2, reference_filters=True)
    stages = dict(report.stages)
    assert stages["max-over-time consistency >= 0.5"]["VISp"] == (7, 2)
    assert stages["and p_run_mod_ns > 0.05 or NaN"]["VISp"] == (6, 2)
    # VISp counts A 4, B 2, C 0 -> 75th pct = 3 -> A
    assert table_3_1_counts(neuropixels=out)[("neuropixels", "VISp")] == (4, 1)


def test_compare_to_thesis_totals():
    ours = {("neuropixels", "VISp"): (440, 8), ("calcium", "VISp"): (7000, 30), ("calcium", "VISrl"): (5, 1)}
    text = compare_to_thesis(ours)
    lines = {tuple(line.split()[:2]): line.split()[2:] for line in text.splitlines()[1:]}
    assert lines[("neuropixels", "VISp")] == ["440", "442", "8", "8"]
    assert lines[("neuropixels", "total")] == ["440", "1731", "8", "39"]  # Fig 3.5A N = 1731, Fig 3.7 N = 39
    assert lines[("calcium", "total-VISrl")] == ["7000", "16228", "30", "90"]  # Fig 3.6A, Fig 3.7
    assert lines[("calcium", "VISl")] == ["0", "4393", "0", "24"]
    assert len(THESIS_TABLE_3_1) == 12
    assert compare_to_thesis({}).count("\n") == 0


def test_empty_selection_names_the_stages():
    from goaldriven.neural_fits.data.neural_data import NeuralDataError

    data = _data([("s1", "VISp", False)] * 3, p_run=[0.5] * 3)
    with pytest.raises(NeuralDataError, match=r"(?s)kept no unit.*consistency >= 0.3 +0/0"):
        select_calcium(data, n_boot=10, seed=0)
    with pytest.raises(NeuralDataError, match="p_run_mod_ns"):
        select_calcium(_data([("s1", "VISp", True)] * 3), n_boot=10, seed=0)
