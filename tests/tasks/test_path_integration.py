"""Path-integration task: losses against their formulas, learning, evaluation outputs and knockouts."""

import csv
import functools
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import path_integrators
from goaldriven.tasks import loop, path_integration, path_integration_eval, place_cells, trajectories
from tests import strategies


def _task(kind="rnn", units=8, target="place_cells", n_cells=16, seq=3, box=2.2, dog=True, **eval_kwargs):
    evaluation = path_integration_eval.PathIntegrationEvaluation(
        **{
            "batches": 2,
            "global_batch_size": 4,
            "train_box_batches": 1,
            "knockout_draws": 2,
            "knockout_batches": 1,
            **eval_kwargs,
        }
    )
    return path_integration.PathIntegrationTask(
        model_fn=functools.partial(path_integrators.build_path_integrator, kind=kind, units=units),
        trajectories=trajectories.TrajectoryGenerator(sequence_length=seq, box_width=box),
        place_cells=place_cells.PlaceCells(n_cells=n_cells, box_width=box, difference_of_gaussians=dog),
        target=target,
        evaluation=evaluation,
    )


def _batch(task, size=4):
    return task.make_batch(task.trajectories, size)(tf.constant(0, tf.int64), tf.constant([1, 2], tf.int64))


@pytest.mark.parametrize("target", path_integration.TARGETS)
def test_loss_and_decoding_error_match_their_formulas(target):
    task = _task(target=target)
    model = task.build_model()
    batch = _batch(task)
    loss, metrics = task.compute_loss(model, batch, training=False)
    init_code = task.encode(batch["init_position"])
    logits = model({"inputs": batch["inputs"], "init_code": init_code})["logits"].numpy()
    positions = batch["position"].numpy()
    if target == "place_cells":
        p = task.place_cells.activations(positions).numpy()
        log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        expected = -(p * log_softmax).sum(-1).mean()  # thesis Eq. 4.13
        top3 = np.argsort(-logits, axis=-1)[..., :3]
        decoded = task.place_cells.centres[top3].mean(-2)
    else:
        expected = 0.5 * ((positions - logits) ** 2).sum(-1).mean()  # thesis Eq. 4.14
        decoded = logits
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(metrics["decoding_error_cm"]), 100 * np.linalg.norm(decoded - positions, axis=-1).mean(), rtol=1e-4
    )
    assert task.output_dim == (16 if target == "place_cells" else 2)


def test_training_lowers_loss_and_decoding_error(tmp_path):
    # Plain Gaussian targets in a 1 m box: a strong learning signal (the DoG targets' optimum is only ~0.1 nats below
    # the uniform guess, so learning them takes thousands of steps).
    task = _task(kind="rnn", units=64, n_cells=64, seq=10, box=1.0, dog=False)
    result = loop.run(
        task=task,
        strategy=strategies.one_device(),
        workdir=str(tmp_path),
        train_steps=300,
        global_batch_size=32,
        learning_rate=3e-3,
        steps_per_loop=50,
        checkpoint_every=300,
        evaluate_at_end=False,
        log=lambda _: None,
    )
    with open(tmp_path / "metrics.json") as f:
        history = json.load(f)["train"]
    first, last = history[0], history[-1]
    assert result["status"] == "finished" and last["step"] == 300
    assert last["loss"] < first["loss"] - 0.3, (first, last)
    assert last["decoding_error_cm"] < 0.7 * first["decoding_error_cm"], (first, last)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_evaluation_writes_scores_maps_figures_and_knockouts(kind, tmp_path):
    task = _task(
        kind=kind,
        units=6,
        seq=10,
        batches=5,
        global_batch_size=20,
        ratemap_bins=10,
        knockout_grid_thresholds=(-2.0, 0.3),
        knockout_border_thresholds=(-2.0,),
    )
    model = task.build_model()
    out_dir = str(tmp_path / "eval")
    lines = []
    metrics = task.evaluate(model, strategy=strategies.one_device(), output_dir=out_dir, step=7, log=lines.append)
    assert np.isfinite(metrics["decoding_error_cm"]) and np.isfinite(metrics["train_box_decoding_error_cm"])
    assert 0.0 <= metrics["g_grid_fraction"] <= 1.0 and 0.0 <= metrics["g_border_fraction"] <= 1.0
    with np.load(os.path.join(out_dir, "ratemaps_g.npz")) as saved:
        assert saved["ratemaps"].shape == (6, 10, 10) and saved["counts"].sum() == 5 * 20 * 10
        assert saved["score60_score"].shape == (6,)
    with open(os.path.join(out_dir, "scores_g.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["unit", "grid_score_60", "grid_score_90", "border_score", "grid_score_60_strict"]
    assert len(rows) == 7
    for name in ("best_grid_units_g.png", "score_histograms_g.png", "decoded_trajectories.png", "knockouts.png"):
        assert os.path.getsize(os.path.join(out_dir, name)) > 1000, name
    with open(os.path.join(out_dir, "knockouts.json")) as f:
        knock = json.load(f)
    # Threshold -2 selects every unit with a finite score: knocking all of them out changes the error.
    everything = knock["rows"][0]
    assert everything["threshold"] == -2.0 and everything["n_units"] > 0
    assert everything["degradation"] != 0.0
    with open(os.path.join(out_dir, "summary.json")) as f:
        assert json.load(f)["step"] == 7
    assert any("decoding error" in line for line in lines)


def test_untrained_evaluation_skips_knockouts(tmp_path):
    task = _task(kind="rnn", units=6, knockout_grid_thresholds=(-2.0,), knockout_border_thresholds=())
    metrics = task.evaluate(
        task.build_model(), strategy=strategies.one_device(), output_dir=str(tmp_path), step=0, log=lambda _: None
    )
    assert not (tmp_path / "knockouts.json").exists() and "knockout_grid_degradation" not in metrics
    assert (tmp_path / "summary.json").exists()


def test_knockout_protocol_against_a_scripted_score():
    """knockouts() with a fake score function: degradation and heterogeneous draws follow the thesis' definitions."""
    config = path_integration_eval.PathIntegrationEvaluation(
        knockout_grid_thresholds=(0.3,), knockout_border_thresholds=(0.5,), knockout_draws=4
    )
    scores = {
        "score60": np.array([0.9, 0.1, 0.5, np.nan, -0.2, 0.0]),
        "border": np.array([0.0, 0.8, 0.1, 0.2, 0.9, 0.3]),
    }
    calls = []

    def score_fn(mask):
        calls.append(mask.copy())
        return -1.0 - 0.1 * (mask == 0).sum()  # each silenced unit adds 10 cm of error to E = -1 m

    result = path_integration_eval.knockouts(scores, score_fn, config)
    grid, border = result["rows"]
    assert result["full_score_m"] == -1.0
    assert grid["n_units"] == 2 and grid["fraction_units"] == pytest.approx(2 / 6)
    assert grid["degradation"] == pytest.approx((-1.2 - -1.0) / -1.0)  # = -0.2: (E_curr - E_full) / E_full
    assert len(grid["heterogeneous_degradations"]) == 4
    # Heterogeneous draws silence as many units, all among those at or below the threshold (NaN scores included).
    for mask in calls[2:6]:
        assert (mask == 0).sum() == 2 and mask[0] == 1 and mask[2] == 1
    assert border["n_units"] == 2 and border["threshold"] == 0.5


def test_mirrored_evaluation_matches_one_device(tmp_path):
    task = _task(kind="ugrnn", units=6, knockout_grid_thresholds=(), knockout_border_thresholds=())
    with strategies.mirrored().scope():
        model = task.build_model()
    weights = model.get_weights()
    two = task.evaluate(
        model, strategy=strategies.mirrored(), output_dir=str(tmp_path / "a"), step=0, log=lambda _: None
    )
    single = task.build_model()
    single.set_weights(weights)
    one = task.evaluate(
        single, strategy=strategies.one_device(), output_dir=str(tmp_path / "b"), step=0, log=lambda _: None
    )
    np.testing.assert_allclose(two["decoding_error_cm"], one["decoding_error_cm"], rtol=1e-5)
    with np.load(tmp_path / "a" / "ratemaps_g.npz") as a, np.load(tmp_path / "b" / "ratemaps_g.npz") as b:
        np.testing.assert_allclose(a["ratemaps"], b["ratemaps"], rtol=1e-5, atol=1e-6)


def test_evaluation_rejects_unknown_layers(tmp_path):
    task = _task(kind="rnn", layers=("rnn",))
    with pytest.raises(ValueError, match="not features of this model"):
        task.evaluate(task.build_model(), strategy=strategies.one_device(), output_dir=str(tmp_path), step=0)


def test_bad_target():
    with pytest.raises(ValueError, match="target"):
        path_integration.PathIntegrationTask(target="heading")
