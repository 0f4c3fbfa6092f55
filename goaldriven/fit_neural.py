"""Score a trained model against neural recordings: checkpoint -> features -> mappings -> noise-corrected scores.

Usage:
  goaldriven-fit --gin_file=gin/experiments/digits__small_resnet8.gin --checkpoint=/tmp/digits \
      --neural_data=recordings.h5 --workdir=/tmp/digits_fit
  goaldriven-fit ... --simulate='V1=stage1_block1,IT=stage3_block1' --workdir=/tmp/digits_fit   (synthetic animals)

The gin files are the ones the checkpoint was trained with (they rebuild the model and give its input
normalisation). The recordings are a goaldriven neural-data file (docs/neural_data_format.md) holding the stimuli.
With --simulate the recordings are simulated instead: noisy readouts of the named layers of this very checkpoint on
scikit-learn's embedded digits, written to <workdir>/synthetic_neural_data.h5, so the true answer is known.
Outputs in --workdir: features.h5 (resumable), units.csv, summary.json, predictivity_by_layer.png, time_courses.png.
"""

import os
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Hide TensorFlow's C++ start-up notices (before importing it).

import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging

import gin
from goaldriven import checkpointing, cli_config, distribute
from goaldriven.neural_fits import mappings
from goaldriven.neural_fits.data import neural_data
from goaldriven.neural_fits.pipeline import extraction, report, simulate_from_model
from goaldriven.neural_fits.pipeline import fitting as run
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform

PROG = "goaldriven-fit"
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files the checkpoint was trained with.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings (repeatable), as at training time.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir, its checkpoints/ folder, or a prefix.")
_NEURAL_DATA = flags.DEFINE_string("neural_data", None, "Neural data file (.h5, docs/neural_data_format.md).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder: features, per-unit CSV, summary JSON, plots.")
_STRATEGY = flags.DEFINE_enum("strategy", "cpu", list(distribute.KINDS), "tf.distribute strategy kind.")
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address (with --strategy=tpu).")
_MAPPING = flags.DEFINE_enum("mapping", "pls", sorted(mappings.MAPPINGS), "Mapping from features to each area.")
_MAPPING_OPTIONS = flags.DEFINE_list("mapping_options", [], "Mapping options key=value, e.g. n_components=25,alpha=1.")
_TEMPORAL = flags.DEFINE_enum("temporal", "window", list(run.TEMPORAL_MODES), "window | varying | fixed.")
_WINDOW = flags.DEFINE_list("window_ms", ["70", "170"], "Response window start,end in ms (temporal=window).")
_BINS = flags.DEFINE_list("bins_ms", [], "Bins whose start lies in [start,end) ms (varying/fixed); empty: all.")
_TRAIN_FRACTION = flags.DEFINE_float("train_fraction", 0.75, "Fraction of stimuli fitted in each split.")
_SPLITS = flags.DEFINE_integer("n_splits", 10, "Train/test splits (stratified by stimulus label when present).")
_BOOT = flags.DEFINE_integer("n_boot", 100, "Bootstrapped split-halves of the trials.")
_CORRECTION = flags.DEFINE_enum("noise_correction", "split_half", list(run.NOISE_CORRECTIONS), "Estimator.")
_SB = flags.DEFINE_bool("spearman_brown", True, "Spearman-Brown on the denominators (ch3); false: ch2 eq. 2.17.")
_LAYERS = flags.DEFINE_list("layers", [], "Model layers to score (default: every feature the model returns).")
_AREAS = flags.DEFINE_list("areas", [], "Areas to score (default: all).")
_INTER_ANIMAL = flags.DEFINE_bool("inter_animal", True, "Also estimate the inter-animal consistency per area.")
_PER_ANIMAL = flags.DEFINE_bool("per_animal", False, "One mapping per animal and area (ch3) instead of per area.")
_POOLING = flags.DEFINE_enum("inter_animal_mode", "pooled", ["pooled", "pairwise"], "Source animals.")
_TIMES = flags.DEFINE_integer("times", 26, "ConvRNN presentation: time steps (10 ms each).")
_IMAGE_ON = flags.DEFINE_integer("image_on", 10, "ConvRNN presentation: steps with the image on, then blank.")
_BATCH = flags.DEFINE_integer("global_batch_size", 64, "Stimuli per feature-extraction batch (all replicas).")
_DTYPE = flags.DEFINE_enum("features_dtype", "float32", ["float32", "float16"], "Stored feature precision.")
_SIMULATE = flags.DEFINE_list("simulate", [], "area=layer,...: simulate recordings from this checkpoint's layers.")
_SIM_ANIMALS = flags.DEFINE_integer("simulate_animals", 3, "Simulated animals.")
_SIM_UNITS = flags.DEFINE_integer("simulate_units", 20, "Simulated units per animal and area.")
_SIM_TRIALS = flags.DEFINE_integer("simulate_trials", 10, "Simulated trials per stimulus.")
_SIM_NOISE = flags.DEFINE_float("simulate_noise", 1.0, "Trial noise s.d. (units have unit signal variance).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of splits, bootstraps and simulations.")


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            cli_config.fail(PROG, f"--mapping_options item {item!r} is not key=value (e.g. n_components=25).")
        try:
            out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


def _pair(values: list[str], flag: str) -> tuple[float, float] | None:
    if not values:
        return None
    if len(values) != 2:
        cli_config.fail(PROG, f"--{flag} takes start,end in ms (e.g. 70,170); received {values}.")
    return float(values[0]), float(values[1])


def _build(strategy, log):
    """The model of the gin config, built and restored from --checkpoint, and its stimulus transform."""
    try:
        task = gin.query_parameter("loop.run.task").scoped_configurable_fn()
    except (ValueError, KeyError):
        cli_config.fail(PROG, "the gin files configure no loop.run.task; pass the experiment the checkpoint came from.")
    try:
        image_size = int(gin.query_parameter("%IMAGE_SIZE"))
    except ValueError:
        cli_config.fail(
            PROG,
            "the config has no IMAGE_SIZE: goaldriven-fit scores image models on stimuli. Path integrators are compared "
            "with recordings through their rate maps (goaldriven.spatial.ratemaps, mappers), not this command.",
        )
    transform = StimulusTransform(
        image_size, getattr(task, "pixel_mean", StimulusTransform.mean), getattr(task, "pixel_std", 1.0)
    )
    with strategy.scope():
        model = task.build_model()
        model(transform(np.zeros((1, image_size, image_size, 3), np.float32)), training=False)
    prefix = checkpointing.restore_model(model, _CHECKPOINT.value)
    log(f"restored {prefix} into {model.name} ({sum(int(np.prod(v.shape)) for v in model.variables):,} values)")
    return model, transform, prefix


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli_config.fail(PROG, f"unexpected arguments {argv[1:]}; every option is a --flag (see --helpfull).")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    for flag, value in (("workdir", _WORKDIR.value), ("checkpoint", _CHECKPOINT.value)):
        if not value:
            cli_config.fail(PROG, f"--{flag} is required (see --help).")
    if bool(_NEURAL_DATA.value) == bool(_SIMULATE.value):
        cli_config.fail(PROG, "pass exactly one of --neural_data=<file.h5> or --simulate=area=layer,...")
    cli_config.parse_gin(PROG, _GIN_FILE.value, _GIN_BINDINGS.value)
    workdir = _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        strategy = distribute.get_strategy(_STRATEGY.value, tpu=_TPU.value)
        model, transform, prefix = _build(strategy, log)
        presentation = Presentation(times=_TIMES.value, image_on=_IMAGE_ON.value)
        if _SIMULATE.value:
            stimuli, ids = simulate_from_model.digits_stimuli()[0], simulate_from_model.digit_ids()
        else:
            recordings = neural_data.load_neural_data(_NEURAL_DATA.value)
            log(recordings.summary())
            stimuli, ids = recordings.load_stimuli(), recordings.stimulus_ids
            if stimuli is None:
                raise ValueError(
                    f"{_NEURAL_DATA.value} holds no stimuli (pixels or stimuli_path): add them to score a model."
                )
        store = _features(model, stimuli, ids, transform, presentation, strategy, prefix, log)
        if _SIMULATE.value:
            recordings = simulate_from_model.simulate(
                store,
                dict(item.split("=", 1) for item in _SIMULATE.value),
                path=os.path.join(workdir, "synthetic_neural_data.h5"),
                n_animals=_SIM_ANIMALS.value,
                units_per_animal=_SIM_UNITS.value,
                n_trials=_SIM_TRIALS.value,
                noise_std=_SIM_NOISE.value,
                seed=_SEED.value,
                log=log,
            )
            log(recordings.summary())
        config = run.FitConfig(
            mapping=_MAPPING.value,
            mapping_kwargs=_options(_MAPPING_OPTIONS.value),
            temporal=_TEMPORAL.value,
            window_ms=_pair(_WINDOW.value, "window_ms"),
            bins_ms=_pair(_BINS.value, "bins_ms"),
            train_fraction=_TRAIN_FRACTION.value,
            n_splits=_SPLITS.value,
            n_boot=_BOOT.value,
            noise_correction=_CORRECTION.value,
            spearman_brown=_SB.value,
            layers=tuple(_LAYERS.value) or None,
            areas=tuple(_AREAS.value) or None,
            inter_animal=_INTER_ANIMAL.value,
            inter_animal_mode=_POOLING.value,
            per_animal=_PER_ANIMAL.value,
            seed=_SEED.value,
        )
        result = run.fit_recordings(store, recordings, config, log=log)
        paths = report.write_all(result, workdir)
    except (ValueError, FileNotFoundError, FileExistsError, neural_data.NeuralDataError) as e:
        trace_path = os.path.join(workdir, "error_traceback.txt")
        with open(trace_path, "w") as f:
            traceback.print_exc(file=f)
        cli_config.fail(PROG, f"{' '.join(str(e).split())} (traceback: {trace_path})")
    for area, layer in result.summary["best_layer"].items():
        log(f"best layer for {area}: {layer}")
    log("wrote " + ", ".join(paths))


def _features(model, stimuli, ids, transform, presentation, strategy, prefix, log):
    """Features of every layer on the recordings' stimuli, cached in <workdir>/features.h5 for this checkpoint."""
    path = os.path.join(_WORKDIR.value, "features.h5")
    if os.path.exists(path):
        store = FeatureStore.open(path)
        if store.attrs.get("checkpoint") == prefix and list(store.stimulus_ids) == [str(i) for i in ids]:
            log(f"features: reusing {path}")
            return store
        store.close()
        cli_config.fail(PROG, f"{path} holds features of another checkpoint or stimulus set; use a new --workdir.")
    return extraction.extract_features(
        model,
        stimuli,
        transform=transform,
        presentation=presentation,
        global_batch_size=_BATCH.value,
        strategy=strategy,
        stimulus_ids=ids,
        out_path=path,
        dtype=_DTYPE.value,
        checkpoint=prefix,
        log=log,
    )


def run_main() -> None:
    """Console-script entry point (goaldriven-fit)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
