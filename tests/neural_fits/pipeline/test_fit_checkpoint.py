"""fit_checkpoint as a notebook calls it: a model, its InputSpec and recordings in memory -> scores and files."""

import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from goaldriven import checkpointing, workdir_lock
from goaldriven.models import zoo
from goaldriven.neural_fits.data import synthetic
from goaldriven.neural_fits.pipeline.fit_checkpoint import fit_checkpoint
from goaldriven.neural_fits.pipeline.fitting import FitConfig
from goaldriven.neural_fits.pipeline.simulate_from_model import SimulateSpec
from goaldriven.tasks.base import InputSpec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SPEC = InputSpec(image_size=8, pixel_mean=0.5, pixel_std=0.25)
CONFIG = FitConfig(mapping="ridge", n_splits=2, n_boot=4, layers=("stem", "pool"), inter_animal=False)


class _NoImages:
    name = "path_integration"
    input_spec = None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small_resnet8 on 8 x 8 images saved as a training run saves it, and recordings of 64 stimuli."""
    workdir = str(tmp_path_factory.mktemp("train"))
    model = zoo.build_model("small_resnet8", num_classes=4, image_size=8)
    model(np.zeros((1, 8, 8, 3), np.float32), training=False)
    checkpointing.Checkpointer(workdir, model=model).save(0)
    return workdir, model, synthetic.default_dataset(seed=0)


def _fit_model(trained, workdir, lines: list, **inputs):
    """fit_checkpoint of the trained small_resnet8 (the model and its input spec passed in), logging into `lines`."""
    checkpoint, model, _ = trained
    return fit_checkpoint(checkpoint, workdir=str(workdir), model=model, input_spec=SPEC, log=lines.append, **inputs)


def test_a_model_and_its_input_spec_are_scored_and_the_features_reused(trained, tmp_path):
    checkpoint, model, data = trained
    first, second = [], []
    fit, again = (
        fit_checkpoint(
            checkpoint, workdir=str(tmp_path), model=model, input_spec=SPEC, recordings=data, config=CONFIG, log=log
        )
        for log in (first.append, second.append)
    )
    assert fit.checkpoint.endswith("ckpt-0") and any(line.startswith("restored ") for line in first)
    assert fit.features_path == str(tmp_path / "features.h5") and os.path.exists(fit.features_path)
    assert fit.recordings_path is None  # a NeuralData passed in: no file read or written
    assert [os.path.basename(p) for p in fit.paths] == ["units.csv", "summary.json", "predictivity_by_layer.png"]
    assert len(fit.result.rows) == data.num_units * 2 and set(fit.result.summary["best_layer"]) == {"IT", "V4"}
    extracted = [[line for line in lines if line.startswith("features: 64/64 stimuli")] for lines in (first, second)]
    assert len(extracted[0]) == 1 and not extracted[1]  # the second call extracts nothing ...
    assert f"features: reusing {fit.features_path}" in second  # ... it reuses the cache
    assert again.result.summary["areas"] == fit.result.summary["areas"]


def test_wrong_calls_are_refused_with_the_fix(trained, tmp_path):
    checkpoint, model, data = trained
    simulate = SimulateSpec({"V1": "stem"})
    with pytest.raises(ValueError, match="exactly one of recordings"):
        fit_checkpoint(
            checkpoint, workdir=str(tmp_path), model=model, input_spec=SPEC, recordings=data, simulate=simulate
        )
    with pytest.raises(ValueError, match="exactly one of task"):
        fit_checkpoint(checkpoint, workdir=str(tmp_path), recordings=data)
    with pytest.raises(ValueError, match="needs its input_spec"):
        fit_checkpoint(checkpoint, workdir=str(tmp_path), model=model, recordings=data)
    with pytest.raises(ValueError, match="'path_integration' has no input_spec"):
        fit_checkpoint(checkpoint, workdir=str(tmp_path), task=_NoImages(), recordings=data)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        fit_checkpoint(str(tmp_path / "none"), workdir=str(tmp_path), model=model, input_spec=SPEC, recordings=data)
    assert not os.listdir(tmp_path)  # refused before writing anything


def test_simulate_spec_from_the_flag_items():
    spec = SimulateSpec.from_items(["V1=stage1_block1", "IT=stage3_block1"], n_animals=2)
    assert dict(spec.area_layers) == {"V1": "stage1_block1", "IT": "stage3_block1"} and spec.n_animals == 2
    for items in (["V1"], ["=stem"], []):
        with pytest.raises(ValueError, match="area=layer"):
            SimulateSpec.from_items(items)


def test_a_retrained_checkpoint_at_the_same_path_is_extracted_again(trained, tmp_path):
    """The bug of issue 11: features.h5 was reused when only the checkpoint's path and the stimulus ids matched."""
    checkpoint, model, data = trained
    train = tmp_path / "train"
    shutil.copytree(checkpoint, train)
    workdir = str(tmp_path / "fit")
    config = dataclasses.replace(CONFIG, layers=("pool",))
    first = fit_checkpoint(str(train), workdir=workdir, model=model, input_spec=SPEC, recordings=data, config=config)
    retrained = zoo.build_model("small_resnet8", num_classes=4, image_size=8)
    retrained(np.zeros((1, 8, 8, 3), np.float32), training=False)
    retrained.set_weights([w + 0.05 for w in model.get_weights()])
    shutil.rmtree(train)
    checkpointing.Checkpointer(str(train), model=retrained).save(0)  # same path, same step, other weights
    lines = []
    second = fit_checkpoint(
        str(train), workdir=workdir, model=model, input_spec=SPEC, recordings=data, config=config, log=lines.append
    )
    assert second.checkpoint == first.checkpoint  # the same prefix string ...
    assert any("holds features of another checkpoint (step or file contents)" in line for line in lines), lines
    assert any(line.startswith("features: 64/64 stimuli") for line in lines)  # ... extracted again
    assert second.features_path != first.features_path and os.path.exists(first.features_path)
    assert second.result.rows != first.result.rows


SIMULATE = SimulateSpec({"V1": "stem"}, n_animals=2, units_per_animal=3, n_trials=4)
SIMULATE_CONFIG = FitConfig(mapping="ridge", n_splits=2, n_boot=2, layers=("stem",), inter_animal=False)


def test_a_busy_workdir_is_refused_before_anything_is_written(trained, tmp_path):
    checkpoint, model, data = trained
    with workdir_lock.hold(str(tmp_path), "fit", log=lambda _: None):
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"is in use by pid {os.getpid()} on .*fit, started"):
            fit_checkpoint(checkpoint, workdir=str(tmp_path), model=model, input_spec=SPEC, recordings=data)
    assert os.listdir(tmp_path) == [workdir_lock.LOCK_NAME]


def test_a_workdir_with_reports_but_no_fit_options_keeps_them(trained, tmp_path):
    """Reports written before fit_options.json existed are taken to be another fit's: the new one goes beside."""
    (tmp_path / "summary.json").write_text("{}")
    lines = []
    fit = _fit_model(trained, tmp_path, lines, recordings=trained[2], config=CONFIG)
    assert fit.fit_dir == str(tmp_path / "fit.1") and fit.paths[0] == str(tmp_path / "fit.1" / "units.csv")
    assert f"fit: {tmp_path} holds a fit written without fit_options.json; writing this one to {fit.fit_dir}" in (
        " ".join(lines)
    )
    assert (tmp_path / "summary.json").read_text() == "{}"


_KILLED_SAVE = """
import os, sys
from goaldriven.neural_fits.data import neural_data, synthetic

def killed_midway(f, data):
    f.create_dataset("responses", data=data.responses)
    f.flush()
    os.kill(os.getpid(), 9)

neural_data._write_file = killed_midway
neural_data.save_neural_data(sys.argv[1], synthetic.default_dataset(seed=0))
"""


def test_the_temporary_file_of_a_killed_simulate_save_is_removed_on_the_next_run(trained, tmp_path):
    target = tmp_path / "synthetic_neural_data.h5"
    killed = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(target)], cwd=REPO, check=False)
    assert killed.returncode == -9
    (leftover,) = [tmp_path / name for name in os.listdir(tmp_path) if name.startswith(".synthetic_neural_data.h5.")]
    assert not target.exists()  # the save never completed
    lines = []
    fit = _fit_model(trained, tmp_path, lines, simulate=SIMULATE, config=SIMULATE_CONFIG)
    assert f"note: removing {leftover}, left by an interrupted write of synthetic_neural_data.h5" in lines
    assert not leftover.exists() and fit.recordings_path == str(target) and target.exists()
    assert [name for name in os.listdir(tmp_path) if ".tmp" in name] == []
