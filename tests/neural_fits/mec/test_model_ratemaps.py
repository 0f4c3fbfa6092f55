"""Model rate maps for MEC fits equal the path-integration evaluation's maps for the same box, bins and seed."""

import functools

import numpy as np
import pytest

from goaldriven.models import path_integrators
from goaldriven.neural_fits.mec import model_ratemaps
from goaldriven.tasks import path_integration, path_integration_eval, place_cells, trajectories
from tests import strategies


def _task():
    evaluation = path_integration_eval.PathIntegrationEvaluation(
        box_width=1.0, batches=3, global_batch_size=8, train_box_batches=0, ratemap_bins=5, figures=False
    )
    return path_integration.PathIntegrationTask(
        model_fn=functools.partial(path_integrators.build_path_integrator, kind="rnn", units=6),
        trajectories=trajectories.TrajectoryGenerator(sequence_length=3, box_width=2.2),
        place_cells=place_cells.PlaceCells(n_cells=16, box_width=2.2),
        evaluation=evaluation,
    )


def test_maps_match_the_evaluation_protocol(tmp_path):
    task = _task()
    model = task.build_model()
    strategy = strategies.one_device()
    task.evaluate(model, strategy=strategy, output_dir=str(tmp_path), step=0, log=lambda _: None)
    protocol = model_ratemaps.RateMapProtocol(batches=3, global_batch_size=8, seed=task.evaluation.seed)
    maps = model_ratemaps.model_ratemaps(task, model, box_width=1.0, bins=5, layers=("g",), protocol=protocol)
    with np.load(tmp_path / "ratemaps_g.npz") as saved:
        np.testing.assert_allclose(maps["g"], saved["ratemaps"], rtol=1e-5, equal_nan=True)
    assert maps["g"].shape == (6, 5, 5)
    with pytest.raises(ValueError, match="not features of this model"):
        model_ratemaps.model_ratemaps(task, model, box_width=1.0, bins=5, layers=("nope",), protocol=protocol)


def test_a_task_without_trajectories_is_refused():
    class NotPathIntegration:
        name = "digits"

    with pytest.raises(ValueError, match="'digits' is not a path-integration task"):
        model_ratemaps.restore_path_integrator(NotPathIntegration(), "/nowhere", strategies.one_device())
