"""Baselines of the path integrators (NMF Grid Cell Model, place-cell code, velocity control): their features against
their definitions, the task feeding them the true path, and their gin experiments run end to end."""

import functools
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven.tasks import (
    loop,
    path_integration,
    path_integration_baselines,
    path_integration_eval,
    place_cells,
    trajectories,
)
from tests import strategies


def _task(kind, target="place_cells", n_cells=16, box=1.0, **kwargs):
    cells = place_cells.PlaceCells(n_cells=n_cells, box_width=box)
    return path_integration.PathIntegrationTask(
        model_fn=functools.partial(path_integration_baselines.build_baseline, kind=kind, place_cells=cells, **kwargs),
        trajectories=trajectories.TrajectoryGenerator(sequence_length=3, box_width=box),
        place_cells=cells,
        target=target,
    )


def _batch(task, size=2):
    return task.make_batch(task.trajectories, size)(tf.constant(0, tf.int64), tf.constant([3, 4], tf.int64))


def _dog(positions, centres, sigma=0.12, surround=2.0):
    """The place-cell code written out in NumPy (place_cells.py docstring)."""
    d2 = ((positions[..., None, :] - centres) ** 2).sum(-1)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    code = softmax(-d2 / (2 * sigma**2)) - softmax(-d2 / (2 * surround * sigma**2))
    code -= code.min(-1, keepdims=True)
    return code / code.sum(-1, keepdims=True)


def test_place_cell_baseline_is_the_place_cell_code_of_the_true_position():
    task = _task("place_cells")
    batch = _batch(task)
    out = task.forward(task.build_model(), batch)
    expected = _dog(batch["position"].numpy().astype(np.float64), task.place_cells.centres.astype(np.float64))
    assert out["features"]["g"].shape == (2, 3, 16)
    np.testing.assert_allclose(out["features"]["g"].numpy(), expected, atol=1e-5)
    # The logits are the true code (softmax(logits) = p), so the decoder reads the true position's top-3 centres.
    np.testing.assert_allclose(tf.nn.softmax(out["logits"]).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("rectified", [False, True])
def test_velocity_baseline_is_the_velocity_input(rectified):
    task = _task("velocity", target="position", rectified=rectified)
    batch = _batch(task)
    out = task.forward(task.build_model(), batch)
    v = batch["inputs"].numpy()  # the generator's velocity input (m/step)
    g = out["features"]["g"].numpy()
    if rectified:
        assert g.shape == (2, 3, 4) and g.min() >= 0
        np.testing.assert_allclose(g[..., 0] - g[..., 1], v[..., 0], atol=1e-6)
        np.testing.assert_allclose(g[..., 2] - g[..., 3], v[..., 1], atol=1e-6)
        assert np.all(g[..., 0] * g[..., 1] == 0) and np.all(g[..., 2] * g[..., 3] == 0)
    else:
        assert g.shape == (2, 3, 2)
        np.testing.assert_allclose(g, v, atol=1e-6)
    np.testing.assert_allclose(out["logits"].numpy(), batch["position"].numpy())  # position target: the position


def test_nmf_baseline_reads_its_factor_at_the_position():
    task = _task("nmf", n_components=4, lattice_spacing=0.1, log=lambda _: None)
    model = task.build_model()
    assert model.units == 4 and model.trainable_weights == [] and len(model.non_trainable_weights) == 1
    table = model.nmf_activations.numpy()  # (121, 4): the 11 x 11 lattice
    assert table.shape == (121, 4) and table.min() >= 0
    # On lattice point (row 2, column 3) = (x, y) = (-0.2, -0.3) and halfway to column 4.
    position = np.array([[[-0.2, -0.3], [-0.15, -0.3], [0.5, 0.5]]], np.float32)
    g = model({"position": position, "init_position": np.zeros((1, 2), np.float32)})["features"]["g"].numpy()[0]
    np.testing.assert_allclose(g[0], table[2 * 11 + 3], rtol=1e-5)
    np.testing.assert_allclose(g[1], (table[2 * 11 + 3] + table[2 * 11 + 4]) / 2, rtol=1e-5)
    np.testing.assert_allclose(g[2], table[-1], rtol=1e-5)
    mask = np.array([1, 0, 1, 0], np.float32)
    masked = model({"position": position, "init_position": np.zeros((1, 2))}, unit_mask=mask)["features"]["g"]
    np.testing.assert_allclose(masked.numpy()[0], g * mask)


def test_nmf_baseline_evaluates_the_same_on_two_replicas(tmp_path):
    """The factor is a (mirrored) non-trainable weight; the true path reaches the model on every replica."""
    evaluation = path_integration_eval.PathIntegrationEvaluation(
        batches=2, global_batch_size=4, train_box_batches=0, ratemap_bins=10, figures=False
    )
    maps = []
    for name, strategy in (("two", strategies.mirrored()), ("one", strategies.one_device())):
        task = _task("nmf", n_components=3, lattice_spacing=0.1, log=lambda _: None)
        task.evaluation = evaluation
        with strategy.scope():
            model = task.build_model()
        task.evaluate(model, strategy=strategy, output_dir=str(tmp_path / name), step=0, log=lambda _: None)
        with np.load(tmp_path / name / "ratemaps_g.npz") as saved:
            maps.append(saved["ratemaps"])
    assert maps[0].shape == (3, 10, 10) and np.isfinite(maps[0]).any()
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-5, equal_nan=True)


def test_bad_baseline_arguments_are_refused():
    cells = place_cells.PlaceCells(n_cells=16, box_width=1.0)
    with pytest.raises(ValueError, match="kind"):
        path_integration_baselines.PositionBaseline("pca", cells, 16)
    with pytest.raises(ValueError, match="output_dim"):
        path_integration_baselines.PositionBaseline("place_cells", cells, 7)
    with pytest.raises(ValueError, match="nmf="):
        path_integration_baselines.PositionBaseline("nmf", cells, 16)


BASELINE_EXPERIMENTS = {
    "path_integration__nmf9.gin": (9, (20, 20)),
    "path_integration__nmf_full.gin": (16, (20, 20)),  # smoke: 16 place cells, so full rank = 16
    "path_integration__place_cells_linear.gin": (16, (20, 20)),
    "path_integration__velocity_linear.gin": (2, (20, 20)),
    "path_integration_track__place_cells_linear.gin": (16, (80,)),
    "path_integration_track__nmf9.gin": (9, (80,)),
}


@pytest.mark.parametrize("experiment", sorted(BASELINE_EXPERIMENTS))
def test_baseline_experiment_evaluates_without_training(experiment, tmp_path):
    units, map_shape = BASELINE_EXPERIMENTS[experiment]
    try:
        cli_config.parse_gin_config(
            [f"experiments/{experiment}", "testing/smoke.gin"],
            [
                "TRAIN_STEPS = 0",
                "LATTICE_SPACING = 0.1",
                "path_integration_eval.PathIntegrationEvaluation.figures = False",
            ],
            clear=True,
        )
        result = gin.get_configurable(loop.run)(
            strategy=strategies.one_device(), workdir=str(tmp_path), log=lambda _: None
        )
    finally:
        gin.clear_config()
    assert result["status"] == "finished" and result["step"] == 0
    eval_dirs = [root for root, _, files in os.walk(tmp_path) if "ratemaps_g.npz" in files]
    assert len(eval_dirs) == 1
    with np.load(os.path.join(eval_dirs[0], "ratemaps_g.npz")) as saved:
        assert saved["ratemaps"].shape == (units, *map_shape)
        assert saved["counts"].shape == map_shape and saved["counts"].sum() == 2 * 4 * 3  # EVAL_BATCHES x batch x T
    with open(os.path.join(eval_dirs[0], "summary.json")) as f:
        summary = json.load(f)
    assert summary["eval_environment"] == ("track" if "track__" in experiment else "box")
