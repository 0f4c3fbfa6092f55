"""What a finished (or running) search found: importances, figures, and the best configuration as a gin file.

* importances.json: fANOVA (thesis-style functional ANOVA on a random forest, asked for explicitly: Optuna 5's
  default evaluator is PED-ANOVA) as the mean and SEM over `seeds` forests, and PED-ANOVA for comparison; both over
  COMPLETE trials, normalised to sum to 1.
* importance.png: the Fig. 5.8-style bar chart (thesis Section 5.9.4): parameters ranked by fANOVA importance,
  labelled A, B, C, ... with a legend, error bars the SEM over forest seeds (the thesis' are over models).
* history.png (running mean of the last 50 trials and running best, as thesis Fig. 2.2b), slice.png and
  parallel_coordinates.png (optuna.visualization.matplotlib).
* best.gin: include of the experiment + the best trial's bindings; `goaldriven-train --gin_file=best.gin` trains it.
"""

import json
import os
import string
import warnings
from typing import Any, Callable

import numpy as np
import optuna
from matplotlib.figure import Figure

from goaldriven.search import spaces
from goaldriven.search import worker as worker_lib

STATES = optuna.trial.TrialState


def importances(study: optuna.Study, *, seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> dict[str, Any]:
    """{"fanova": {param: {"mean", "sem"}}, "ped_anova": {param: value}} over the COMPLETE trials."""
    runs = [
        optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=s))
        for s in seeds
    ]
    names = sorted({name for run in runs for name in run})
    fanova = {}
    for name in names:
        values = np.array([run.get(name, 0.0) for run in runs])
        sem = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        fanova[name] = {"mean": float(values.mean()), "sem": sem}
    fanova = dict(sorted(fanova.items(), key=lambda item: -item[1]["mean"]))
    try:
        ped = optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError) as e:  # too few trials for its quantiles
        ped = {"error": str(e)}
    return {"fanova": fanova, "ped_anova": dict(ped), "seeds": list(seeds), "trials": _n_complete(study)}


def _n_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(STATES.COMPLETE,)))


def importance_figure(fanova: dict[str, dict[str, float]], path: str, *, top: int = 20) -> None:
    """Fig. 5.8-style bars: the `top` parameters by importance, letters on the axis, a legend naming them."""
    items = list(fanova.items())[:top]
    letters = [string.ascii_uppercase[i % 26] + ("" if i < 26 else str(i // 26)) for i in range(len(items))]
    figure = Figure(figsize=(max(4.0, 0.45 * len(items) + 2.5), 3.6))
    axes = figure.add_subplot(1, 1, 1)
    axes.bar(
        letters,
        [v["mean"] for _, v in items],
        yerr=[v["sem"] for _, v in items],
        color="tab:blue",
        ecolor="black",
        capsize=3,
    )
    axes.set_ylabel("fANOVA importance")
    axes.set_title("Metaparameter importance (mean ± SEM over forest seeds)")
    legend = "\n".join(f"{letter}: {name}" for letter, (name, _) in zip(letters, items))
    axes.text(1.02, 1.0, legend, transform=axes.transAxes, va="top", fontsize=7, family="monospace")
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")


def history_figure(study: optuna.Study, path: str, *, window: int = 50) -> None:
    """Each trial's value, the running mean of the last `window` and the running best (thesis Fig. 2.2b)."""
    trials = study.get_trials(deepcopy=False, states=(STATES.COMPLETE,))
    numbers = np.array([t.number for t in trials])
    values = np.array([t.value for t in trials], dtype=float)
    figure = Figure(figsize=(6.0, 3.6))
    axes = figure.add_subplot(1, 1, 1)
    if len(values):
        best = np.maximum.accumulate(values) if study.direction.name == "MAXIMIZE" else np.minimum.accumulate(values)
        mean = np.array([values[max(0, i - window + 1) : i + 1].mean() for i in range(len(values))])
        axes.scatter(numbers, values, s=10, color="tab:blue", label="trial")
        axes.plot(numbers, mean, color="tab:orange", label=f"mean of last {window}")
        axes.plot(numbers, best, color="tab:red", label="best so far")
        axes.legend(fontsize=8)
    axes.set_xlabel("trial")
    axes.set_ylabel("objective")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _optuna_figure(plot: Callable, study: optuna.Study, path: str, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna.visualization.matplotlib is experimental: it warns on every call
        axes = plot(study, **kwargs)
    first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
    figure = first.get_figure()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  optuna draws on pyplot figures

    plt.close(figure)


def _include(path: str) -> str:
    """How best.gin includes a config: repo-relative gin/ paths become search-path relative, others absolute."""
    normalised = path.replace(os.sep, "/")
    if normalised.startswith("gin/"):
        return normalised[len("gin/") :]
    return os.path.abspath(path) if os.path.exists(path) else path


def best_gin(study: optuna.Study, config: worker_lib.SearchConfig) -> str:
    """The best trial as a gin file: the experiment's includes, the fixed bindings and the space's bindings."""
    best = study.best_trial
    bindings = list(config.bindings) + spaces.get_space(config.space)(
        optuna.trial.FixedTrial(best.params, number=best.number), **config.space_options
    )
    imports = [b for b in bindings if b.startswith("from ") or b.startswith("import ")]
    rest = [b for b in bindings if b not in imports]
    lines = [
        f"# Best trial {best.number} of study {study.study_name!r}: {config.metric} = {best.value!r} "
        f"({_n_complete(study)} complete trials; goaldriven-search report).",
        "# goaldriven-train --gin_file=best.gin --workdir=<new folder>   (add the runtime flags of your host)",
        "from __gin__ import dynamic_registration",
        *[line for line in imports if "dynamic_registration" not in line],
        *[f"include '{_include(path)}'" for path in config.gin_files],
        *rest,
    ]
    return "\n".join(lines) + "\n"


def write_report(study: optuna.Study, output_dir: str, *, seeds=(0, 1, 2, 3, 4), log=print) -> dict[str, Any]:
    """Writes importances.json, the figures and best.gin to `output_dir`; returns the importances record."""
    os.makedirs(output_dir, exist_ok=True)
    config = worker_lib.SearchConfig(**study.user_attrs[worker_lib.ATTR])
    complete = _n_complete(study)
    if complete < 2:
        raise ValueError(f"study {study.study_name!r} has {complete} complete trials; a report needs at least 2.")
    record = {"study": study.study_name, "summary": worker_lib.summary(study), "best_params": study.best_params}
    history_figure(study, os.path.join(output_dir, "history.png"))
    with open(os.path.join(output_dir, "best.gin"), "w", encoding="utf-8") as f:
        f.write(best_gin(study, config))
    values = {t.value for t in study.get_trials(deepcopy=False, states=(STATES.COMPLETE,))}
    if len(values) < 2:  # fANOVA has no variance to split (e.g. every trial at chance)
        record["fanova"] = {"error": f"all {complete} complete trials have the same value; no importances"}
        log(f"note: {record['fanova']['error']}")
        params = sorted(study.best_params)[:8]
    else:
        record.update(importances(study, seeds=tuple(seeds)))
        importance_figure(record["fanova"], os.path.join(output_dir, "importance.png"))
        params = list(record["fanova"])[:8]  # the most important first
    _optuna_figure(optuna.visualization.matplotlib.plot_slice, study, os.path.join(output_dir, "slice.png"),
                   params=params[:4])  # fmt: skip
    _optuna_figure(
        optuna.visualization.matplotlib.plot_parallel_coordinate,
        study,
        os.path.join(output_dir, "parallel_coordinates.png"),
        params=params,
    )
    with open(os.path.join(output_dir, "importances.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, default=str)
    log(f"report of {study.study_name!r} ({record['summary']}) in {output_dir}")
    return record
