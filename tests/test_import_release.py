"""goaldriven-import's shared half on a stand-in family: a tiny importer of an .npz "release" of the digits model ->
a goaldriven directory that goaldriven-fit's restore and goaldriven-train's fine-tuning (WarmStart) take."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import gin
from goaldriven import checkpointing, cli_config, import_release
from goaldriven.importers import common
from goaldriven.tasks import warm_start
from tests import cli_testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = "experiments/digits__small_resnet8.gin"


def _tiny_assign(model, source, name):
    """A stand-in importer: the file's keys are the variables' paths (and an ignorable optimizer slot)."""
    del name
    arrays = np.load(source)
    plan = {v.path: common.Source(v.path) for v in model.variables}
    return common.assign_weights(
        model.variables,
        plan,
        arrays.files,
        arrays.__getitem__,
        origin=source,
        ignore=lambda key: key.endswith("/Momentum"),
    )


FAMILY = types.SimpleNamespace(
    RELEASED={"tiny": common.Released("tiny", "test", EXPERIMENT, files="made by the test")}, assign=_tiny_assign
)


def _built_model(config: str = EXPERIMENT):
    cli_config.parse_gin_config([config], clear=True)
    try:
        return cli_config.configured_task().build_model()
    finally:
        gin.clear_config()


def _restored(output: str):
    """What goaldriven-fit does with --gin_file=<output>/config.gin --checkpoint=<output>."""
    model = _built_model(os.path.join(output, "config.gin"))
    checkpointing.restore_model(model, output)
    return model


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """An .npz holding random values for every variable of the digits model, keyed by path."""
    model = _built_model()
    rng = np.random.default_rng(7)
    values = {v.path: rng.normal(size=v.shape).astype(np.float32) for v in model.variables}
    path = str(tmp_path_factory.mktemp("release") / "tiny.npz")
    np.savez(path, **values, **{"some/kernel/Momentum": np.zeros(3, np.float32)})
    return path, values


def test_a_converted_release_restores_as_a_goaldriven_checkpoint(release, tmp_path, capsys):
    source, values = release
    output = str(tmp_path / "imported")
    import_release.convert(FAMILY, source, "tiny", output)
    out = capsys.readouterr().out
    assert "ignored 1 optimizer/step entries" in out and "goaldriven-fit --gin_file=" in out
    assert sorted(os.listdir(output)) == ["checkpoints", "config.gin", "finetune.gin", "import.json"]
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]
    with open(os.path.join(output, "import.json")) as f:
        provenance = json.load(f)
    assert provenance["release"] == "tiny" and provenance["assigned_variables"] == len(values)
    assert provenance["source"][0]["file"] == source and provenance["source"][0]["bytes"] == os.path.getsize(source)
    assert f"include '{EXPERIMENT}'" in open(os.path.join(output, "config.gin")).read()

    for v in _restored(output).variables:
        np.testing.assert_array_equal(v.numpy(), values[v.path])

    # The same output again is refused before anything is read; the first import is untouched.
    before = sorted(os.listdir(os.path.join(output, "checkpoints")))
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        import_release.convert(FAMILY, source, "tiny", output)
    assert sorted(os.listdir(os.path.join(output, "checkpoints"))) == before


def test_a_mismatching_release_writes_nothing(release, tmp_path):
    source, values = release
    renamed = dict(values)
    first = sorted(renamed)[0]
    renamed[first + "_renamed"] = renamed.pop(first)
    path = str(tmp_path / "renamed.npz")
    np.savez(path, **renamed)
    with pytest.raises(common.WeightImportError) as info:
        import_release.convert(FAMILY, path, "tiny", str(tmp_path / "out"))
    message = str(info.value)
    assert f"match no goaldriven weight: {first}_renamed" in message
    assert f"missing from the file (renamed, or another model): {first} (for {first})" in message
    assert not os.path.exists(tmp_path / "out")


def test_warm_start_sets_the_models_weights_from_the_import(release, tmp_path):
    source, values = release
    output = import_release.convert(FAMILY, source, "tiny", str(tmp_path / "imported"), log=lambda line: None)
    model = _built_model()
    hook = warm_start.WarmStart(output)
    assert hook.build(types.SimpleNamespace(model=model)) == {}
    for v in model.variables:
        np.testing.assert_array_equal(v.numpy(), values[v.path])


def _train(*args):
    return subprocess.run(
        [sys.executable, "-m", "goaldriven.train", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_finetune_gin_trains_from_the_imported_weights(release, tmp_path):
    source, _ = release
    output = import_release.convert(FAMILY, source, "tiny", str(tmp_path / "imported"), log=lambda line: None)
    proc = _train(f"--gin_file={output}/finetune.gin", f"--workdir={tmp_path / 'ft'}", "--gin_bindings=TRAIN_STEPS = 2",
                  "--gin_bindings=STEPS_PER_LOOP = 2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"warm start: model weights from {output}/checkpoints/ckpt-0" in proc.stdout

    # The import folder itself is not a training workdir: the refusal says what to run instead, and writes nothing.
    files = sorted(os.listdir(output))
    proc = _train(f"--gin_file={output}/config.gin", f"--workdir={output}", "--mode=eval")
    assert proc.returncode == 2 and f"--gin_file={output}/finetune.gin --workdir=<new>" in proc.stderr
    assert sorted(os.listdir(output)) == files


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give one family first"),
        (("pytorch",), "give one family first"),
        (("convrnns", "--name=x", "--output=/tmp/x"), "--source is required"),
    ],
)
def test_bad_invocations_exit_with_one_line(args, message, capsys):
    family, flag_args = (args[0], args[1:]) if args else (None, ())
    argv = ["goaldriven-import", *flag_args]
    try:
        cli_testing.flags.FLAGS(argv)
        with pytest.raises(SystemExit) as exit_info:
            import_release.main(argv[:1] + ([family] if family else []))
    finally:
        cli_testing.flags.FLAGS.unparse_flags()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _main(argv: list[str], family: str) -> None:
    """goaldriven-import <family> with the flags of `argv`, as the console script runs it."""
    try:
        cli_testing.flags.FLAGS(argv)
        import_release.main(["goaldriven-import", family])
    finally:
        cli_testing.flags.FLAGS.unparse_flags()
        gin.clear_config()


def test_goaldriven_import_converts_a_released_convrnn_end_to_end(tmp_path, capsys):
    """`goaldriven-import convrnns` on a fabricated ugrnn_shallow release (channels / 16), then fit's restore."""
    from tests.importers import fabricate_tf1  # pylint: disable=g-import-not-at-top

    entries = fabricate_tf1.narrowed(fabricate_tf1.manifest()["ugrnn_shallow"], 16)
    prefix = fabricate_tf1.write(str(tmp_path / "ugrnn_shallow" / "model.ckpt"), entries)
    output = str(tmp_path / "converted")
    argv = ["goaldriven-import", f"--source={prefix}", "--name=ugrnn_shallow", f"--output={output}",
            "--gin_bindings=WIDTH_MULTIPLIER = 0.0625"]  # fmt: skip
    _main(argv, "convrnns")
    assert "ignored" in capsys.readouterr().out
    assert "WIDTH_MULTIPLIER = 0.0625" in open(os.path.join(output, "config.gin")).read()
    kernel = next(v for v in _restored(output).variables if v.path.endswith("conv1/pre_conv/kernel"))
    key, shape, trainable = next(e for e in entries if e[0] == "tnn_model/conv1/pre_0/weights_basenet")
    np.testing.assert_array_equal(kernel.numpy(), fabricate_tf1.value(key, shape, trainable))


def test_goaldriven_import_converts_a_mouse_vision_release_end_to_end(tmp_path, capsys):
    """`goaldriven-import mouse_vision` on a fabricated dual_stream_ir.pt (its experiment's IR model), then fit's
    restore; a Shi MouseNet release is refused with the reason."""
    from tests.importers import test_mouse_vision  # pylint: disable=g-import-not-at-top

    source = str(tmp_path / "dual_stream_ir.pt")
    values = test_mouse_vision.fabricate("dual_stream_ir", source)
    output = str(tmp_path / "converted")
    argv = ["goaldriven-import", f"--source={source}", "--name=dual_stream_ir", f"--output={output}"]
    _main(argv, "mouse_vision")
    out = capsys.readouterr().out
    assert "set 2 weights absent from the release to zero" in out
    assert "include 'experiments/instance_recognition__streamnet_dual.gin'" in open(f"{output}/config.gin").read()
    restored = {v.path: v.numpy() for v in _restored(output).variables}
    np.testing.assert_array_equal(restored["self_supervised/embedding/dense0/bias"], values["embedding_func"]["bias"])
    np.testing.assert_array_equal(
        restored["streamnet_dual/encoder/VISp_to_dorsal_bn2/moving_mean"],
        values["model_state_dict"]["model_layers.VISp_dorsal.5.running_mean"],
    )
    with open(f"{output}/import.json") as f:
        assert json.load(f)["zeroed_variables"] == ["streamnet_dual/readout/bias", "streamnet_dual/readout/kernel"]
    with pytest.raises(cli_config.ConfigError, match="Shi et al. MouseNet is not a goaldriven model yet"):
        import_release.convert(import_release.FAMILIES["mouse_vision"], source, "shi_mousenet_ir", str(tmp_path / "x"))
