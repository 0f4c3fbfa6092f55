"""Search spaces: every sampled trial parses with its experiment, the ConvRNN ones build at tiny size, and the
released configurations (RGC Median, LSTM Opt) are points of their spaces that rebuild the released cells."""

import optuna
import pytest

import gin
from goaldriven import cli_config
from goaldriven.models import convrnn_zoo, zoo
from goaldriven.search import samplers, spaces

TINY = dict(num_classes=10, image_size=32, width_multiplier=0.0625)


def _sample(space: str, seed: int, **options) -> list[str]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return spaces.get_space(space)(study.ask(), **options)


def _macro(name: str):
    return gin.query_parameter(f"{name}/macro.value")


@pytest.mark.parametrize("space", ["wm", "wm_ad", "wm_ad_ops", "ia"])
def test_alignment_space_parses_with_its_imagenet_experiment(space):
    bindings = _sample(space, seed=1)
    cli_config.parse_gin_config([spaces.EXPERIMENTS[space]], bindings, clear=True)
    rule = "InformationAlignment" if space == "ia" else "WeightMirror"
    params = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    expected = spaces.get_space(space)(params)
    sigma = float(next(b for b in expected if b.startswith(f"rules.{rule}.sigma")).split("=")[1])
    assert gin.query_parameter(f"rules.{rule}.sigma") == pytest.approx(sigma)
    # The thesis budget, 45 epochs of task-optimizer updates (rules/training_tpe.gin: after the delay, alternating steps
    # update J every second step, simultaneous ones every step; both step counts are 2 x pair epochs).
    pair_epochs_of_j = _macro("TRAIN_PAIR_EPOCHS") - _macro("DELAY_PAIR_EPOCHS")
    assert pair_epochs_of_j * (1 if _macro("ALTERNATE") else 2) == pytest.approx(45)


def test_alignment_space_on_digits_sets_the_rule():
    bindings = _sample("ia", seed=2, schedule="steps", batch_sizes=(32, 64), steps_per_epoch=4)
    cli_config.parse_gin_config(["gin/experiments/digits__small_resnet8.gin"], bindings, clear=True)
    rule = _macro("LEARNING_RULE").scoped_configurable_fn()  # the configured rule, built as loop.run would
    assert type(rule).__name__ == "InformationAlignment"
    assert rule.sigma == pytest.approx(float(next(b for b in bindings if ".sigma = " in b).split("=")[1]))
    assert _macro("GLOBAL_BATCH_SIZE") in (32, 64)
    assert _macro("DELAY_STEPS") in (0, 4, 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rgc_space_parses_and_builds(seed):
    bindings = _sample("rgc", seed=seed)
    cli_config.parse_gin_config([spaces.EXPERIMENTS["rgc"]], bindings, clear=True)
    assert _macro("EPOCHS") == 5 and _macro("IMAGE_SIZE") == 128
    model = zoo.build_model(
        "rgc_intermediate",
        cell_overrides=_macro("CELL_OVERRIDES"),
        feedback=_macro("FEEDBACK_EDGES"),
        unroll_length=12,
        **TINY,
    )
    assert model.count_params() > 0


def _cell_configs(model) -> dict:
    configs = {}
    for layer in model._flatten_layers():  # pylint: disable=protected-access  every nested layer of the graph
        if type(layer).__name__ in ("ReciprocalGatedCell", "ConvLSTMCell"):
            config = layer.get_config()
            config.pop("dtype", None)
            configs[layer.name] = config
    return configs


def test_rgc_median_point_rebuilds_the_released_cells():
    trial = optuna.trial.FixedTrial(spaces.RGC_MEDIAN)
    bindings = spaces.rgc_space(trial)
    cli_config.parse_gin_config([spaces.EXPERIMENTS["rgc"]], bindings, clear=True)
    searched = zoo.build_model(
        "rgc_intermediate", cell_overrides=_macro("CELL_OVERRIDES"), feedback=_macro("FEEDBACK_EDGES"), **TINY
    )
    released = zoo.build_model("rgc_intermediate", **TINY)
    assert len(_cell_configs(released)) == 7
    assert _cell_configs(searched) == _cell_configs(released)
    assert searched.count_params() == released.count_params()
    assert _macro("BASE_LEARNING_RATE") == 6.736e-3  # imagenet__rgc_intermediate.gin's value
    assert _macro("GLOBAL_BATCH_SIZE") == 64


def test_lstm_opt_point_rebuilds_the_released_cells():
    bindings = spaces.lstm_space(optuna.trial.FixedTrial(spaces.LSTM_OPT))
    cli_config.parse_gin_config([spaces.EXPERIMENTS["lstm"]], bindings, clear=True)
    kwargs = dict(cell_overrides=_macro("CELL_OVERRIDES"), image_off=_macro("IMAGE_OFF"), **TINY)
    searched = zoo.build_model("lstm_shallow", unroll_length=_macro("UNROLL_LENGTH"), **kwargs)
    released = zoo.build_model("lstm_shallow", **TINY)
    assert len(_cell_configs(released)) == 3
    assert _cell_configs(searched) == _cell_configs(released)
    assert (searched.times, searched.image_off) == (16, 12)  # the shallow family's released timing
    assert _macro("CLIP_VALUE") == 0.323746  # imagenet__lstm_shallow.gin's value


def test_lstm_space_parses_and_builds():
    bindings = _sample("lstm", seed=4)
    cli_config.parse_gin_config([spaces.EXPERIMENTS["lstm"]], bindings, clear=True)
    model = zoo.build_model(
        "lstm_shallow", cell_overrides=_macro("CELL_OVERRIDES"), image_off=_macro("IMAGE_OFF"), unroll_length=8, **TINY
    )
    assert model.image_off == _macro("IMAGE_OFF")


def test_copies_of_the_released_configurations_match_the_zoo():
    assert spaces.RGC_MEDIAN_FEEDBACK == convrnn_zoo.RGC_MEDIAN_FEEDBACK
    assert spaces.LSTM_OPT_LAYERS == convrnn_zoo.LSTM_OPT


def test_hyperopt_compatible_sampler_uses_optunas_hyperopt_parameters():
    with pytest.warns(FutureWarning):  # deprecated since Optuna 4.9: why samplers.py writes the values out
        reference = optuna.samplers.TPESampler.hyperopt_parameters()
    sampler = samplers.make_sampler(seed=0, hyperopt_compatible=True)
    assert sampler._n_startup_trials == reference["n_startup_trials"]  # pylint: disable=protected-access
    assert sampler._n_ei_candidates == reference["n_ei_candidates"]  # pylint: disable=protected-access
    assert [sampler._gamma(n) for n in (1, 16, 100, 10_000)] == [reference["gamma"](n) for n in (1, 16, 100, 10_000)]  # pylint: disable=protected-access
    assert samplers.worker_seed(0, "host:1") != samplers.worker_seed(0, "host:2")


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("lstm_shallow", dict(cell_overrides={"conv9": {}}), "nodes without a cell: \\['conv9'\\]"),
        ("basenet6", dict(cell_overrides={"conv3": {"filters": 8}}), "nodes without a cell"),
        ("resnet18_v1", dict(cell_overrides={"conv3": {}}), "feedforward model"),
        ("ugrnn_intermediate", dict(feedback=[("conv8", "conv5")]), "rgc_intermediate only"),
        ("rgc_intermediate", dict(feedback=[("conv5", "conv8")]), "deeper to a shallower"),
    ],
)
def test_searched_model_options_are_checked(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.build_model(name, **kwargs, **TINY)
