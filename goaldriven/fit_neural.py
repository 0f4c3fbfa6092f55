"""Score a trained model against neural recordings: checkpoint -> features -> mappings -> noise-corrected scores.

Usage:
  goaldriven-fit --gin_file=gin/experiments/digits__small_resnet8.gin --checkpoint=/tmp/digits \
      --neural_data=recordings.h5 --workdir=/tmp/digits_fit
  goaldriven-fit ... --simulate='V1=stage1_block1,IT=stage3_block1' --workdir=/tmp/digits_fit   (synthetic animals)
  goaldriven-fit --gin_file=gin/experiments/imagenet64__streamnet_dual.gin --fit_gin=gin/fits/mouse_neuropixels.gin \
      --checkpoint=/tmp/streamnet_dual --neural_data=allen_neuropixels.h5 --workdir=/tmp/streamnet_dual_fit
  goaldriven-fit ... --mouse=calcium --trained_on=cifar10 ...     (Chapter 3 defaults from plain flags, no fits gin)
  goaldriven-fit ... --ost --neural_data=kar2019_ost.h5 --workdir=/tmp/ost   (object solution times, ch2 Section 9)
  goaldriven-fit --gin_file=gin/experiments/path_integration__quick.gin --checkpoint=/tmp/goaldriven_quick \
      --mec_data=mec_rate_maps.h5 --mec_environment=box100 --workdir=/tmp/quick_mec   (Chapter 4, docs/mec_fits.md)

Chapter 3 fits (--fit_gin=gin/fits/mouse_*.gin, or --mouse=neuropixels|calcium): the options of
goaldriven.neural_fits.pipeline.mouse_tables.Chapter3Fit (PLS-25 per target animal, train fraction 0.5, 10 splits,
100 bootstraps, Spearman-Brown, the model's neural_fit_layers, stimuli through the model's validation transform);
--n_splits, --n_boot, --train_fraction, --layers, --areas, --seed given on the command line override them. Besides the
files below they write mouse_table.json / .md (Table 3.3 columns), mouse_areas.png (per-area predictivity by layer
with the inter-animal band) and, with --compare_mappings, mapping_comparison.json / .png (Fig. 3.1).

The gin files are the ones the checkpoint was trained with: they configure the task (loop.run.task), which builds the
model and gives its input normalisation (task.input_spec; a task without one, e.g. path integration, is refused).
The recordings are a goaldriven neural-data file (docs/neural_data_format.md) holding the stimuli. With --simulate
the recordings are simulated instead: noisy readouts of the named layers of this very checkpoint on scikit-learn's
embedded digits, written to <workdir>/synthetic_neural_data.h5, so the true answer is known.
Outputs in --workdir: features.h5 (resumable; reused only for the same checkpoint content, model config, input,
schedule, dtype and stimuli, another key goes beside it: features.<key>.h5), units.csv, summary.json,
predictivity_by_layer.png, time_courses.png, fit_options.json. A rerun with the same options rewrites them; a fit with
other options goes to <workdir>/fit.1/, fit.2/, ... (never overwriting an earlier fit). The fit holds the workdir's
lock: a second process in the same workdir is refused in one line naming the first. This is a thin wrapper: flags ->
gin -> the configured task -> goaldriven.neural_fits.pipeline.fit_checkpoint.fit_checkpoint (the same call a
notebook makes) -> one-line errors.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Hide TensorFlow's C++ start-up notices (before importing it).

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

import gin
from goaldriven import cli_config, distribute, workdir_lock
from goaldriven.neural_fits.data.neural_data import load_neural_data
from goaldriven.neural_fits.mappings import MAPPINGS
from goaldriven.neural_fits.mec import fit as mec_fit
from goaldriven.neural_fits.mec import fit_checkpoint as mec_checkpoint
from goaldriven.neural_fits.mec import model_ratemaps as mec_ratemaps
from goaldriven.neural_fits.mec import ratemap_file as mec_file
from goaldriven.neural_fits.mec import transforms as mec_transforms
from goaldriven.neural_fits.pipeline import mouse_fit, mouse_tables, ost_checkpoint, ost_fit
from goaldriven.neural_fits.pipeline.fit_checkpoint import fit_checkpoint
from goaldriven.neural_fits.pipeline.fitting import NOISE_CORRECTIONS, TEMPORAL_MODES, FitConfig
from goaldriven.neural_fits.pipeline.simulate_from_model import SimulateSpec
from goaldriven.neural_fits.pipeline.stimuli import Presentation, PresentedInput

PROG = "goaldriven-fit"
_FLAGS = cli_config.CheckpointFlags(
    workdir_help="Output folder: features, per-unit CSV, summary JSON, plots.",
    batch_help="Stimuli per feature-extraction batch (all replicas).",
)
_NEURAL_DATA = flags.DEFINE_string("neural_data", None, "Neural data file (.h5, docs/neural_data_format.md).")
_EXTERNAL_STIMULI = flags.DEFINE_bool(
    "allow_external_stimuli", False, "Follow a data file's stimuli_path out of its folder (trusted files only)."
)
_MAPPING = flags.DEFINE_enum("mapping", "pls", sorted(MAPPINGS), "Mapping from features to each area.")
_MAPPING_OPTIONS = flags.DEFINE_list("mapping_options", [], "Mapping options key=value, e.g. n_components=25,alpha=1.")
_TEMPORAL = flags.DEFINE_enum("temporal", "window", list(TEMPORAL_MODES), "window | varying | fixed.")
_WINDOW = flags.DEFINE_list("window_ms", ["70", "170"], "Response window start,end in ms (temporal=window).")
_BINS = flags.DEFINE_list("bins_ms", [], "Bins whose start lies in [start,end) ms (varying/fixed); empty: all.")
_TRAIN_FRACTION = flags.DEFINE_float("train_fraction", 0.75, "Fraction of stimuli fitted in each split.")
_SPLITS = cli_config.shared_flag(
    flags.DEFINE_integer, "n_splits", 10, "Train/test splits (stratified by stimulus label when present)."
)
_BOOT = flags.DEFINE_integer("n_boot", 100, "Bootstrapped split-halves of the trials.")
_CORRECTION = flags.DEFINE_enum("noise_correction", "split_half", list(NOISE_CORRECTIONS), "Estimator.")
_AGGREGATION = flags.DEFINE_enum(
    "aggregation",
    "median_of_unit_means",
    ["median_of_unit_means", "mean_of_split_medians"],
    "Score per layer: median over units of the unit means (thesis), or mean over splits of the median (Brain-Score).",
)
_SB = flags.DEFINE_bool("spearman_brown", True, "Spearman-Brown on the denominators (ch3); false: ch2 eq. 2.17.")
_LAYERS = cli_config.shared_flag(
    flags.DEFINE_list, "layers", [], "Model layers to score (default: every feature the model returns)."
)
_AREAS = flags.DEFINE_list("areas", [], "Areas to score (default: all).")
_INTER_ANIMAL = flags.DEFINE_bool("inter_animal", True, "Also estimate the inter-animal consistency per area.")
_PER_ANIMAL = flags.DEFINE_bool("per_animal", False, "One mapping per animal and area (ch3) instead of per area.")
_POOLING = flags.DEFINE_enum("inter_animal_mode", "pooled", ["pooled", "pairwise"], "Source animals.")
_TIMES = flags.DEFINE_integer("times", 26, "ConvRNN presentation: time steps (10 ms each).")
_IMAGE_ON = flags.DEFINE_integer("image_on", 10, "ConvRNN presentation: steps with the image on, then blank.")
_SIMULATE = flags.DEFINE_list("simulate", [], "area=layer,...: simulate recordings from this checkpoint's layers.")
_SIM_ANIMALS = flags.DEFINE_integer("simulate_animals", 3, "Simulated animals.")
_SIM_UNITS = flags.DEFINE_integer("simulate_units", 20, "Simulated units per animal and area.")
_SIM_TRIALS = flags.DEFINE_integer("simulate_trials", 10, "Simulated trials per stimulus.")
_SIM_NOISE = flags.DEFINE_float("simulate_noise", 1.0, "Trial noise s.d. (units have unit signal variance).")
_SEED = cli_config.shared_flag(flags.DEFINE_integer, "seed", 0, "Seed of splits, bootstraps and simulations.")
_FIT_GIN = flags.DEFINE_multi_string("fit_gin", [], "Chapter 3 fit configs (gin/fits/mouse_*.gin): Chapter3Fit.")
_MOUSE = flags.DEFINE_enum("mouse", None, list(mouse_tables.MODALITIES), "Chapter 3 fit with default options.")
_TRAINED_ON = flags.DEFINE_enum(
    "trained_on", None, ["imagenet", "cifar10", "none"], "Chapter 3: the model's training set (stimulus transform)."
)
_COMPARE = flags.DEFINE_bool("compare_mappings", False, "Chapter 3: also Fig. 3.1 (PLS, Ridge, One-to-One, RSA).")
_OVERRIDES = ("n_splits", "n_boot", "train_fraction", "seed", "spearman_brown", "per_animal")
# Chapter 4 (MEC rate maps, docs/mec_fits.md): --n_splits, --n_boot, --train_fraction, --seed, --spearman_brown,
# --inter_animal_mode and --layers given on the command line override goaldriven.neural_fits.mec.fit.MECFit's defaults.
_MEC_OVERRIDES = ("n_splits", "n_boot", "train_fraction", "seed", "spearman_brown", "inter_animal_mode")
_MEC_DATA = flags.DEFINE_string("mec_data", None, "Chapter 4: MEC rate-map file (.h5) to fit the path integrator to.")
_MEC_ENV = flags.DEFINE_string("mec_environment", None, "Chapter 4: environment of --mec_data (default: the only one).")
_MEC_TRANSFORM = flags.DEFINE_enum(
    "mec_transform", "elasticnet_cv", list(mec_transforms.TRANSFORMS), "Chapter 4: model -> cell transform."
)
_MEC_COMPARE = flags.DEFINE_list(
    "mec_compare", list(mec_transforms.TRANSFORMS), "Chapter 4: transforms of the inter-animal comparison (Fig. 4.1a)."
)
_MEC_GRID = flags.DEFINE_enum("mec_grid", "full", ["full", "short"], "Chapter 4: ElasticNet-CV grid (99x100 or 9x10).")
_MEC_BATCHES = flags.DEFINE_integer("mec_batches", 100, "Chapter 4: trajectory batches for the model rate maps.")
_MEC_BATCH_SIZE = flags.DEFINE_integer("mec_batch_size", 200, "Chapter 4: trajectories per batch (seeded, T from gin).")


def _run_mec(workdir: str, log) -> None:
    """goaldriven-fit --mec_data: the path integrator's rate maps against recorded MEC rate maps (Chapter 4)."""
    if _NEURAL_DATA.value or _SIMULATE.value or _MOUSE.value or _FIT_GIN.value:
        cli_config.fail(PROG, "--mec_data is a fit of its own; drop --neural_data, --simulate, --mouse and --fit_gin.")
    try:
        changes = {n: flags.FLAGS[n].value for n in _MEC_OVERRIDES if flags.FLAGS[n].present}
        spec = mec_fit.MECFit(
            transform=_MEC_TRANSFORM.value,
            consistency_transforms=tuple(_MEC_COMPARE.value),
            grid=_MEC_GRID.value,
            **changes,
        )
        protocol = mec_ratemaps.RateMapProtocol(batches=_MEC_BATCHES.value, global_batch_size=_MEC_BATCH_SIZE.value)
        env = mec_file.select_environment(mec_file.read_ratemaps(_MEC_DATA.value), _MEC_ENV.value)
    except ValueError as e:
        cli_config.fail(PROG, " ".join(str(e).split()))
    cli_config.parse_gin(PROG, _FLAGS.gin_file.value, _FLAGS.gin_bindings.value)
    try:
        result, paths = mec_checkpoint.fit_path_integrator(
            _FLAGS.checkpoint.value,
            task=cli_config.configured_task(),
            env=env,
            workdir=workdir,
            spec=spec,
            layers=tuple(_LAYERS.value) or None,
            protocol=protocol,
            strategy=distribute.get_strategy(_FLAGS.strategy.value, tpu=_FLAGS.tpu.value),
            log=log,
        )
    except (cli_config.ConfigError, workdir_lock.WorkdirBusyError) as e:
        cli_config.fail(PROG, str(e))
    except (ValueError, ImportError, OSError) as e:
        cli_config.fail_on_error(PROG, e, workdir)
    log(f"best layer: {result.summary.get('best_layer')}")
    log("wrote " + ", ".join(paths))


# Object solution times (spec ch2 Section 9; docs/decisions/neural_fits.md): --ost with --neural_data=<OST file>.
# --n_splits, --n_boot and --seed also apply (decoder splits; the PLS-25 IT-preferred layer selection).
_OST = flags.DEFINE_bool("ost", False, "Object solution times (ch2 Section 9): --neural_data is an OST file.")
_OST_LAYERS = flags.DEFINE_list("ost_layers", [], "IT-preferred layers in hierarchy order (default: from V4/IT data).")
_OST_MAPPINGS = flags.DEFINE_list("ost_mappings", ["uniform", "graded"], "Feedforward layer-to-time mappings.")
_OST_PLS = flags.DEFINE_bool("ost_pls", True, "Also the PLS-OST variants (PLS-100 to IT per time bin).")
_OST_TRAIN = flags.DEFINE_integer("ost_train_per_class", 100, "Decoder training images per object and split.")
_OST_PCA = flags.DEFINE_integer("ost_pca", 1000, "PCA components before the linear SVM (C = 5e4).")


def _ost_main() -> None:
    """goaldriven-fit --ost: ost_checkpoint.fit_checkpoint_ost with the flags' options; errors in one line."""
    if not _NEURAL_DATA.value or _SIMULATE.value:
        cli_config.fail(PROG, "--ost reads --neural_data=<OST file.h5> (docs/neural_data_format.md); not --simulate.")
    try:
        config = ost_fit.OSTFitConfig(
            layers=tuple(_OST_LAYERS.value) or None,
            mappings=tuple(_OST_MAPPINGS.value),
            pls=_OST_PLS.value,
            n_splits=_SPLITS.value,
            n_train_per_class=_OST_TRAIN.value,
            pca_components=_OST_PCA.value,
            selection_splits=_SPLITS.value,
            selection_boot=_BOOT.value,
            seed=_SEED.value,
        )
    except ValueError as e:
        cli_config.fail(PROG, " ".join(str(e).split()))
    cli_config.parse_gin(PROG, _FLAGS.gin_file.value, _FLAGS.gin_bindings.value)
    workdir = _FLAGS.workdir.value
    try:
        run = ost_checkpoint.fit_checkpoint_ost(
            _FLAGS.checkpoint.value,
            workdir=workdir,
            task=cli_config.configured_task(),
            data_path=_NEURAL_DATA.value,
            config=config,
            presentation=Presentation(times=_TIMES.value, image_on=_IMAGE_ON.value),
            strategy=distribute.get_strategy(_FLAGS.strategy.value, tpu=_FLAGS.tpu.value),
            global_batch_size=_FLAGS.global_batch_size.value,
            features_dtype=_FLAGS.features_dtype.value,
            allow_external_stimuli=_EXTERNAL_STIMULI.value,
            log=lambda line: print(line, flush=True),
        )
    except (cli_config.ConfigError, workdir_lock.WorkdirBusyError) as e:
        cli_config.fail(PROG, str(e))
    except (ValueError, ImportError, OSError) as e:  # NeuralDataError is a ValueError
        cli_config.fail_on_error(PROG, e, workdir)
    print("wrote " + ", ".join(run.paths), flush=True)


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


def _config() -> FitConfig:
    return FitConfig(
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
        aggregation=_AGGREGATION.value,
        layers=tuple(_LAYERS.value) or None,
        areas=tuple(_AREAS.value) or None,
        inter_animal=_INTER_ANIMAL.value,
        inter_animal_mode=_POOLING.value,
        per_animal=_PER_ANIMAL.value,
        seed=_SEED.value,
    )


def _simulate_spec() -> SimulateSpec | None:
    if not _SIMULATE.value:
        return None
    return SimulateSpec.from_items(
        _SIMULATE.value,
        n_animals=_SIM_ANIMALS.value,
        units_per_animal=_SIM_UNITS.value,
        n_trials=_SIM_TRIALS.value,
        noise_std=_SIM_NOISE.value,
        seed=_SEED.value,
    )


def _chapter3_spec() -> mouse_tables.Chapter3Fit | None:
    """The Chapter 3 options from --fit_gin (after parsing) or --mouse, with the command line's overrides."""
    if not _FIT_GIN.value and not _MOUSE.value:
        return None
    spec = gin.get_configurable(mouse_tables.Chapter3Fit)() if _FIT_GIN.value else mouse_tables.Chapter3Fit()
    changes = {name: flags.FLAGS[name].value for name in _OVERRIDES if flags.FLAGS[name].present}
    if _MOUSE.value:
        changes["modality"] = _MOUSE.value
    if _TRAINED_ON.value:
        changes["trained_on"] = _TRAINED_ON.value
    if flags.FLAGS["window_ms"].present:
        changes["window_ms"] = _pair(_WINDOW.value, "window_ms")
    return dataclasses.replace(spec, **changes)


def _chapter3_model(task, spec, strategy):
    """The task's model built under `strategy`, its Chapter 3 input (PresentedInput) and its FitConfig."""
    with strategy.scope():
        model = task.build_model()
    config = spec.fit_config(model=model, layers=_LAYERS.value or None, areas=_AREAS.value or None)
    return model, PresentedInput.chapter3(task.input_spec, spec.trained_on), config


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli_config.fail(PROG, f"unexpected arguments {argv[1:]}; every option is a --flag (see --helpfull).")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    for flag, value in (("workdir", _FLAGS.workdir.value), ("checkpoint", _FLAGS.checkpoint.value)):
        if not value:
            cli_config.fail(PROG, f"--{flag} is required (see --help).")
    if _OST.value and _MEC_DATA.value:
        cli_config.fail(PROG, "--ost and --mec_data are separate fits; pass one of them.")
    if _OST.value:  # object solution times: their own pipeline and reports
        return _ost_main()
    if _MEC_DATA.value:  # Chapter 4: rate maps, not image stimuli
        return _run_mec(_FLAGS.workdir.value, lambda line: print(line, flush=True))
    if bool(_NEURAL_DATA.value) == bool(_SIMULATE.value):
        cli_config.fail(PROG, "pass exactly one of --neural_data=<file.h5> or --simulate=area=layer,...")
    try:  # The options first: a bad one fails at once, before TensorFlow restores or extracts anything.
        config = _config()
        simulate = _simulate_spec()
    except ValueError as e:
        cli_config.fail(PROG, " ".join(str(e).split()))
    cli_config.parse_gin(PROG, _FLAGS.gin_file.value + _FIT_GIN.value, _FLAGS.gin_bindings.value)
    try:
        spec = _chapter3_spec()
    except (ValueError, TypeError) as e:
        cli_config.fail(PROG, " ".join(str(e).split()))
    workdir = _FLAGS.workdir.value

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        task = cli_config.configured_task()
        strategy = distribute.get_strategy(_FLAGS.strategy.value, tpu=_FLAGS.tpu.value)
        model = input_spec = None
        if spec is not None:
            if task.input_spec is None:
                raise ValueError(f"task {task.name!r} has no input_spec (it takes no images); Chapter 3 fits need one.")
            model, input_spec, config = _chapter3_model(task, spec, strategy)
            task = None
        fit = fit_checkpoint(
            _FLAGS.checkpoint.value,
            workdir=workdir,
            task=task,
            model=model,
            input_spec=input_spec,
            recordings=_NEURAL_DATA.value or None,
            simulate=simulate,
            config=config,
            presentation=Presentation(times=_TIMES.value, image_on=_IMAGE_ON.value),
            strategy=strategy,
            global_batch_size=_FLAGS.global_batch_size.value,
            features_dtype=_FLAGS.features_dtype.value,
            allow_external_stimuli=_EXTERNAL_STIMULI.value,
            log=log,
        )
        if spec is not None:
            recordings = load_neural_data(fit.recordings_path, allow_external_stimuli=_EXTERNAL_STIMULI.value)
            name = os.path.basename(os.path.normpath(_FLAGS.checkpoint.value))
            mouse = mouse_fit.chapter3_outputs(
                fit.result, recordings, spec, fit.fit_dir, config, name, _COMPARE.value, log
            )
            fit.paths[:] = mouse.paths
    except cli_config.ConfigError as e:
        cli_config.fail(PROG, str(e))
    except workdir_lock.WorkdirBusyError as e:  # another process fits in this workdir: leave it alone
        cli_config.fail(PROG, str(e))
    except (ValueError, ImportError, OSError) as e:  # NeuralDataError is a ValueError; OSError: a full disk, ...
        cli_config.fail_on_error(PROG, e, workdir)
    for area, layer in fit.result.summary["best_layer"].items():
        log(f"best layer for {area}: {layer}")
    log("wrote " + ", ".join(fit.paths))


def run_main() -> None:
    """Console-script entry point (goaldriven-fit)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
