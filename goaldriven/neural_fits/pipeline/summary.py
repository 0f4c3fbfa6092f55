"""The summary of a fit (summary.json): per area, layer and time the median and s.e.m. over units and the score under
the fit's aggregation (AGGREGATIONS: the thesis' median over units of the unit means, or Brain-Score's mean over
splits of the per-split medians), the best layer per area by that score, the inter-animal consistency with the
fraction of it the best layer reaches (the ratio of the two scores), and the units without a score.

A unit has no noise-corrected score (NaN, left out of the medians) for one of three reasons, recorded per area and
time point in "unscored_units" (and, for an area left without a best layer, in one sentence in "best_layer_reason"):
  zero_variance             its trial-averaged responses do not vary over the stimuli (constant): no correlation
  reliability_not_positive  its split-half reliability is <= 0: no stimulus-driven signal beyond the trial noise
  undefined_ratio           {layer: units}: the mapping's split-half term is <= 0 in every bootstrap at that layer

Reference: thesis Sections 3.6.2-3.6.3 (layer selection: the layer of maximal median noise-corrected score; ties go to
the earliest layer) and eq. 3.4 (inter-animal consistency).
"""

import dataclasses
from typing import Any

import numpy as np

from goaldriven.neural_fits.metrics.correlation import select_layers, split_median_mean, summarize

AGGREGATIONS = {  # FitConfig.aggregation -> what each entry's "score" (and "score_error") is
    "median_of_unit_means": "the median over units of each unit's score averaged over the splits and bootstraps "
    "(thesis ch3); error: s.e.m. over units",
    "mean_of_split_medians": "the mean over splits of the median over units of each split's scores (bootstraps "
    "averaged within a split), as Brain-Score aggregates; error: std over splits / sqrt(splits)",
}


def summarize_fit(rows, layers, areas, inter_animal, config, constant=None, split_scores=None) -> dict[str, Any]:
    """Median and s.e.m. per area, layer and time; the score under `config.aggregation` and the best layer by it; the
    fractions of inter-animal consistency; the units without a score and why.

    constant: {area: {time label: [unit ids]}} of zero-variance units (recording_checks.constant_units).
    split_scores: {(area, layer, time label): [(s, u) per-split scores of each target group]} (the
    mean_of_split_medians aggregation); inter_animal: {(area, label): {"values": (u,), "per_split": (s, u)}}.
    """
    brain_score = config.aggregation == "mean_of_split_medians"
    table: dict[str, Any] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    pooled_splits: dict[str, dict[str, np.ndarray]] = {}  # {area: {layer: (s, units x times)}}
    time_labels = list(dict.fromkeys(row["time"] for row in rows))
    for area in areas:
        table[area] = {}
        for layer in layers:
            per_time = {}
            for label in time_labels:
                here = [r for r in rows if r["area"] == area and r["layer"] == layer and r["time"] == label]
                entry = {
                    "noise_corrected": summarize(np.array([r["noise_corrected"] for r in here])),
                    "raw": summarize(np.array([r["raw"] for r in here])),
                }
                if brain_score:
                    per_split = np.concatenate(split_scores[(area, layer, label)], axis=1)
                    entry.update(split_median_mean(per_split))
                    pooled_splits.setdefault(area, {}).setdefault(layer, []).append(per_split)
                else:
                    entry.update(score=entry["noise_corrected"]["median"], score_error=entry["noise_corrected"]["sem"])
                per_time[label] = entry
            table[area][layer] = per_time
            overall = np.array([r["noise_corrected"] for r in rows if r["area"] == area and r["layer"] == layer])
            scores.setdefault(layer, {})[area] = overall
    if brain_score:
        best_layers = {area: _best(pooled_splits[area]) for area in areas}
    else:
        best_layers, _ = select_layers(scores)
    unscored = _unscored_units(rows, areas, constant or {})
    summary: dict[str, Any] = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
        "aggregation": {"name": config.aggregation, "definition": AGGREGATIONS[config.aggregation]},
        "areas": table,
        "best_layer": best_layers,
        "unscored_units": unscored,
        "best_layer_reason": {
            area: _no_best_layer_reason(area, rows, unscored.get(area, {}))
            for area, layer in best_layers.items()
            if layer is None
        },
        "inter_animal_consistency": {},
    }
    for (area, label), entry in inter_animal.items():
        stats = summarize(entry["values"])
        if brain_score:
            stats.update(split_median_mean(entry["per_split"]))
        else:
            stats.update(score=stats["median"], score_error=stats["sem"])
        best_layer = best_layers.get(area)
        model = table[area][best_layer][label]["score"] if best_layer in table[area] else None
        fraction = None
        if model is not None and stats["score"] and np.isfinite(stats["score"]):
            fraction = float(model / stats["score"])
        summary["inter_animal_consistency"].setdefault(area, {})[label] = {
            **stats,
            "best_layer": best_layer,
            "fraction_of_inter_animal": fraction,
        }
    return summary


def _best(per_layer: dict[str, list[np.ndarray]]) -> str | None:
    """The layer of the highest mean_of_split_medians score over all its time points (ties: the earliest)."""
    best, top = None, -np.inf
    for layer, arrays in per_layer.items():
        score = split_median_mean(np.concatenate(arrays, axis=1))["score"]
        if score > top:  # NaN never wins
            best, top = layer, score
    return best


_REASONS = {
    "zero_variance": "have constant responses over the stimuli (zero variance)",
    "reliability_not_positive": "have split-half reliability <= 0 (no stimulus-driven signal beyond the trial noise)",
    "undefined_ratio": "have a split-half mapping term <= 0 in every bootstrap",
}


def _unscored_units(rows, areas, constant) -> dict[str, dict[str, dict[str, Any]]]:
    """{area: {time label: {reason: unit ids, or {layer: unit ids} for undefined_ratio}}}, non-empty entries only."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for area in areas:
        for label in dict.fromkeys(r["time"] for r in rows if r["area"] == area):
            here = [r for r in rows if r["area"] == area and r["time"] == label]
            zero = list(constant.get(area, {}).get(label, []))
            first_layer = here[0]["layer"]
            unreliable = [
                r["unit_id"]
                for r in here
                if r["layer"] == first_layer and r["unit_id"] not in zero and not r["reliability"] > 0
            ]
            undefined: dict[str, list[str]] = {}
            for r in here:
                if np.isnan(r["noise_corrected"]) and r["unit_id"] not in zero and r["unit_id"] not in unreliable:
                    undefined.setdefault(r["layer"], []).append(r["unit_id"])
            entry = {"zero_variance": zero, "reliability_not_positive": unreliable, "undefined_ratio": undefined}
            entry = {key: value for key, value in entry.items() if value}
            if entry:
                out.setdefault(area, {})[label] = entry
    return out


def _ids(units: list[str], limit: int = 5) -> str:
    shown = ", ".join(units[:limit])
    return shown + (f" and {len(units) - limit} more" if len(units) > limit else "")


def _no_best_layer_reason(area: str, rows, unscored: dict) -> str:
    """One sentence: why no layer of `area` has a median score (every unit is unscored, for these reasons)."""
    total = len(dict.fromkeys(r["unit_id"] for r in rows if r["area"] == area))
    reasons = []
    for key, text in _REASONS.items():
        units = list(
            dict.fromkeys(
                unit
                for entry in unscored.values()
                for unit in (
                    [u for layer_units in entry.get(key, {}).values() for u in layer_units]
                    if key == "undefined_ratio"
                    else entry.get(key, [])
                )
            )
        )
        if units:
            reasons.append(f"{len(units)} {text}: {_ids(units)}")
    return f"no unit of area {area} has a noise-corrected score at any layer; of its {total} units " + "; ".join(
        reasons or ["none is scored"]
    )


def unscored_lines(summary: dict[str, Any]) -> list[str]:
    """Log lines saying which units got no score and why, and why an area has no best layer."""
    lines = []
    for area, by_time in summary.get("unscored_units", {}).items():
        for label, entry in by_time.items():
            for key, units in entry.items():
                if key == "undefined_ratio":
                    for layer, layer_units in units.items():
                        lines.append(
                            f"area {area}, {label}, layer {layer}: {len(layer_units)} units {_REASONS[key]} and get "
                            f"no score: {_ids(layer_units, 10)}"
                        )
                else:
                    lines.append(
                        f"area {area}, {label}: {len(units)} units {_REASONS[key]} and get no score: {_ids(units, 10)}"
                    )
    for area, reason in summary.get("best_layer_reason", {}).items():
        lines.append(f"best layer for {area}: none ({reason})")
    return lines
