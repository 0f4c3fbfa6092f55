"""The grid of trained networks behind learning-rule identification (thesis Chapter 6; spec ch5 11.1-11.2).

A `GridSpec` names tasks, the architectures used on each task, learning rules, batch sizes and the two seeds (model
initialisation, dataset order). `expand` turns it into ordinary training runs (`RunSpec`: gin files, gin bindings, a
workdir under `root`): each is a `goaldriven-train` run, resumable like any other, with the observables recorder of
`gin/identification/observables.gin` writing `<workdir>/observables.h5`.

Workers (`run_worker`) share nothing but the folder: any number of processes, on one host or many hosts mounting the
same folder (or a gs:// root), each walk the runs in their own order and train every run that is neither finished nor
held by another process. A run is claimed by the workdir lock that `goaldriven-train` takes (goaldriven/workdir_lock.py);
there is no coordinator, queue or database. A finished run leaves `grid_run.json`; a failed one `grid_failed.json`
(retried by the next worker pass, up to `max_attempts`).

Seeds (spec 11.1, A26): the thesis lists model and dataset seeds as {None, 0}, None meaning unseeded. An unseeded run
here gets a seed derived from its own name (crc32), so a preempted run resumes with the seeds it started with while
different runs still differ; the observables file records None as -1 and the seed actually used in its metadata.
"""

import dataclasses
import fnmatch
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import zlib
from typing import Callable, Mapping, Sequence

import tensorflow as tf

from goaldriven import atomic_write, workdir_lock

DONE_FILE = "grid_run.json"
FAILED_FILE = "grid_failed.json"
OBSERVABLES_FILE = "observables.h5"
BUSY_MARK = "is in use by"  # workdir_lock's refusal, printed by goaldriven-train when another worker holds the run
PREEMPTED_CODES = (143, -15)  # SIGTERM: the run saved a checkpoint and stopped (goaldriven-train's preemption path)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    name: str
    workdir: str
    gin_files: tuple[str, ...]
    bindings: tuple[str, ...]
    task: str
    architecture: str
    rule: str
    batch_size: int
    model_seed: int | None
    dataset_seed: int | None

    @property
    def curriculum(self) -> tuple[int, int | None]:
        return (self.batch_size, self.dataset_seed)

    def command(self, python: str = sys.executable, extra_flags: Sequence[str] = ()) -> list[str]:
        """The goaldriven-train command line of this run."""
        args = [python, "-m", "goaldriven.train", f"--workdir={self.workdir}"]
        args += [f"--gin_file={f}" for f in self.gin_files]
        args += [f"--gin_bindings={b}" for b in self.bindings]
        return args + list(extra_flags)  # last: a runtime --gin_file (e.g. runtime/tpu.gin) overrides the task's


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """A task x architecture x rule x batch size x seeds grid (spec ch5 11.1; thesis: 1,056 runs).

    tasks: {task: [gin files]} (the task's data, objective and schedule).
    architectures: {task: {architecture: [gin bindings]}} (e.g. "MODEL = 'knet4'"); the layer count of each
      architecture on each task goes into `layer_counts` for the example-count formula.
    rules: {rule: [gin files]} (e.g. rules/chapter6/sgdm.gin).
    overrides: {"task/architecture/rule" pattern: [bindings]} applied last, in the dict's order, to every run whose
      "task/architecture/rule" matches the pattern (fnmatch: "*/alexnet/sgdm", "cifar10/*/ia"); a two-part pattern
      "architecture/rule" means "*/architecture/rule". E.g. AlexNet's 10x lower SGDM rate.
    bindings: applied to every run after the task, model and rule files (e.g. EPOCHS, the observables' epochs).
    observables: gin files that add the recorder (gin/identification/observables.gin).
    layer_counts: {task: {architecture: number of observed layers}}, for `expected_examples` (optional).
    """

    root: str
    tasks: Mapping[str, Sequence[str]]
    architectures: Mapping[str, Mapping[str, Sequence[str]]]
    rules: Mapping[str, Sequence[str]]
    batch_sizes: Sequence[int] = (128, 256, 512)
    model_seeds: Sequence[int | None] = (None, 0)
    dataset_seeds: Sequence[int | None] = (None, 0)
    bindings: Sequence[str] = ()
    overrides: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    observables: Sequence[str] = ("identification/observables.gin",)
    layer_counts: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        missing = sorted(set(self.architectures) - set(self.tasks))
        if missing:
            raise ValueError(f"architectures are given for tasks {missing} that `tasks` does not define; add them.")
        empty = sorted(t for t in self.tasks if not self.architectures.get(t))
        if empty:
            raise ValueError(f"tasks {empty} have no architectures; give each task at least one in `architectures`.")
        if not self.rules:
            raise ValueError("the grid has no learning rules; give `rules` as {name: [gin files]}.")
        for name, values in (("batch_sizes", self.batch_sizes), ("model_seeds", self.model_seeds)):
            if not values:
                raise ValueError(f"`{name}` is empty; give at least one value.")
        if not self.dataset_seeds:
            raise ValueError("`dataset_seeds` is empty; give at least one value (None = unseeded).")

    @property
    def hyperparameter_combinations(self) -> int:
        return len(self.batch_sizes) * len(self.model_seeds) * len(self.dataset_seeds)


def _seed_name(seed: int | None) -> str:
    return "none" if seed is None else str(seed)


def derived_seed(name: str, which: str) -> int:
    """The seed an unseeded (None) run uses: fixed by its name, so a resumed run keeps it."""
    return zlib.crc32(f"{name}/{which}".encode()) % (2**31 - 1)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _overrides(overrides: Mapping[str, Sequence[str]], task: str, arch: str, rule: str) -> list[str]:
    out = []
    for pattern, bindings in overrides.items():
        parts = pattern.split("/")
        if len(parts) == 2:
            parts = ["*", *parts]
        if len(parts) != 3:
            raise ValueError(f"override key {pattern!r} is not 'task/architecture/rule' (or 'architecture/rule').")
        if all(fnmatch.fnmatchcase(value, p) for value, p in zip((task, arch, rule), parts)):
            out.extend(bindings)
    return out


def expand(spec: GridSpec) -> list[RunSpec]:
    """Every run of the grid, in a fixed order (task, architecture, rule, batch size, model seed, dataset seed)."""
    runs = []
    for task, files in spec.tasks.items():
        for arch, arch_bindings in spec.architectures[task].items():
            for rule, rule_files in spec.rules.items():
                combos = itertools.product(spec.batch_sizes, spec.model_seeds, spec.dataset_seeds)
                for batch, mseed, dseed in combos:
                    name = f"{task}__{arch}__{rule}__b{batch}__m{_seed_name(mseed)}__d{_seed_name(dseed)}"
                    model_seed = derived_seed(name, "model") if mseed is None else int(mseed)
                    data_seed = derived_seed(name, "dataset") if dseed is None else int(dseed)
                    bindings = [
                        *arch_bindings,
                        f"GLOBAL_BATCH_SIZE = {int(batch)}",
                        f"SEED = {model_seed}",
                        f"DATASET_SEED = {data_seed}",
                        f"OBSERVABLES_TASK = {_quoted(task)}",
                        f"OBSERVABLES_ARCHITECTURE = {_quoted(arch)}",
                        f"OBSERVABLES_RULE = {_quoted(rule)}",
                        f"OBSERVABLES_MODEL_SEED = {-1 if mseed is None else int(mseed)}",
                        f"OBSERVABLES_DATASET_SEED = {-1 if dseed is None else int(dseed)}",
                        *spec.bindings,
                        *_overrides(spec.overrides, task, arch, rule),
                    ]
                    runs.append(
                        RunSpec(
                            name=name,
                            workdir=os.path.join(spec.root, name),
                            # the recorder's defaults first, so task files can set its epochs and data
                            gin_files=(*spec.observables, *files, *rule_files),
                            bindings=tuple(bindings),
                            task=task,
                            architecture=arch,
                            rule=rule,
                            batch_size=int(batch),
                            model_seed=mseed,
                            dataset_seed=dseed,
                        )
                    )
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("the grid has repeated runs (a batch size or seed listed twice); list each value once.")
    return runs


def expected_examples(spec: GridSpec) -> dict[str, int]:
    """Examples of the identification dataset (one per observed layer per run) the grid yields, in total and per rule.

    Thesis (spec ch5 11.3): 432 layers per (rule, hyperparameter combination) x 12 combinations x 4 rules = 20,736.
    """
    missing = [
        f"{task}/{arch}"
        for task in spec.tasks
        for arch in spec.architectures[task]
        if arch not in spec.layer_counts.get(task, {})
    ]
    if missing:
        raise ValueError(f"layer_counts lacks {missing}; give the observed layer count of each task's architecture.")
    layers = sum(spec.layer_counts[task][arch] for task in spec.tasks for arch in spec.architectures[task])
    per_rule = layers * spec.hyperparameter_combinations
    return {"layers_per_combination": layers, "per_rule": per_rule, "total": per_rule * len(spec.rules)}


def run_state(run: RunSpec) -> str:
    """'finished', 'failed' (last attempt failed), or 'pending' (never started, interrupted or running elsewhere)."""
    if tf.io.gfile.exists(os.path.join(run.workdir, DONE_FILE)):
        return "finished"
    if tf.io.gfile.exists(os.path.join(run.workdir, FAILED_FILE)):
        return "failed"
    return "pending"


def _attempts(run: RunSpec) -> int:
    try:
        with tf.io.gfile.GFile(os.path.join(run.workdir, FAILED_FILE)) as f:
            return int(json.load(f).get("attempts", 0))
    except (OSError, ValueError, tf.errors.NotFoundError):
        return 0


def _busy(run: RunSpec) -> bool:
    """Whether another process holds the run's workdir lock (checked without waiting)."""
    try:
        with workdir_lock.hold(run.workdir, "goaldriven-identify worker probe", log=lambda _: None):
            return False
    except workdir_lock.WorkdirBusyError:
        return True


def worker_order(runs: Sequence[RunSpec], worker: str) -> list[RunSpec]:
    """The runs in this worker's own order (a shuffle seeded by the worker name), so workers rarely collide."""
    order = list(runs)
    random.Random(zlib.crc32(worker.encode())).shuffle(order)
    return order


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(
    runs: Sequence[RunSpec],
    *,
    worker: str | None = None,
    max_runs: int | None = None,
    max_attempts: int = 2,
    extra_flags: Sequence[str] = (),
    launch: Callable[[RunSpec], subprocess.CompletedProcess] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Trains the grid's unfinished runs that no other process holds, one after another; returns counts.

    launch(run) -> CompletedProcess (stdout+stderr text); the default runs `goaldriven-train` in a subprocess.
    A run whose training exits non-zero is marked failed with the tail of its output and retried by later passes
    until it has failed `max_attempts` times; the worker goes on with the next run either way. A preempted run
    (SIGTERM: exit code 143) is not a failure: the worker stops, and the run resumes from its checkpoint later.
    """
    worker = worker or default_worker_name()
    launch = launch or (lambda run: launch_subprocess(run, extra_flags))
    counts = {"trained": 0, "finished_before": 0, "busy": 0, "failed": 0, "gave_up": 0, "preempted": 0}
    todo = worker_order(runs, worker)
    for index, run in enumerate(todo):
        if max_runs is not None and counts["trained"] + counts["failed"] >= max_runs:
            break
        state = run_state(run)
        if state == "finished":
            counts["finished_before"] += 1
            continue
        if state == "failed" and _attempts(run) >= max_attempts:
            counts["gave_up"] += 1
            continue
        if _busy(run):
            counts["busy"] += 1
            continue
        log(f"[{worker}] {index + 1}/{len(todo)} {run.name}: training")
        started = time.time()
        result = launch(run)
        seconds = time.time() - started
        output = result.stdout or ""
        if result.returncode == 0:
            atomic_write.write_json(
                os.path.join(run.workdir, DONE_FILE),
                {"run": run.name, "worker": worker, "seconds": round(seconds, 1), "finished": time.time()},
            )
            _remove(os.path.join(run.workdir, FAILED_FILE))
            counts["trained"] += 1
            log(f"[{worker}] {run.name}: finished in {seconds:.0f} s")
        elif result.returncode in PREEMPTED_CODES:
            counts["preempted"] += 1  # the host is going away: the run resumes from its checkpoint in a later pass
            log(f"[{worker}] {run.name}: preempted after {seconds:.0f} s; this worker stops (the run resumes later)")
            break
        elif BUSY_MARK in output:
            counts["busy"] += 1  # claimed by another worker between the probe and the launch
            log(f"[{worker}] {run.name}: taken by another worker; skipping")
        else:
            attempts = _attempts(run) + 1
            tail = output.strip().splitlines()[-5:]
            atomic_write.write_json(
                os.path.join(run.workdir, FAILED_FILE),
                {"run": run.name, "worker": worker, "attempts": attempts, "exit_code": result.returncode, "tail": tail},
            )
            counts["failed"] += 1
            log(
                f"[{worker}] {run.name}: FAILED (exit {result.returncode}, attempt {attempts}): {' | '.join(tail[-2:])}"
            )
    return counts


def _remove(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def launch_subprocess(run: RunSpec, extra_flags: Sequence[str]) -> subprocess.CompletedProcess:
    """Runs goaldriven-train for `run`; a SIGTERM to the worker is passed on to it (it checkpoints and stops)."""
    tf.io.gfile.makedirs(run.workdir)
    started = time.strftime("%Y%m%d-%H%M%S")
    process = subprocess.Popen(
        run.command(extra_flags=extra_flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    try:
        output, _ = process.communicate()
    finally:
        signal.signal(signal.SIGTERM, previous)
    atomic_write.write_text(os.path.join(run.workdir, f"train.{started}.{os.getpid()}.log"), output)
    code = process.returncode
    if code == 0 and "done: status preempted" in output:  # goaldriven-train exits cleanly when preempted
        code = PREEMPTED_CODES[0]
    return subprocess.CompletedProcess(process.args, code, stdout=output)


def status(runs: Sequence[RunSpec]) -> dict[str, list[str]]:
    """{state: [run names]} for 'finished', 'failed', 'running' (lock held) and 'pending'."""
    out = {"finished": [], "failed": [], "running": [], "pending": []}
    for run in runs:
        state = run_state(run)
        if state != "finished" and tf.io.gfile.isdir(run.workdir) and _busy(run):
            state = "running"
        out[state].append(run.name)
    return out
