"""Evaluation of a path integrator (thesis Sections 4.8.2, 4.8.4, 4.11): decoding error, rate maps, grid and border
scores, figures and unit knockouts.

Protocol (spec ch3_ch4 B2, B3, B6): the model runs on a fixed, seeded set of trajectories (thesis: 100 batches of
200, T = 20) in the evaluation box (thesis: 1 m for models trained in the 2.2 m box), identical for every model.
Rate maps: mean activation per spatial bin (20 x 20), no smoothing for models. Grid score > 0.3 and border
score > 0.5 define grid and border units. Path-integration score per episode E = -(1/T) sum_t |x_t - x^_t| (metres),
averaged over episodes; knockouts set the outputs of the selected units of g to zero, and the degradation is
(E_knockout - E_full) / E_full (positive: worse). Heterogeneous controls knock out as many units drawn at random from
those at or below the threshold (thesis: 100 draws).

Outputs in `output_dir`: summary.json, ratemaps_<layer>.npz (ratemaps (u, h, w), counts (h, w), scores),
scores_<layer>.csv, knockouts.json and PNG figures (best grid units, score histograms, decoded trajectories,
knockouts). On the 1-D track (environment "track", thesis: 4 m, 80 bins of 5 cm) the maps are 1-D, ratemaps (u, w)
and counts (w,), without grid or border scores (2-D measures) and so without knockouts.
"""

# b: batch, t: time, u: units, h/w: spatial bins
import csv
import dataclasses
import os
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from goaldriven import atomic_write, runtime
from goaldriven.spatial import ratemaps as ratemaps_lib
from goaldriven.spatial import scores as spatial_scores
from goaldriven.tasks import path_integration_plots as plots


@dataclasses.dataclass(frozen=True)
class PathIntegrationEvaluation:
    """What `PathIntegrationTask.evaluate` computes.

    Attributes:
      box_width: evaluation box side in metres (thesis: 1.0), or the track length (thesis: 4.0).
      environment: None (the training generator's), "box" or "track" (a 2-D-trained model on the 1-D track).
      cue_probability: cue presence at evaluation (None: as in training; cue models are evaluated with cues).
      batches, global_batch_size: size of the seeded evaluation set (thesis: 100 x 200).
      seed: seed of the evaluation trajectories (shared by all models).
      train_box_batches: batches for the decoding error in the training box (0: skip).
      ratemap_bins: bins per side; None: 5 cm bins as in the thesis (20 in the 1 m box, 30 in the 1.5 m box).
      layers: feature layers to map and score ("g" is the MEC layer; 3-layer networks also have "rnn").
      grid_method: "mean" (thesis) or "minmax" (Banino et al.) grid score.
      knockout_grid_thresholds, knockout_border_thresholds: thresholds at which to knock out units of "g".
      knockout_draws: random heterogeneous draws per knockout (thesis: 100).
      knockout_batches: evaluation batches per knockout (thesis: 100).
      figures: write PNG figures.
      n_best_units: rate maps shown in the best-units figure.
    """

    box_width: float = 1.0
    environment: str | None = None
    cue_probability: float | None = None
    batches: int = 100
    global_batch_size: int = 200
    seed: int = 20211206
    train_box_batches: int = 10
    ratemap_bins: int | None = None
    layers: tuple[str, ...] = ("g",)
    grid_method: str = "mean"
    knockout_grid_thresholds: tuple[float, ...] = (0.3,)
    knockout_border_thresholds: tuple[float, ...] = (0.5,)
    knockout_draws: int = 100
    knockout_batches: int = 100
    figures: bool = True
    n_best_units: int = 16

    def __post_init__(self):
        for name in ("batches", "global_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PathIntegrationEvaluation.{name} must be positive; received {getattr(self, name)}.")
        if self.knockout_draws < 0 or self.knockout_batches < 0 or self.train_box_batches < 0:
            raise ValueError("knockout_draws, knockout_batches and train_box_batches must be >= 0.")
        if self.ratemap_bins is not None and self.ratemap_bins < 2:
            raise ValueError(f"ratemap_bins must be >= 2 (or None for 5 cm bins); received {self.ratemap_bins}.")

    @property
    def bins(self) -> int:
        """Rate-map bins per side: `ratemap_bins`, or 5 cm bins (thesis Section 4.8.2)."""
        return self.ratemap_bins if self.ratemap_bins is not None else max(2, round(self.box_width / 0.05))


def _episode_errors(out: dict[str, np.ndarray]) -> np.ndarray:
    """Mean decoding distance per episode (b,), metres."""
    return np.linalg.norm(out["decoded"] - out["position"], axis=-1).mean(axis=-1)


def evaluate(
    task,
    model,
    *,
    strategy: tf.distribute.Strategy,
    output_dir: str,
    step: int,
    config: PathIntegrationEvaluation,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the evaluation protocol; writes its outputs to `output_dir` and returns scalar metrics."""
    began = time.time()
    os.makedirs(output_dir, exist_ok=True)
    unknown = set(config.layers) - set(model.feature_names)
    if unknown:
        raise ValueError(
            f"evaluation layers {sorted(unknown)} are not features of this model; "
            f"available: {list(model.feature_names)}."
        )
    layers = tuple(config.layers)

    def features_fn(batch):
        out = task.forward(model, batch, training=False)
        return {
            "position": batch["position"],
            "decoded": out["decoded"],
            **{layer: tf.cast(out["features"][layer], tf.float32) for layer in layers},
        }

    def knockout_fn(batch, mask):
        out = task.forward(model, batch, training=False, unit_mask=mask)
        return {"position": batch["position"], "decoded": out["decoded"]}

    runner, knockout_runner = runtime.ReplicatedRunner(strategy, features_fn), None
    box = config.box_width
    generator = task.evaluation_generator(box, config.cue_probability, config.environment)
    track = generator.environment == "track"
    make_batch = task.make_batch(generator, config.global_batch_size)
    accumulators, errors, example = {}, [], None
    for out in runner.map(
        make_batch, global_batch_size=config.global_batch_size, num_batches=config.batches, seed=config.seed
    ):
        positions = out["position"].reshape(-1, 2)
        for layer in layers:
            acts = out[layer].reshape(positions.shape[0], -1)
            if layer not in accumulators:
                accumulators[layer] = (
                    ratemaps_lib.TrackRateMapAccumulator(acts.shape[1], box, config.bins)
                    if track
                    else ratemaps_lib.RateMapAccumulator(acts.shape[1], box, box, config.bins)
                )
            accumulators[layer].add(positions, acts)
        errors.append(_episode_errors(out))
        if example is None:
            example = {"position": out["position"][:6], "decoded": out["decoded"][:6]}
    errors = np.concatenate(errors)
    metrics: dict[str, Any] = {
        "decoding_error_cm": 100 * float(errors.mean()),
        "path_integration_score_m": -float(errors.mean()),
        "eval_box_m": box,
        "eval_environment": generator.environment,
    }
    where = f"{box:g} m {'track' if track else 'box'}"
    log(f"eval: decoding error {metrics['decoding_error_cm']:.2f} cm in the {where} ({len(errors)} episodes)")
    if config.train_box_batches:
        train_box = task.trajectories.box_width
        train_errors = np.concatenate(
            [
                _episode_errors(o)
                for o in runner.map(
                    task.make_batch(
                        task.evaluation_generator(train_box, config.cue_probability), config.global_batch_size
                    ),
                    global_batch_size=config.global_batch_size,
                    num_batches=config.train_box_batches,
                    seed=config.seed + 1,
                )
            ]
        )
        metrics["train_box_decoding_error_cm"] = 100 * float(train_errors.mean())

    scores = {}
    for layer in layers:
        maps = accumulators[layer].ratemaps()
        if track:  # 1-D maps: no grid or border scores
            _save_layer(output_dir, layer, maps, accumulators[layer].counts, {})
            if config.figures:
                plots.track_ratemaps(
                    maps, os.path.join(output_dir, f"track_ratemaps_{layer}.png"), n=config.n_best_units
                )
            continue
        grid = spatial_scores.grid_scores(maps, method=config.grid_method)
        strict = spatial_scores.grid_scores(maps, method=config.grid_method, sac="strict")
        border = spatial_scores.border_scores(maps)
        scores[layer] = {
            "score60": grid["score60"],
            "score90": grid["score90"],
            "border": border,
            "score60_strict": strict["score60"],
        }
        metrics.update(
            {
                f"{layer}_grid_fraction": spatial_scores.fraction_above(grid["score60"], spatial_scores.GRID_THRESHOLD),
                f"{layer}_grid_fraction_strict": spatial_scores.fraction_above(
                    strict["score60"], spatial_scores.GRID_THRESHOLD
                ),
                f"{layer}_border_fraction": spatial_scores.fraction_above(border, spatial_scores.BORDER_THRESHOLD),
                f"{layer}_median_grid_score": _nan_stat(np.median, grid["score60"]),
                f"{layer}_max_grid_score": _nan_stat(np.max, grid["score60"]),
            }
        )
        _save_layer(output_dir, layer, maps, accumulators[layer].counts, scores[layer])
        log(
            f"eval: layer {layer}: {metrics[f'{layer}_grid_fraction']:.1%} units with grid score > "
            f"{spatial_scores.GRID_THRESHOLD} ({metrics[f'{layer}_grid_fraction_strict']:.1%} with the strict SAC), "
            f"{metrics[f'{layer}_border_fraction']:.1%} with border score > "
            f"{spatial_scores.BORDER_THRESHOLD} (max grid score {metrics[f'{layer}_max_grid_score']:.2f})"
        )
        if config.figures:
            plots.best_grid_units(
                maps,
                scores[layer],
                os.path.join(output_dir, f"best_grid_units_{layer}.png"),
                n=config.n_best_units,
                title=f"{task.name} step {step}, layer {layer}",
            )
            plots.score_histograms(
                scores[layer],
                os.path.join(output_dir, f"score_histograms_{layer}.png"),
                grid_threshold=spatial_scores.GRID_THRESHOLD,
                border_threshold=spatial_scores.BORDER_THRESHOLD,
            )
    if config.figures:
        plots.decoded_trajectories(example, box, os.path.join(output_dir, "decoded_trajectories.png"))

    # Knockouts probe trained networks (thesis Section 4.11); at step 0 (untrained) they are skipped.
    if (
        step > 0
        and "g" in scores
        and config.knockout_batches
        and (config.knockout_grid_thresholds or config.knockout_border_thresholds)
    ):
        knockout_runner = runtime.ReplicatedRunner(strategy, knockout_fn)
        knockout_batches = knockout_runner.distribute(
            make_batch,
            global_batch_size=config.global_batch_size,
            num_batches=config.knockout_batches,
            seed=config.seed,
        )

        def score(mask: np.ndarray) -> float:
            outputs = knockout_runner.run(knockout_batches, args=(tf.constant(mask, tf.float32),))
            return -float(np.concatenate([_episode_errors(o) for o in outputs]).mean())

        results = knockouts(scores["g"], score, config)
        atomic_write.write_json(os.path.join(output_dir, "knockouts.json"), results)
        for kind in ("grid", "border"):  # Headline: the lowest threshold of each kind (0.3 / 0.5 in the thesis).
            rows = [row for row in results["rows"] if row["kind"] == kind]
            if rows:
                metrics[f"knockout_{kind}_fraction"] = rows[0]["fraction_units"]
                metrics[f"knockout_{kind}_degradation"] = rows[0]["degradation"]
                metrics[f"knockout_{kind}_heterogeneous_degradation"] = rows[0]["heterogeneous_mean_degradation"]
        for row in results["rows"]:
            log(
                f"eval: knockout {row['kind']} > {row['threshold']:g} ({row['n_units']} units): degradation "
                f"{row['degradation']:+.2%}, heterogeneous {row['heterogeneous_mean_degradation']:+.2%} "
                f"({len(row['heterogeneous_degradations'])} draws)"
            )
        if config.figures:
            plots.knockouts(results, os.path.join(output_dir, "knockouts.png"))
    metrics["eval_seconds"] = time.time() - began
    atomic_write.write_json(os.path.join(output_dir, "summary.json"), {"step": step, **metrics})
    return metrics


def knockouts(
    scores: dict[str, np.ndarray], score_fn: Callable[[np.ndarray], float], config: PathIntegrationEvaluation
) -> dict[str, Any]:
    """Knockout experiment (thesis Section 4.11) on units scored by `scores` ("score60", "border").

    `score_fn(mask)` returns the path-integration score E (negative mean error, metres) with units where mask == 0
    silenced. Degradation = (E_knockout - E_full) / E_full; for each threshold and kind (grid, border), the units
    above the threshold are knocked out, and `knockout_draws` random sets of as many units at or below it.
    """
    n_units = len(scores["score60"])
    full = score_fn(np.ones(n_units, np.float32))
    rng = np.random.default_rng(config.seed)
    rows = []
    for kind, key, thresholds in (
        ("grid", "score60", config.knockout_grid_thresholds),
        ("border", "border", config.knockout_border_thresholds),
    ):
        values = np.nan_to_num(scores[key], nan=-np.inf)
        for threshold in thresholds:
            selected = np.flatnonzero(values > threshold)
            others = np.flatnonzero(values <= threshold)
            row = {
                "kind": kind,
                "threshold": float(threshold),
                "n_units": int(len(selected)),
                "fraction_units": len(selected) / n_units,
                "degradation": 0.0,
                "heterogeneous_degradations": [],
                "heterogeneous_mean_degradation": 0.0,
            }
            if len(selected):
                mask = np.ones(n_units, np.float32)
                mask[selected] = 0.0
                row["degradation"] = (score_fn(mask) - full) / full
                draws = []
                if len(others) >= len(selected):
                    for _ in range(config.knockout_draws):
                        mask = np.ones(n_units, np.float32)
                        mask[rng.choice(others, size=len(selected), replace=False)] = 0.0
                        draws.append((score_fn(mask) - full) / full)
                row["heterogeneous_degradations"] = draws
                row["heterogeneous_mean_degradation"] = float(np.mean(draws)) if draws else float("nan")
            rows.append(row)
    return {"full_score_m": full, "rows": rows}


def _nan_stat(fn, values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else float("nan")


def _save_layer(
    output_dir: str, layer: str, maps: np.ndarray, counts: np.ndarray, scores: dict[str, np.ndarray]
) -> None:
    np.savez_compressed(
        os.path.join(output_dir, f"ratemaps_{layer}.npz"),
        ratemaps=maps.astype(np.float32),
        counts=counts,
        **{f"{k}_score": v for k, v in scores.items()},
    )
    if not scores:  # track maps
        return
    with open(os.path.join(output_dir, f"scores_{layer}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["unit", "grid_score_60", "grid_score_90", "border_score", "grid_score_60_strict"])
        for unit, row in enumerate(
            zip(scores["score60"], scores["score90"], scores["border"], scores["score60_strict"])
        ):
            writer.writerow([unit, *(f"{v:.4f}" for v in row)])
