"""goaldriven-identify end to end on a tiny grid: two workers share the runs, then `analyze` writes the report."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GRID = """from __gin__ import dynamic_registration
from goaldriven.identification import grid

GRID_ROOT = '/tmp/unused'
grid.GridSpec:
  root = %GRID_ROOT
  tasks = {'digits': ['identification/small_digits.gin']}
  architectures = {'digits': {'knet4': ["MODEL = 'knet4'"]}}
  rules = {'sgdm': ['rules/chapter6/sgdm.gin'], 'adam': ['rules/chapter6/adam.gin']}
  batch_sizes = [16]
  model_seeds = [None, 0]
  dataset_seeds = [None]
  bindings = ['EPOCHS = 2', 'NUM_TRAIN_EXAMPLES = 64', 'OBSERVABLES_EPOCHS = [0, 1, 2]', 'TEST_FRACTION = 0.1']
  overrides = {'*/*/sgdm': ['BASE_LEARNING_RATE = 0.05', 'REFERENCE_BATCH_SIZE = 64']}
  layer_counts = {'digits': {'knet4': 4}}
"""


def _identify(*args, **kwargs):
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "goaldriven.identify", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.mark.slow
def test_workers_then_analyze(tmp_path):
    grid_file = tmp_path / "grid.gin"
    grid_file.write_text(GRID)
    root = str(tmp_path / "runs")
    common = [f"--grid={grid_file}", f"--root={root}"]
    expanded = _identify("expand", *common, timeout=120)
    assert expanded.returncode == 0, expanded.stderr[-2000:]
    assert "4 runs under" in expanded.stdout and "examples: 16 (8 per rule" in expanded.stdout
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "goaldriven.identify", "worker", *common, "--in_process", f"--worker_name=w{i}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trained = sum(int(o.split("trained ")[1].split(",")[0]) for o in outputs if "trained " in o)
    assert trained == 4, outputs  # every run trained exactly once between the two workers
    status = _identify("status", *common, timeout=120)
    assert "finished: 4" in status.stdout, status.stdout
    report = tmp_path / "report"
    analyzed = _identify(
        "analyze",
        *common,
        f"--output_dir={report}",
        "--classifiers=rf",
        "--n_splits=2",
        "--parts=measures",
        timeout=300,
    )
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    with open(report / "results.json") as f:
        results = json.load(f)
    assert results["n_examples"] == 16 and results["runs"] == 4 and results["rules"] == ["adam", "sgdm"]
    assert len(results["measures"]["rf"]["all"]["accuracy"]) == 2
    assert (report / "tables.md").exists() and (report / "figures" / "accuracy_by_measure.png").stat().st_size > 0


def test_unfinished_grid_is_refused_in_one_line(tmp_path):
    grid_file = tmp_path / "grid.gin"
    grid_file.write_text(GRID)
    result = _identify(
        "analyze", f"--grid={grid_file}", f"--root={tmp_path / 'none'}", f"--output_dir={tmp_path / 'r'}", timeout=120
    )
    assert result.returncode == 2
    assert "4 of 4 runs are not finished" in result.stderr and "--allow_partial" in result.stderr
