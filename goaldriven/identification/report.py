"""From a grid's finished runs to the Chapter 6 tables and figures (`goaldriven-identify analyze`; spec ch5 11.4-11.7).

1. Reads every run's `observables.h5` (goaldriven/observables/storage.py). A run that is not finished is an error
   naming it, unless `allow_partial` (then the missing runs are listed in the log and in results.json).
2. Keeps the statistics that are finite for every run (the thesis' rule that gave 24 of 45; the ones removed are
   logged) and assembles one example per layer and run (identification/dataset.py).
3. Runs the protocols (identification/protocols.py): classifiers per measure with confusions and importances,
   the trajectory-averaged control, rule pairs, held-out task / architecture / curriculum, trajectory subsampling
   (periods scaled to the recorded span: the thesis' 5 / 15 / 25 of 100 epochs) and consecutive portions; and, when
   the runs recorded perturbation cells (spec 11.6), unit subsampling and noise for FA vs IA.
4. Writes results.json, tables.md (mean +- s.e.m. over the splits, chance) and the figures, and checks the thesis'
   qualitative results (spec 11.7) that the data allow: `checks` in results.json and tables.md say which hold.
"""

import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from goaldriven import atomic_write
from goaldriven.identification import dataset, figures, grid, protocols
from goaldriven.observables import statistics as observable_statistics
from goaldriven.observables import storage

UNPERTURBED = (1.0, 0.0, 0)


def load_runs(runs: Sequence[grid.RunSpec], *, allow_partial: bool = False, log: Callable[[str], None] = print):
    """{(fraction, noise, seed): [RunObservables]} of the finished runs, and the names of the missing ones."""
    cells, missing = {}, []
    for run in runs:
        path = os.path.join(run.workdir, grid.OBSERVABLES_FILE)
        if grid.run_state(run) != "finished" or not os.path.exists(path):
            missing.append(run.name)
            continue
        observables = storage.read(path)
        for cell in observables.perturbations():
            cells.setdefault(cell, []).append(dataset.from_storage(observables, *cell))
    if missing and not allow_partial:
        raise ValueError(
            f"{len(missing)} of {len(runs)} runs are not finished (e.g. {missing[0]}); run more workers "
            "(goaldriven-identify worker) or pass --allow_partial to analyse the finished ones."
        )
    if missing:
        log(f"analysing {len(runs) - len(missing)} finished runs; {len(missing)} missing: {', '.join(missing[:5])} ...")
    if UNPERTURBED not in cells:
        raise ValueError("no finished run recorded unperturbed observables (fraction 1, noise 0, seed 0).")
    return cells, missing


def scaled_regimes(epochs: np.ndarray) -> dict:
    """The thesis' trajectory-subsampling regimes (periods 5, 15, 25 of 100 epochs) scaled to the recorded span."""
    span = float(epochs[-1] - epochs[0])
    step = float(np.min(np.diff(epochs))) if len(epochs) > 1 else 1.0
    out = {}
    for name, (period, counts) in protocols.REGIMES.items():
        scaled = max(step, round(period * span / 100.0 / step) * step)
        out[name] = (int(scaled), counts)
    return out


def analyze(
    runs: Sequence[grid.RunSpec],
    output_dir: str,
    *,
    classifiers: Sequence[str] = ("svm", "rf", "conv1d"),
    search: str = "scaled_down",
    n_splits: int = 10,
    seed: int = 0,
    parts: Sequence[str] = protocols.PARTS,
    allow_partial: bool = False,
    standardize: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs the identification protocols on the grid's runs and writes results.json, tables.md and figures/.

    standardize: z-score every feature with the training split's mean and s.d. before the SVM (never before the
      random forest: classifiers.make_estimator); the thesis code's default was off. The Conv1D network always gets z-scored inputs. Our statistics
      span many orders of magnitude: unscaled, the linear SVM predicted a single rule for several measures.
    """
    began = time.perf_counter()
    cells, missing = load_runs(runs, allow_partial=allow_partial, log=log)
    base = cells[UNPERTURBED]
    wanted = [s for s in observable_statistics.ADMISSIBLE if s in base[0].statistics] or list(base[0].statistics)
    finite = set(dataset.finite_statistics(base))
    kept = [s for s in wanted if s in finite]
    dropped = [s for s in wanted if s not in finite]
    if dropped:
        log(f"statistics non-finite in some run, removed (spec 11.3): {', '.join(dropped)}")
    examples = dataset.assemble(base, statistics=kept)
    log(
        f"{len(examples.X)} examples ({len(base)} runs, {len(kept)} statistics x {examples.n_time} epochs + 3 position) "
        f"over rules {', '.join(examples.rules)}"
    )
    analysis = [c for c in ("svm", "rf") if c in classifiers]
    results = protocols.full_protocol(
        examples,
        classifier_names=tuple(c for c in classifiers if c != "conv1d"),
        analysis_classifiers=tuple(analysis),
        grid=search,
        n_splits=n_splits,
        seed=seed,
        regimes=scaled_regimes(examples.epochs),
        standardize=standardize,
        log=log,
        parts=tuple(parts),
    )
    if "conv1d" in classifiers and "measures" in parts:
        # The network always sees z-scored inputs (fitted on each training split): unscaled it stayed at chance.
        log("identification: measures (conv1d, z-scored inputs) ...")
        measures = [m for m in dataset.MEASURES if dataset.measure_statistics(examples.statistics, m)]
        conv = protocols.per_measure(
            examples, ("conv1d",), measures, grid=search, n_splits=n_splits, seed=seed, standardize=True
        )
        results.setdefault("measures", {}).update(conv)
    results.update(
        {
            "standardize": standardize,
            "runs": len(base),
            "missing_runs": missing,
            "dropped_statistics": dropped,
            "search": search,
        }
    )
    perturbed = {cell: rs for cell, rs in cells.items() if cell != UNPERTURBED}
    if perturbed:
        results["unit_subsampling"] = _unit_subsampling(cells, analysis, search, n_splits, seed, kept, standardize, log)
    results["checks"] = qualitative_checks(results)
    results["seconds"] = round(time.perf_counter() - began, 1)
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    atomic_write.write_json(os.path.join(output_dir, "results.json"), _jsonable(results))
    atomic_write.write_text(os.path.join(output_dir, "tables.md"), tables(results))
    _figures(results, os.path.join(output_dir, "figures"))
    log(f"wrote {output_dir}/results.json, tables.md and figures/ in {results['seconds']:.0f} s")
    return results


def _unit_subsampling(cells, classifiers, search, n_splits, seed, statistics, standardize, log) -> dict:
    """FA vs IA (spec 11.6) over every recorded (fraction, noise, seed) cell, per classifier."""
    pair = {"fa", "ia"}
    restricted = {cell: [r for r in rs if r.run["rule"] in pair] for cell, rs in cells.items()}
    restricted = {cell: rs for cell, rs in restricted.items() if {r.run["rule"] for r in rs} == pair}
    if len(restricted) < 2:
        log("unit subsampling: the perturbed cells hold no FA and IA runs; skipped")
        return {"skipped": "no FA and IA runs in the perturbed cells"}
    out = {}
    for classifier in classifiers:
        log(f"identification: unit subsampling ({classifier}, {len(restricted)} cells) ...")
        out[classifier] = protocols.unit_subsampling(
            restricted,
            classifier,
            grid=search,
            statistics=statistics,
            n_splits=n_splits,
            seed=seed,
            standardize=standardize,
        )
    return out


def _mean(result, *keys):
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result.get("mean") if isinstance(result, dict) else None


def qualitative_checks(results: dict) -> dict:
    """The thesis' qualitative Chapter 6 results (spec 11.7) on these data: {claim: True / False / None (untested)}."""
    checks = {}
    measures = results.get("measures", {})
    full = {c: _mean(measures, c, "all") for c in measures}
    if full.get("rf") is not None and len(full) > 1:
        checks["random forest is the best classifier (all measures)"] = all(
            full["rf"] >= v for c, v in full.items() if v is not None
        )
    svm = measures.get("svm", {})
    per_measure = {m: svm[m]["mean"] for m in ("weights", "activations", "activity_change") if m in svm}
    if len(per_measure) > 1:
        checks["activations are the least linearly separable (SVM)"] = min(per_measure, key=per_measure.get) == (
            "activations"
        )
    averaged = results.get("averaged", {}).get("svm", {})
    if averaged and svm:
        hurt = [averaged[m]["mean"] < svm[m]["mean"] for m in averaged if m in svm]
        checks["trajectory averaging hurts the SVM (every measure)"] = bool(hurt) and all(hurt)
    unit = results.get("unit_subsampling", {})
    tested = False
    for classifier, result in unit.items() if isinstance(unit, dict) else []:
        if not isinstance(result, dict) or "mean" not in result:
            continue
        drops = {m: _drop(result, m) for m in result["mean"] if m != "all"}
        drops = {m: d for m, d in drops.items() if d is not None}
        if "activations" in drops and len(drops) > 1:
            tested = True
            claim = f"activations are the most robust to unit subsampling and noise ({classifier})"
            checks[claim] = min(drops, key=drops.get) == "activations"
    if not tested:
        checks["activations are the most robust to unit subsampling and noise"] = None
    return checks


def _drop(result: dict, measure: str) -> float | None:
    """Mean accuracy lost from the unperturbed cell over every perturbed cell of `measure`."""
    grid_means = np.array(result["mean"][measure], dtype=float)  # (F, N)
    fractions, noises = result["fractions"], result["noises"]
    if 1.0 not in fractions or 0.0 not in noises:
        return None
    clean = grid_means[fractions.index(1.0), noises.index(0.0)]
    others = [v for v in grid_means.ravel() if np.isfinite(v)]
    return float(clean - np.mean(others)) if others else None


def _fmt(result) -> str:
    if not isinstance(result, dict) or "mean" not in result:
        return "-"
    return f"{100 * result['mean']:.1f} +- {100 * result.get('sem', 0.0):.1f}"


def tables(results: dict) -> str:
    """Markdown tables of the results (accuracy in %, mean +- s.e.m. over splits)."""
    lines = [f"# Learning-rule identification: {results['n_examples']} examples, {results['runs']} runs", ""]
    scaling = "z-scored per training split" if results.get("standardize") else "unscaled (Conv1D z-scored)"
    lines += [
        f"Rules: {', '.join(results['rules'])}; chance {100 / len(results['rules']):.0f}%; features {scaling}.",
        "",
    ]
    measures = results.get("measures", {})
    if measures:
        names = list(next(iter(measures.values())).keys())
        lines += ["## Test accuracy per classifier and measure (%)", "", "| classifier | " + " | ".join(names) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(_fmt(r.get(m)) for m in names) + " |" for c, r in measures.items()]
        lines.append("")
    averaged = results.get("averaged", {})
    if averaged:
        lines += ["## Trajectory-averaged control (%)", ""]
        for c, r in averaged.items():
            lines.append(
                f"- {c}: " + ", ".join(f"{m} {_fmt(v)} (full {_fmt(measures.get(c, {}).get(m))})" for m, v in r.items())
            )
        lines.append("")
    holdout = results.get("holdout", {})
    if holdout:
        lines += ["## Held-out groups (%, mean over held-out values)", ""]
        for c, groups in holdout.items():
            for g, r in groups.items():
                lines.append(f"- {c}, held-out {g}: " + ", ".join(f"{m} {_fmt(v)}" for m, v in r.items()))
        lines.append("")
    lines += ["## The thesis' qualitative results (spec 11.7) on these data", ""]
    for claim, holds in results.get("checks", {}).items():
        lines.append(f"- {claim}: {'holds' if holds else 'does not hold' if holds is False else 'not tested'}")
    lines += ["", f"Timings (s): {json.dumps({k: round(v, 1) for k, v in results.get('timings', {}).items()})}", ""]
    return "\n".join(lines)


def _figures(results: dict, folder: str) -> None:
    if "measures" in results:
        figures.accuracy_bars(results["measures"], os.path.join(folder, "accuracy_by_measure.png"))
        confusions = {f"{c} ({m})": r for c, ms in results["measures"].items() for m, r in ms.items() if m == "all"}
        figures.confusion_matrices(confusions, os.path.join(folder, "confusion_matrices.png"))
        rf_all = results["measures"].get("rf", {}).get("all", {})
        if "importances" in rf_all:
            figures.importances(rf_all["importances"], os.path.join(folder, "rf_importances.png"))
    if "averaged" in results:
        figures.accuracy_bars(
            results["averaged"], os.path.join(folder, "trajectory_averaged.png"), title="trajectory-averaged control"
        )
    for c, groups in results.get("holdout", {}).items():
        if any("held_out" in r for by in groups.values() for r in by.values()):  # a group needs 2+ values
            reference = results.get("measures", {}).get(c)
            figures.holdout_bars(groups, os.path.join(folder, f"holdout_{c}.png"), reference=reference)
    if "subsampling" in results:
        for c, r in results["subsampling"].items():
            portions = results.get("portions", {}).get(c)
            figures.subsampling_curves(r, os.path.join(folder, f"trajectory_subsampling_{c}.png"), portions=portions)
    for c, r in results.get("unit_subsampling", {}).items():
        if isinstance(r, dict) and "mean" in r:
            figures.noise_heatmaps(r, os.path.join(folder, f"unit_subsampling_{c}.png"), title=f"FA vs IA, {c}")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
