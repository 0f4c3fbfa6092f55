"""Chapter 3 fits: the defaults of a mouse fit, the Fig. 3.1 mapping comparison and the Table 3.3 columns.

Reference: thesis Sections 3.3, 3.6.2-3.6.3 and Table 3.3 (spec ch3 A2.4-A2.6, A6.3, Ambiguities 3-5, 19).

  Chapter3Fit       the options of a Chapter 3 fit (gin/fits/mouse_*.gin configure it): PLS-25, one mapping per target
                    animal, train fraction 0.5, 10 splits, 100 bootstraps, Spearman-Brown, pooled-source inter-animal
                    consistency; the layers are model.neural_fit_layers when the model has them.
  inter_animal      per area, the pooled-source inter-animal consistency of every unit under a unit mapping (the
                    ceiling), or per animal under RSA (eq. 3.9-3.10).
  mapping_comparison  Fig. 3.1: the inter-animal consistency per area under PLS-25, Ridge(alpha = 1), One-to-One
                    and RSA, with the median split-half reliability (SB) of each area's units.
  table_columns     Table 3.3 for one model: per area the best layer (max over layers of the median over units) and
                    its median +- s.e.m.; the pooled column: every area's units at that area's best layer, pooled, median
                    +- s.e.m. (Ambiguity 3: per-area best layer, then pool); the ceiling: the same pooling of the units'
                    inter-animal consistencies; the ratio pooled / ceiling. Calcium leaves VISrl out of the pooled
                    column and its ceiling (thesis Section 3.3); it stays in the per-area entries (Ambiguity 19).
"""

# n: stimuli, u: units, r: trials
import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from goaldriven.neural_fits import mappings
from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.metrics import consistency, rsa
from goaldriven.neural_fits.metrics.correlation import summarize
from goaldriven.neural_fits.metrics.reliability import split_half_reliability
from goaldriven.neural_fits.metrics.splits import stimulus_splits
from goaldriven.neural_fits.pipeline import summary as fit_summary
from goaldriven.neural_fits.pipeline.fitting import FitConfig, FitResult

MODALITIES = {"neuropixels": "Neuropixels", "calcium": "Calcium"}
AREA_ORDER = ("VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm")  # thesis Table 3.1 order
# The one response bin of each modality as neural_fits.data.allen_* write it: Neuropixels rates averaged inside
# 0-250 ms; calcium AllenSDK's mean sweep response, two presentation lengths from onset (about 0-530 ms).
RESPONSE_WINDOWS = {"neuropixels": (0.0, 250.0), "calcium": (0.0, 1000.0)}
EXCLUDED_AREAS = {"neuropixels": (), "calcium": ("VISrl",)}  # thesis Section 3.3: calcium VISrl straddles S1
COMPARED_MAPPINGS = {  # Fig. 3.1: name -> (mapping, options); "rsa" is the identity map of eq. 3.9-3.10
    "pls": ("pls", {"n_components": 25}),
    "ridge": ("ridge", {"alpha": 1.0}),
    "one_to_one": ("one_to_one", {}),
    "rsa": (None, {}),
}


@dataclasses.dataclass(frozen=True)
class Chapter3Fit:
    """The options of a Chapter 3 fit (spec ch3 A2.4-A2.6); `fit_config` turns them into a FitConfig.

    trained_on: the dataset of the model's training ("imagenet", "cifar10"), which sets how the stimuli are presented
    (stimuli.PresentedInput.chapter3), or "none" (resized square, as other fits).
    """

    modality: str = "neuropixels"
    mapping: str = "pls"
    n_components: int = 25
    train_fraction: float = 0.5
    n_splits: int = 10
    n_boot: int = 100
    spearman_brown: bool = True
    per_animal: bool = True
    window_ms: tuple[float, float] | None = None  # None: the modality's response bin (RESPONSE_WINDOWS)
    trained_on: str = "imagenet"
    seed: int = 0

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {tuple(MODALITIES)}. Received: {self.modality!r}")

    @property
    def window(self) -> tuple[float, float]:
        """The response window: `window_ms`, or the modality's one response bin of the Allen readers."""
        return tuple(self.window_ms) if self.window_ms is not None else RESPONSE_WINDOWS[self.modality]

    @property
    def excluded_areas(self) -> tuple[str, ...]:
        return EXCLUDED_AREAS[self.modality]

    def fit_config(self, model=None, layers: Sequence[str] | None = None, areas=None) -> FitConfig:
        """The FitConfig of this fit; layers: given, else `model.neural_fit_layers` when the model has them."""
        if layers is None and model is not None and hasattr(model, "neural_fit_layers"):
            layers = tuple(model.neural_fit_layers)
        options = {"n_components": self.n_components} if self.mapping == "pls" else {}
        return FitConfig(
            mapping=self.mapping,
            mapping_kwargs=options,
            window_ms=self.window,
            train_fraction=self.train_fraction,
            n_splits=self.n_splits,
            n_boot=self.n_boot,
            spearman_brown=self.spearman_brown,
            layers=tuple(layers) if layers else None,
            areas=tuple(areas) if areas else None,
            per_animal=self.per_animal,
            inter_animal=False,  # computed by `inter_animal` below, which keeps the per-unit values for pooling
            seed=self.seed,
        )


def _window_trials(data: NeuralData, area: str, window_ms) -> dict[str, np.ndarray]:
    """{animal: (n, u_a, r)} responses of `area` averaged over the bins inside `window_ms`."""
    a, b = window_ms
    bins = [i for i, (s, e) in enumerate(data.time_bins_ms) if s >= a and e <= b]
    if not bins:
        raise ValueError(f"no time bin lies inside the window {window_ms} ms; the data's bins: {data.time_bins_ms}.")
    out = {}
    for animal in sorted(set(data.animal[data.area == area])):
        units = np.flatnonzero((data.area == area) & (data.animal == animal))
        out[str(animal)] = data.responses[:, units][:, :, bins].mean(axis=2)
    return out


def inter_animal(
    data: NeuralData, spec: Chapter3Fit, mapping: str = "pls", areas=None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """{area: {"values": per-unit (or per-animal for "rsa") consistency, "per_split": (s, u) or None}} (pooled source).

    `mapping` is a key of COMPARED_MAPPINGS or any registered mapping name (with spec.n_components for PLS).
    """
    name, options = COMPARED_MAPPINGS.get(mapping, (mapping, {}))
    if name == "pls":
        options = {"n_components": spec.n_components}
    splits = stimulus_splits(len(data.stimulus_ids), spec.train_fraction, spec.n_splits, spec.seed)
    out = {}
    for area in areas or data.areas():
        trials = _window_trials(data, area, spec.window)
        if len(trials) < 2:
            log(f"inter-animal consistency: area {area} has {len(trials)} animal(s); needs >= 2, skipped")
            continue
        if name is None:
            result = rsa.inter_animal_rsa(trials, spec.n_boot, spec.seed, spearman_brown=spec.spearman_brown)
            out[area] = {"values": result.values, "per_split": None}
        else:
            factory = lambda: mappings.make_mapping(name, **options)  # noqa: E731
            result = consistency.inter_animal_consistency(
                trials, factory, splits, spec.n_boot, spec.seed, spearman_brown=spec.spearman_brown
            )
            out[area] = {"values": result.values, "per_split": result.per_split}
        log(f"inter-animal consistency ({mapping}): {area}: median {summarize(out[area]['values'])['median']:.3f}")
    return out


def mapping_comparison(
    data: NeuralData, spec: Chapter3Fit, names: Sequence[str] = tuple(COMPARED_MAPPINGS), log=print, known=None
) -> dict[str, Any]:
    """Fig. 3.1: {"mappings": {name: {area: {median, sem, n}}}, "reliability": {area: {median, sem, n}}}.

    known: {name: inter_animal(...) result} already computed (e.g. the fit's PLS ceiling), reused as is.
    """
    table: dict[str, Any] = {"mappings": {}, "reliability": {}, "unit": {}}
    for name in names:
        values = (known or {}).get(name) or inter_animal(data, spec, name, log=log)
        table["mappings"][name] = {area: summarize(v["values"]) for area, v in values.items()}
        table["unit"][name] = "animals" if COMPARED_MAPPINGS.get(name, (name,))[0] is None else "units"
    for area in data.areas():
        trials = np.concatenate(list(_window_trials(data, area, spec.window).values()), axis=1)
        table["reliability"][area] = summarize(split_half_reliability(trials, n_boot=spec.n_boot, seed=spec.seed))
    table["settings"] = {
        "train_fraction": spec.train_fraction,
        "n_splits": spec.n_splits,
        "n_boot": spec.n_boot,
        "spearman_brown": spec.spearman_brown,
        "source": "pooled",
    }
    return table


def attach_inter_animal(result: FitResult, ceiling: dict[str, Any], config: FitConfig) -> None:
    """Puts the per-area inter-animal consistency (and the fraction of it the best layer reaches) into the fit's
    summary, as fit_recordings does with inter_animal=True (summary.summarize_fit)."""
    layers = list(dict.fromkeys(row["layer"] for row in result.rows))
    areas = list(result.summary["areas"])
    labels = list(dict.fromkeys(row["time"] for row in result.rows))
    entries = {(area, label): entry for area, entry in ceiling.items() for label in labels if area in areas}
    redone = fit_summary.summarize_fit(result.rows, layers, areas, entries, config)
    result.summary["inter_animal_consistency"] = redone["inter_animal_consistency"]


def table_columns(result: FitResult, ceiling: dict[str, Any], spec: Chapter3Fit, model_name: str = "model") -> dict:
    """Table 3.3 columns of one model (module docstring) from a fit's rows and the per-unit inter-animal values."""
    best = result.summary["best_layer"]
    areas: dict[str, Any] = {}
    pooled, pooled_ceiling = [], []
    for area, layer in sorted(best.items(), key=lambda item: area_rank(item[0])):
        values = np.array([r["noise_corrected"] for r in result.rows if r["area"] == area and r["layer"] == layer])
        stats = summarize(values) if layer is not None else {"median": float("nan"), "sem": float("nan"), "n": 0}
        entry = {"best_layer": layer, **stats}
        if area in ceiling:
            c = summarize(ceiling[area]["values"])
            entry["inter_animal"] = c
            entry["fraction_of_inter_animal"] = _ratio(stats["median"], c["median"])
        entry["in_pooled"] = area not in spec.excluded_areas
        areas[area] = entry
        if entry["in_pooled"] and layer is not None:
            pooled.append(values)
            if area in ceiling:
                pooled_ceiling.append(np.asarray(ceiling[area]["values"], float))
    column = summarize(np.concatenate(pooled)) if pooled else {"median": float("nan"), "sem": float("nan"), "n": 0}
    top = summarize(np.concatenate(pooled_ceiling)) if pooled_ceiling else None
    out = {
        "model": model_name,
        "modality": spec.modality,
        "column": MODALITIES[spec.modality],
        "excluded_areas": list(spec.excluded_areas),
        "areas": areas,
        "pooled": column,
        "inter_animal_ceiling": top,
        "fraction_of_ceiling": _ratio(column["median"], top["median"]) if top else None,
        "definition": "median over the units of all areas (excluded_areas left out), each area at its own best layer "
        "(max over layers of the median over its units); ceiling: the same pooling of the units' pooled-source "
        "inter-animal consistencies; noise-corrected Pearson r (thesis Table 3.3, spec ch3 Ambiguity 3)",
    }
    out["markdown"] = markdown_row(out)
    return out


def area_rank(area: str) -> tuple[int, str]:
    """Sort key: the thesis' area order (AREA_ORDER), then other areas alphabetically."""
    return (AREA_ORDER.index(area) if area in AREA_ORDER else len(AREA_ORDER), area)


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if np.isfinite(a) and np.isfinite(b) and b > 0 else None  # no ceiling: no fraction


def markdown_row(columns: dict) -> str:
    """'| model | per-area best layers | column: median +- s.e.m. (% of ceiling) |' for the README."""
    pooled = columns["pooled"]
    layers = ", ".join(f"{a}: {e['best_layer']}" for a, e in columns["areas"].items())
    fraction = columns.get("fraction_of_ceiling")
    share = f" ({100 * fraction:.1f}% of {100 * columns['inter_animal_ceiling']['median']:.2f}%)" if fraction else ""
    return f"| {columns['model']} | {layers} | {100 * pooled['median']:.2f}% +- {100 * pooled['sem']:.2f}{share} |"


def markdown_table(columns: dict) -> str:
    """Per-area markdown table: area | best layer | median +- s.e.m. | inter-animal | fraction (| in pooled)."""
    lines = [
        f"{columns['column']} ({columns['model']}): pooled {100 * columns['pooled']['median']:.2f}% +- "
        f"{100 * columns['pooled']['sem']:.2f} over {columns['pooled']['n']} units",
        "",
        "| area | best layer | predictivity | inter-animal | fraction | pooled |",
        "|---|---|---|---|---|---|",
    ]
    for area, e in columns["areas"].items():
        ia = f"{e['inter_animal']['median']:.3f}" if e.get("inter_animal") else "-"
        frac = f"{100 * e['fraction_of_inter_animal']:.0f}%" if e.get("fraction_of_inter_animal") else "-"
        pooled = "yes" if e["in_pooled"] else "no"
        lines.append(f"| {area} | {e['best_layer']} | {e['median']:.3f} +- {e['sem']:.3f} | {ia} | {frac} | {pooled} |")
    return "\n".join(lines)
