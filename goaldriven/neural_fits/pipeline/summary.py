"""The summary of a fit (summary.json): per area, layer and time the median and s.e.m. over units, the best layer per
area and the inter-animal consistency with the fraction of it the best layer reaches.

Reference: thesis Sections 3.6.2-3.6.3 (layer selection: the layer of maximal median noise-corrected score; ties go to
the earliest layer) and eq. 3.4 (inter-animal consistency).
"""

import dataclasses
from typing import Any

import numpy as np

from goaldriven.neural_fits.metrics.correlation import select_layers, summarize


def summarize_fit(rows, layers, areas, inter_animal, config) -> dict[str, Any]:
    """Median and s.e.m. per area, layer and time; the best layer per area; fractions of inter-animal consistency."""
    table: dict[str, Any] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    time_labels = list(dict.fromkeys(row["time"] for row in rows))
    for area in areas:
        table[area] = {}
        for layer in layers:
            per_time = {}
            for label in time_labels:
                values = np.array(
                    [
                        r["noise_corrected"]
                        for r in rows
                        if r["area"] == area and r["layer"] == layer and r["time"] == label
                    ]
                )
                raw = np.array(
                    [r["raw"] for r in rows if r["area"] == area and r["layer"] == layer and r["time"] == label]
                )
                per_time[label] = {"noise_corrected": summarize(values), "raw": summarize(raw)}
            table[area][layer] = per_time
            overall = np.array([r["noise_corrected"] for r in rows if r["area"] == area and r["layer"] == layer])
            scores.setdefault(layer, {})[area] = overall
    best_layers, _ = select_layers(scores)
    summary: dict[str, Any] = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
        "areas": table,
        "best_layer": best_layers,
        "inter_animal_consistency": {},
    }
    for (area, label), entry in inter_animal.items():
        stats = summarize(entry["values"])
        best_layer = best_layers.get(area)
        model = table[area][best_layer][label]["noise_corrected"] if best_layer in table[area] else None
        fraction = None
        if model is not None and stats["median"] and np.isfinite(stats["median"]):
            fraction = float(model["median"] / stats["median"])
        summary["inter_animal_consistency"].setdefault(area, {})[label] = {
            **stats,
            "best_layer": best_layer,
            "fraction_of_inter_animal": fraction,
        }
    return summary
