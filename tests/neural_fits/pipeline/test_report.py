"""Report files: written atomically, and drawn without pyplot (importing the module chooses no matplotlib backend)."""

import os
import subprocess
import sys

from goaldriven.neural_fits.pipeline import report


def test_importing_the_report_loads_no_pyplot_and_sets_no_backend():
    code = (
        "import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none(); "
        "import goaldriven.neural_fits.pipeline.report; "
        "print('matplotlib.pyplot' in sys.modules, matplotlib.rcParams._get_backend_or_none() == before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_plots_are_written_whole_and_leave_no_temporary_file(tmp_path):
    stats = {"noise_corrected": {"median": 0.5, "sem": 0.1}, "raw": {"median": 0.4, "sem": 0.1}}
    summary = {
        "areas": {"IT": {"layer1": {"60 ms": stats, "70 ms": stats}, "layer2": {"60 ms": stats, "70 ms": stats}}},
        "best_layer": {"IT": "layer2"},
        "inter_animal_consistency": {"IT": {"60 ms": {"median": 0.6}, "70 ms": {"median": 0.7}}},
    }
    report.plot_by_layer(summary, str(tmp_path / "by_layer.png"))
    assert report.plot_time_courses(summary, str(tmp_path / "courses.png"))
    assert sorted(os.listdir(tmp_path)) == ["by_layer.png", "courses.png"]
    for name in ("by_layer.png", "courses.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
