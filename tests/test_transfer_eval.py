"""goaldriven-transfer end to end on a checkpoint: fabricated HvM and a mock DTD -> the five-task table and figure."""

import json
import os

import pytest

import gin
from goaldriven import cli_config, transfer_eval
from tests import cli_testing
from tests.transfer import fabricated


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return cli_testing.save_untrained_digits_checkpoint(str(tmp_path_factory.mktemp("train")))


@pytest.fixture(scope="module")
def hvm_file(tmp_path_factory):
    return fabricated.write_hvm(str(tmp_path_factory.mktemp("hvm") / "hvm.h5"), per_level=(3, 8, 8))


def _run(*args):
    cli_testing.run_entry_point(transfer_eval.main, "goaldriven-transfer", *args)


def test_five_tasks_from_a_checkpoint(checkpoint, hvm_file, tmp_path, capsys):
    workdir = str(tmp_path / "transfer")
    args = (
        f"--checkpoint={checkpoint}",
        f"--hvm={hvm_file}",
        f"--dtd_data_dir={tmp_path / 'tfds'}",
        f"--workdir={workdir}",
        "--n_splits=2",
        "--cv_folds=3",
        "--max_components=40",
        "--global_batch_size=32",
    )
    with fabricated.mock_dtd(classes=3, per_split=6):
        _run(*args)
    out = capsys.readouterr().out
    assert "transfer: categorization" in out and "best layer" in out
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert set(results["best"]) == {"categorization", "position", "pose", "size", "texture"}
    layers = results["layers"]["categorization"]
    assert len(layers) > 1  # every feature the model returns
    assert any(entry["features"] > 40 and entry["components"] == 40 for entry in layers.values())  # PCA used
    assert all(len(entry["per_split"]) == 2 for entry in layers.values())
    assert results["best"]["categorization"]["mean"] > 2 * results["chance"]["categorization"]  # planted: 4 categories
    assert results["best"]["texture"]["mean"] > 2 * results["chance"]["texture"]  # brightness codes the class
    assert results["best"]["position"]["mean"] > 0.3 and results["best"]["size"]["mean"] > 0.3
    table = open(os.path.join(workdir, "table.md")).read()
    assert "| categorization | accuracy |" in table
    assert os.path.getsize(os.path.join(workdir, "transfer.png")) > 1000

    # A rerun resumes: features and scores are reused, nothing is refitted.
    with fabricated.mock_dtd(classes=3, per_split=6):
        _run(*args)
    out = capsys.readouterr().out
    assert "resuming; 25 (task, layer) results" in out and " dims, " not in out  # no readout fitted again
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["best"] == results["best"]

    # Other options never overwrite the first run: they go to run.1/.
    _run(*args[:4], "--tasks=size", "--n_splits=1", "--cv_folds=3", "--max_components=40")
    assert os.path.exists(os.path.join(workdir, "run.1", "results.json"))
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["best"] == results["best"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--workdir=/tmp/x",), "--checkpoint is required"),
        (("--workdir=/tmp/x", "--checkpoint=/c"), "the HvM tasks need --hvm"),
        (("--workdir=/tmp/x", "--checkpoint=/c", "--tasks=color"), "tasks must be some of"),
        (("--workdir=/tmp/x", "--checkpoint=/c", "--hvm=/nonexistent.h5"), "does not exist"),
        (("--workdir=/tmp/x", "--checkpoint=/nonexistent", "--tasks=texture"), "no checkpoint at /nonexistent"),
    ],
)
def test_bad_invocations_exit_with_one_line(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _run(*(a.replace("/tmp/x", str(tmp_path)) for a in args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_entry_point_ignores_a_config_locked_earlier_in_the_process(capsys, tmp_path):
    """A notebook (or an earlier test) that parsed and locked a config must not leak into the program's own."""
    cli_config.parse_gin_config([cli_testing.DIGITS_EXPERIMENT], clear=True)  # a finished parse locks the config
    assert gin.config_is_locked()
    with pytest.raises(SystemExit):
        _run(f"--workdir={tmp_path}", "--checkpoint=/nonexistent", "--tasks=texture")
    err = capsys.readouterr().err
    assert "no checkpoint at /nonexistent" in err and "locked" not in err
