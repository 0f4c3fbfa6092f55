"""Files of a neural fit: per-unit CSV, summary JSON and the two figures people look at first.

  units.csv                     one row per unit x layer x time: unit_id, animal, area, layer, time, noise_corrected,
                                raw (held-out Pearson r), reliability (Spearman-Brown split-half), best_layer (0/1)
  summary.json                  per area, layer and time: median and s.e.m. over units (raw and noise-corrected);
                                the best layer per area; inter-animal consistency and the fraction of it reached;
                                the units without a score and why, and why an area has no best layer (summary.py)
  predictivity_by_layer.png     the score (median, or mean of split medians) +- its error per layer, one line per
                                area (dashed: the area's inter-animal consistency)
  time_courses.png              (time-resolved fits) the score +- its error over time at each area's best layer
Every file is written atomically (goaldriven.atomic_write). Figures are drawn on matplotlib.figure.Figure objects,
without pyplot, so importing this module chooses no matplotlib backend.
"""

import csv
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from goaldriven import atomic_write

COLUMNS = ("unit_id", "animal", "area", "layer", "time", "noise_corrected", "raw", "reliability", "best_layer")


def write_units_csv(rows: list[dict[str, Any]], best_layer: dict[str, str], path: str) -> None:
    with atomic_write.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "best_layer": int(best_layer.get(row["area"]) == row["layer"])})


def write_summary(summary: dict[str, Any], path: str) -> None:
    atomic_write.write_json(path, summary)


def _axes():
    """A new 7 x 4 inch figure and its axes (no pyplot: nothing is registered with a backend)."""
    figure = Figure(figsize=(7, 4))
    return figure, figure.subplots()


def _save(figure: Figure, ax, title: str, path: str) -> None:
    """Titles the axes, adds the legend and grid, and writes the figure atomically."""
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    atomic_write.save_figure(figure, path, dpi=120, bbox_inches="tight")


def _score(entry: dict[str, Any]) -> tuple[float, float]:
    """(score, error) of a summary entry (a summary written before scores existed: the median and s.e.m.)."""
    return entry.get("score", entry["noise_corrected"]["median"]), entry.get(
        "score_error", entry["noise_corrected"]["sem"]
    )


def plot_by_layer(summary: dict[str, Any], path: str) -> None:
    """Median +- s.e.m. noise-corrected score per layer (time-averaged over the fit's time points), per area."""
    fig, ax = _axes()
    for i, (area, layers) in enumerate(summary["areas"].items()):
        names = list(layers)
        med = [np.nanmean([_score(t)[0] for t in layers[n].values()]) for n in names]
        sem = [np.nanmean([_score(t)[1] for t in layers[n].values()]) for n in names]
        color = f"C{i}"
        ax.errorbar(range(len(names)), med, yerr=sem, marker="o", capsize=3, color=color, label=area)
        consistency = summary.get("inter_animal_consistency", {}).get(area)
        if consistency:
            ax.axhline(
                np.nanmean([c.get("score", c["median"]) for c in consistency.values()]), color=color, ls="--", lw=1
            )
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    what = {"mean_of_split_medians": "mean over splits of median"}.get(summary.get("aggregation", {}).get("name"))
    ax.set_ylabel(f"noise-corrected predictivity ({what or 'median'} +- s.e.m.)")
    dashed = " (dashed: inter-animal consistency)" if summary.get("inter_animal_consistency") else ""
    _save(fig, ax, "model predictivity per layer" + dashed, path)


def plot_time_courses(summary: dict[str, Any], path: str) -> bool:
    """Median +- s.e.m. over time at each area's best layer; False (no file) when the fit has one time point."""
    areas = summary["areas"]
    first = next(iter(areas.values()))
    labels = list(next(iter(first.values())))
    if len(labels) < 2:
        return False
    times = [float(label.split()[0]) for label in labels]
    fig, ax = _axes()
    for i, (area, layers) in enumerate(areas.items()):
        layer = summary["best_layer"].get(area, next(iter(layers)))
        med, sem = np.array([_score(layers[layer][label]) for label in labels]).T
        ax.plot(times, med, color=f"C{i}", label=f"{area} ({layer})")
        ax.fill_between(times, med - sem, med + sem, color=f"C{i}", alpha=0.25)
    ax.set_xlabel("time bin start (ms after image onset)")
    ax.set_ylabel("noise-corrected predictivity")
    _save(fig, ax, "time courses at each area's best layer", path)
    return True


def write_all(result, workdir: str) -> list[str]:
    """Writes the CSV, JSON and PNGs of a FitResult into `workdir`; returns the paths written."""
    os.makedirs(workdir, exist_ok=True)
    paths = [os.path.join(workdir, name) for name in ("units.csv", "summary.json", "predictivity_by_layer.png")]
    write_units_csv(result.rows, result.summary["best_layer"], paths[0])
    write_summary(result.summary, paths[1])
    plot_by_layer(result.summary, paths[2])
    courses = os.path.join(workdir, "time_courses.png")
    if plot_time_courses(result.summary, courses):
        paths.append(courses)
    return paths
