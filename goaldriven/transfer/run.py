"""The transfer evaluation of one model as a library call: images -> features -> five tasks -> results files.

Reference: thesis Section 3.6.8 / Fig. 3.11, spec ch3 A5. `evaluate_checkpoint` is what `goaldriven-transfer` runs
after parsing its flags and gin files; `evaluate_model` is the notebook call on a built model:

    run = evaluate_model(model, task.input_spec, hvm="hvm.h5", dtd="/data/tfds", workdir="/tmp/transfer")
    run.results["best"]          # {task: {"layer", "mean", "sem"}}

Images: HvM (hvm.py) and DTD (dtd.py) are prepared to 64 x 64 x 3 uint8 (images.py), then normalised as the model's
task trained it (its input_spec) at extraction (goaldriven.neural_fits.pipeline.extraction, the neural fits'
extractor). Layers: every feature the model returns unless `TransferConfig.layers` names some (StreamNets: the
areas and `pool`, the pre-readout layer).

Files in `workdir` (none without one): features_hvm.h5, features_dtd.h5 (feature caches keyed on the checkpoint's
content, the model, the input and the images, resumable: feature_cache.py), and in the run's folder
transfer_options.json (what identifies the run), scores_partial.json (each (task, layer) result as soon as it
exists: a rerun resumes from it), results.json, table.md, transfer.png. A rerun with the same options reuses the
folder; a run with other options goes to run.1/, run.2/, ... (earlier files are never overwritten). The whole run
holds the workdir's lock (goaldriven.workdir_lock).
"""

import dataclasses
import hashlib
import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from goaldriven import atomic_write, checkpointing, workdir_lock
from goaldriven.neural_fits.pipeline.extraction import extract_features
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform
from goaldriven.transfer import evaluate, readouts, report
from goaldriven.transfer.dtd import DTDImages, load_dtd
from goaldriven.transfer.hvm import HvMStimuli, load_hvm
from goaldriven.transfer.images import CROP_FRACTION, IMAGE_SIZE, prepare_images

OPTIONS_FILE = "transfer_options.json"
PARTIAL_FILE = "scores_partial.json"
RUN_FILES = (OPTIONS_FILE, PARTIAL_FILE, report.RESULTS_FILE, report.TABLE_FILE, report.FIGURE_FILE)


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """What a transfer run computes (module docstring; readout details in readouts.ReadoutConfig)."""

    tasks: tuple[str, ...] = evaluate.TASK_ORDER
    layers: tuple[str, ...] | None = None  # None: every feature the model returns
    n_splits: int = 10
    readout: readouts.ReadoutConfig = readouts.ReadoutConfig()
    image_size: int = IMAGE_SIZE
    crop_fraction: float = CROP_FRACTION
    seed: int = 0

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in evaluate.TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be some of {list(evaluate.TASKS)}. Received: {list(self.tasks)}")
        if not 1 <= self.n_splits <= 10 and "texture" in self.tasks:
            raise ValueError(f"n_splits must be in 1..10 (DTD has 10 folds). Received: {self.n_splits}")
        if self.n_splits < 1:
            raise ValueError(f"n_splits must be >= 1. Received: {self.n_splits}")

    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(evaluate.TASKS[t].dataset for t in self.tasks))


@dataclasses.dataclass
class TransferRun:
    results: dict  # the results.json payload: best, layers, chance, data, options
    paths: list[str]  # files written (empty without a workdir)
    folder: str | None  # the run's folder: the workdir or run.N/ in it


def _digest(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        digest.update(f"{array.shape} {array.dtype.str}".encode())
        digest.update(np.ascontiguousarray(array).tobytes() if array.dtype.kind != "U" else "\n".join(array).encode())
    return digest.hexdigest()


def _data(config, hvm, dtd, dtd_labels_dir, log):
    """{dataset: (images (n, s, s, 3) uint8, stimulus ids)}, {task: TaskData}, {dataset: description}."""
    images, described, data = {}, {}, {}
    if "hvm" in config.datasets():
        hvm = hvm if isinstance(hvm, HvMStimuli) else load_hvm(os.fspath(hvm)) if hvm is not None else None
        if hvm is None:
            raise ValueError(
                "the HvM tasks need the HvM stimuli (--hvm=<file.h5>); or leave them out (--tasks=texture)."
            )
        log(
            f"hvm: {len(hvm)} images {tuple(hvm.images.shape[1:])}, levels {dict(zip(*np.unique(hvm.variation, return_counts=True)))}"
        )
        images["hvm"] = (prepare_images(hvm.images, config.image_size, config.crop_fraction), None)
        meta = [hvm.meta[k] for k in sorted(hvm.meta) if hvm.meta[k].dtype.kind in "fiu"]
        described["hvm"] = {"path": os.path.abspath(hvm.path) if hvm.path else None, "images": len(hvm),
                            "sha256": _digest(hvm.category, hvm.variation, *meta)}  # fmt: skip
    if "dtd" in config.datasets():
        if not isinstance(dtd, DTDImages):
            dtd = load_dtd(dtd, labels_dir=dtd_labels_dir, n_folds=config.n_splits, size=config.image_size,
                           crop_fraction=config.crop_fraction, seed=config.seed, log=log)  # fmt: skip
        images["dtd"] = (dtd.images, dtd.file_names)
        splits = [np.concatenate([tr, [-1], te]) for tr, te in dtd.splits]
        described["dtd"] = {"images": int(len(dtd.labels)), "split_source": dtd.split_source,
                            "sha256": _digest(dtd.labels, *splits)}  # fmt: skip
    for name in config.tasks:
        data[name] = evaluate.task_data(
            evaluate.TASKS[name],
            hvm=hvm if "hvm" in images else None,
            dtd=dtd if "dtd" in images else None,
            n_splits=config.n_splits,
            seed=config.seed,
        )
    return images, data, described


def claim(workdir: str, options: dict, log: Callable[[str], None] = print) -> str:
    """The folder of a run with `options`: the workdir, or the first run.N/ that is free or holds these options."""
    folder, index = workdir, 0
    while True:
        path = os.path.join(folder, OPTIONS_FILE)
        recorded = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)
        elif not any(os.path.exists(os.path.join(folder, name)) for name in RUN_FILES):
            atomic_write.write_json(path, options)
            recorded = options
        if recorded == options:
            if index:
                log(f"transfer: {workdir} holds a run with other options; writing this one to {folder}")
            return folder
        index += 1
        folder = os.path.join(workdir, f"run.{index}")


def evaluate_model(
    model,
    input_spec,
    *,
    hvm: HvMStimuli | str | None = None,
    dtd: DTDImages | str | None = None,
    dtd_labels_dir: str | None = None,
    workdir: str | None = None,
    config: TransferConfig | None = None,
    strategy: tf.distribute.Strategy | None = None,
    global_batch_size: int = 64,
    features_dtype: str = "float32",
    checkpoint: str = "",
    title: str = "",
    log: Callable[[str], None] = print,
) -> TransferRun:
    """Scores `model` (built; its `input_spec` gives size and normalisation) on the transfer tasks (module docstring).

    hvm: an HvMStimuli or the HvM file; dtd: DTDImages or the TFDS data_dir holding `dtd` (None: TFDS's default).
    """
    config = config or TransferConfig()
    strategy = strategy or tf.distribute.get_strategy()
    transform = StimulusTransform.for_input(input_spec)
    images, data, described = _data(config, hvm, dtd, dtd_labels_dir, log)
    if workdir is None:
        return _score(model, transform, images, data, described, config, None, strategy, global_batch_size,
                      features_dtype, checkpoint, title, log)  # fmt: skip
    with workdir_lock.hold(workdir, "transfer", log):
        return _score(model, transform, images, data, described, config, workdir, strategy, global_batch_size,
                      features_dtype, checkpoint, title, log)  # fmt: skip


def _score(model, transform, images, data, described, config, workdir, strategy, batch, dtype, checkpoint, title, log):
    stores = {}
    try:
        for dataset, (pixels, ids) in images.items():
            log(f"transfer: features of {dataset} ({len(pixels)} images)")
            stores[dataset] = extract_features(
                model,
                pixels,
                transform=transform,
                layers=config.layers,
                presentation=Presentation(),
                global_batch_size=batch,
                strategy=strategy,
                stimulus_ids=ids,
                out_path=None if workdir is None else os.path.join(workdir, f"features_{dataset}.h5"),
                dtype=dtype,
                checkpoint=checkpoint,
                on_mismatch="extract",
                log=log,
            )
        options = json.loads(json.dumps({
            "config": dataclasses.asdict(config),
            "data": described,
            "features": {k: str(s.attrs.get("cache_key", "")) for k, s in stores.items()},
        }, default=str))  # fmt: skip
        folder, done = None, {}
        if workdir is not None:
            folder = claim(workdir, options, log)
            for leftover in [p for name in RUN_FILES for p in atomic_write.leftovers(os.path.join(folder, name))]:
                os.remove(leftover)  # a killed atomic write's temporary file (we hold the lock)
            partial = os.path.join(folder, PARTIAL_FILE)
            if os.path.exists(partial):
                with open(partial, encoding="utf-8") as f:
                    done = json.load(f)
                log(f"transfer: resuming; {sum(len(v) for v in done.values())} (task, layer) results in {partial}")

        def on_result(task, layer, result):
            done.setdefault(task, {})[layer] = result
            if folder is not None:
                atomic_write.write_json(os.path.join(folder, PARTIAL_FILE), done)

        features = {
            k: {name: (lambda s=s, name=name: s.layer(name).flat()) for name in s.layers} for k, s in stores.items()
        }
        layers = evaluate.evaluate(features, data, tasks=config.tasks, config=config.readout, done=done,
                                   on_result=on_result, log=log)  # fmt: skip
    finally:
        for store in stores.values():
            store.close()
    results = {
        "best": evaluate.best_layers(layers),
        "layers": layers,
        "chance": {t: data[t].chance for t in config.tasks},
        "model": str(getattr(model, "name", type(model).__name__)),
        "checkpoint": checkpoint,
        "options": options,
    }
    for task, best in results["best"].items():
        log(f"transfer: {task:<14} best layer {best['layer']:<16} {best['mean']:.3f} +- {best['sem']:.3f}")
    paths = report.write_all(results, folder, title or results["model"]) if folder is not None else []
    return TransferRun(results=results, paths=paths, folder=folder)


def evaluate_checkpoint(
    checkpoint: str, *, task=None, model=None, input_spec=None, strategy=None, log=print, **kwargs
) -> TransferRun:
    """Restores `checkpoint` (a training workdir, its checkpoints/ folder or a prefix) into the model of `task` (or
    `model` with its `input_spec`) and runs `evaluate_model` (its keyword arguments pass through)."""
    if (task is None) == (model is None):
        raise ValueError("pass exactly one of task (it builds the model) or model (with its input_spec).")
    strategy = strategy or tf.distribute.get_strategy()
    input_spec = task.input_spec if task is not None else input_spec
    if input_spec is None:
        name = getattr(task, "name", type(task).__name__)
        raise ValueError(f"task {name!r} has no input_spec (it takes no images); transfer tasks need an image model.")
    size = input_spec.image_size
    with strategy.scope():
        model = task.build_model() if task is not None else model
        model(tf.zeros((1, size, size, 3)), training=False)
    prefix = checkpointing.restore_model(model, checkpoint)
    log(f"restored {prefix} into {model.name} ({sum(int(np.prod(v.shape)) for v in model.variables):,} values)")
    return evaluate_model(model, input_spec, strategy=strategy, checkpoint=prefix, log=log, **kwargs)
