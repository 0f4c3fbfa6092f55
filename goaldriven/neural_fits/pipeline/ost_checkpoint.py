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
on for 10: spec 1.3), a feedforward model once. The reports are ost_report.FILES; like a neural fit's they go to the
workdir, or to fit.1/, fit.2/, ... when the workdir holds a fit with other options (fit_workdir.claim: the options
are the feature key, the data file's digest, the OSTFitConfig and a digest of the OST targets), so an earlier fit is
never overwritten. The fit holds the workdir's lock (goaldriven.workdir_lock). Restoring and the feature cache with the
claimed report folder are the neural fit's steps (fit_checkpoint.restore_for_stimuli, fit_checkpoint.claimed_features).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import numpy as np
import tensorflow as tf

from goaldriven import workdir_lock
from goaldriven.neural_fits.data.ost_data import load_ost_data
from goaldriven.neural_fits.pipeline import fit_checkpoint, fit_workdir, ost_fit, ost_report
from goaldriven.neural_fits.pipeline.stimuli import Presentation


@dataclasses.dataclass
class CheckpointOST:
    """What `fit_checkpoint_ost` did: the fit, the report files and the feature cache used."""

    fit: ost_fit.OSTFit
    paths: list[str]
    features_path: str
    checkpoint: str
    fit_dir: str  # the workdir, or fit.N/ beside an earlier fit (neural or OST) with other options


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
    strategy = strategy or tf.distribute.get_strategy()
    why = "OSTs are decoded from image-driven features."
    model, transform, prefix = fit_checkpoint.restore_for_stimuli(
        checkpoint, task=task, strategy=strategy, why=why, log=log
    )

    def options(features_key: str) -> dict:
        source = dict(recordings=data, recordings_path=data_path, simulate=None, config=config)
        return {**fit_workdir.fit_options(features_key=features_key, **source), "ost_targets": _targets_digest(targets)}

    with workdir_lock.hold(workdir, "ost fit", log):
        with fit_checkpoint.claimed_features(
            model,
            stimuli,
            workdir=workdir,
            options=options,
            log=log,
            transform=transform,
            layers=config.layers,
            presentation=presentation or Presentation(),
            global_batch_size=global_batch_size,
            strategy=strategy,
            stimulus_ids=data.stimulus_ids,
            dtype=features_dtype,
            checkpoint=prefix,
            on_mismatch="extract",
        ) as (store, _, fit_dir):
            fit_workdir.remove_interrupted_writes(fit_dir, log, names=ost_report.FILES)
            fit = ost_fit.fit_ost(store, data, targets, config, log=log)
            features_path = store.path
        paths = ost_report.write_all(fit, fit_dir, config)
    return CheckpointOST(fit, paths, features_path, prefix, fit_dir)


def _targets_digest(targets) -> str:
    digest = hashlib.sha256(targets.bin_times.encode())
    for array in (targets.behavioral_dprime, targets.it_ost_ms, targets.it_dprime_defined.astype(np.float64)):
        digest.update(np.ascontiguousarray(array, np.float64).tobytes())
    return digest.hexdigest()
