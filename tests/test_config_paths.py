"""Configs are found from a checkout and from an installed package (the wheel ships gin/ as goaldriven/gin_configs)."""

import os
import subprocess
import sys
import zipfile

import pytest

from goaldriven import config_paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "experiments/path_integration__ugrnn_relu_place_cells.gin"


def test_checkout_resolution_accepts_both_spellings():
    for name in (NAME, "gin/" + NAME):
        path = config_paths.resolve_gin_file(name)
        assert os.path.samefile(path, os.path.join(REPO, "gin", NAME))


def test_missing_config_lists_where_it_looked():
    with pytest.raises(FileNotFoundError, match="looked in") as info:
        config_paths.resolve_gin_file("experiments/nope.gin")
    assert os.path.join("gin", "experiments", "nope.gin") in str(info.value)


@pytest.mark.slow
def test_installed_wheel_finds_its_configs(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("goaldriven-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "goaldriven/gin_configs/" + NAME in names
    assert "goaldriven/gin_configs/tasks/path_integration.gin" in names
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = "from goaldriven import config_paths as c; print(c.resolve_gin_file('%s')); print(c.gin_roots())" % NAME
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(site)},
    ).stdout
    assert str(site / "goaldriven" / "gin_configs" / NAME) in out


def test_a_local_file_shadowing_a_packaged_include_is_warned(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "zoo.gin").write_text("RUN_THIS = 1\n")
    experiment = os.path.join(REPO, "gin", "experiments", "digits__small_resnet8.gin")
    code = f"from goaldriven import cli_config; cli_config.parse_gin_config([{experiment!r}])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    warning = f"include 'models/zoo.gin' is read from {tmp_path / 'models' / 'zoo.gin'} in the current directory"
    assert warning in proc.stderr and os.path.join("gin", "models", "zoo.gin") in proc.stderr, proc.stderr[-2000:]
    assert config_paths.shadowed_includes([experiment]) == []  # from the checkout: nothing shadows


def test_outputs_follow_the_umask(tmp_path):
    from goaldriven import atomic_write  # pylint: disable=g-import-not-at-top

    previous = os.umask(0o027)
    try:
        atomic_write.write_json(str(tmp_path / "summary.json"), {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o640
