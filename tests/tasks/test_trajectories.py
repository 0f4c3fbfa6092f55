"""Trajectory generator: statistics of the motion model, box containment, determinism, cue and reward variants."""

import math

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks import trajectories

SEED = tf.constant([7, 11], tf.int64)


def _generate(batch=1000, **kwargs):
    gen = trajectories.TrajectoryGenerator(**kwargs)
    return gen, {k: v.numpy() for k, v in gen.generate(batch, SEED).items()}


def test_shapes_and_velocity_integrates_to_positions():
    gen, out = _generate(batch=5, sequence_length=7)
    assert out["position"].shape == (5, 7, 2)
    assert out["inputs"].shape == (5, 7, gen.input_dim) == (5, 7, 2)
    integrated = out["init_position"][:, None] + np.cumsum(out["velocity"], axis=1)
    np.testing.assert_allclose(integrated, out["position"], atol=1e-5)
    np.testing.assert_array_equal(out["inputs"], out["velocity"])


@pytest.mark.parametrize("width", [2.2, 1.0, 1.5])
def test_all_positions_inside_the_box(width):
    _, out = _generate(batch=2000, box_width=width)
    everything = np.concatenate([out["init_position"][:, None], out["position"]], axis=1)
    assert np.all(np.abs(everything) <= width / 2 + 1e-6)
    # The box is explored: positions reach within 5 cm of every wall.
    assert everything[..., 0].max() > width / 2 - 0.05 and everything[..., 0].min() < -width / 2 + 0.05


def test_speed_and_turn_statistics_match_the_motion_model():
    gen, out = _generate(batch=4000, box_width=2.2)
    speed = np.linalg.norm(out["velocity"], axis=-1) / gen.dt  # m/s
    # Steps far from walls are pure Rayleigh(0.13 * 2 pi): mean = scale * sqrt(pi / 2) = 1.024 m/s.
    before = np.concatenate([out["init_position"][:, None], out["position"][:, :-1]], axis=1)
    interior = np.all(np.abs(before) < 2.2 / 2 - 0.1, axis=-1)
    expected_mean = 0.13 * 2 * math.pi * math.sqrt(math.pi / 2)
    assert abs(speed[interior].mean() - expected_mean) < 0.02
    # Rayleigh: mean^2 / E[v^2] = pi / 4.
    assert abs(speed[interior].mean() ** 2 / np.mean(speed[interior] ** 2) - math.pi / 4) < 0.01
    # Turning: away from walls the heading changes by dt * N(0, 11.52 rad/s) per step.
    turn_rate = np.diff(out["head_direction"], axis=1) / gen.dt
    away = interior[:, 1:] & interior[:, :-1]
    assert abs(turn_rate[away].std() - 11.52) < 0.3
    assert abs(turn_rate[away].mean()) < 0.1


def test_wall_avoidance_slows_down_near_walls():
    gen, out = _generate(batch=4000, box_width=1.0)
    speed = np.linalg.norm(out["velocity"], axis=-1) / gen.dt
    before = np.concatenate([out["init_position"][:, None], out["position"][:, :-1]], axis=1)
    near = np.any(np.abs(before) > 0.5 - 0.02, axis=-1)
    interior = np.all(np.abs(before) < 0.5 - 0.1, axis=-1)
    assert speed[near].mean() < 0.7 * speed[interior].mean()


def test_same_seed_same_batch_other_seed_other_batch():
    gen = trajectories.TrajectoryGenerator()
    a = gen.generate(8, SEED)["position"].numpy()
    b = gen.generate(8, SEED)["position"].numpy()
    c = gen.generate(8, tf.constant([7, 12], tf.int64))["position"].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_cue_inputs_are_distances_to_cue_edges_and_present_in_half_the_episodes():
    cues = ((0.0, 0.0, 0.4), (0.5, 0.5, 0.2))
    gen, out = _generate(batch=2000, cues=cues, cue_probability=0.5)
    assert gen.input_dim == 4
    cue_part = out["inputs"][..., 2:]
    present = np.any(cue_part > 0, axis=(1, 2))
    assert 0.45 < present.mean() < 0.55
    before = np.concatenate([out["init_position"][:, None], out["position"][:, :-1]], axis=1)[present]
    dx = np.maximum(np.abs(before[..., 0] - 0.5) - 0.1, 0)
    dy = np.maximum(np.abs(before[..., 1] - 0.5) - 0.1, 0)
    np.testing.assert_allclose(cue_part[present][..., 1], np.hypot(dx, dy), atol=1e-5)
    inside_first = np.all(np.abs(before) <= 0.2, axis=-1)
    assert inside_first.any() and np.all(cue_part[present][..., 0][inside_first] == 0)


def test_reward_biased_episodes_go_to_the_zone_and_stay():
    zone = (0.65, 0.85, 0.65, 0.85)
    gen, out = _generate(batch=200, reward_epsilon=0.375, reward_zone=zone, reward_approach_steps=7)
    after = out["position"][:, 6:]  # from the end of the approach on
    in_zone = np.all(
        (after[..., 0] >= 0.65 - 1e-6)
        & (after[..., 0] <= 0.85 + 1e-6)
        & (after[..., 1] >= 0.65 - 1e-6)
        & (after[..., 1] <= 0.85 + 1e-6),
        axis=1,
    )
    assert in_zone.sum() == math.ceil((1 - 0.375) * 200)
    np.testing.assert_allclose(out["position"][in_zone, 6], np.full((in_zone.sum(), 2), 0.75), atol=1e-5)
    # The approach is a straight line at constant velocity.
    v = out["velocity"][in_zone, :7]
    np.testing.assert_allclose(v, np.broadcast_to(v[:, :1], v.shape), atol=1e-5)


def test_reward_input_flags_the_zone():
    gen, out = _generate(batch=200, reward_epsilon=0.0, reward_input=True)
    assert gen.input_dim == 3
    flag = out["inputs"][..., 2]
    before = np.concatenate([out["init_position"][:, None], out["position"][:, :-1]], axis=1)
    inside = np.all((before >= 0.65) & (before <= 0.85), axis=-1)
    np.testing.assert_array_equal(flag, inside.astype(np.float32))
    assert flag[:, -1].all()  # every episode ends inside the zone with epsilon = 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"box_width": -1.0}, "box size"),
        ({"reward_epsilon": 1.5}, "reward_epsilon"),
        ({"velocity_input": False}, "no inputs"),
        ({"cues": ((0.0, 0.0),)}, "cues"),
        ({"reward_epsilon": 0.5, "reward_approach_steps": 20}, "reward_approach_steps"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        trajectories.TrajectoryGenerator(**kwargs)
