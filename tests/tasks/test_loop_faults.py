"""The loop under faults: diverging weights, corrupted or interrupted checkpoints, a truncated metrics.json, a busy,
file or unwritable workdir, and an evaluation of a read-only archive that writes nothing into it."""

import glob
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import workdir_lock
from goaldriven.tasks import loop
from tests import strategies
from tests.tasks import toy_tasks


def _run(workdir, **overrides):
    kwargs = dict(
        task=toy_tasks.LinearTask(),
        strategy=strategies.one_device(),
        workdir=str(workdir),
        train_steps=4,
        global_batch_size=4,
        steps_per_loop=1,
        checkpoint_every=2,
        learning_rate=1e-2,
        evaluate_at_end=False,
        log=lambda _: None,
    )
    return loop.run(**{**kwargs, **overrides})


class _exploding(keras.optimizers.schedules.LearningRateSchedule):  # noqa: N801
    """A learning rate that is sane for `after_steps` updates, then infinite: the next update makes the weights
    non-finite while the loss of that step (computed before it) is still finite."""

    def __init__(self, after_steps):
        self.after_steps = after_steps

    def __call__(self, step):
        return tf.where(step < self.after_steps, 1e-3, float("inf"))


def _saved_values(workdir):
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    return [reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n.endswith("VARIABLE_VALUE")]


def test_an_exploding_update_is_never_checkpointed_and_the_message_names_a_finite_checkpoint(tmp_path):
    # Update 4 overflows: the old loop saved ckpt-4 from those weights and called it good.
    with pytest.raises(loop.NonFiniteLossError, match=r"ckpt-2 \(step 2\), whose weights are finite"):
        _run(tmp_path, train_steps=10, learning_rate=_exploding(3), optimizer=keras.optimizers.SGD)
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints")).endswith("ckpt-2")
    assert all(np.isfinite(v).all() for v in _saved_values(tmp_path))


def test_divergence_before_any_checkpoint_says_to_rerun_from_scratch(tmp_path):
    with pytest.raises(loop.NonFiniteLossError, match="before any checkpoint was written.*rerun from scratch"):
        _run(tmp_path, train_steps=10, learning_rate=_exploding(0), optimizer=keras.optimizers.SGD)
    assert not glob.glob(os.path.join(tmp_path, "checkpoints", "ckpt-*"))


def test_a_corrupted_newest_checkpoint_falls_back_to_the_one_before_and_interrupted_saves_are_removed(tmp_path):
    _run(tmp_path, train_steps=4)  # ckpt-2 and ckpt-4
    (data,) = glob.glob(os.path.join(tmp_path, "checkpoints", "ckpt-4.data-*"))
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    leftover = tmp_path / "checkpoints" / "ckpt-6_temp"
    leftover.mkdir()
    (leftover / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"partial")
    lines = []
    result = _run(tmp_path, train_steps=6, log=lines.append)
    assert result["status"] == "finished" and result["step"] == 6
    assert any("ckpt-4 is unreadable" in line and "falling back" in line for line in lines), lines
    assert any("resumed from" in line and line.rstrip().endswith("at step 2") for line in lines), lines
    assert any("ckpt-6_temp" in line and "interrupted" in line for line in lines) and not leftover.exists()


def test_a_truncated_metrics_record_is_moved_aside_and_training_continues(tmp_path):
    _run(tmp_path, train_steps=2)
    (tmp_path / "metrics.json").write_text('{"train": [{"step": 1, "lo')
    lines = []
    result = _run(tmp_path, train_steps=4, log=lines.append)
    assert result["status"] == "finished"
    (aside,) = glob.glob(os.path.join(tmp_path, "metrics.json.unreadable-*"))
    assert any(aside in line for line in lines)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["step"] for e in record["train"]] == [3, 4] and record["status"] == "finished"


def test_a_second_process_cannot_take_a_busy_workdir(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom goaldriven import workdir_lock\n"
         f"with workdir_lock.hold({str(tmp_path)!r}, 'train'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"in use by pid {holder.pid} on .*train"):
            _run(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    lines = []
    assert _run(tmp_path, log=lines.append)["status"] == "finished"  # the killed holder's lock is taken over
    assert any(f"taking over the lock of {tmp_path} left by pid {holder.pid}" in line for line in lines), lines


def test_a_workdir_that_is_a_file_or_unwritable_is_refused_in_one_line(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        _run(a_file)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(ValueError, match="is not writable.*--output_dir"):
        _run(tmp_path / "new")


def test_evaluating_an_archive_into_an_output_dir_leaves_the_archive_untouched(tmp_path):
    archive = tmp_path / "archive"
    _run(archive, train_steps=2)

    def snapshot():
        return {p: (os.path.getsize(p), os.path.getmtime(p)) for p in glob.glob(f"{archive}/**", recursive=True)}

    before = snapshot()
    time.sleep(0.05)
    result = _run(archive, train_steps=2, mode="eval", output_dir=str(tmp_path / "evaluation"))
    assert result["status"] == "evaluated" and result["step"] == 2
    assert snapshot() == before
    assert (tmp_path / "evaluation" / "metrics.json").exists() and (tmp_path / "evaluation" / "eval").is_dir()
    with pytest.raises(ValueError, match="output_dir is for --mode=eval"):
        _run(archive, output_dir=str(tmp_path / "x"))
