"""The transfer results as files: results.json, table.md and a figure like thesis Fig. 3.11 (transfer.png).

Reference: thesis Fig. 3.11 (one panel per task, a bar per model at its best layer, chance marked) and Section
3.6.8. `plot_transfer` takes several models ({label: best-layer results}) so a notebook can put models side by side
as the thesis does; the command line writes one model's figure. All files are written atomically.
"""

import os
from typing import Mapping

import numpy as np

from goaldriven import atomic_write
from goaldriven.transfer.evaluate import TASK_ORDER, TASKS

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
FIGURE_FILE = "transfer.png"


def table_markdown(results: Mapping, title: str = "") -> str:
    """The five-task table (best layer, mean +- s.e.m. over splits, chance) and the per-layer means."""
    best, layers, chance = results["best"], results["layers"], results.get("chance", {})
    tasks = [t for t in TASK_ORDER if t in best] + [t for t in best if t not in TASK_ORDER]
    lines = [f"# Transfer: {title}" if title else "# Transfer", ""]
    lines += ["| task | metric | best layer | score (mean +- s.e.m.) | splits | chance |", "|---|---|---|---|---|---|"]
    for t in tasks:
        b = best[t]
        n = len(layers[t][b["layer"]]["per_split"])
        label = TASKS[t].label if t in TASKS else ""
        lines.append(
            f"| {t} | {label} | {b['layer']} | {b['mean']:.3f} +- {b['sem']:.3f} | {n} | {chance.get(t, 0):.3f} |"
        )
    names = list(dict.fromkeys(name for t in tasks for name in layers[t]))
    lines += ["", "Per layer (mean over splits):", "", "| layer | " + " | ".join(tasks) + " |"]
    lines.append("|---|" + "---|" * len(tasks))
    for name in names:
        cells = [f"{layers[t][name]['mean']:.3f}" if name in layers[t] else "" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_transfer(models: Mapping[str, Mapping], path: str, chance: Mapping[str, float] | None = None) -> str:
    """Fig. 3.11-style bars: one panel per task, one bar (with s.e.m.) per model at its best layer.

    models: {label: {task: {"layer", "mean", "sem"}}} (the "best" entry of results.json per model).
    """
    import matplotlib  # pylint: disable=g-import-not-at-top  Only the figure needs matplotlib.

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    tasks = [t for t in TASK_ORDER if any(t in m for m in models.values())]
    tasks += sorted({t for m in models.values() for t in m} - set(tasks))
    labels = list(models)
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(2.4 * max(1, len(tasks)) + 0.6, 3.2), squeeze=False)
    colors = plt.get_cmap("tab10")(np.arange(len(labels)) % 10)
    for ax, task in zip(axes[0], tasks):
        means = [models[m][task]["mean"] if task in models[m] else np.nan for m in labels]
        sems = [models[m][task]["sem"] if task in models[m] else 0.0 for m in labels]
        ax.bar(np.arange(len(labels)), means, yerr=sems, color=colors, capsize=3)
        if chance and task in chance and chance[task] > 0:
            ax.axhline(chance[task], color="k", linestyle="--", linewidth=0.8)
        ax.set_title(task)
        ax.set_ylabel(TASKS[task].label if task in TASKS else "score")
        ax.set_xticks(np.arange(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        top = np.nanmax([m + s for m, s in zip(means, sems)] + [0.1])
        ax.set_ylim(min(0.0, np.nanmin(means + [0.0]) - 0.05), min(1.0, top * 1.15) if top <= 1 else top * 1.15)
        for x, (m, name) in enumerate(zip(means, labels)):
            if np.isfinite(m) and task in models[name]:
                ax.text(x, 0.01, models[name][task]["layer"], rotation=90, ha="center", va="bottom", fontsize=6)
    fig.tight_layout()
    atomic_write.save_figure(fig, path, dpi=150)
    plt.close(fig)
    return path


def write_all(results: Mapping, folder: str, title: str = "") -> list[str]:
    """results.json, table.md, transfer.png in `folder`; returns their paths."""
    json_path = os.path.join(folder, RESULTS_FILE)
    atomic_write.write_json(json_path, results)
    table_path = os.path.join(folder, TABLE_FILE)
    atomic_write.write_text(table_path, table_markdown(results, title))
    figure = plot_transfer(
        {title or "model": results["best"]}, os.path.join(folder, FIGURE_FILE), results.get("chance")
    )
    return [json_path, table_path, figure]
