"""goaldriven-fit end to end on a checkpoint: simulated recordings of two layers, found again; one-line errors."""

import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from absl import flags

import gin
from goaldriven import fit_neural
from goaldriven.neural_fits.data import neural_data, synthetic
from tests import cli_testing

REPO = cli_testing.REPO


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return cli_testing.save_untrained_digits_checkpoint(str(tmp_path_factory.mktemp("train")))


def _fit(*args):
    cli_testing.run_entry_point(fit_neural.main, "goaldriven-fit", *args)


def test_simulated_layers_are_found_again(checkpoint, tmp_path):
    workdir = str(tmp_path / "fit")
    args = (
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        "--simulate=early=stage1_block1,late=stage3_block1",
        "--layers=stage1_block1,stage3_block1",
        "--simulate_animals=2",
        "--simulate_units=6",
        "--simulate_noise=3",
        "--mapping=ridge",
        "--n_splits=2",
        "--n_boot=6",
        "--spearman_brown=false",
    )
    _fit(*args)
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["best_layer"] == {"early": "stage1_block1", "late": "stage3_block1"}
    assert set(summary["inter_animal_consistency"]) == {"early", "late"}
    with open(os.path.join(workdir, "units.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 6 * 2  # areas x animals x units x layers
    assert os.path.exists(os.path.join(workdir, "predictivity_by_layer.png"))
    # Rerunning reuses the features and the simulated recordings instead of recomputing or overwriting them.
    _fit(*args)
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["best_layer"] == summary["best_layer"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--workdir=/tmp/x",), "--checkpoint is required"),
        (("--workdir=/tmp/x", "--checkpoint=/nonexistent"), "exactly one of --neural_data"),
        (("--workdir=/tmp/x", "--checkpoint=/nonexistent", "--simulate=a=stem"), "no checkpoint at /nonexistent"),
    ],
)
def test_bad_invocations_exit_with_one_line(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _fit(*(a.replace("/tmp/x", str(tmp_path)) for a in args))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_config_without_images_is_refused(capsys, tmp_path):
    argv = [
        "goaldriven-fit",
        f"--gin_file={os.path.join(REPO, 'gin', 'experiments', 'path_integration__quick.gin')}",
        f"--workdir={tmp_path}",
        f"--checkpoint={tmp_path}",
        "--simulate=a=b",
    ]
    try:
        flags.FLAGS(argv)
        with pytest.raises(SystemExit):
            fit_neural.main(argv[:1])
    finally:
        flags.FLAGS.unparse_flags()
        gin.clear_config()
    assert "has no input_spec (it takes no images)" in capsys.readouterr().err


def _error_line(err: str) -> str:
    """The one `goaldriven-fit: error:` line of stderr `err` (no traceback printed)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("goaldriven-fit: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _recordings(folder, damage: str) -> str:
    """A neural data file written by the library (64 stimuli, 2 areas x 4 animals x 4 units), then damaged."""
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "recordings.h5")
    neural_data.save_neural_data(path, synthetic.default_dataset(seed=0))
    with h5py.File(path, "a") as f:
        if damage == "format_version_string":
            f.attrs["format_version"] = "1"
        elif damage == "duplicate_stimulus_ids":
            ids = f["stimulus_ids"].asstr()[...]
            ids[5] = ids[3]
            del f["stimulus_ids"]
            f.create_dataset("stimulus_ids", data=ids.astype(object), dtype=h5py.string_dtype())
        elif damage == "constant_responses":
            f["responses"][...] = 1.0
        elif damage == "stimuli_outside":
            np.save(folder.parent / "images.npy", f["stimuli"][()])
            del f["stimuli"]
            f.attrs["stimuli_path"] = "../images.npy"
        chunk = f["responses"].id.get_chunk_info(0) if damage == "corrupted_chunk" else None
    if chunk is not None:
        with open(path, "r+b") as raw:
            raw.seek(chunk.byte_offset + chunk.size // 2)
            raw.write(b"\xff" * 64)
    return path


_QUICK = ("--layers=stem", "--mapping=ridge", "--n_splits=2", "--n_boot=2")


@pytest.mark.parametrize(
    "damage, fragments",
    [
        ("format_version_string", ["format_version is the string '1'", "reads the integer 1"]),
        ("duplicate_stimulus_ids", ["stimulus_ids must be unique", "'img0003' (stimulus ids)"]),
        ("corrupted_chunk", ["recordings.h5: dataset 'responses' cannot be read", "damaged"]),
        ("stimuli_outside", ["stimuli_path '../images.npy' leads to", "--allow_external_stimuli"]),
        ("constant_responses", ["every unit of area(s) ['IT', 'V4'] has constant responses", "zero variance"]),
    ],
)
def test_a_bad_data_file_is_one_line_exit_2(checkpoint, tmp_path, capsys, damage, fragments):
    path = _recordings(tmp_path / "data", damage)
    with pytest.raises(SystemExit) as exit_info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={tmp_path / 'fit'}", f"--neural_data={path}", *_QUICK)
    assert exit_info.value.code == 2
    line = _error_line(capsys.readouterr().err)
    for fragment in fragments:
        assert fragment in line, line


def test_allow_external_stimuli_follows_a_trusted_files_stimuli_path(checkpoint, tmp_path):
    path = _recordings(tmp_path / "data", "stimuli_outside")
    workdir = tmp_path / "fit"
    _fit(
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        f"--neural_data={path}",
        "--allow_external_stimuli",
        "--inter_animal=false",
        *_QUICK,
    )
    with open(workdir / "summary.json") as f:
        assert set(json.load(f)["best_layer"]) == {"IT", "V4"}


@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ("--simulate=V1=stem", "--mapping=pls", "--mapping_options=alpha=1"),
            ["mapping 'pls' does not accept option(s) ['alpha']", "n_components"],
        ),
        (("--simulate=V1",), ["--simulate takes area=layer", "['V1']"]),
        (("--simulate=V1=stem,IT",), ["--simulate takes area=layer", "['IT']"]),
    ],
)
def test_bad_options_fail_at_once_in_one_line(checkpoint, tmp_path, capsys, args, fragments):
    workdir = tmp_path / "fit"
    with pytest.raises(SystemExit) as exit_info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={workdir}", *args)
    assert exit_info.value.code == 2
    line = _error_line(capsys.readouterr().err)
    for fragment in fragments:
        assert fragment in line, line
    assert not workdir.exists()  # refused before anything was restored, extracted or written


def test_too_few_units_for_the_inter_animal_step_fail_before_the_layer_fits(checkpoint, tmp_path, capsys):
    args = ("--simulate=V1=stem", "--simulate_animals=2", "--simulate_units=5", "--layers=stem,pool")
    with pytest.raises(SystemExit) as exit_info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={tmp_path / 'fit'}", "--n_splits=2", "--n_boot=2", *args)
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    line = _error_line(out.err)
    assert "area V1: animal 'animal0' would be predicted from the 5 units of the other animals (pooled)" in line
    assert "needs >= 25 source units" in line
    assert "fit 1/" not in out.out  # no layer was fitted


_SIMULATE = (
    "--simulate=early=stage1_block1,late=stage3_block1",
    "--layers=stage1_block1,stage3_block1",
    "--simulate_animals=2",
    "--simulate_units=6",
    "--mapping=ridge",
    "--n_boot=4",
)


def test_a_second_fit_in_a_busy_workdir_is_refused_naming_the_first(checkpoint, tmp_path, capsys):
    workdir = tmp_path / "fit"
    holder = subprocess.Popen(  # the first process, holding the workdir as a running goaldriven-fit does
        [sys.executable, "-c", _HOLD, str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as exit_info:
            _fit(f"--checkpoint={checkpoint}", f"--workdir={workdir}", "--n_splits=2", *_SIMULATE)
        assert exit_info.value.code == 2
        line = _error_line(capsys.readouterr().err)
        assert f"{workdir} is in use by pid {holder.pid} on " in line and "(fit, started " in line, line
        assert "use another --workdir" in line
        assert sorted(os.listdir(workdir)) == [".goaldriven.lock"]  # nothing was extracted or written
    finally:
        holder.kill()
        holder.wait()


_HOLD = """
import sys, time
from goaldriven import workdir_lock
with workdir_lock.hold(sys.argv[1], "fit", print):
    print("held", flush=True)
    time.sleep(300)
"""


def _files(folder, names=("units.csv", "summary.json", "predictivity_by_layer.png", "synthetic_neural_data.h5")):
    return {name: (folder / name).read_bytes() for name in names}


def test_a_fit_with_other_options_is_written_beside_the_earlier_one(checkpoint, tmp_path, capsys):
    workdir = tmp_path / "fit"
    common = (f"--checkpoint={checkpoint}", f"--workdir={workdir}", *_SIMULATE)
    _fit(*common, "--n_splits=2")
    first = _files(workdir)
    capsys.readouterr()
    _fit(*common, "--n_splits=3")  # other options
    out = capsys.readouterr().out
    second = workdir / "fit.1"
    assert f"writing this one to {second} (the earlier files are kept)" in out and "config.n_splits differ" in out
    assert _files(workdir) == first  # the first fit's files are untouched
    with open(second / "summary.json") as f:
        assert json.load(f)["config"]["n_splits"] == 3
    assert f"wrote {second / 'units.csv'}" in out
    # The same options again: the same folder, rewritten with the same scores; nothing new beside.
    _fit(*common, "--n_splits=2")
    with open(workdir / "summary.json") as f:
        assert json.load(f) == json.loads(first["summary.json"])
    _fit(*common, "--n_splits=3")
    assert sorted(p for p in os.listdir(workdir) if p.startswith("fit.")) == ["fit.1"]
    assert "features: reusing" in capsys.readouterr().out  # every fit shares the workdir's feature cache


def test_the_aggregation_flag_reaches_the_summary(checkpoint, tmp_path):
    workdir = tmp_path / "fit"
    _fit(
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        "--n_splits=3",
        "--aggregation=mean_of_split_medians",
        *_SIMULATE,
    )
    with open(workdir / "summary.json") as f:
        summary = json.load(f)
    assert summary["aggregation"]["name"] == summary["config"]["aggregation"] == "mean_of_split_medians"
    entry = summary["areas"]["late"]["stage3_block1"]["70-170 ms"]
    assert entry["score"] != entry["noise_corrected"]["median"]  # scored by the per-split medians, not the median
