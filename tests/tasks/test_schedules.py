"""Learning-rate schedules: values at the epoch boundaries (hand-computed), linear scaling, JSON round trip."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks import schedules


def _values(schedule, steps):
    return [float(schedule(tf.constant(s, tf.int64))) for s in steps]


def test_resnet_schedule_at_the_boundaries():
    # 0.1 per 256 at batch 64 -> 0.025 (spec 7.3); x0.1 at epochs 30, 60, 80 with 100 steps per epoch.
    schedule = schedules.resnet_schedule(0.1, global_batch_size=64, reference_batch_size=256, steps_per_epoch=100)
    steps = [0, 2999, 3000, 5999, 6000, 7999, 8000, 8999]
    expected = [0.025, 0.025, 0.0025, 0.0025, 0.00025, 0.00025, 0.000025, 0.000025]
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-6)


def test_alexnet_schedule_at_the_boundaries_and_scaling():
    schedule = schedules.alexnet_schedule(global_batch_size=1024, steps_per_epoch=10)
    np.testing.assert_allclose(
        _values(schedule, [0, 299, 300, 599, 600, 799, 800, 10**7]),
        [0.01, 0.01, 0.005, 0.005, 0.001, 0.001, 0.0005, 0.0005],
        rtol=1e-6,
    )
    half = schedules.alexnet_schedule(global_batch_size=512, steps_per_epoch=10)  # linear scaling: half the rate
    np.testing.assert_allclose(_values(half, [0, 300, 800]), [0.005, 0.0025, 0.00025], rtol=1e-6)


def test_fractional_steps_per_epoch_rounds_the_boundary_step():
    # ImageNet at batch 64: 1,281,167 / 64 = 20018.23 steps per epoch -> epoch 30 starts at step round(600546.9).
    spe = schedules.imagenet_steps_per_epoch(64)
    schedule = schedules.resnet_schedule(0.1, global_batch_size=64, steps_per_epoch=spe)
    assert schedule.boundary_steps[0] == 600547
    np.testing.assert_allclose(_values(schedule, [600546, 600547]), [0.025, 0.0025], rtol=1e-6)


def test_json_round_trip_and_optimizer_use():
    schedule = schedules.resnet_schedule(0.1, global_batch_size=128, steps_per_epoch=7.5, boundaries=(1, 2.5))
    payload = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    restored = keras.saving.deserialize_keras_object(payload)
    assert isinstance(restored, schedules.EpochPiecewiseConstant)
    steps = [0, 7, 8, 18, 19, 100]
    np.testing.assert_allclose(_values(restored, steps), [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005], rtol=1e-6)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer)))
    assert keras.saving.deserialize_keras_object(config).learning_rate.numpy() == pytest.approx(0.05)


def test_schedule_inside_xla():
    schedule = schedules.resnet_schedule(0.1, global_batch_size=256, steps_per_epoch=1)
    compiled = tf.function(lambda step: schedule(step), jit_compile=True)
    np.testing.assert_allclose([float(compiled(tf.constant(s, tf.int64))) for s in (29, 30)], [0.1, 0.01], rtol=1e-6)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="one more entry"):
        schedules.EpochPiecewiseConstant([0.1], [30], steps_per_epoch=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        schedules.EpochPiecewiseConstant([0.1, 0.2, 0.3], [60, 30], steps_per_epoch=1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedules.resnet_schedule(global_batch_size=64, steps_per_epoch=0)


def test_linear_warmup_then_piecewise_constant():
    schedule = schedules.resnet_schedule(
        0.1, global_batch_size=256, reference_batch_size=256, steps_per_epoch=10.0, warmup_epochs=5
    )
    # 50 warm-up steps rising linearly from 0 to 0.1, then 0.1 until epoch 30 (step 300), then 0.01.
    expected = {0: 0.0, 10: 0.02, 25: 0.05, 49: 0.098, 50: 0.1, 299: 0.1, 300: 0.01}
    for step, value in expected.items():
        np.testing.assert_allclose(float(schedule(step)), value, rtol=1e-6, atol=1e-9, err_msg=str(step))
    with pytest.raises(ValueError, match="warmup_epochs"):
        schedules.resnet_schedule(0.1, global_batch_size=256, steps_per_epoch=10.0, warmup_epochs=-1)


def _warmup_cosine(step, base, warmup, total, ratio):
    """The SimCLR schedule's formula, in float64 (module docstring of schedules.py)."""
    if step < warmup:
        return base * (ratio + (1 - ratio) * step / warmup)
    if step < total:
        return base * 0.5 * (1 + np.cos(np.pi * (step - warmup) / (total - warmup)))
    return 0.0


def test_warmup_cosine_values():
    schedule = schedules.WarmupCosine(2.0, warmup_steps=10, total_steps=30, warmup_ratio=0.1)
    hand = {0: 0.2, 5: 1.1, 10: 2.0, 20: 1.0, 30: 0.0, 31: 0.0, 10**6: 0.0}  # 2 * (0.1 + 0.9 * 5 / 10) = 1.1
    np.testing.assert_allclose(_values(schedule, list(hand)), list(hand.values()), rtol=1e-6, atol=1e-7)
    steps = [0, 1, 5, 9, 10, 11, 15, 20, 25, 29, 30, 45]
    expected = [_warmup_cosine(s, 2.0, 10, 30, 0.1) for s in steps]
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-6, atol=1e-7)
    assert 0.0 < _values(schedule, [29])[0] < 0.02  # 1 + cos(19 pi / 20) = 0.0123: still positive before the end


def test_simclr_schedule_reaches_4_8_at_batch_4096():
    # 0.3 x 4096 / 256 = 4.8; 10 steps per epoch: warm-up 100 steps, total 2000 steps.
    schedule = schedules.simclr_schedule(global_batch_size=4096, steps_per_epoch=10)
    assert schedule.base_learning_rate == pytest.approx(4.8)
    assert (schedule.warmup_steps, schedule.total_steps, schedule.warmup_ratio) == (100, 2000, 1e-4)
    steps = [0, 50, 99, 100, 1050, 1999, 2000, 5000]
    expected = [4.8e-4, 4.8 * (1e-4 + (1 - 1e-4) * 0.5), 4.8 * (1e-4 + (1 - 1e-4) * 0.99), 4.8, 2.4]
    expected += [4.8 * 0.5 * (1 + np.cos(np.pi * 1899 / 1900)), 0.0, 0.0]
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5, atol=1e-7)


def test_fractional_steps_per_epoch_round_the_warmup_and_round_up_the_total():
    schedule = schedules.simclr_schedule(global_batch_size=256, steps_per_epoch=2.5, epochs=3.1, warmup_epochs=1.1)
    assert (schedule.warmup_steps, schedule.total_steps) == (3, 8)  # round(2.75), ceil(7.75)


def test_cosine_schedule_has_no_warmup():
    # SimSiam-style: 0.05 per 256 at batch 512 = 0.1, cosine to 0 over 100 epochs of 10 steps.
    schedule = schedules.cosine_schedule(
        0.05, global_batch_size=512, reference_batch_size=256, steps_per_epoch=10, epochs=100
    )
    np.testing.assert_allclose(
        _values(schedule, [0, 250, 500, 1000, 1001]),
        [0.1, 0.1 * (1 + np.sqrt(0.5)) / 2, 0.05, 0.0, 0.0],
        rtol=1e-5,
        atol=1e-8,
    )


def test_warmup_cosine_json_round_trip_and_xla():
    schedule = schedules.simclr_schedule(global_batch_size=512, steps_per_epoch=3, epochs=4, warmup_epochs=1)
    payload = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    restored = keras.saving.deserialize_keras_object(payload)
    assert isinstance(restored, schedules.WarmupCosine) and restored.get_config() == schedule.get_config()
    compiled = tf.function(lambda step: restored(step), jit_compile=True)
    steps = [0, 1, 3, 7, 12]
    np.testing.assert_allclose(
        [float(compiled(tf.constant(s, tf.int64))) for s in steps],
        [_warmup_cosine(s, 0.6, 3, 12, 1e-4) for s in steps],
        rtol=1e-6,
        atol=1e-8,
    )


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: schedules.WarmupCosine(1.0, warmup_steps=11, total_steps=10), "warmup_steps"),
        (lambda: schedules.WarmupCosine(1.0, warmup_steps=-1, total_steps=10), "warmup_steps"),
        (lambda: schedules.WarmupCosine(1.0, warmup_steps=0, total_steps=0), "total_steps"),
        (lambda: schedules.WarmupCosine(-1.0, warmup_steps=0, total_steps=10), "base_learning_rate"),
        (lambda: schedules.WarmupCosine(1.0, warmup_steps=1, total_steps=10, warmup_ratio=1.5), "warmup_ratio"),
        (lambda: schedules.simclr_schedule(global_batch_size=0, steps_per_epoch=10), "batch"),
        (lambda: schedules.simclr_schedule(global_batch_size=256, steps_per_epoch=0), "steps_per_epoch"),
        (lambda: schedules.simclr_schedule(global_batch_size=256, steps_per_epoch=1, epochs=5), "warmup_epochs"),
        (
            lambda: schedules.cosine_schedule(
                0.1, global_batch_size=256, reference_batch_size=256, steps_per_epoch=1, epochs=0
            ),
            "epochs",
        ),
    ],
)
def test_warmup_cosine_invalid_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()
