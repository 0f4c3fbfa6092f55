"""goaldriven-fit --mec_data end to end on a tiny path integrator checkpoint and simulated MEC rate maps."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import gin
from goaldriven import checkpointing, cli_config, fit_neural
from goaldriven.neural_fits.mec import ratemap_file, walkthrough
from tests import cli_testing

GIN = [
    os.path.join(cli_testing.REPO, "gin", "experiments", "path_integration__quick.gin"),
    os.path.join(cli_testing.REPO, "gin", "testing", "smoke.gin"),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained smoke-sized UGRNN path integrator (8 units) saved as a training run saves it."""
    workdir = str(tmp_path_factory.mktemp("train"))
    cli_config.parse_gin_config(GIN, clear=True)
    try:
        task = cli_config.configured_task()
        model = task.build_model()
        batch = task.make_batch(task.trajectories, 2)(tf.constant(0, tf.int64), tf.constant([0, 0], tf.int64))
        task.forward(model, batch)
        checkpointing.Checkpointer(workdir, model=model).save(0)
    finally:
        gin.clear_config()
    return workdir


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    env, _, _ = walkthrough.simulate_box(n_animals=3, cells_per_animal=4, box=1.0, bin_size=0.1, seed=0)
    track, _, _ = walkthrough.simulate_track(n_sessions=2, cells=2, length=1.0, trials_per_map=4)
    return ratemap_file.write_ratemaps(str(tmp_path_factory.mktemp("data") / "mec.h5"), [env, track])


def _fit(*args):
    argv = ["goaldriven-fit", *(f"--gin_file={g}" for g in GIN), *args]
    try:
        flags.FLAGS(argv)
        fit_neural.main(argv[:1])
    finally:
        flags.FLAGS.unparse_flags()
        gin.clear_config()


def test_fit_writes_the_chapter4_report(checkpoint, data, tmp_path):
    workdir = tmp_path / "fit"
    _fit(
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        f"--mec_data={data}",
        "--mec_environment=box100_simulated",
        "--mec_transform=ridge",
        "--mec_compare=one_to_one,ridge",
        "--mec_batches=8",
        "--mec_batch_size=16",
        "--n_splits=2",
    )
    with open(workdir / "mec_summary.json") as f:
        summary = json.load(f)
    maps = np.load(workdir / "model_ratemaps.npz")
    assert summary["best_layer"] in maps.files and maps[summary["best_layer"]].shape[1:] == (10, 10)
    assert summary["options"]["n_splits"] == 2 and summary["options"]["train_fraction"] == 0.2
    assert set(summary["inter_animal"]) == {"one_to_one", "ridge"} and summary["n_cells"] == 12
    assert {"ks", "p_value"} <= set(summary["ks"]["grid"]) or "error" in summary["ks"]["grid"]
    with open(workdir / "mec_units.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and f"pred_{summary['best_layer']}" in rows[0]
    assert os.path.getsize(workdir / "fig4_1.png") > 0 and os.path.getsize(workdir / "score_distributions.png") > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("--mec_environment=nope",), "no environment 'nope'"),
        (("--mec_environment=track_simulated",), "model rate maps are made in a box only"),
        (("--mec_environment=box100_simulated", "--mec_compare=lars"), "unknown MEC transform 'lars'"),
        (("--mec_environment=box100_simulated", "--simulate=a=b"), "--mec_data is a fit of its own"),
    ],
)
def test_bad_mec_invocations_exit_with_one_line(checkpoint, data, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={tmp_path}", f"--mec_data={data}", *args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
