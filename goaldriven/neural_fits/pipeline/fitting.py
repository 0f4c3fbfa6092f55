"""From model features and recordings to per-unit noise-corrected scores, per layer, area and time.

References: thesis Sections 2.5.6-2.5.7 (fits to V4/IT, eq. 2.12-2.17), 3.6.2 (model predictivity and inter-animal
consistency, eq. 3.4), 5.9.5 (PLS-25 on 70-170 ms). Three temporal modes:
  window   responses averaged over one window (default 70-170 ms, spec ch5 7.7); features averaged over the model
           steps inside it (a feedforward model's single step). One mapping per layer and area.
  varying  one mapping per neural time bin, from the features of the model step that covers the bin (Fig. 2.12a).
  fixed    one mapping shared by the chosen bins (eq. 2.13), e.g. the factored readout over t = 6..25.
Noise correction:
  split_half  the chapter 3 estimator (eq. 3.4 / A2.6): mappings fit to each half of the trials, bootstrapped,
              Spearman-Brown on both denominator terms (`spearman_brown=False`: the chapter 2 form, eq. 2.17).
  reliability the chapter 2 form (eq. 2.15): held-out Pearson r of a mapping fit to trial averages, divided by the
              square root of the unit's Spearman-Brown split-half reliability. One fit per split (the only
              affordable choice for the trained factored readout).
Targets: one mapping per area (the units of all its animals, as the thesis' chapter 2 fits of the pooled V4/IT
arrays), or with `per_animal` one per animal and area (chapter 3, eq. A2.6: "fit separately to each target animal").
Layer selection per area: the layer of maximal median noise-corrected score (ch3 A2.6; ties: the earliest layer), or
with aggregation="mean_of_split_medians" of maximal mean over splits of the per-split median (Brain-Score; summary.py).
Inter-animal consistency (window and varying modes): pooled source by default (ch3 A2.4), with the same mapping.
"""

# n: stimuli, p: features, u: units, t: time bins, r: trials
import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np

from goaldriven.neural_fits import mappings
from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.mappings.temporal import TemporallyFixed
from goaldriven.neural_fits.metrics import consistency
from goaldriven.neural_fits.metrics.correlation import noise_corrected, pearson, summarize
from goaldriven.neural_fits.metrics.reliability import split_half_reliability
from goaldriven.neural_fits.metrics.splits import stimulus_splits
from goaldriven.neural_fits.pipeline import recording_checks, summary
from goaldriven.neural_fits.pipeline.feature_store import MAX_FEATURE_BYTES, FeatureStore

TEMPORAL_MODES = ("window", "varying", "fixed")
NOISE_CORRECTIONS = ("split_half", "reliability")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """What to fit and how it is scored (the options of `goaldriven-fit`)."""

    mapping: str = "pls"
    mapping_kwargs: dict = dataclasses.field(default_factory=dict)
    temporal: str = "window"
    window_ms: tuple[float, float] = (70.0, 170.0)
    bins_ms: tuple[float, float] | None = None  # varying/fixed: the bins whose start lies in [a, b); None: all
    train_fraction: float = 0.75
    n_splits: int = 10
    n_boot: int = 100
    noise_correction: str = "split_half"
    spearman_brown: bool = True
    aggregation: str = "median_of_unit_means"  # or "mean_of_split_medians" (Brain-Score); summary.AGGREGATIONS
    layers: tuple[str, ...] | None = None
    areas: tuple[str, ...] | None = None
    inter_animal: bool = True
    inter_animal_mode: str = "pooled"
    per_animal: bool = False  # one mapping per animal and area (ch3 A2.6) instead of one per area
    max_feature_bytes: int = MAX_FEATURE_BYTES  # larger layers reach PLS / ridge as a Gram streamed from the file
    stratify: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {TEMPORAL_MODES}. Received: {self.temporal!r}")
        if self.noise_correction not in NOISE_CORRECTIONS:
            raise ValueError(
                f"noise_correction must be one of {NOISE_CORRECTIONS}. Received: {self.noise_correction!r}"
            )
        if self.aggregation not in summary.AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {tuple(summary.AGGREGATIONS)}. Received: {self.aggregation!r}"
            )
        mapping = mappings.mapping_class(self.mapping)
        mappings.make_mapping(self.mapping, **self.mapping_kwargs)  # unknown options and bad values fail here
        if self.temporal == "fixed" and self.noise_correction == "split_half":
            raise ValueError("temporal='fixed' scores with noise_correction='reliability' (one fit per split).")
        if mapping.costly_fit and self.noise_correction == "split_half":
            raise ValueError(
                f"mapping {self.mapping!r} is trained by gradient descent; bootstrapped split-half fits would train it "
                "2 x n_boot x n_splits times. Use noise_correction='reliability' (thesis eq. 2.15)."
            )
        if not 0 < self.train_fraction < 1 or self.n_splits < 1 or self.n_boot < 1:
            raise ValueError(
                f"need 0 < train_fraction < 1, n_splits >= 1, n_boot >= 1. Received: {self.train_fraction}, "
                f"{self.n_splits}, {self.n_boot}"
            )


@dataclasses.dataclass
class FitResult:
    """Per-unit rows (one per unit x layer x time) and the per-area summary."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def _mapper_factory(config: FitConfig) -> Callable[[], Any]:
    return lambda: mappings.make_mapping(config.mapping, **config.mapping_kwargs)


def _check_alignment(store: FeatureStore, data: NeuralData) -> None:
    if len(store.stimulus_ids) != len(data.stimulus_ids) or np.any(store.stimulus_ids != data.stimulus_ids):
        raise ValueError(
            f"the features cover {len(store.stimulus_ids)} stimuli and the recordings {len(data.stimulus_ids)}, or "
            "their ids differ in order; extract the features from the recordings' own stimuli "
            "(goaldriven-fit does this when the data file holds the stimuli)."
        )


def _bins(data: NeuralData, config: FitConfig) -> list[int]:
    starts = data.time_bins_ms[:, 0]
    if config.bins_ms is None:
        return list(range(len(starts)))
    chosen = [i for i, s in enumerate(starts) if config.bins_ms[0] <= s < config.bins_ms[1]]
    if not chosen:
        raise ValueError(f"no time bin starts in {config.bins_ms} ms; the data's bins start at {starts.tolist()}.")
    return chosen


def fit_recordings(
    store: FeatureStore, data: NeuralData, config: FitConfig, log: Callable[[str], None] = print
) -> FitResult:
    """Scores every (layer, area) pair of `store` and `data` under `config`; see the module docstring."""
    _check_alignment(store, data)
    layers = list(config.layers or store.layers)
    unknown = [name for name in layers if name not in store.layers]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; the features hold {list(store.layers)}.")
    areas = list(config.areas or data.areas())
    missing = [a for a in areas if a not in data.areas()]
    if missing:
        raise ValueError(f"no units in areas {missing}; the data has areas {data.areas()}.")
    if data.num_trials < 2:
        raise ValueError(
            "noise-corrected scores need trial-resolved responses (>= 2 trials); this file holds trial averages only."
        )
    groups = data.stimulus_labels if config.stratify and data.stimulus_labels is not None else None
    splits = stimulus_splits(len(data.stimulus_ids), config.train_fraction, config.n_splits, config.seed, groups)
    times = _time_points(data, config)
    row_times = times if config.temporal != "fixed" else _per_bin(data, times[0][1])  # the time labels of the rows
    constant = recording_checks.constant_units(data, areas, [(label, bins) for label, bins, _ in row_times])
    if config.inter_animal:
        name, options = _inter_animal_mapping(config)
        recording_checks.check_inter_animal_sources(
            data, areas, name, options, config.inter_animal_mode, user_options=name == config.mapping
        )
    targets = _target_groups(data, areas, config.per_animal)
    mapping = mappings.mapping_class(config.mapping)
    over_time = config.temporal == "fixed"  # one mapping shared by the bins: features per step
    rows: list[dict[str, Any]] = []
    split_scores: dict[tuple[str, str, str], list[np.ndarray]] = {}  # (area, layer, time): per target group (s, u)
    began, total, done = time.time(), len(layers) * len(targets) * len(times), 0
    for layer in layers:
        features = store.layer(layer, max_bytes=config.max_feature_bytes)
        for label, bins, step_bins in times:
            steps = features.steps_at(data.time_bins_ms[step_bins, 0])
            x = features.for_mapping(mapping, steps, over_time=over_time)  # shared by every target group
            for area, units in targets:
                if over_time:
                    values = _score_fixed(x, mapping, data, units, bins, splits, config)
                else:
                    values = _score(x, data.responses[:, units][:, :, bins].mean(axis=2), splits, config)
                per_split = values.pop("per_split")  # (s, u) or, fixed in time, (s, u, t)
                for k, key_time in enumerate([label] if per_split.ndim == 2 else _bin_labels(data, bins)):
                    scores = per_split if per_split.ndim == 2 else per_split[:, :, k]
                    split_scores.setdefault((area, layer, key_time), []).append(scores)
                for i, unit in enumerate(units):
                    for key_time, v in _per_time(values, i, label, data, bins, config):
                        rows.append(
                            dict(
                                unit_id=str(data.unit_ids[unit]),
                                animal=str(data.animal[unit]),
                                area=area,
                                layer=layer,
                                time=key_time,
                                **v,
                            )
                        )
                done += 1
                elapsed = time.time() - began
                log(
                    f"fit {done}/{total}: layer {layer}, area {area} ({len(units)} units), {label}: median "
                    f"noise-corrected {summarize(values['noise_corrected'])['median']:.3f} "
                    f"[{elapsed:.0f} s, ~{elapsed / done * (total - done):.0f} s left]"
                )
    inter_animal = _inter_animal(data, areas, row_times, splits, config, log) if config.inter_animal else {}
    result = summary.summarize_fit(
        rows, layers, areas, inter_animal, config, constant=constant, split_scores=split_scores
    )
    for line in summary.unscored_lines(result):
        log(line)
    return FitResult(rows=rows, summary=result)


def _target_groups(data: NeuralData, areas: Sequence[str], per_animal: bool) -> list[tuple[str, np.ndarray]]:
    """(area, unit indices) fitted by one mapping: each area's units, or each animal's units of each area."""
    groups = []
    for area in areas:
        in_area = data.area == area
        if not per_animal:
            groups.append((area, np.flatnonzero(in_area)))
            continue
        groups += [(area, np.flatnonzero(in_area & (data.animal == a))) for a in sorted(set(data.animal[in_area]))]
    return groups


def _time_points(data: NeuralData, config: FitConfig) -> list[tuple[str, list[int], list[int]]]:
    """(label, neural bins averaged, bins whose model steps are used) per scored time point."""
    if config.temporal == "window":
        a, b = config.window_ms
        bins = [i for i, (s, e) in enumerate(data.time_bins_ms) if s >= a and e <= b]
        if not bins:
            raise ValueError(f"no time bin lies inside the window {config.window_ms} ms; bins: {data.time_bins_ms}.")
        return [(f"{a:g}-{b:g} ms", bins, bins)]
    bins = _bins(data, config)
    if config.temporal == "varying":
        return [(f"{data.time_bins_ms[b, 0]:g} ms", [b], [b]) for b in bins]
    return [("fixed", bins, bins)]


def _score(x: np.ndarray, trials: np.ndarray, splits, config: FitConfig) -> dict[str, np.ndarray]:
    """{noise_corrected, raw, reliability}: (u,) per unit for features x (n, p) and trials (n, u, r)."""
    factory = _mapper_factory(config)
    if config.noise_correction == "split_half":
        result = consistency.model_predictivity(
            x, trials, factory, splits, n_boot=config.n_boot, seed=config.seed, spearman_brown=config.spearman_brown
        )
        return {
            "noise_corrected": result.noise_corrected,
            "raw": result.raw,
            "reliability": result.reliability,
            "per_split": result.per_split,
        }
    mean = trials.mean(axis=-1)  # (n, u)
    raws = np.array([pearson(factory().fit_predict_many(x[tr], [mean[tr]], x[te])[0], mean[te]) for tr, te in splits])
    return _corrected(raws, split_half_reliability(trials, n_boot=config.n_boot, seed=config.seed))


def _corrected(raws: np.ndarray, reliability: np.ndarray) -> dict[str, np.ndarray]:
    """Eq. 2.15 from per-split raw r (s, u[, t]): the noise-corrected mean over splits, and per split."""
    raw = np.nanmean(raws, axis=0)
    return {
        "noise_corrected": noise_corrected(raw, reliability),
        "raw": raw,
        "reliability": reliability,
        "per_split": noise_corrected(raws, reliability[None]),
    }


def _score_fixed(x, mapping, data, units, bins, splits, config) -> dict[str, np.ndarray]:
    """Temporally fixed mapping over `bins` of features x (n, t', ...): per-unit, per-bin raw r, reliability and
    noise-corrected r (u, t)."""
    trials = data.responses[:, units][:, :, bins]  # (n, u, t, r)
    mean = trials.mean(axis=-1)  # (n, u, t)
    factory = _mapper_factory(config)
    raws = []
    for tr, te in splits:
        mapper = factory() if mapping.needs_maps else TemporallyFixed(factory)  # a maps mapping is fixed in time
        pred = mapper.fit(x[tr], mean[tr]).predict(x[te])  # (n_te, u, t)
        raws.append(np.stack([pearson(pred[:, :, k], mean[te][:, :, k]) for k in range(len(bins))], axis=1))
    reliability = split_half_reliability(trials, n_boot=config.n_boot, seed=config.seed)  # (u, t)
    return _corrected(np.array(raws), reliability)  # (s, u, t) per split


def _per_time(values, i, label, data, bins, config):
    if config.temporal != "fixed":
        yield label, {k: float(v[i]) for k, v in values.items()}
        return
    for k, label in enumerate(_bin_labels(data, bins)):
        yield label, {key: float(v[i, k]) for key, v in values.items()}


def _inter_animal_mapping(config: FitConfig) -> tuple[str, dict]:
    """The mapping (name, options) of the inter-animal step: the fit's own, or PLS for a maps mapping (which cannot
    map units to units)."""
    if mappings.mapping_class(config.mapping).needs_maps:
        return "pls", {}
    return config.mapping, dict(config.mapping_kwargs)


def _inter_animal(data, areas, times, splits, config, log) -> dict[tuple[str, str], dict[str, Any]]:
    """{(area, time label): {"values": per-unit consistency}} from the recordings alone, at the rows' time points."""
    out = {}
    name, options = _inter_animal_mapping(config)
    factory = lambda: mappings.make_mapping(name, **options)  # noqa: E731
    for area in areas:
        animals = sorted(set(data.animal[data.area == area]))
        if len(animals) < 2:
            log(f"inter-animal consistency: area {area} has {len(animals)} animal(s); needs >= 2, skipped")
            continue
        for label, bins, _ in times:
            by_animal = {}
            for animal in animals:
                units = np.flatnonzero((data.area == area) & (data.animal == animal))
                by_animal[animal] = data.responses[:, units][:, :, bins].mean(axis=2)
            result = consistency.inter_animal_consistency(
                by_animal,
                factory,
                splits,
                n_boot=config.n_boot,
                seed=config.seed,
                mode=config.inter_animal_mode,
                spearman_brown=config.spearman_brown,
            )
            out[(area, label)] = {"values": np.asarray(result.values, float), "per_split": result.per_split}
            log(
                f"inter-animal consistency ({config.inter_animal_mode}): area {area}, {label}: median "
                f"{summarize(result.values)['median']:.3f} over {len(result.values)} units of {len(animals)} animals"
            )
    return out


def _bin_labels(data, bins) -> list[str]:
    return [f"{data.time_bins_ms[b, 0]:g} ms" for b in bins]


def _per_bin(data, bins):
    """A temporally fixed fit's bins as separate time points (the animals are compared bin by bin)."""
    return [(label, [b], [b]) for label, b in zip(_bin_labels(data, bins), bins)]
