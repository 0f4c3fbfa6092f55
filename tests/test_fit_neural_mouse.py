"""goaldriven-fit as a Chapter 3 fit: --fit_gin=gin/fits/mouse_*.gin (or --mouse) on a tiny checkpoint with simulated
areas writes the Table 3.3 columns and the per-area plots; bad Chapter 3 options fail in one line."""

import json
import os

import pytest

from goaldriven import fit_neural
from tests import cli_testing

REPO = cli_testing.REPO
IMPORT = ["from __gin__ import dynamic_registration", "from goaldriven.neural_fits.pipeline import mouse_tables"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return cli_testing.save_untrained_digits_checkpoint(str(tmp_path_factory.mktemp("train")))


def _fit(*args):
    cli_testing.run_entry_point(fit_neural.main, "goaldriven-fit", *args)


def _common(checkpoint, workdir, areas="VISp=stage1_block1,VISrl=stage3_block1,VISl=stage3_block1"):
    return (
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        f"--simulate={areas}",
        "--layers=stage1_block1,stage3_block1",
        "--simulate_animals=2",
        "--simulate_units=4",
        "--simulate_noise=2",
        "--n_splits=2",
        "--n_boot=3",
    )


def test_fits_gin_writes_the_table_columns(checkpoint, tmp_path):
    workdir = tmp_path / "fit"
    fits_gin = os.path.join(REPO, "gin", "fits", "mouse_calcium.gin")
    bindings = [f"--gin_bindings={b}" for b in IMPORT + ["mouse_tables.Chapter3Fit.n_components = 3"]]
    _fit(*_common(checkpoint, workdir), f"--fit_gin={fits_gin}", *bindings)
    with open(workdir / "mouse_table.json") as f:
        columns = json.load(f)
    assert columns["column"] == "Calcium" and columns["excluded_areas"] == ["VISrl"]
    assert columns["areas"]["VISp"]["best_layer"] == "stage1_block1"
    assert columns["areas"]["VISl"]["best_layer"] == "stage3_block1"
    assert not columns["areas"]["VISrl"]["in_pooled"] and columns["pooled"]["n"] == 2 * 2 * 4  # VISp + VISl units
    with open(workdir / "summary.json") as f:
        summary = json.load(f)
    config = summary["config"]
    assert (config["train_fraction"], config["n_splits"], config["per_animal"]) == (0.5, 2, True)
    assert config["mapping_kwargs"] == {"n_components": 3} and set(summary["inter_animal_consistency"]) == {
        "VISp",
        "VISl",
        "VISrl",
    }
    for name in ("mouse_table.md", "mouse_areas.png", "predictivity_by_layer.png"):
        assert os.path.exists(workdir / name), name


def test_trained_on_flag_and_the_mapping_comparison(checkpoint, tmp_path):
    workdir = tmp_path / "fit"
    bindings = [f"--gin_bindings={b}" for b in IMPORT + ["mouse_tables.Chapter3Fit.n_components = 3"]]
    fits_gin = os.path.join(REPO, "gin", "fits", "mouse_neuropixels.gin")
    args = _common(checkpoint, workdir, areas="VISp=stage1_block1,VISl=stage3_block1")
    _fit(*args, f"--fit_gin={fits_gin}", *bindings, "--trained_on=cifar10", "--compare_mappings")
    with open(workdir / "mapping_comparison.json") as f:
        comparison = json.load(f)
    assert set(comparison["mappings"]) == {"pls", "ridge", "one_to_one", "rsa"}
    assert set(comparison["mappings"]["rsa"]) == {"VISp", "VISl"} and comparison["unit"]["rsa"] == "animals"
    with open(workdir / "mouse_table.json") as f:
        assert json.load(f)["excluded_areas"] == []
    assert os.path.exists(workdir / "mapping_comparison.png")


def test_bad_chapter3_options_fail_in_one_line(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _fit(*_common(checkpoint, tmp_path), "--mouse=calcium", "--train_fraction=1.5")
    assert exit_info.value.code == 2
    assert "train_fraction" in capsys.readouterr().err
