"""The whole neural fit of one checkpoint as a library call: restore, extract (or reuse) features, fit, write reports.

`fit_checkpoint` is what `goaldriven-fit` runs after parsing its flags and gin files, and what a notebook calls:

    task = cli_config.configured_task()          # after cli_config.parse_gin_config([...], clear=True)
    fit = fit_checkpoint("/tmp/digits_quick", task=task, workdir="/tmp/digits_fit",
                         simulate=SimulateSpec({"V1": "stage1_block1", "IT": "stage3_block1"}),
                         config=FitConfig(n_splits=3, n_boot=20))
    fit.result.summary["best_layer"], fit.paths

Files in `workdir`: features.h5 (the feature cache, keyed on the checkpoint's content, the model's config, the input,
the schedule, the dtype and the stimuli: another key's features go into a file beside it; feature_cache.py), and the
reports: units.csv, summary.json, predictivity_by_layer.png, time_courses.png (time-resolved fits), fit_options.json
(what identifies the fit) and, with `simulate`, synthetic_neural_data.h5 (simulate_from_model.py). A rerun with the
same options rewrites the same reports; a fit with other options writes its reports to fit.1/, fit.2/, ... beside
the earlier ones, which are never overwritten (fit_workdir.py). The whole fit holds the workdir's lock
(goaldriven.workdir_lock): a second process is refused with workdir_lock.WorkdirBusyError naming the first.
Problems raise ValueError / FileNotFoundError / FileExistsError (NeuralDataError for a broken data file) with a
one-line message naming the fix. `restore_for_stimuli` and `claimed_features` are the steps the OST fit
(ost_checkpoint.py) shares: the restored model with its stimulus transform, and the feature cache with the claimed
report folder.
"""

import contextlib
import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from goaldriven import checkpointing, workdir_lock
from goaldriven.neural_fits.data.neural_data import NeuralData, load_neural_data
from goaldriven.neural_fits.pipeline import fit_workdir, report, simulate_from_model
from goaldriven.neural_fits.pipeline.extraction import extract_features
from goaldriven.neural_fits.pipeline.fitting import FitConfig, FitResult, fit_recordings
from goaldriven.neural_fits.pipeline.simulate_from_model import SimulateSpec
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform

FEATURES_FILE = "features.h5"
SIMULATED_FILE = "synthetic_neural_data.h5"


@dataclasses.dataclass
class CheckpointFit:
    """What `fit_checkpoint` did: the scores, the report files written and where its inputs came from."""

    result: FitResult
    paths: list[str]  # report files: units.csv, summary.json, predictivity_by_layer.png[, time_courses.png]
    features_path: str  # the feature cache used: features.h5, or the file beside it of another key
    recordings_path: str | None  # the data file read or simulated (None for a NeuralData passed in)
    checkpoint: str  # the restored checkpoint prefix
    fit_dir: str  # the folder of the reports: the workdir, or fit.N/ beside an earlier fit with other options


def fit_checkpoint(
    checkpoint: str,
    *,
    workdir: str,
    task=None,
    model=None,
    input_spec=None,
    recordings: NeuralData | str | None = None,
    simulate: SimulateSpec | None = None,
    config: FitConfig | None = None,
    presentation: Presentation | None = None,
    strategy: tf.distribute.Strategy | None = None,
    global_batch_size: int = 64,
    features_dtype: str = "float32",
    on_mismatch: str = "extract",
    allow_external_stimuli: bool = False,
    log: Callable[[str], None] = print,
) -> CheckpointFit:
    """Scores the checkpoint at `checkpoint` (a training workdir, its checkpoints/ folder or a prefix) against neural
    recordings and writes the report files into `workdir` (module docstring).

    Args:
        task: the task the checkpoint was trained on (builds the model; its `input_spec` normalises the stimuli),
            or pass `model` (a keras.Model built under `strategy`) with its `input_spec` (goaldriven.tasks.base).
        recordings: a NeuralData, or the path of a neural data file; it must hold the stimuli. Or `simulate`.
        config: what to fit and how it is scored (FitConfig()); presentation: a ConvRNN's schedule (Presentation()).
        strategy: the tf.distribute strategy of the extraction (default: the current one).
        global_batch_size, features_dtype: stimuli per extraction batch, stored feature precision.
        on_mismatch: a features.h5 of other features (another checkpoint content, model config, input, schedule,
            dtype or stimuli: feature_cache.py): "extract" them into a file beside it (it is kept) or "refuse".
        allow_external_stimuli: let the data file's stimuli_path lead out of its folder (load_neural_data).
        log: called with one line per step of progress.
    """
    if (recordings is None) == (simulate is None):
        raise ValueError("pass exactly one of recordings (a NeuralData or a .h5 path) or simulate (a SimulateSpec).")
    strategy = strategy or tf.distribute.get_strategy()
    why = (
        "neural fits present image stimuli. Path integrators are compared with recorded MEC rate maps by "
        "goaldriven-fit --mec_data=<rate maps .h5> (docs/mec_fits.md), not this pipeline."
    )
    model, transform, prefix = restore_for_stimuli(
        checkpoint, task=task, model=model, input_spec=input_spec, strategy=strategy, why=why, log=log
    )
    config = config or FitConfig()
    recordings_path = None
    if simulate is not None:
        stimuli, ids = simulate_from_model.digits_stimuli()[0], simulate_from_model.digit_ids()
    else:
        if not isinstance(recordings, NeuralData):
            recordings_path = os.fspath(recordings)
            recordings = load_neural_data(recordings_path, allow_external_stimuli=allow_external_stimuli)
        log(recordings.summary())
        stimuli, ids = recordings.load_stimuli(), recordings.stimulus_ids
        if stimuli is None:
            where = recordings_path or "the recordings"
            raise ValueError(f"{where} holds no stimuli (pixels or stimuli_path): add them to score a model.")
    with workdir_lock.hold(workdir, "fit", log):  # one process per workdir, from the first file written to the last
        source = dict(recordings=recordings, recordings_path=recordings_path, simulate=simulate, config=config)
        with claimed_features(
            model,
            stimuli,
            workdir=workdir,
            options=lambda key: fit_workdir.fit_options(features_key=key, **source),
            log=log,
            transform=transform,
            presentation=presentation or Presentation(),
            global_batch_size=global_batch_size,
            strategy=strategy,
            stimulus_ids=ids,
            dtype=features_dtype,
            checkpoint=prefix,
            on_mismatch=on_mismatch,
        ) as (store, options, fit_dir):
            features_path = store.path
            fit_workdir.remove_interrupted_writes(workdir, log)
            if fit_dir != workdir:
                fit_workdir.remove_interrupted_writes(fit_dir, log)
            if simulate is not None:
                recordings_path = os.path.join(fit_dir, SIMULATED_FILE)
                recordings = simulate_from_model.simulate(store, simulate, path=recordings_path, log=log)
                log(recordings.summary())
            result = fit_recordings(store, recordings, config, log=log)
        result.summary["fit_options"] = options
        paths = report.write_all(result, fit_dir)
    return CheckpointFit(result, paths, features_path, recordings_path, prefix, fit_dir)


def restore_for_stimuli(
    checkpoint: str,
    *,
    task=None,
    model=None,
    input_spec=None,
    strategy: tf.distribute.Strategy,
    why: str,
    log: Callable[[str], None] = print,
):
    """(model, stimulus transform, restored prefix): the model built from `task` under `strategy` (or `model` with its
    `input_spec`), called once on a blank stimulus and restored from `checkpoint`. `why` ends the error raised for a
    task without an input_spec (why this fit needs images)."""
    if (task is None) == (model is None):
        raise ValueError("pass exactly one of task (it builds the model) or model (with its input_spec).")
    if task is not None:
        input_spec = task.input_spec
        if input_spec is None:
            name = getattr(task, "name", type(task).__name__)
            raise ValueError(f"task {name!r} has no input_spec (it takes no images); {why}")
    elif input_spec is None:
        raise ValueError("a model needs its input_spec (goaldriven.tasks.base.InputSpec: image size, pixel mean/std).")
    transform = StimulusTransform.for_input(input_spec)
    with strategy.scope():
        model = task.build_model() if task is not None else model
        model(transform(np.zeros((1, input_spec.image_size, input_spec.image_size, 3), np.float32)), training=False)
    prefix = checkpointing.restore_model(model, checkpoint)
    log(f"restored {prefix} into {model.name} ({sum(int(np.prod(v.shape)) for v in model.variables):,} values)")
    return model, transform, prefix


@contextlib.contextmanager
def claimed_features(model, stimuli, *, workdir: str, options: Callable[[str], dict], log, **extract_kwargs):
    """Yields (store, fit options, report folder): the features of `stimuli` in <workdir>/features.h5 (extracted, or
    reused from the cache; `extract_kwargs` go to extract_features), the fit's `options(feature cache key)` and the
    folder fit_workdir.claim gave them. Closes the store on exit. The caller holds the workdir's lock."""
    out_path = os.path.join(workdir, FEATURES_FILE)
    store = extract_features(model, stimuli, out_path=out_path, log=log, **extract_kwargs)
    try:
        fit_options = options(str(store.attrs["cache_key"]))
        yield store, fit_options, fit_workdir.claim(workdir, fit_options, log)
    finally:
        store.close()
