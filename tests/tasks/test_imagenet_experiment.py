"""An ImageNet experiment file trains end to end (gin -> task -> ConvRNN -> loop) on tfds mock data."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import gin
from goaldriven import cli_config
from goaldriven.tasks import loop
from tests import strategies

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # 60-100 s on 2 cores; tests/test_train.py covers train-and-resume through the entry point.
def test_rgc_median_experiment_trains_and_resumes(tmp_path):
    files = [
        os.path.join(REPO, "gin", "experiments", "imagenet__rgc_intermediate.gin"),
        os.path.join(REPO, "gin", "models", "zoo_tiny.gin"),
        os.path.join(REPO, "gin", "testing", "smoke.gin"),
    ]
    try:
        cli_config.parse_gin_config(
            files,
            [
                "GLOBAL_BATCH_SIZE = 2",
                "UNROLL_LENGTH = 'minimal'",
                "loop.run.evaluate_at_end = False",
                "DATA_DIR = '/nonexistent'",
            ],
            clear=True,
        )
        run = gin.get_configurable(loop.run)
        with tfds.testing.mock_data(num_examples=8):
            first = run(strategy=strategies.one_device(), workdir=str(tmp_path), train_steps=2, log=lambda _: None)
            second = run(strategy=strategies.one_device(), workdir=str(tmp_path), log=lambda _: None)
    finally:
        gin.clear_config()
    assert first["status"] == second["status"] == "finished"
    assert (first["step"], second["step"]) == (2, 4)  # the rerun resumed at step 2 and trained TRAIN_STEPS = 4
    assert np.isfinite(second["train"]["loss"]) and second["train"]["reg_loss"] > 0
    assert set(second["train"]) >= {"loss", "top1", "top5"}
