"""Checkpoints that resume exactly: model, optimizer and step (the step is the data state, see tasks/base.py).

`tf.train.CheckpointManager` writes each checkpoint's files under temporary names and then atomically rewrites the
`checkpoint` index file, so a run killed mid-save still resumes from the previous complete checkpoint. Under
MultiWorkerMirroredStrategy every worker must take part in a save; only the chief writes to the workdir, the others
write to a scratch folder that is deleted afterwards.
"""

import os
import shutil
from typing import Any, Callable

import tensorflow as tf


def model_variables(model) -> list:
    """Every variable of a Keras model (trainable or not), in the model's own (deterministic) order.

    TensorFlow's object-graph checkpoint only follows a Keras 3 model's attributes that it tracks itself; layers kept
    in Python lists (ResNet blocks, ConvRNN nodes) are not, and their variables (BN moving statistics, fixed backward
    kernels) would be silently left out. Saving the list of all variables makes the checkpoint complete whatever the
    model's structure; the order (not the auto-generated layer names) identifies them, so a model rebuilt in the same
    process restores too. A model of another architecture fails on the first mismatching shape.
    """
    return list(model.variables)


class Checkpointer:
    """Saves and restores a set of trackables (model, optimizer, step) in `<workdir>/checkpoints`.

    Every worker restores from `<workdir>/checkpoints`; a non-chief worker saves to its own scratch folder.
    """

    def __init__(
        self, workdir: str, *, is_chief: bool = True, worker_id: int = 0, max_to_keep: int = 3, **trackables: Any
    ):
        self.directory = os.path.join(workdir, "checkpoints")
        self.save_directory = (
            self.directory if is_chief else os.path.join(workdir, "checkpoints_scratch", f"worker_{worker_id}")
        )
        self.is_chief = is_chief
        model = trackables.get("model")
        if model is not None and hasattr(model, "variables") and "model_variables" not in trackables:
            trackables["model_variables"] = model_variables(model)
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.save_directory, max_to_keep=max_to_keep)

    @property
    def latest(self) -> str | None:
        """The newest complete checkpoint in the workdir."""
        return tf.train.latest_checkpoint(self.directory)

    def remove_interrupted_saves(self, log: Callable[[str], None] = print) -> None:
        """Deletes `ckpt-N_temp` folders that a save killed midway left behind (they are never read)."""
        for leftover in sorted(tf.io.gfile.glob(os.path.join(self.save_directory, "*_temp"))):
            log(f"note: removing {leftover}, the remains of a checkpoint save that was interrupted")
            tf.io.gfile.rmtree(leftover)

    def restore_latest(self, log: Callable[[str], None] = print) -> str | None:
        """Restores the newest intact checkpoint, if any (a corrupted newer one is skipped with a warning).

        Raises ValueError naming the fix when a checkpoint does not match the model, or when none is intact.
        """
        candidates = checkpoint_prefixes(self.directory)
        for path in reversed(candidates):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
                raise ValueError(
                    f"checkpoint {path} does not match the model being trained ({type(e).__name__}: "
                    f"{str(e)[:300]}). The workdir holds a run of a different configuration: use a new --workdir, "
                    "or the config that made it."
                ) from e
            except Exception as e:  # pylint: disable=broad-except  Unreadable files: try the next older checkpoint.
                log(
                    f"warning: checkpoint {path} is unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                    "falling back to the one before it"
                )
                continue
            return path
        if candidates:
            raise ValueError(
                f"every checkpoint in {self.directory} is unreadable (corrupted files); move them away to start "
                "from scratch, or use a new --workdir."
            )
        return None

    def save(self, step: int) -> str:
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            remove_scratch(self.save_directory)
        return path


def checkpoint_prefixes(directory: str) -> list[str]:
    """The checkpoints in `directory` (prefixes with an index file), oldest first by step."""
    prefixes = [path[: -len(".index")] for path in tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index"))]
    numbered = [(int(p.rsplit("-", 1)[1]), p) for p in prefixes if p.rsplit("-", 1)[1].isdigit()]
    return [p for _, p in sorted(numbered)]


def remove_scratch(directory: str) -> None:
    """Deletes a non-chief worker's scratch folder, and its parent once no other worker's is left."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(directory))
    except OSError:
        pass  # Another worker's scratch folder is still there.


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix, a `checkpoints/` folder or a training workdir (its newest checkpoint)."""
    for folder in (path, os.path.join(path, "checkpoints")):
        if tf.io.gfile.isdir(folder):
            latest = tf.train.latest_checkpoint(folder)
            if latest:
                return latest
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise FileNotFoundError(
        f"no checkpoint at {path}: pass a training --workdir, its checkpoints/ folder or a prefix such as "
        f"<workdir>/checkpoints/ckpt-500 (train first with goaldriven-train)."
    )


def restore_model(model, path: str) -> str:
    """Restores a built model's variables (only them: no optimizer) from a training checkpoint; returns the prefix."""
    prefix = resolve_checkpoint(path)
    checkpoint = tf.train.Checkpoint(model_variables=model_variables(model))
    try:
        checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise ValueError(
            f"checkpoint {prefix} does not match the model built from the gin config ({type(e).__name__}: "
            f"{str(e)[:300]}). Pass the gin files the checkpoint was trained with."
        ) from e
    return prefix
