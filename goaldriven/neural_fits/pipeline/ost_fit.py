"""Object solution times of a model's features: IT-preferred layers, time bins, decoding, OST and its consistency.

Reference: A. Nayebi, PhD thesis (2022), Sections 2.3.2, 2.3.4 and 2.5.8, Figs. 2.3, 2.8, 2.9; implementation spec ch2
Sections 9.2-9.8 and ambiguities A-13, A-14. The decoder, d', OST and consistency are goaldriven.neural_fits.ost;
this module chooses what they are run on (decisions: docs/decisions/neural_fits.md, "Object solution times"):

  IT-preferred layers (9.2, A-13): given (`OSTFitConfig.layers`), or chosen from the data file's V4 and IT units: a
    PLS-25 fit of every layer with >= 25 features to the time-averaged (70-170 ms) responses (fit_recordings); a
    layer is IT-preferred when its median noise-corrected IT predictivity (mean over the IT areas present: IT, pIT,
    cIT, aIT) exceeds its V4 predictivity. Layers keep the model's hierarchy order (the order of its features).
  Time bins (9.3): a recurrent model (features with > 1 step) maps one-to-one, step t <-> [10 t, 10 t + 10) ms, the
    IT-preferred layers concatenated at steps 7..25 (variant "convrnn"); a feedforward model gets each mapping of
    `mappings` ("uniform", "graded"; ost.solution_times.layer_to_time), with the bin -> layer assignment reported.
  Decoding (9.4-9.7): per bin and split, PCA-1000 + linear SVM C = 5e4 (ost.dprime), I1 d' clipped to [-5, 5], the
    interpolated OST against the behavioural d', Spearman rho with IT OST over images solved by both, mean +- s.e.m.
    over the splits (ost.solution_times.ost_pipeline); splits draw `n_train_per_class` training images per object.
  PLS-OST (9.8): per bin, a PLS-100 from the bin's features to the IT responses of the same 10 ms bin, fit on the
    images without an IT d' (OSTTargets.pls_training_images, disjoint from the evaluation), predicts every image; its
    outputs replace the features (variants "pls_convrnn", "pls_uniform", "pls_graded"). PCA is capped at the number
    of IT units by the decoder (min(1000, n_train, p)).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.data.ost_data import OSTTargets
from goaldriven.neural_fits.mappings.pls import PLSRegression
from goaldriven.neural_fits.ost import solution_times
from goaldriven.neural_fits.ost.solution_times import OSTResult
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.fitting import FitConfig, fit_recordings

# n: images, t: model steps, b: time bins (19), p: features, u: IT units, k: layers

IT_AREAS = ("IT", "pIT", "cIT", "aIT", "cIT/aIT")
V4_AREAS = ("V4",)
FEEDFORWARD_MAPPINGS = ("uniform", "graded")


@dataclasses.dataclass(frozen=True)
class OSTFitConfig:
    """The options of an OST fit (module docstring); the defaults are the thesis'."""

    layers: tuple[str, ...] | None = None  # IT-preferred layers in hierarchy order; None: chosen from the data
    mappings: tuple[str, ...] = FEEDFORWARD_MAPPINGS  # feedforward layer-to-time mappings
    pls: bool = True  # also the PLS-OST variants
    pls_components: int = 100
    it_areas: tuple[str, ...] = IT_AREAS
    v4_areas: tuple[str, ...] = V4_AREAS
    selection_components: int = 25
    selection_window_ms: tuple[float, float] = (70.0, 170.0)
    selection_splits: int = 10
    selection_boot: int = 100
    n_splits: int = 10
    n_train_per_class: int = 100
    n_test_per_class: int | None = None
    pca_components: int = 1000
    svm_c: float = 5e4
    clip: float = 5.0
    n_units: int | None = None  # graded pseudo-layer size (default: the smallest layer's unit count)
    first_bin_ms: float = 70.0
    n_bins: int = 19
    seed: int = 0

    def __post_init__(self):
        unknown = [m for m in self.mappings if m not in FEEDFORWARD_MAPPINGS]
        if unknown or not self.mappings:
            raise ValueError(
                f"OST mappings must be a non-empty subset of {FEEDFORWARD_MAPPINGS}. Received: {list(self.mappings)}"
            )
        for name in (
            "pls_components",
            "selection_components",
            "n_splits",
            "n_train_per_class",
            "pca_components",
            "n_bins",
            "selection_splits",
            "selection_boot",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"OST option {name} must be >= 1. Received: {getattr(self, name)}")
        if self.layers is not None and not self.layers:
            raise ValueError("OST layers is empty; pass None to choose the IT-preferred layers from the data.")


@dataclasses.dataclass
class OSTFit:
    """An OST fit: the layers used, how they were chosen and mapped to time, and one OSTResult per variant."""

    layers: tuple[str, ...]
    recurrent: bool
    selection: dict | None  # {layer: {"IT": score, "V4": score, "preferred": bool}} when chosen from the data
    assignment: dict[str, list[dict[str, float]]]  # {variant: per bin {layer: fraction of the bin's units}}
    variants: dict[str, OSTResult]
    bin_ms: np.ndarray  # (b,) the model bin times OSTs are interpolated on
    stimulus_ids: np.ndarray
    labels: np.ndarray  # (n,) object names
    targets: OSTTargets


def select_it_layers(
    store: FeatureStore, data: NeuralData, config: OSTFitConfig, log: Callable[[str], None] = print
) -> tuple[tuple[str, ...], dict]:
    """The IT-preferred layers of `store` (module docstring) and the per-layer scores behind the choice."""
    it_areas = [a for a in config.it_areas if a in data.areas()]
    v4_areas = [a for a in config.v4_areas if a in data.areas()]
    if not it_areas or not v4_areas:
        raise ValueError(
            f"choosing the IT-preferred layers needs V4 ({list(config.v4_areas)}) and IT ({list(config.it_areas)}) "
            f"units; the data has areas {data.areas()}. Fix: pass the layers (--ost_layers=...) or add the units."
        )
    candidates = [name for name in store.layers if _units(store, name) >= config.selection_components]
    skipped = [name for name in store.layers if name not in candidates]
    if skipped:
        log(f"IT-preferred layer choice skips {skipped}: fewer than {config.selection_components} features (PLS).")
    if not candidates:
        raise ValueError(
            f"no layer has >= {config.selection_components} features for the PLS layer choice; pass --ost_layers."
        )
    fit = fit_recordings(
        store,
        data,
        FitConfig(
            mapping="pls",
            layers=tuple(candidates),
            mapping_kwargs={"n_components": config.selection_components},
            window_ms=tuple(config.selection_window_ms),
            n_splits=config.selection_splits,
            n_boot=config.selection_boot,
            areas=tuple(it_areas + v4_areas),
            inter_animal=False,
            seed=config.seed,
        ),
        log=log,
    )
    table = {}
    for layer in candidates:

        def score(areas, layer=layer):
            values = [next(iter(fit.summary["areas"][a][layer].values()))["score"] for a in areas]
            return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

        it, v4 = score(it_areas), score(v4_areas)
        table[layer] = {"IT": it, "V4": v4, "preferred": bool(it > v4)}
    layers = tuple(name for name, row in table.items() if row["preferred"])
    if not layers:
        raise ValueError(
            f"no layer predicts IT better than V4 (PLS-{config.selection_components}, "
            f"{config.selection_window_ms} ms); pass the IT-preferred layers with --ost_layers."
        )
    log(f"IT-preferred layers: {', '.join(layers)}")
    return layers, table


def bin_assignment(layers: Sequence[str], sizes: Sequence[int], mapping: str, config: OSTFitConfig) -> list[dict]:
    """Per bin, the fraction of its units taken from each layer under `mapping` (layer_to_time on marker arrays)."""
    markers = [np.full((1, p), i) for i, p in enumerate(sizes)]
    bins = solution_times.layer_to_time(
        markers, n_bins=config.n_bins, mapping=mapping, seed=config.seed, n_units=config.n_units
    )
    out = []
    for x in bins:
        index, counts = np.unique(x[0], return_counts=True)
        out.append({layers[i]: float(c / x.shape[1]) for i, c in zip(index, counts)})
    return out


def _units(store: FeatureStore, name: str) -> int:
    return int(np.prod(store[name].shape[2:]))


def _is_recurrent(store: FeatureStore, layers: Sequence[str]) -> bool:
    return any(int(store[name].shape[1]) > 1 for name in layers)


def time_bins(store: FeatureStore, layers: Sequence[str], mapping: str | None, config: OSTFitConfig) -> list:
    """The n_bins (n, p) feature arrays of `layers`: one-to-one steps (mapping None) or a feedforward mapping."""
    if mapping is None:
        first = store.presentation.step_of(config.first_bin_ms)
        return solution_times.convrnn_to_time(
            [np.asarray(store[name]) for name in layers], first_step=first, n_bins=config.n_bins
        )
    flat = [store.layer(name).flat() for name in layers]  # (n, p_l) each
    return solution_times.layer_to_time(
        flat, n_bins=config.n_bins, mapping=mapping, seed=config.seed, n_units=config.n_units
    )


def it_bin_responses(data: NeuralData, bin_ms: np.ndarray, config: OSTFitConfig) -> np.ndarray:
    """(b, n, u) trial-averaged IT responses in the data bins that start at the model bins `bin_ms`."""
    units = np.isin(data.area, config.it_areas)
    if not units.any():
        raise ValueError(
            f"PLS-OST maps features to IT responses but the data has no units in {list(config.it_areas)} (areas "
            f"{data.areas()}). Fix: add the IT units or pass --ost_pls=false."
        )
    starts = data.time_bins_ms[:, 0]
    index = []
    for t in bin_ms:
        hit = np.flatnonzero(np.isclose(starts, t))
        if hit.size == 0:
            raise ValueError(
                f"PLS-OST needs IT responses in a bin starting at {t:g} ms; the data's bins start at "
                f"{starts.tolist()[:6]}... Fix: store 10 ms bins from 70 to 260 ms or pass --ost_pls=false."
            )
        index.append(int(hit[0]))
    mean = data.trial_mean()[:, units]  # (n, u, t)
    return np.stack([mean[:, :, k] for k in index])  # (b, n, u)


def pls_bins(bins: Sequence[np.ndarray], it: np.ndarray, train: np.ndarray, n_components: int) -> list[np.ndarray]:
    """Per bin, PLS predictions (n, u) of the bin's IT responses from its features, fit on the `train` images."""
    out = []
    for x, y in zip(bins, it):
        k = min(n_components, train.size - 1, x.shape[1])
        out.append(PLSRegression(n_components=k).fit(x[train], y[train]).predict(x))
    return out


def fit_ost(
    store: FeatureStore,
    data: NeuralData,
    targets: OSTTargets,
    config: OSTFitConfig | None = None,
    log: Callable[[str], None] = print,
) -> OSTFit:
    """OSTs of the model features in `store` for the stimuli of `data`, scored against `targets` (module docstring)."""
    config = config or OSTFitConfig()
    if len(store.stimulus_ids) != data.num_stimuli or np.any(store.stimulus_ids != data.stimulus_ids):
        raise ValueError(
            "the features and the OST data cover different stimuli (ids or order); extract the features "
            "from the OST file's own stimuli."
        )
    selection = None
    if config.layers is None:
        layers, selection = select_it_layers(store, data, config, log)
    else:
        layers = tuple(config.layers)
        unknown = [name for name in layers if name not in store.layers]
        if unknown:
            raise ValueError(f"unknown OST layers {unknown}; the model's features are {list(store.layers)}.")
    recurrent = _is_recurrent(store, layers)
    names, codes = np.unique(data.stimulus_labels, return_inverse=True)
    splits = solution_times.ost_splits(
        codes, config.n_train_per_class, config.n_splits, config.seed, config.n_test_per_class
    )
    offset = 5.0 if targets.bin_times == "center" else 0.0
    bin_ms = config.first_bin_ms + 10.0 * np.arange(config.n_bins)
    plan = {"convrnn": None} if recurrent else {m: m for m in config.mappings}
    sizes = [_units(store, name) for name in layers]
    assignment = {}
    features = {}
    for variant, mapping in plan.items():
        assignment[variant] = (
            [{name: 1.0 for name in layers}] * config.n_bins
            if mapping is None
            else bin_assignment(layers, sizes, mapping, config)
        )
        features[variant] = time_bins(store, layers, mapping, config)
    if config.pls:
        train = targets.pls_training_images
        if train.size < 3:
            raise ValueError(
                f"PLS-OST trains on the images without an IT d' (ost/it_dprime_defined False); the data has "
                f"{train.size}. Fix: mark them in ost/it_dprime_defined or pass --ost_pls=false."
            )
        it = it_bin_responses(data, bin_ms, config)
        for variant in list(plan):
            features[f"pls_{variant}"] = pls_bins(features[variant], it, train, config.pls_components)
            assignment[f"pls_{variant}"] = assignment[variant]
    it_ost = np.where(targets.it_dprime_defined, targets.it_ost_ms, np.nan)  # evaluation images only
    variants = {}
    for variant, bins in features.items():
        result = solution_times.ost_pipeline(
            bins,
            codes,
            targets.behavioral_dprime,
            it_ost,
            splits,
            bin_start_ms=bin_ms + offset,
            pca_components=config.pca_components,
            svm_c=config.svm_c,
            seed=config.seed,
            clip=config.clip,
        )
        log(
            f"OST {variant}: consistency {result.mean:.3f} +- {result.sem:.3f} (s.e.m. over {len(splits)} splits), "
            f"pooled {result.pooled.rho:.3f} over {result.pooled.n_common} images"
        )
        variants[variant] = result
    return OSTFit(
        layers=layers,
        recurrent=recurrent,
        selection=selection,
        assignment=assignment,
        variants=variants,
        bin_ms=bin_ms + offset,
        stimulus_ids=np.asarray(data.stimulus_ids),
        labels=np.asarray(data.stimulus_labels),
        targets=targets,
    )
