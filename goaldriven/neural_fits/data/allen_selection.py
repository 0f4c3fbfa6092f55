"""Thesis Chapter 3 unit selection for the Allen natural scenes data, with counts per stage and Table 3.1.

Reference: A. Nayebi, PhD thesis (2022), Section 3.6.1 and Table 3.1 (spec ch3 A1, A2.2, Ambiguities 2 and 19).

    calcium      keep units with SB split-half consistency >= 0.3 (mean over 100 bootstrapped split halves)
                 AND running-modulation p_run_mod_ns > 0.05 (NaN p: kept by default, `nan_p="drop"` drops them)
    neuropixels  per specimen and area: the largest contiguous run of 10 ms bins where the median (over that
                 specimen's units in that area) split-half consistency is >= 0.3; responses averaged over it
    both         keep specimens with >= the 75th percentile (np.percentile, linear) of selected units among the
                 specimens recording that area (zero counts included); calcium VISrl excluded (flag)

Decisions (docs/allen_data.md): the window rule uses the SB-corrected consistency (A2.2 defines "split-half
consistency" as SB-corrected for every use; `spearman_brown=False` for the raw correlation). The reference code's
extra per-unit Neuropixels filters (max-over-time consistency >= 0.5, p_run_mod_ns > 0.05 or NaN) are off by default
because the thesis text does not state them ([T] wins over [C]); `reference_filters=True` applies them before the
window is found. Ties between equally long windows go to the earliest.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from goaldriven.neural_fits.data.allen_arrays import VISUAL_AREAS
from goaldriven.neural_fits.data.neural_data import NeuralData, NeuralDataError
from goaldriven.neural_fits.metrics.reliability import split_half_reliability

# n: stimuli, u: units, t: time bins, r: trials

__all__ = [
    "THESIS_TABLE_3_1",
    "SelectionReport",
    "largest_reliable_window",
    "specimens_at_percentile",
    "select_calcium",
    "select_neuropixels",
    "table_3_1_counts",
    "compare_to_thesis",
]

# Table 3.1: (modality, area) -> (units, specimens) after selection.
THESIS_TABLE_3_1 = {
    ("calcium", "VISp"): (7080, 29),
    ("calcium", "VISl"): (4393, 24),
    ("calcium", "VISal"): (2064, 9),
    ("calcium", "VISrl"): (1116, 8),
    ("calcium", "VISam"): (847, 9),
    ("calcium", "VISpm"): (1844, 19),
    ("neuropixels", "VISp"): (442, 8),
    ("neuropixels", "VISl"): (162, 6),
    ("neuropixels", "VISal"): (396, 6),
    ("neuropixels", "VISrl"): (299, 7),
    ("neuropixels", "VISam"): (257, 7),
    ("neuropixels", "VISpm"): (175, 5),
}


@dataclasses.dataclass
class SelectionReport:
    """Units and specimens per area after every stage (stages in order), plus the Neuropixels windows."""

    modality: str
    stages: list = dataclasses.field(default_factory=list)  # [(stage name, {area: (units, specimens)})]
    windows_ms: dict = dataclasses.field(default_factory=dict)  # {(specimen, area): (start_ms, end_ms) or None}

    def add(self, stage: str, area, animal, mask) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.stages.append((stage, _counts(np.asarray(area)[mask], np.asarray(animal)[mask])))

    def format(self) -> str:
        areas = [a for a in VISUAL_AREAS if any(a in c for _, c in self.stages)]
        areas += sorted({a for _, c in self.stages for a in c} - set(areas))
        width = max([len(s) for s, _ in self.stages] + [5])
        lines = [f"{self.modality}: units/specimens per stage", " " * width + "".join(f"{a:>14}" for a in areas)]
        for stage, counts in self.stages:
            cells = "".join(f"{'%d/%d' % counts.get(a, (0, 0)):>14}" for a in areas)
            lines.append(f"{stage:<{width}}{cells}")
        return "\n".join(lines)


def _counts(area, animal) -> dict:
    return {a: (int(np.sum(area == a)), len(set(animal[area == a].tolist()))) for a in sorted(set(area.tolist()))}


def largest_reliable_window(reliability, threshold: float = 0.3):
    """(start, stop) bin indices of the longest contiguous run with median-over-units reliability >= threshold.

    Args:
        reliability: (u, t) per-unit, per-bin split-half consistency (NaN ignored by the median).
    Returns:
        (start, stop) with stop exclusive (earliest run on ties), or None when no bin passes.
    """
    reliability = np.asarray(reliability, dtype=np.float64)
    with np.errstate(all="ignore"):
        median = np.nanmedian(reliability, axis=0) if np.isfinite(reliability).any() else reliability[0] * np.nan
    good = np.concatenate([[False], median >= threshold, [False]])
    edges = np.flatnonzero(np.diff(good.astype(np.int8)))
    if edges.size == 0:
        return None
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))  # argmax: the first of equally long runs
    return int(starts[best]), int(stops[best])


def specimens_at_percentile(counts: dict, q: float = 75.0) -> set:
    """Specimens whose count is >= the q-th percentile (np.percentile, linear) of all counts, and > 0."""
    if not counts:
        return set()
    bar = np.percentile(np.asarray(list(counts.values()), dtype=np.float64), q)
    return {s for s, c in counts.items() if c >= bar and c > 0}


def _specimen_rule(data: NeuralData, recorded, selected, q: float) -> np.ndarray:
    """Selected units of specimens at or above the q-th percentile of selected units for their area."""
    keep = np.zeros(data.num_units, dtype=bool)
    for area in sorted(set(data.area[recorded].tolist())):
        in_area = recorded & (data.area == area)
        counts = {s: int(np.sum(selected & in_area & (data.animal == s))) for s in set(data.animal[in_area].tolist())}
        kept = specimens_at_percentile(counts, q)
        keep |= selected & in_area & np.isin(data.animal, list(kept))
    return keep


def _p_run(data: NeuralData, p_run) -> np.ndarray:
    if p_run is None:
        p_run = data.attrs.get("per_unit", {}).get("p_run_mod_ns")
        if p_run is None:
            raise NeuralDataError(
                "no running-modulation p-values: attrs['per_unit']['p_run_mod_ns'] is absent. Fix: pass p_run= "
                "(one per unit; NaN = not computable) or read the data with the allen_* readers."
            )
    p_run = np.asarray(p_run, dtype=np.float64)
    if p_run.shape != (data.num_units,):
        raise ValueError(f"p_run must have one entry per unit ({data.num_units},); received {p_run.shape}.")
    return p_run


def _not_running_modulated(p_run, nan_p: str) -> np.ndarray:
    if nan_p not in ("keep", "drop"):
        raise ValueError(f"nan_p must be 'keep' or 'drop'; received {nan_p!r}.")
    return (p_run > 0.05) | (np.isnan(p_run) & (nan_p == "keep"))


def select_calcium(
    data: NeuralData,
    *,
    threshold: float = 0.3,
    p_run=None,
    nan_p: str = "keep",
    exclude_visrl: bool = True,
    percentile: float = 75.0,
    n_boot: int = 100,
    seed: int = 0,
    reliability=None,
) -> tuple[NeuralData, SelectionReport]:
    """Thesis calcium selection on all specimens of the two-photon data (one merged NeuralData, t = 1).

    Args:
        data: merged calcium NeuralData (concatenate_animals of the readers' outputs).
        threshold: SB split-half consistency bar (0.3).
        p_run: (u,) p_run_mod_ns; default attrs["per_unit"]["p_run_mod_ns"].
        nan_p: "keep" (default: AllenSDK gives NaN when < 5 running or stationary trials, i.e. no evidence of
            modulation; the reference code also keeps NaN) or "drop".
        exclude_visrl: drop calcium VISrl (thesis Section 3.3).
        percentile: the specimen rule's percentile (75).
        n_boot, seed: bootstrapped split halves (100).
        reliability: (u,) precomputed consistency (skips the bootstrap).

    Returns:
        (selected NeuralData with attrs["per_unit"]["reliability"], SelectionReport).
    """
    if data.num_time_bins != 1:
        raise ValueError(f"calcium data must have one response window (t = 1); received t = {data.num_time_bins}.")
    if reliability is None:
        reliability = split_half_reliability(data.responses[:, :, 0, :], n_boot, seed, spearman_brown=True)
    reliability = np.asarray(reliability, dtype=np.float64)
    report = SelectionReport("calcium")
    recorded = np.ones(data.num_units, dtype=bool)
    report.add("recorded", data.area, data.animal, recorded)
    reliable = np.nan_to_num(reliability, nan=-np.inf) >= threshold
    report.add(f"consistency >= {threshold:g}", data.area, data.animal, reliable)
    selected = reliable & _not_running_modulated(_p_run(data, p_run), nan_p)
    report.add("and p_run_mod_ns > 0.05", data.area, data.animal, selected)
    if exclude_visrl:
        recorded = data.area != "VISrl"
        selected &= recorded
        report.add("VISrl excluded", data.area, data.animal, selected)
    keep = _specimen_rule(data, recorded, selected, percentile)
    report.add(f"specimens >= {percentile:g}th pct", data.area, data.animal, keep)
    return _finish(_with_per_unit(data, {"reliability": reliability}), keep, report)


def _with_per_unit(data: NeuralData, arrays: dict) -> NeuralData:
    attrs = dict(data.attrs)
    attrs["per_unit"] = {**dict(attrs.get("per_unit", {})), **arrays}
    return dataclasses.replace(data, attrs=attrs)


def select_neuropixels(
    data: NeuralData,
    *,
    threshold: float = 0.3,
    spearman_brown: bool = True,
    reference_filters: bool = False,
    p_run=None,
    percentile: float = 75.0,
    n_boot: int = 100,
    seed: int = 0,
) -> tuple[NeuralData, SelectionReport]:
    """Thesis Neuropixels window rule + specimen rule on one merged NeuralData of 10 ms bins.

    Each (specimen, area) gets its own window; units of a pair without a window are dropped. The output has one
    time bin holding the window mean; its nominal span is the whole recorded range (time_bins_ms [[0, 250]]) and
    each unit's window is in attrs["per_unit"]["window_start_ms"], ["window_end_ms"].

    Args:
        reference_filters: also require max-over-time consistency >= 0.5 and p_run_mod_ns > 0.05 or NaN (the
            reference code; off by default, module docstring). Applied before the window is found.
        spearman_brown: SB-correct the consistency used by the window rule (default, spec A2.2).
        p_run: (u,) p-values for reference_filters; default attrs["per_unit"]["p_run_mod_ns"].
    """
    report = SelectionReport("neuropixels")
    recorded = np.ones(data.num_units, dtype=bool)
    report.add("recorded", data.area, data.animal, recorded)
    reliability = np.full((data.num_units, data.num_time_bins), np.nan)
    for specimen in data.animals():
        mine = data.animal == specimen
        reliability[mine] = split_half_reliability(data.responses[:, mine], n_boot, seed, spearman_brown)
    candidates = recorded.copy()
    if reference_filters:
        peak = np.nan_to_num(np.nanmax(np.where(np.isnan(reliability), -np.inf, reliability), axis=1), nan=-np.inf)
        candidates &= peak >= 0.5
        report.add("max-over-time consistency >= 0.5", data.area, data.animal, candidates)
        candidates &= _not_running_modulated(_p_run(data, p_run), "keep")
        report.add("and p_run_mod_ns > 0.05 or NaN", data.area, data.animal, candidates)
    bins = data.time_bins_ms
    window = np.zeros((data.num_units, 2))
    windowed = np.zeros(data.responses.shape[:2] + (1, data.num_trials), dtype=np.float32)
    selected = np.zeros(data.num_units, dtype=bool)
    for specimen in data.animals():
        for area in sorted(set(data.area[data.animal == specimen].tolist())):
            group = candidates & (data.animal == specimen) & (data.area == area)
            found = largest_reliable_window(reliability[group], threshold) if group.any() else None
            report.windows_ms[(specimen, area)] = (
                None if found is None else (float(bins[found[0], 0]), float(bins[found[1] - 1, 1]))
            )
            if found is None:
                continue
            idx = np.flatnonzero(group)
            windowed[:, idx, 0] = data.responses[:, idx, found[0] : found[1]].mean(axis=2)
            window[idx] = report.windows_ms[(specimen, area)]
            selected[idx] = True
    report.add(f"in a window (median >= {threshold:g})", data.area, data.animal, selected)
    keep = _specimen_rule(data, recorded, selected, percentile)
    report.add(f"specimens >= {percentile:g}th pct", data.area, data.animal, keep)
    out = dataclasses.replace(
        _with_per_unit(
            data,
            {
                "reliability_max": np.nanmax(np.where(np.isnan(reliability), -np.inf, reliability), axis=1),
                "window_start_ms": window[:, 0],
                "window_end_ms": window[:, 1],
            },
        ),
        responses=windowed,
        time_bins_ms=np.array([[bins[0, 0], bins[-1, 1]]]),
    )
    return _finish(out, keep, report)


def _finish(data: NeuralData, keep, report: SelectionReport) -> tuple[NeuralData, SelectionReport]:
    if not np.any(keep):
        raise NeuralDataError(
            f"{report.modality} selection kept no unit; counts per stage:\n{report.format()}\nFix: check the data "
            f"(trials, time bins) or lower the threshold."
        )
    return data.select_units(keep), report


def table_3_1_counts(calcium: NeuralData | None = None, neuropixels: NeuralData | None = None) -> dict:
    """{(modality, area): (units, specimens)} of selected data, as in Table 3.1."""
    table = {}
    for modality, data in (("calcium", calcium), ("neuropixels", neuropixels)):
        if data is not None:
            for area, counts in _counts(data.area, data.animal).items():
                table[(modality, area)] = counts
    return table


def compare_to_thesis(counts: dict, thesis: dict = THESIS_TABLE_3_1) -> str:
    """Text table: ours vs Table 3.1 per (modality, area), plus totals (calcium totals without VISrl)."""
    lines = [f"{'dataset':<12}{'area':<12}{'units ours':>11}{'thesis':>8}{'specimens ours':>16}{'thesis':>8}"]
    for modality in ("calcium", "neuropixels"):
        keys = [k for k in thesis if k[0] == modality] + sorted(
            k for k in counts if k[0] == modality and k not in thesis
        )
        if not any(k in counts for k in keys):
            continue
        for key in keys:
            ours, ref = counts.get(key, (0, 0)), thesis.get(key, ("-", "-"))
            lines.append(f"{modality:<12}{key[1]:<12}{ours[0]:>11}{ref[0]:>8}{ours[1]:>16}{ref[1]:>8}")
        used = [k for k in keys if not (modality == "calcium" and k[1] == "VISrl")]
        total = [sum(counts.get(k, (0, 0))[i] for k in used) for i in (0, 1)]
        ref_total = [sum(thesis[k][i] for k in used if k in thesis) for i in (0, 1)]
        label = "total-VISrl" if modality == "calcium" else "total"
        lines.append(f"{modality:<12}{label:<12}{total[0]:>11}{ref_total[0]:>8}{total[1]:>16}{ref_total[1]:>8}")
    return "\n".join(lines)
