"""The OST fit of one checkpoint as a library call: read the OST file, restore, extract (or reuse) features, fit, write.

`fit_checkpoint_ost` is what `goaldriven-fit --ost` runs after parsing its flags and gin files:

    task = cli_config.configured_task()          # after cli_config.parse_gin_config([...], clear=True)
    run = fit_checkpoint_ost("/tmp/ugrnn", task=task, workdir="/tmp/ugrnn_ost", data_path="kar2019_ost.h5",
                             config=OSTFitConfig(), presentation=Presentation(times=26, image_on=10))
    run.fit.variants["convrnn"].mean, run.paths

The OST file (ost_data.py, docs/neural_data_format.md) is read and checked first, so a bad file fails before
TensorFlow restores anything. Features go to <workdir>/features.h5, the same cache as the neural fit's (keyed on the
checkpoint's content, model config, input, schedule, dtype, layers and stimuli; feature_cache.py), so an OST fit and a
neural fit of the same checkpoint and stimuli share it. A ConvRNN is run with the evaluation schedule (26 steps, image
on for 10: spec 1.3), a feedforward model once. The reports are ost_report.FILES in the workdir; the fit holds the
workdir's lock (goaldriven.workdir_lock).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from goaldriven import checkpointing, workdir_lock
from goaldriven.neural_fits.data.ost_data import load_ost_data
from goaldriven.neural_fits.pipeline import ost_fit, ost_report
from goaldriven.neural_fits.pipeline.extraction import extract_features
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform

FEATURES_FILE = "features.h5"


@dataclasses.dataclass
class CheckpointOST:
    """What `fit_checkpoint_ost` did: the fit, the report files and the feature cache used."""

    fit: ost_fit.OSTFit
    paths: list[str]
    features_path: str
    checkpoint: str


def fit_checkpoint_ost(
    checkpoint: str,
    *,
    workdir: str,
    task,
    data_path: str,
    config: ost_fit.OSTFitConfig | None = None,
    presentation: Presentation | None = None,
    strategy: tf.distribute.Strategy | None = None,
    global_batch_size: int = 64,
    features_dtype: str = "float32",
    allow_external_stimuli: bool = False,
    log: Callable[[str], None] = print,
) -> CheckpointOST:
    """OSTs of the checkpoint at `checkpoint` (a training workdir, its checkpoints/ folder or a prefix) for the
    stimuli of the OST file `data_path`, scored against its IT OSTs; reports into `workdir` (module docstring)."""
    config = config or ost_fit.OSTFitConfig()
    data, targets = load_ost_data(data_path, allow_external_stimuli=allow_external_stimuli)
    log(data.summary())
    stimuli = data.load_stimuli()
    if stimuli is None:
        raise ValueError(f"{data_path} holds no stimuli (pixels or stimuli_path): add them to compute model OSTs.")
    input_spec = task.input_spec
    if input_spec is None:
        raise ValueError(
            f"task {getattr(task, 'name', type(task).__name__)!r} has no input_spec (it takes no "
            "images); OSTs are decoded from image-driven features."
        )
    strategy = strategy or tf.distribute.get_strategy()
    transform = StimulusTransform.for_input(input_spec)
    with strategy.scope():
        model = task.build_model()
        model(transform(np.zeros((1, input_spec.image_size, input_spec.image_size, 3), np.float32)), training=False)
    prefix = checkpointing.restore_model(model, checkpoint)
    log(f"restored {prefix} into {model.name}")
    with workdir_lock.hold(workdir, "ost fit", log):
        store = extract_features(
            model,
            stimuli,
            transform=transform,
            layers=config.layers,
            presentation=presentation or Presentation(),
            global_batch_size=global_batch_size,
            strategy=strategy,
            stimulus_ids=data.stimulus_ids,
            out_path=os.path.join(workdir, FEATURES_FILE),
            dtype=features_dtype,
            checkpoint=prefix,
            on_mismatch="extract",
            log=log,
        )
        try:
            fit = ost_fit.fit_ost(store, data, targets, config, log=log)
            features_path = store.path
        finally:
            store.close()
        paths = ost_report.write_all(fit, workdir, config)
    return CheckpointOST(fit, paths, features_path, prefix)
