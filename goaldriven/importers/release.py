"""A converted release as a goaldriven checkpoint directory that goaldriven-fit and goaldriven-train take as their own.

    <output>/checkpoints/ckpt-0.*   the model's variables (goaldriven's checkpoint format, `checkpointing.py`)
    <output>/config.gin             the experiment that builds the model (+ bindings): pass it with --gin_file
    <output>/finetune.gin           config.gin plus the WarmStart hook: goaldriven-train from these weights
    <output>/import.json            provenance: family, release name, source files, what was assigned

Everything is written into `<output>.partial-<pid>` and renamed to `<output>` at the end, so an interrupted import
leaves no half-written directory behind, and an existing non-empty `<output>` is never touched.
"""

import datetime
import json
import os
import shutil

from goaldriven import checkpointing
from goaldriven.importers.common import ImportReport, Released


def check_output(output: str) -> None:
    """Refuses an output folder that exists and is not empty (nothing is overwritten)."""
    if os.path.isdir(output) and os.listdir(output):
        raise FileExistsError(
            f"--output={output} exists and is not empty; choose a new folder (nothing is overwritten)"
        )
    if os.path.exists(output) and not os.path.isdir(output):
        raise FileExistsError(f"--output={output} is a file; choose a new folder")


def _source_files(source: str) -> list[dict]:
    folder, stem = os.path.split(os.path.abspath(source))
    names = sorted(n for n in os.listdir(folder or ".") if n == stem or n.startswith(stem + "."))
    return [{"file": os.path.join(folder, n), "bytes": os.path.getsize(os.path.join(folder, n))} for n in names]


def gin_texts(output: str, released: Released, bindings: tuple[str, ...], source: str) -> dict[str, str]:
    """{file name: text} of config.gin and finetune.gin for a converted release."""
    output = os.path.abspath(output)
    header = (
        f"# {released.family} release {released.name!r}, converted by goaldriven-import from\n"
        f"# {os.path.abspath(source)}\n"
        f"# Score it:   goaldriven-fit --gin_file={output}/config.gin --checkpoint={output} --workdir=<fits> ...\n"
        f"# Fine-tune:  goaldriven-train --gin_file={output}/finetune.gin --workdir=<new run>\n"
    )
    lines = [f"include '{released.experiment}'", *released.bindings, *bindings]
    config = header + "\n".join(lines) + "\n"
    finetune = (
        f"# Fine-tuning of the {released.family} release {released.name!r}: its config, starting from its weights\n"
        "# (goaldriven/tasks/warm_start.py). Uses EXTRA_HOOKS: to add another file that sets EXTRA_HOOKS, list both\n"
        "# hooks in one binding.\n"
        "from __gin__ import dynamic_registration\n"
        "from goaldriven.tasks import warm_start\n"
        f"include '{output}/config.gin'\n"
        "EXTRA_HOOKS = [@warm_start.WarmStart()]\n"
        f"warm_start.WarmStart.checkpoint = '{output}'\n"
    )
    return {"config.gin": config, "finetune.gin": finetune}


def write(
    model, output: str, *, released: Released, source: str, report: ImportReport, bindings: tuple[str, ...] = ()
) -> str:
    """Saves `model` (weights already assigned) and its configs as the goaldriven directory `output`; returns it."""
    check_output(output)
    output = os.path.abspath(output)
    partial = f"{output}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)  # a leftover of this same pid only
    try:
        checkpointing.Checkpointer(partial, model=model).save(0)
        for name, text in gin_texts(output, released, bindings, source).items():
            with open(os.path.join(partial, name), "w", encoding="utf-8") as f:
                f.write(text)
        provenance = {
            "family": released.family,
            "release": released.name,
            "experiment": released.experiment,
            "bindings": [*released.bindings, *bindings],
            "source": _source_files(source),
            "where_to_get_it": released.files,
            "assigned_variables": report.assigned,
            "assigned_values": report.parameters,
            "ignored_entries": len(report.ignored),
            "zeroed_variables": list(report.zeroed),
            "converted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        with open(os.path.join(partial, "import.json"), "w", encoding="utf-8") as f:
            json.dump(provenance, f, indent=1)
        check_output(output)  # another process may have created it meanwhile
        if os.path.isdir(output):
            os.rmdir(output)  # empty (checked): rename needs it gone
        os.rename(partial, output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return output
