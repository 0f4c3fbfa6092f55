"""goaldriven-fit --ost end to end on a tiny checkpoint: per-image OSTs, the consistency summary, the scatter; bad OST
files and options fail in one line."""

import csv
import json
import os

import numpy as np
import pytest

from goaldriven import fit_neural
from goaldriven.neural_fits.data import ost_data
from goaldriven.neural_fits.data.neural_data import NeuralData, save_neural_data
from goaldriven.neural_fits.data.ost_data import OSTTargets
from goaldriven.neural_fits.pipeline import simulate_from_model
from tests import cli_testing

LAYERS = "stage1_block1,stage2_block1,stage3_block1"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return cli_testing.save_untrained_digits_checkpoint(str(tmp_path_factory.mktemp("train")))


def _fit(*args):
    cli_testing.run_entry_point(fit_neural.main, "goaldriven-fit", *args)


def _data(n_per=10, digits=(0, 1, 2, 3), seed=0):
    """Digits of 4 classes with random V4/IT responses in 10 ms bins (0-260 ms, 2 trials)."""
    rng = np.random.default_rng(seed)
    pixels, labels = simulate_from_model.digits_stimuli()
    index = np.concatenate([np.flatnonzero(labels == str(d))[:n_per] for d in digits])
    n, u = index.size, 6
    return NeuralData(
        responses=rng.normal(size=(n, 2 * u, 26, 2)).astype(np.float32),
        stimulus_ids=[f"digit{i:04d}" for i in index],
        unit_ids=[f"u{j}" for j in range(2 * u)],
        animal=["m"] * 2 * u,
        area=["V4"] * u + ["IT"] * u,
        time_bins_ms=np.stack([10.0 * np.arange(26), 10.0 * np.arange(26) + 10], axis=1),
        stimuli=pixels[index],
        stimulus_labels=labels[index],
    )


def _ost_file(folder, seed=0) -> str:
    data = _data(seed=seed)
    rng = np.random.default_rng(seed)
    n = data.num_stimuli
    defined = np.arange(n) % 5 != 0  # 8 images train the PLS-OST mapping
    targets = OSTTargets.create(rng.uniform(0.5, 1.5, n), np.where(defined, rng.uniform(80, 200, n), np.nan), defined)
    path = str(folder / "ost.h5")
    ost_data.save_ost_data(path, data, targets)
    return path


def test_ost_mode_writes_per_image_osts_consistency_and_scatter(checkpoint, tmp_path):
    workdir = tmp_path / "ost"
    _fit(
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        f"--neural_data={_ost_file(tmp_path)}",
        "--ost",
        f"--ost_layers={LAYERS}",
        "--n_splits=2",
        "--ost_train_per_class=5",
        "--ost_pca=16",
    )
    with open(workdir / "ost_summary.json") as f:
        summary = json.load(f)
    assert summary["layers"] == LAYERS.split(",")
    assert set(summary["variants"]) == {"uniform", "graded", "pls_uniform", "pls_graded"}
    # k = 3 layers, uniform: bin j -> layer floor(3 j / 19): 7, 6, 6 bins
    counts = [sum(next(iter(b)) == name for b in summary["assignment"]["uniform"]) for name in LAYERS.split(",")]
    assert counts == [7, 6, 6]
    for entry in summary["variants"].values():
        assert len(entry["consistency_per_split"]) == 2
        assert entry["pooled_consistency"] is None or -1 <= entry["pooled_consistency"] <= 1
    assert summary["images"] == {
        "total": 40,
        "evaluation (IT d' defined)": 32,
        "pls_training (IT d' undefined)": 8,
        "it_solved": 32,
    }
    with open(workdir / "ost_images.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and {"ost_graded", "ost_pls_uniform"} <= set(rows[0])
    assert all(r["it_ost_ms"] == "" for r in rows if r["it_dprime_defined"] == "0")
    assert os.path.getsize(workdir / "ost_scatter.png") > 1000
    assert os.path.exists(workdir / "features.h5")
    # Other options: written beside the first fit (fit.1/), which is kept; its features are reused.
    _fit(
        f"--checkpoint={checkpoint}",
        f"--workdir={workdir}",
        f"--neural_data={tmp_path / 'ost.h5'}",
        "--ost",
        f"--ost_layers={LAYERS}",
        "--n_splits=2",
        "--ost_train_per_class=5",
        "--ost_pca=16",
        "--ost_pls=false",
        "--ost_mappings=graded",
    )
    with open(workdir / "fit.1" / "ost_summary.json") as f:
        assert set(json.load(f)["variants"]) == {"graded"}
    with open(workdir / "ost_summary.json") as f:
        assert json.load(f) == summary
    assert sorted(p.name for p in workdir.glob("features*.h5")) == ["features.h5"]


def test_a_file_without_ost_targets_is_one_line_exit_2(checkpoint, tmp_path, capsys):
    path = str(tmp_path / "plain.h5")
    save_neural_data(path, _data())
    with pytest.raises(SystemExit) as info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={tmp_path / 'w'}", f"--neural_data={path}", "--ost")
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("goaldriven-fit: error: ")]
    assert len(lines) == 1 and "no root group 'ost'" in lines[0], lines


def test_without_ost_layers_the_layers_are_chosen_from_v4_and_it_units(checkpoint, tmp_path, capsys):
    data = _data()
    it_only = data.select_units(area="IT")  # no V4 units: the default layer choice cannot run
    rng = np.random.default_rng(0)
    n = it_only.num_stimuli
    path = str(tmp_path / "it_only.h5")
    ost_data.save_ost_data(path, it_only, OSTTargets.create(rng.uniform(0.5, 1.5, n), rng.uniform(80, 200, n)))
    with pytest.raises(SystemExit) as info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={tmp_path / 'w'}", f"--neural_data={path}", "--ost")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "needs V4" in err and "--ost_layers" in err, err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--ost", "--simulate=a=stem"), "--ost reads --neural_data"),
        (("--ost", "--neural_data=x.h5", "--ost_mappings=linear"), "non-empty subset of ('uniform', 'graded')"),
    ],
)
def test_bad_ost_options_fail_in_one_line(checkpoint, tmp_path, capsys, args, fragment):
    with pytest.raises(SystemExit) as info:
        _fit(f"--checkpoint={checkpoint}", f"--workdir={tmp_path}", *args)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err
