"""Rate maps of a path integrator's units in a recorded box: restore the checkpoint, run it on seeded trajectories
in that box, bin the activations on the recorded bins (no smoothing).

Reference: thesis Section 4.8.2 (spec ch3_ch4 B2): 100 batches x 200 trajectories (T = 20), the same seeded set for
every model; rate = mean activation of a unit over all visits to a 5 cm bin; NaN where no trajectory went. The
evaluation generator, forward pass and accumulator are the path-integration evaluation's (tasks/path_integration,
spatial/ratemaps), so these maps equal the ones goaldriven-train's evaluation writes for the same box and seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from goaldriven import checkpointing, runtime
from goaldriven.spatial import ratemaps as ratemaps_lib

# b: batch, t: time, u: units, h/w: spatial bins


@dataclasses.dataclass(frozen=True)
class RateMapProtocol:
    """The seeded evaluation set (thesis: 100 batches x 200, seed shared by every model)."""

    batches: int = 100
    global_batch_size: int = 200
    seed: int = 20211206


def restore_path_integrator(task, checkpoint: str, strategy: tf.distribute.Strategy, log: Callable = print):
    """The task's model built under `strategy` with the checkpoint's weights; (model, checkpoint prefix)."""
    for attribute in ("forward", "evaluation_generator", "make_batch"):
        if not hasattr(task, attribute):
            raise ValueError(
                f"task {getattr(task, 'name', type(task).__name__)!r} is not a path-integration task; MEC fits need "
                "the gin files of a path integrator (gin/experiments/path_integration__*.gin)."
            )
    with strategy.scope():
        model = task.build_model()
        batch = task.make_batch(task.trajectories, 2)(tf.constant(0, tf.int64), tf.constant([0, 0], tf.int64))
        task.forward(model, batch, training=False)
    prefix = checkpointing.restore_model(model, checkpoint)
    log(f"restored {prefix} into {model.name}")
    return model, prefix


def model_ratemaps(
    task,
    model,
    *,
    box_width: float,
    bins: int,
    layers: tuple[str, ...] | None = None,
    protocol: RateMapProtocol = RateMapProtocol(),
    strategy: tf.distribute.Strategy | None = None,
) -> dict[str, np.ndarray]:
    """{layer: (u, bins, bins) rate maps} of the model's feature layers (default: all) in a square box of side
    `box_width` metres, centred at the origin (the recordings' bins: rows = y, columns = x)."""
    strategy = strategy or tf.distribute.get_strategy()
    names = tuple(model.feature_names) if layers is None else tuple(layers)
    unknown = set(names) - set(model.feature_names)
    if unknown:
        raise ValueError(f"layers {sorted(unknown)} are not features of this model; choose from {model.feature_names}.")

    def features_fn(batch):
        out = task.forward(model, batch, training=False)
        return {"position": batch["position"], **{k: tf.cast(out["features"][k], tf.float32) for k in names}}

    runner = runtime.ReplicatedRunner(strategy, features_fn)
    make_batch = task.make_batch(task.evaluation_generator(box_width), protocol.global_batch_size)
    accumulators = {}
    for out in runner.map(
        make_batch, global_batch_size=protocol.global_batch_size, num_batches=protocol.batches, seed=protocol.seed
    ):
        positions = out["position"].reshape(-1, 2)  # (b * t, 2)
        for name in names:
            acts = out[name].reshape(positions.shape[0], -1)  # (b * t, u)
            if name not in accumulators:
                accumulators[name] = ratemaps_lib.RateMapAccumulator(acts.shape[1], box_width, box_width, bins)
            accumulators[name].add(positions, acts)
    return {name: acc.ratemaps() for name, acc in accumulators.items()}
