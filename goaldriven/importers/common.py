"""What every importer of released weights shares: a plan (goaldriven variable -> source key + conversion), one check
that names every mismatch at once, and the description of a released file.

An importer builds a `plan` {keras variable path: Source} for a built goaldriven model and calls `assign_weights`
with a reader of the released file. Nothing is assigned unless everything matches:
  - a goaldriven weight without a source (left unassigned),
  - a planned source key missing from the file (renamed in the file, or a different model),
  - a key in the file that nothing reads and that the importer does not declare ignorable (optimizer slots, step),
  - a shape that differs after conversion,
are all collected and raised together as one `WeightImportError`, whose first line says what to do.
"""

import dataclasses
import os
import time
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

_SHOWN = 12  # names listed per kind of mismatch; the count says how many more


class WeightImportError(ValueError):
    """A released file does not match the goaldriven model it is imported into (the message lists the names)."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one goaldriven weight comes from: a key of the released file and the conversion to Keras layout."""

    key: str | None  # None: a weight the release does not have, set to zero (declared in the plan, never implied)
    convert: Callable[[np.ndarray], np.ndarray] | None = None
    note: str = ""  # e.g. "OIHW -> HWIO": shown in a shape mismatch


@dataclasses.dataclass(frozen=True)
class Released:
    """One released file as goaldriven imports it.

    name: the release's own model name (e.g. "rgc_intermediate", "dual_stream_ir", "UGRNN_relu").
    family: "convrnns", "mec" or "mouse_vision".
    experiment: the gin experiment (repo- or package-relative) whose task builds the matching goaldriven model;
      the converted checkpoint trains and fits with it.
    bindings: gin bindings added to the experiment (e.g. the model size the release used).
    files: what the user downloads, and from where (nothing here downloads).
    """

    name: str
    family: str
    experiment: str
    bindings: tuple[str, ...] = ()
    files: str = ""


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What `assign_weights` did."""

    origin: str
    assigned: int  # goaldriven variables set
    parameters: int  # scalars set
    ignored: tuple[str, ...]  # file keys deliberately not read (optimizer slots, step counters)
    seconds: float
    zeroed: tuple[str, ...] = ()  # goaldriven weights the release does not have, set to zero (declared by the plan)

    def summary(self) -> str:
        zeroed = f"; set {len(self.zeroed)} weights absent from the release to zero" if self.zeroed else ""
        return (
            f"{self.origin}: assigned {self.assigned} variables ({self.parameters:,} values) in {self.seconds:.1f} s; "
            f"ignored {len(self.ignored)} optimizer/step entries{zeroed}"
        )


def _listed(names: Sequence[str]) -> str:
    names = sorted(names)
    more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def variables_by_path(variables: Iterable) -> dict[str, object]:
    """{variable.path: variable}; duplicate paths are a programming error (the plan could not tell them apart)."""
    out: dict[str, object] = {}
    for v in variables:
        if v.path in out:
            raise ValueError(f"two variables share the path {v.path!r}; give their layers distinct names")
        out[v.path] = v
    return out


def assign_weights(
    model_variables: Iterable,
    plan: Mapping[str, Source],
    keys: Iterable[str],
    read: Callable[[str], np.ndarray],
    *,
    origin: str,
    ignore: Callable[[str], bool] = lambda key: False,
) -> ImportReport:
    """Assigns every variable of `model_variables` from `read(plan[path].key)` after checking everything (see module).

    keys: every key in the released file; read(key): its value as a NumPy array.
    origin: the file, for messages. ignore(key): keys the release may hold that no goaldriven weight needs.
    """
    start = time.perf_counter()
    targets = variables_by_path(model_variables)
    stray = [path for path in plan if path not in targets]
    if stray:
        raise ValueError(f"the import plan names variables the model does not have: {_listed(stray)}")
    keys = set(keys)
    problems = []
    unassigned = [path for path in targets if path not in plan]
    if unassigned:
        problems.append(f"goaldriven weights with no source in the file: {_listed(unassigned)}")
    missing = [
        f"{source.key} (for {path})"
        for path, source in plan.items()
        if source.key is not None and source.key not in keys
    ]
    if missing:
        problems.append(f"variables missing from the file (renamed, or another model): {_listed(missing)}")
    used = {source.key for source in plan.values()}
    ignored = tuple(sorted(k for k in keys if k not in used and ignore(k)))
    unmatched = [k for k in keys if k not in used and not ignore(k)]
    if unmatched:
        problems.append(f"variables in the file that match no goaldriven weight: {_listed(unmatched)}")
    values = {}
    if not missing:
        mismatched = []
        for path, source in plan.items():
            if source.key is None:
                values[path] = np.zeros(tuple(targets[path].shape), np.float32)
                continue
            value = np.asarray(read(source.key))
            converted = source.convert(value) if source.convert is not None else value
            expected = tuple(targets[path].shape)
            if tuple(converted.shape) != expected:
                note = f" after {source.note}" if source.note else ""
                mismatched.append(
                    f"{source.key} {tuple(value.shape)}{note} -> {tuple(converted.shape)} vs {path} {expected}"
                )
            values[path] = converted
        if mismatched:
            problems.append(f"shape mismatches: {_listed(mismatched)}")
    if problems:
        raise WeightImportError(
            f"{origin} does not match the goaldriven model (check the model name and build options): "
            + "; ".join(problems)
        )
    for path, value in values.items():
        variable = targets[path]
        variable.assign(value.astype(variable.dtype, copy=False))
    return ImportReport(
        origin=origin,
        assigned=len(values),
        parameters=int(sum(np.prod(v.shape, dtype=np.int64) for v in values.values())),
        ignored=ignored,
        seconds=time.perf_counter() - start,
        zeroed=tuple(sorted(path for path, source in plan.items() if source.key is None)),
    )


def check_constant(origin: str, key: str, value: np.ndarray, expected: float, *, atol: float = 0.0) -> None:
    """A frozen value of the release that goaldriven keeps as a constant must equal it (never silently dropped)."""
    value = np.asarray(value, np.float64)
    if value.size == 0 or not np.all(np.abs(value - expected) <= atol):
        raise WeightImportError(
            f"{origin}: {key} is {value.ravel()[:4].tolist()} but the goaldriven model fixes it at {expected}; this "
            "release was trained with another setting: build the model with that option, or it cannot be imported"
        )


def open_tf_checkpoint(prefix: str, fix: str):
    """A `tf.train.load_checkpoint` reader of a TF checkpoint prefix (the releases have no `checkpoint` state file).

    A folder, one file of a checkpoint, a missing `.index` or `.data-*` file and an unreadable checkpoint are one-line
    errors ending with `fix` (what to pass instead).
    """
    prefix = os.fspath(prefix)
    if tf.io.gfile.isdir(prefix):
        found = sorted(n[: -len(".index")] for n in tf.io.gfile.listdir(prefix) if n.endswith(".index"))
        hint = f"; it holds {', '.join(os.path.join(prefix, n) for n in found)}" if found else ""
        raise FileNotFoundError(f"{prefix} is a folder, not a checkpoint prefix: {fix}{hint}")
    stem, dot, suffix = prefix.rpartition(".")
    if dot and (suffix in ("index", "meta") or suffix.startswith("data-")) and tf.io.gfile.exists(stem + ".index"):
        raise FileNotFoundError(f"{prefix} is one file of a checkpoint: pass its prefix {stem}")
    if not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(f"no checkpoint at {prefix} ({prefix}.index does not exist): {fix}")
    if not tf.io.gfile.glob(prefix + ".data-*"):
        raise FileNotFoundError(f"{prefix}.index exists but no {prefix}.data-* file does: download it too ({fix})")
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        first = str(e).strip().split("\n")[0]
        raise WeightImportError(f"{prefix} is not a readable TF checkpoint ({first}); {fix}") from e
