"""The 1-D track (thesis Fig. 4.2b): trajectories stay on the track without turning, 1-D rate maps, and a path
integrator trained on it (gin) and a 2-D-trained one evaluated on it."""

import json
import os

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven.spatial import ratemaps
from goaldriven.tasks import loop, trajectories
from tests import strategies

SEED = tf.constant([5, 9], tf.int64)


def _track(batch=500, **kwargs):
    gen = trajectories.TrajectoryGenerator(environment="track", box_width=4.0, **kwargs)
    return gen, {k: v.numpy() for k, v in gen.generate(batch, SEED).items()}


def test_positions_stay_on_the_track_and_never_turn():
    gen, out = _track()
    assert gen.height == 0.0 and gen.input_dim == 2
    path = np.concatenate([out["init_position"][:, None], out["position"]], axis=1)  # (b, t + 1, 2)
    assert np.all(path[..., 1] == 0.0)  # on the line y = 0
    assert np.all(np.abs(path[..., 0]) <= 2.0 + 1e-6)
    assert np.all(np.diff(path[..., 0], axis=1) >= 0)  # forward only: no turns
    assert np.all(out["head_direction"] == 0.0)
    integrated = out["init_position"][:, None] + np.cumsum(out["velocity"], axis=1)
    np.testing.assert_allclose(integrated, out["position"], atol=1e-5)
    np.testing.assert_array_equal(out["inputs"], out["velocity"])
    # Episodes starting near the end stop there (clipped, like the box's walls).
    assert np.any(out["position"][:, -1, 0] == np.float32(2.0))


def test_track_speeds_are_the_motion_models_rayleigh_speeds():
    gen, out = _track(batch=4000)
    steps = out["velocity"][..., 0]
    free = out["position"][..., 0] < 1.9  # steps that did not reach the end
    speed = steps[free] / gen.dt
    assert speed.mean() == pytest.approx(0.13 * 2 * np.pi * np.sqrt(np.pi / 2), rel=0.03)  # 1.024 m/s


def test_track_refuses_reward_episodes_and_unknown_environments():
    with pytest.raises(ValueError, match="reward"):
        trajectories.TrajectoryGenerator(environment="track", box_width=4.0, reward_epsilon=0.5)
    with pytest.raises(ValueError, match="environment"):
        trajectories.TrajectoryGenerator(environment="maze")


def test_track_rate_maps_are_one_dimensional():
    acc = ratemaps.TrackRateMapAccumulator(2, 4.0, 8)  # 50 cm bins
    positions = np.array([[-2.0, 0.0], [-1.9, 0.0], [0.1, 0.0], [2.0, 0.0]])
    acc.add(positions, np.array([[1.0, 0.0], [3.0, 1.0], [5.0, 2.0], [7.0, 4.0]]))
    np.testing.assert_array_equal(acc.counts, [2, 0, 0, 0, 1, 0, 0, 1])
    maps = acc.ratemaps()
    assert maps.shape == (2, 8)
    np.testing.assert_allclose(maps[0, [0, 4, 7]], [2.0, 5.0, 7.0])
    assert np.isnan(maps[0, 1])
    with pytest.raises(ValueError, match="y = 0"):
        acc.add(np.array([[0.0, 0.1]]), np.zeros((1, 2)))


def test_track_smoothing_is_one_dimensional_and_nan_aware():
    curve = np.array([0.0, 1.0, 4.0, 2.0, 0.0, 3.0])
    expected = scipy.ndimage.gaussian_filter1d(curve, 1.0, mode="constant") / scipy.ndimage.gaussian_filter1d(
        np.ones(6), 1.0, mode="constant"
    )
    np.testing.assert_allclose(ratemaps.smooth_track_ratemap(curve), expected)
    stack = ratemaps.smooth_track_ratemap(np.stack([curve, 2 * curve]))  # no blur across units
    np.testing.assert_allclose(stack, [expected, 2 * expected])
    gap = curve.copy()
    gap[2] = np.nan
    assert np.isnan(ratemaps.smooth_track_ratemap(gap)[2]) and np.isfinite(ratemaps.smooth_track_ratemap(gap)[3])


def _run(files, bindings, workdir):
    try:
        cli_config.parse_gin_config(files, bindings, clear=True)
        return gin.get_configurable(loop.run)(strategy=strategies.one_device(), workdir=workdir, log=lambda _: None)
    finally:
        gin.clear_config()


def _eval_dir(root):
    found = [d for d, _, files in os.walk(root) if "ratemaps_g.npz" in files]
    assert len(found) == 1, found
    return found[0]


def test_path_integrator_trains_and_evaluates_on_the_track(tmp_path):
    result = _run(
        ["experiments/path_integration_track__ugrnn_relu_place_cells.gin", "testing/smoke.gin"],
        ["EVAL_BATCHES = 1"],
        str(tmp_path),
    )
    assert result["status"] == "finished" and result["step"] == 4
    out = _eval_dir(tmp_path)
    with np.load(os.path.join(out, "ratemaps_g.npz")) as saved:
        assert saved["ratemaps"].shape == (8, 80) and saved["counts"].shape == (80,)  # UNITS = 8, 5 cm bins
        assert "score60_score" not in saved
    assert not os.path.exists(os.path.join(out, "scores_g.csv"))
    assert os.path.getsize(os.path.join(out, "track_ratemaps_g.png")) > 1000
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["eval_environment"] == "track"


def test_box_trained_model_is_evaluated_on_the_track(tmp_path):
    _run(
        ["experiments/path_integration__ugrnn_relu_place_cells.gin", "testing/smoke.gin"],
        ["TRAIN_STEPS = 0", "EVAL_ENVIRONMENT = 'track'", "EVAL_BOX_WIDTH = 4.0", "EVAL_BATCHES = 1"],
        str(tmp_path),
    )
    with np.load(os.path.join(_eval_dir(tmp_path), "ratemaps_g.npz")) as saved:
        assert saved["ratemaps"].shape == (8, 80)
