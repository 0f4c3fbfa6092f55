"""Convert a released trained network of the thesis into a goaldriven checkpoint directory (nothing is downloaded).

  goaldriven-import convrnns --source=/data/rgc_intermediate/model.ckpt --name=rgc_intermediate --output=/tmp/rgc
  goaldriven-import mec --source=/data/UGRNN_relu/ckpts/ckpt-101 --name=UGRNN_relu --output=/tmp/mec
  goaldriven-import mouse_vision --source=/data/dual_stream_ir.pt --name=dual_stream_ir --output=/tmp/dual
  goaldriven-import convrnns --list        (the releases each family knows, and where users get the files)

Then `goaldriven-fit --gin_file=/tmp/rgc/config.gin --checkpoint=/tmp/rgc ...` scores it and
`goaldriven-train --gin_file=/tmp/rgc/finetune.gin --workdir=/tmp/rgc_finetuned` fine-tunes it. A thin wrapper:
flags -> the release's gin experiment -> its task's model -> goaldriven.importers.<family>.assign ->
goaldriven.importers.release.write -> one-line errors.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Hide TensorFlow's C++ start-up notices (before importing it).

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from goaldriven import cli_config  # pylint: disable=g-import-not-at-top
from goaldriven.importers import common, convrnns, mec, mouse_vision, release  # pylint: disable=g-import-not-at-top

PROG = "goaldriven-import"
FAMILIES = {"convrnns": convrnns, "mec": mec, "mouse_vision": mouse_vision}
_SOURCE = flags.DEFINE_string(
    "source",
    None,
    "The released file: a TF checkpoint prefix (.../model.ckpt, .../ckpts/ckpt-101) or a .pt file (mouse_vision).",
)
_NAME = flags.DEFINE_string("name", None, "The release's model name (see --list), e.g. rgc_intermediate.")
_OUTPUT = flags.DEFINE_string("output", None, "New folder for the goaldriven checkpoint and its gin configs.")
_LIST = flags.DEFINE_bool("list", False, "List the family's releases and where to get them, then exit.")
_BINDINGS = cli_config.shared_flag(
    flags.DEFINE_multi_string, "gin_bindings", [], "Extra gin bindings written into config.gin (repeatable)."
)


def _family(argv: list[str]):
    if len(argv) != 2 or argv[1] not in FAMILIES:
        cli_config.fail(PROG, f"give one family first: {PROG} {{{','.join(FAMILIES)}}} --source=... (got {argv[1:]})")
    return FAMILIES[argv[1]]


def _list(module) -> None:
    for name, entry in module.RELEASED.items():
        print(f"{name}: {entry.experiment}{' ' + ' '.join(entry.bindings) if entry.bindings else ''}")
        if entry.files:
            print(f"  files: {entry.files}")
    for name, reason in getattr(module, "NOT_SUPPORTED", {}).items():
        print(f"{name}: not importable: {reason}")


def convert(module, source: str, name: str, output: str, bindings: tuple[str, ...] = (), log=print) -> str:
    """The whole conversion (a library call for notebooks): returns the written folder. Raises ConfigError,
    WeightImportError, FileNotFoundError or FileExistsError with one-line messages."""
    if name in getattr(module, "NOT_SUPPORTED", {}):
        raise cli_config.ConfigError(f"{name}: {module.NOT_SUPPORTED[name]}")
    if name not in module.RELEASED:
        raise cli_config.ConfigError(f"unknown release {name!r}; this family has: {', '.join(module.RELEASED)}")
    released = module.RELEASED[name]
    release.check_output(output)  # before the (long) build and read
    cli_config.parse_gin_config([released.experiment], [*released.bindings, *bindings], clear=True)
    start = time.perf_counter()
    model = cli_config.configured_task().build_model()
    log(f"built {released.experiment} ({model.count_params():,} parameters) in {time.perf_counter() - start:.1f} s")
    report = module.assign(model, source, name)
    log(report.summary())
    written = release.write(model, output, released=released, source=source, report=report, bindings=bindings)
    log(f"wrote {written}: checkpoints/, config.gin, finetune.gin, import.json")
    log(f"score it:  goaldriven-fit --gin_file={written}/config.gin --checkpoint={written} --workdir=<fits> ...")
    log(f"fine-tune: goaldriven-train --gin_file={written}/finetune.gin --workdir=<new run>")
    return written


def main(argv: list[str]) -> None:
    module = _family(argv)
    if _LIST.value:
        _list(module)
        return
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    for flag in (_SOURCE, _NAME, _OUTPUT):
        if not flag.value:
            cli_config.fail(PROG, f"--{flag.name} is required (see --help; --list shows the releases).")
    try:
        convert(module, _SOURCE.value, _NAME.value, _OUTPUT.value, tuple(_BINDINGS.value))
    except (cli_config.ConfigError, common.WeightImportError, FileNotFoundError, FileExistsError) as e:
        cli_config.fail(PROG, cli_config.one_line(e))


def run_main() -> None:
    """Console-script entry point (goaldriven-import)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
