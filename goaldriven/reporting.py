"""Progress output of a training run: one console line per loop, TensorBoard summaries and metrics.json.

metrics.json (in the workdir) holds {"train": [{"step", "steps_per_second", "loss", ...}, ...], "eval": [...],
"status": ...}; a resumed run appends to it. TensorBoard event files go to <workdir>/train and <workdir>/eval.
"""

import json
import math
import os
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from goaldriven import atomic_write


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{name} {value:.4g}")
    return " | ".join(parts)


class Reporter:
    """Writes progress lines, summaries and metrics.json; a non-chief worker only prints."""

    def __init__(self, workdir: str, *, total_steps: int, is_chief: bool = True, log: Callable[[str], None] = print):
        self.workdir = workdir
        self.total_steps = total_steps
        self.is_chief = is_chief
        self.log = log
        self.path = os.path.join(workdir, "metrics.json")
        self.record: dict[str, Any] = {"train": [], "eval": []}
        if is_chief and os.path.exists(self.path):
            self.record = self._read_record()
        self._writers: dict[str, Any] = {}
        self._start = time.time()

    def _read_record(self) -> dict[str, Any]:
        """metrics.json of the earlier runs in this workdir; a truncated or foreign one is moved aside with a note."""
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.load(f)
            if (
                isinstance(record, dict)
                and isinstance(record.get("train"), list)
                and isinstance(record.get("eval"), list)
            ):
                return record
            problem = "is not a goaldriven metrics record"
        except (ValueError, UnicodeDecodeError) as e:
            problem = f"is unreadable ({type(e).__name__}: {e})"
        aside = f"{self.path}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(self.path, aside)
        self.log(f"warning: {self.path} {problem}; moved it to {aside} and started a new record")
        return {"train": [], "eval": []}

    def _writer(self, split: str):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(os.path.join(self.workdir, split))
        return self._writers[split]

    def train(self, step: int, metrics: dict[str, float], *, steps_per_second: float, steps_done: int) -> None:
        """Logs the metrics averaged over the steps since the previous call."""
        remaining = (self.total_steps - step) / steps_per_second if steps_per_second > 0 else math.nan
        self.log(
            f"step {step}/{self.total_steps} | {steps_per_second:.3g} steps/s | {format_metrics(metrics)} | "
            f"elapsed {format_duration(time.time() - self._start)} | eta {format_duration(remaining)}"
        )
        if not self.is_chief:
            return
        with self._writer("train").as_default():
            for name, value in metrics.items():
                tf.summary.scalar(name, value, step=step)
            tf.summary.scalar("steps_per_second", steps_per_second, step=step)
        entry = {"step": step, "steps_per_second": steps_per_second, "steps_in_average": steps_done, **metrics}
        # A resumed run replays nothing: drop entries beyond the restored step (they came after the last checkpoint).
        self.record["train"] = [e for e in self.record["train"] if e["step"] < step] + [entry]
        self.flush()

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        self.log(f"eval at step {step} | {format_metrics(metrics)}")
        if not self.is_chief:
            return
        with self._writer("eval").as_default():
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    tf.summary.scalar(name, value, step=step)
        self.record["eval"] = [e for e in self.record["eval"] if e["step"] != step] + [{"step": step, **metrics}]
        self.flush()

    def status(self, **fields: Any) -> None:
        self.record.update(fields)
        if self.is_chief:
            self.flush()
            if self.record["train"]:
                plot_training_curves(self.record["train"], os.path.join(self.workdir, "training_curves.png"))

    def flush(self) -> None:
        atomic_write.write_json(self.path, self.record)
        for writer in self._writers.values():
            writer.flush()


def plot_training_curves(history: list[dict[str, Any]], path: str) -> None:
    """Loss and every other logged training metric against the step (PNG)."""
    names = [k for k in history[0] if k not in ("step", "steps_per_second", "steps_in_average")]
    fig = Figure(figsize=(3.6 * len(names), 3.0))
    axes = fig.subplots(1, len(names), squeeze=False)
    steps = [entry["step"] for entry in history]
    for ax, name in zip(axes[0], names):
        ax.plot(steps, [entry.get(name, np.nan) for entry in history], color="tab:blue")
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    atomic_write.save_figure(fig, path, dpi=110)
