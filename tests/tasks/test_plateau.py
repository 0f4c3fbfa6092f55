"""Plateau learning-rate drops (goaldriven/tasks/plateau.py): the rule on hand-written metric sequences; the hook in
the unchanged loop on a stand-in objective whose validation metric the test scripts (drops exactly after `patience`
flat evaluations, max_drops, no retrace of the XLA step, MirroredStrategy, bit-identical resume after SIGTERM); the
default top-1 against NumPy; the searched ConvRNNs' gin files."""

import json
import os
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven import hooks as loop_hooks
from goaldriven.tasks import loop, plateau, schedules, validation_metric
from tests import loop_testing, strategies
from tests.tasks import toy_tasks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- the rule ------------------------------------------------------------------------------------------------------


def _drops(values, **rule):
    """1-based indices of the evaluations at which the rule drops the rate, and the final counters."""
    rule, counters, drops = plateau.PlateauRule(**rule), plateau.Counters(), []
    for i, value in enumerate(values, start=1):
        counters, dropped = rule.update(counters, value)
        if dropped:
            drops.append(i)
    return drops, counters


def test_rule_drops_exactly_after_patience_flat_evaluations():
    # evaluation 2 sets the best; 3, 4, 5 are flat: the third flat one (5) drops; 6, 7 start a new count.
    drops, counters = _drops([0.1, 0.2, 0.2, 0.15, 0.2, 0.2, 0.2], patience=3)
    assert drops == [5] and (counters.best, counters.wait, counters.drops) == (0.2, 2, 1)
    assert _drops([0.1, 0.2, 0.2, 0.15], patience=3)[0] == []  # two flat evaluations: not yet


def test_rule_never_drops_while_improving_by_more_than_min_delta():
    assert _drops(list(np.linspace(0.1, 0.9, 9)), patience=1)[0] == []
    # gains of 0.0005 and 0.0004 do not exceed min_delta 0.001: the second of them drops at patience 2
    assert _drops([0.5, 0.5005, 0.5009], patience=2, min_delta=0.001)[0] == [3]
    assert _drops([0.5, 0.502, 0.504], patience=1, min_delta=0.001)[0] == []
    assert _drops([2.0, 1.5, 1.0, 1.0], patience=1, mode="min")[0] == [4]  # a loss: lower is better


def test_rule_respects_max_drops_and_cooldown():
    drops, counters = _drops([0.3] * 8, patience=1, max_drops=2)
    assert drops == [2, 3] and counters.drops == 2 and counters.wait == 5
    assert plateau.PlateauRule(factor=0.1).multiplier(2) == pytest.approx(0.01)
    # cooldown 2: evaluations 3 and 4 after the drop at 2 count nothing; 5 is flat again and drops.
    assert _drops([0.3] * 6, patience=1, cooldown=2)[0] == [2, 5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="up"), "mode must be one of"),
        (dict(patience=0), "patience must be an int >= 1"),
        (dict(factor=1.0), "factor must be in"),
        (dict(min_delta=-1.0), "min_delta must be >= 0"),
        (dict(max_drops=-1), "max_drops must be an int >= 0"),
    ],
)
def test_rule_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plateau.PlateauRule(**kwargs)


def test_rule_refuses_a_non_finite_metric():
    with pytest.raises(ValueError, match="diverged"):
        plateau.PlateauRule().update(plateau.Counters(evaluations=1, best=0.5), float("nan"))


# -- the hook in the loop ------------------------------------------------------------------------------------------

# Validation "top-1" by step: best 0.6 at 4; 6, 8 flat -> drop 1 at 8; 10 improves; 12, 14 flat -> drop 2 at 14
# (max_drops 2: no evaluation after it, although 16-18 would be flat).
SCRIPT = {2: 0.5, 4: 0.6, 6: 0.6, 8: 0.55, 10: 0.7, 12: 0.7, 14: 0.65, 16: 0.1, 18: 0.1}
RATE, STEPS = 0.05, 20


class _Validation:
    """8 fixed validation examples of the linear task."""

    def eval_dataset(self, *, global_batch_size, input_context):
        x = np.arange(24, dtype=np.float32).reshape(8, 3) / 24
        data = tf.data.Dataset.from_tensor_slices({"x": x, "y": x.sum(1, keepdims=True)})
        return data.batch(input_context.get_per_replica_batch_size(global_batch_size), drop_remainder=True)


class _Script(loop_hooks.LoopHook):
    """Sets the scripted validation metric for the step just trained (runs before PlateauDrop's evaluation)."""

    def __init__(self):
        self.score = tf.Variable(0.0, trainable=False)

    def metric_fn(self, model, batch):
        del model
        return {"score": tf.zeros_like(batch["y"][:, 0]) + self.score}  # (b,)

    def on_loop_end(self, state, step):
        self.score.assign(SCRIPT.get(step, 0.0))


class _Counting(keras.optimizers.schedules.LearningRateSchedule):
    """A constant rate that counts its graph-mode calls (one per trace of the compiled step)."""

    def __init__(self, value):
        self.value, self.traced = value, 0

    def __call__(self, step):
        if not tf.executing_eagerly():
            self.traced += 1
        return tf.constant(self.value, tf.float32)


class _Traces(loop_hooks.LoopHook):
    def __init__(self, schedule):
        self.schedule, self.at = schedule, {}

    def on_loop_end(self, state, step):
        self.at[step] = self.schedule.traced


def _run(workdir, *, strategy, jit=False, loop_rate=RATE, after=(), log=None, **plateau_kwargs):
    """The linear task for STEPS steps with the scripted metric and PlateauDrop (patience 2, at most 2 drops)."""
    script = _Script()
    settings = dict(eval_every=2, metric="score", patience=2, max_drops=2, eval_batch_size=4)
    hook = plateau.PlateauDrop(_Validation(), metric_fn=script.metric_fn, **{**settings, **plateau_kwargs})
    result = loop.run(
        task=toy_tasks.LinearTask(),
        strategy=strategy,
        workdir=str(workdir),
        train_steps=STEPS,
        global_batch_size=4,
        optimizer=keras.optimizers.SGD,
        learning_rate=loop_rate,
        steps_per_loop=2,
        checkpoint_every=100,
        jit_compile=jit,
        evaluate_at_end=False,
        hooks=[script, hook, *after],
        log=log or (lambda _: None),
    )
    return result, hook


def _rates(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return {e["step"]: e["learning_rate"] for e in json.load(f)["train"]}


def _plateau_log(workdir):
    with open(os.path.join(workdir, plateau.LOG_FILE)) as f:
        return [json.loads(line) for line in f]


def _saved(workdir):
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in n and "save_counter" not in n]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.parametrize("strategy, jit", [(strategies.one_device, True), (strategies.mirrored, False)],
                         ids=["xla_one_device", "mirrored"])  # fmt: skip
def test_rate_drops_at_the_scripted_plateaus_without_retracing(strategy, jit, tmp_path):
    counting, lines = _Counting(RATE), []
    traces = _Traces(counting)
    result, hook = _run(
        tmp_path,
        strategy=strategy(),
        jit=jit,
        loop_rate=counting,
        learning_rate=counting,
        after=[traces],
        log=lines.append,
    )
    assert result["status"] == "finished"
    expected = {s: RATE if s <= 8 else RATE * 0.1 if s <= 14 else RATE * 0.01 for s in range(2, STEPS + 1, 2)}
    rates = _rates(tmp_path)
    assert rates.keys() == expected.keys()
    for step, rate in expected.items():
        assert rates[step] == pytest.approx(rate, rel=1e-6), step
    log = _plateau_log(tmp_path)
    assert [e["step"] for e in log] == [2, 4, 6, 8, 10, 12, 14]  # none after the last allowed drop
    assert [e["step"] for e in log if e["dropped"]] == [8, 14]
    assert [e["wait"] for e in log] == [0, 0, 1, 0, 0, 1, 0] and log[-1]["best"] == pytest.approx(0.7)
    assert sum("plateau drop" in line for line in lines) == 2
    assert hook.counters().drops == 2 and float(hook.variables["plateau_multiplier"].numpy()) == pytest.approx(0.01)
    # The schedule was traced in the first loop only: the multiplier is a variable, its changes never retrace.
    assert traces.at[2] > 0 and traces.at[STEPS] == traces.at[2]


def _constant_schedule():
    return schedules.constant_schedule(RATE, global_batch_size=4, reference_batch_size=4)


# A schedule (wrapped by PlateauScaled) under XLA on one device; a float rate (its optimizer variable assigned) on two.
@pytest.mark.parametrize("strategy, jit, rate", [(strategies.one_device, True, _constant_schedule),
                                                 (strategies.mirrored, False, lambda: RATE)],
                         ids=["xla_one_device_schedule", "mirrored_float"])  # fmt: skip
def test_sigterm_then_resume_is_bit_identical(strategy, jit, rate, tmp_path):
    assert threading.current_thread() is threading.main_thread()  # the loop's SIGTERM handler needs it
    _run(tmp_path / "straight", strategy=strategy(), jit=jit, loop_rate=rate())
    # Stopped at 12, after the evaluation there (wait 1 of 2): the resumed run must still drop at 14.
    stopped, _ = _run(
        tmp_path / "split", strategy=strategy(), jit=jit, loop_rate=rate(), after=[loop_testing.SigtermAt(12)]
    )
    assert stopped["status"] == "preempted" and stopped["step"] == 12
    lines = []
    resumed, hook = _run(tmp_path / "split", strategy=strategy(), jit=jit, loop_rate=rate(), log=lines.append)
    assert resumed["status"] == "finished" and any("plateau: resumed after 6 evaluations" in line for line in lines)
    a, b = _saved(tmp_path / "straight"), _saved(tmp_path / "split")
    assert (
        a.keys() == b.keys()
        and {"plateau_wait/.ATTRIBUTES/VARIABLE_VALUE", "plateau_best/.ATTRIBUTES/VARIABLE_VALUE"} <= a.keys()
    )
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert _plateau_log(tmp_path / "straight") == _plateau_log(tmp_path / "split")
    assert hook.counters().drops == 2
    assert _rates(tmp_path / "split")[16] == pytest.approx(RATE * 0.01, rel=1e-6)  # the drops reached the optimizer


def test_max_drops_zero_never_evaluates_and_keeps_the_base_rate(tmp_path):
    result, hook = _run(tmp_path, strategy=strategies.one_device(), max_drops=0)
    assert result["status"] == "finished" and hook.counters().evaluations == 0
    rates = _rates(tmp_path)
    assert len(rates) == STEPS // 2 and all(rate == pytest.approx(RATE, rel=1e-6) for rate in rates.values())
    assert not os.path.exists(os.path.join(tmp_path, plateau.LOG_FILE))


def test_an_explicit_base_rate_must_match_the_loop_optimizer(tmp_path):
    with pytest.raises(ValueError, match="PlateauDrop.learning_rate gives 0.1 at step 0"):
        _run(tmp_path, strategy=strategies.one_device(), **{"learning_rate": 0.1})


# -- pieces ----------------------------------------------------------------------------------------------------------


def test_build_wraps_the_optimizers_own_step_schedule_with_the_multiplier():
    base = schedules.resnet_schedule(0.1, global_batch_size=64, reference_batch_size=256, steps_per_epoch=10.0)
    optimizer = keras.optimizers.SGD(learning_rate=base)
    state = loop_hooks.LoopState(
        model=None, optimizer=optimizer, strategy=tf.distribute.get_strategy(), step=None, workdir="", is_chief=True,
        seed=0, train_steps=0, task_variables=[], loss_fn=None, sample_batch=None,
    )  # fmt: skip
    hook = plateau.PlateauDrop(_Validation(), eval_every=5)
    saved = hook.build(state)
    assert set(saved) == {
        f"plateau_{n}" for n in ("multiplier", "best", "evaluations", "wait", "drops", "cooldown_left")
    }
    assert float(optimizer.learning_rate) == pytest.approx(0.025)  # 0.1 x 64 / 256 before any drop
    saved["plateau_multiplier"].assign(0.1)
    optimizer.iterations.assign(300)  # epoch 30: the step schedule's own x0.1, times the plateau's
    assert float(optimizer.learning_rate) == pytest.approx(0.025 * 0.1 * 0.1)
    again = plateau.PlateauScaled.from_config(hook.schedule.get_config())  # serialisable with the optimizer
    assert float(again(300)) == pytest.approx(0.025 * 0.1 * 0.1)


def test_default_metric_is_weighted_top1_and_cross_entropy_against_numpy():
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, size=8).astype(np.int32)
    weight = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)  # the last two are padding

    class Data:
        def eval_dataset(self, *, global_batch_size, input_context):
            data = tf.data.Dataset.from_tensor_slices({"images": x, "labels": labels, "weight": weight})
            return data.batch(input_context.get_per_replica_batch_size(global_batch_size), drop_remainder=True)

    strategy = strategies.mirrored()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    logits = model(x).numpy()
    kept = weight > 0
    top1 = np.mean(logits.argmax(1)[kept] == labels[kept])
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -np.mean(log_probs[np.arange(8), labels][kept])
    for metric, expected in (("top1", top1), ("loss", ce)):
        value, examples = validation_metric.make_evaluator(model, strategy, Data(), metric=metric, eval_batch_size=4)()
        assert examples == 6 and value == pytest.approx(expected, rel=1e-5), metric


# -- gin -------------------------------------------------------------------------------------------------------------

SEARCHED = ("rgc_intermediate", "rgc_intermediate_dthresh", "rgc_intermediate_tmaxconf",
            "rgc_intermediate_t22_tmaxconf", "lstm_shallow")  # fmt: skip


def _experiment(name):
    return os.path.join(REPO, "gin", "experiments", f"imagenet__{name}.gin")


@pytest.mark.parametrize("name", SEARCHED)
def test_searched_convrnns_drop_on_plateaus_from_a_constant_rate(name):
    try:
        cli_config.parse_gin_config([_experiment(name), "models/zoo_tiny.gin", "testing/smoke.gin"], [], clear=True)
        hooks = gin.query_parameter("loop.run.hooks")
        assert [h.configurable.name for h in hooks] == ["PlateauDrop"]
        hook = gin.get_configurable(plateau.PlateauDrop)()
        rate = gin.query_parameter("LEARNING_RATE/macro.value").scoped_configurable_fn()
    finally:
        gin.clear_config()
    assert (hook.metric, hook.rule.mode, hook.rule.factor, hook.rule.patience, hook.rule.max_drops) == (
        "top1", "max", 0.1, 5, 3)  # fmt: skip
    assert hook.eval_every == 1_281_167 // 4  # one epoch at the smoke batch of 4
    assert rate.boundaries == [] and float(rate(10**9)) == float(rate(0)) > 0  # no step drops


def test_other_experiments_keep_the_step_schedule_and_the_opt_out_restores_it():
    try:
        cli_config.parse_gin_config([_experiment("ugrnn_intermediate"), "testing/smoke.gin"], [], clear=True)
        assert "PlateauDrop" not in gin.config_str()
        cli_config.parse_gin_config(
            [_experiment("rgc_intermediate"), "testing/smoke.gin"],
            ["PLATEAU_MAX_DROPS = 0", "LEARNING_RATE = @schedules.resnet_schedule()"],
            clear=True,
        )
        rate = gin.query_parameter("LEARNING_RATE/macro.value").scoped_configurable_fn()
        assert gin.get_configurable(plateau.PlateauDrop)().rule.max_drops == 0
    finally:
        gin.clear_config()
    assert len(rate.boundaries) == 3


@pytest.mark.slow  # a tiny RGC Median on tfds mock data: 30-90 s on 2 cores
def test_rgc_median_experiment_evaluates_and_drops_inside_training(tmp_path):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    bindings = [
        "GLOBAL_BATCH_SIZE = 2", "UNROLL_LENGTH = 'minimal'", "DATA_DIR = '/nonexistent'", "TRAIN_STEPS = 6",
        "PLATEAU_EVAL_EVERY = 2", "PLATEAU_PATIENCE = 1", "PLATEAU_MIN_DELTA = 1.0",  # step 4 cannot beat step 2 by 1.0
        "loop.run.evaluate_at_end = False",
    ]  # fmt: skip
    try:
        cli_config.parse_gin_config([_experiment("rgc_intermediate"), "models/zoo_tiny.gin", "testing/smoke.gin"],
                                    bindings, clear=True)  # fmt: skip
        with tfds.testing.mock_data(num_examples=8):
            result = gin.get_configurable(loop.run)(
                strategy=strategies.one_device(), workdir=str(tmp_path), log=lambda _: None
            )
    finally:
        gin.clear_config()
    assert result["status"] == "finished" and result["step"] == 6
    log = _plateau_log(tmp_path)
    assert [(e["step"], e["dropped"], e["examples"]) for e in log] == [(2, False, 8), (4, True, 8)]
    assert 0.0 <= log[0]["value"] <= 1.0
    rates = _rates(tmp_path)
    assert rates[6] == pytest.approx(rates[2] * 0.1, rel=1e-6) and rates[4] == pytest.approx(rates[2], rel=1e-6)
