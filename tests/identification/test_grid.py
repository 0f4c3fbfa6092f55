"""The Chapter 6 grid: expansion, the example-count formula and workers that share runs through workdir locks."""

import json
import os
import subprocess

import pytest

import gin
from goaldriven import cli_config, workdir_lock
from goaldriven.identification import grid
from goaldriven.tasks import seeded_data


def _spec(root, **kwargs):
    base = dict(
        root=str(root),
        tasks={"cifar": ["tasks/cifar.gin"], "digits": ["tasks/digits.gin"]},
        architectures={"cifar": {"knet4": ["MODEL = 'knet4'"], "knet5": ["MODEL = 'knet5'"]}, "digits": {"knet4": []}},
        rules={"sgdm": ["rules/sgdm.gin"], "fa": ["rules/fa.gin"]},
        batch_sizes=(2, 4),
        model_seeds=(None, 0),
        dataset_seeds=(None,),
        overrides={"knet5/fa": ["BASE_LEARNING_RATE = 0.5"], "digits/*/*": ["EPOCHS = 3"]},
        layer_counts={"cifar": {"knet4": 4, "knet5": 5}, "digits": {"knet4": 4}},
    )
    base.update(kwargs)
    return grid.GridSpec(**base)


def test_expand_counts_names_and_bindings(tmp_path):
    runs = grid.expand(_spec(tmp_path))
    assert len(runs) == 3 * 2 * 2 * 2 * 1  # (task, arch) pairs x rules x batches x model seeds x dataset seeds
    assert len({r.name for r in runs}) == len(runs)
    run = next(r for r in runs if r.name == "cifar__knet5__fa__b4__m0__dnone")
    assert run.gin_files == ("identification/observables.gin", "tasks/cifar.gin", "rules/fa.gin")
    assert "GLOBAL_BATCH_SIZE = 4" in run.bindings and "SEED = 0" in run.bindings
    assert run.bindings[-1] == "BASE_LEARNING_RATE = 0.5"  # overrides come last
    assert "OBSERVABLES_DATASET_SEED = -1" in run.bindings  # unseeded is recorded as -1 ...
    used = [b for b in run.bindings if b.startswith("DATASET_SEED = ")]
    assert used == [
        f"DATASET_SEED = {grid.derived_seed(run.name, 'dataset')}"
    ]  # ... and runs with a fixed derived seed
    assert run.workdir == os.path.join(str(tmp_path), run.name)
    digits = [r for r in runs if r.task == "digits"]
    assert all(r.bindings[-1] == "EPOCHS = 3" for r in digits)
    assert not any("EPOCHS = 3" in r.bindings for r in runs if r.task != "digits")
    assert run.curriculum == (4, None)


def test_unseeded_runs_differ_but_keep_their_seed(tmp_path):
    a = grid.expand(_spec(tmp_path))
    b = grid.expand(_spec(tmp_path))
    assert [r.bindings for r in a] == [r.bindings for r in b]
    seeds = {b for r in a for b in r.bindings if b.startswith("SEED = ") and "mnone" in r.name}
    assert len(seeds) == sum("mnone" in r.name for r in a)


def test_thesis_example_count(tmp_path):
    # spec ch5 11.3: per (rule, hyperparameter combination) 136 (ImageNet) + 142 (SimCLR) + 136 (WSN) + 18 (CIFAR-10)
    supervised = {"r18": 22, "r18v2": 22, "r34": 38, "r34v2": 38, "alex": 8, "alexlrn": 8}
    simclr = {"r18": 23, "r18v2": 23, "r34": 39, "r34v2": 39, "alex": 9, "alexlrn": 9}
    knets = {"k4": 4, "k4lrn": 4, "k5": 5, "k5lrn": 5}
    arch = lambda counts: {name: [] for name in counts}  # noqa: E731
    spec = grid.GridSpec(
        root=str(tmp_path),
        tasks={"imagenet": [], "simclr": [], "wsn": [], "cifar10": []},
        architectures={
            "imagenet": arch(supervised),
            "simclr": arch(simclr),
            "wsn": arch(supervised),
            "cifar10": arch(knets),
        },
        rules={"sgdm": [], "adam": [], "fa": [], "ia": []},
        layer_counts={"imagenet": supervised, "simclr": simclr, "wsn": supervised, "cifar10": knets},
    )
    assert len(grid.expand(spec)) == 1056
    counts = grid.expected_examples(spec)
    assert counts == {"layers_per_combination": 432, "per_rule": 5184, "total": 20736}
    assert counts["per_rule"] // 4 == 1296  # the test examples per rule of a 75/25 split


def test_bad_grids_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="no architectures"):
        _spec(tmp_path, architectures={"cifar": {"knet4": []}})
    with pytest.raises(ValueError, match="repeated runs"):
        grid.expand(_spec(tmp_path, batch_sizes=(2, 2)))
    with pytest.raises(ValueError, match="is not 'task/architecture/rule'"):
        grid.expand(_spec(tmp_path, overrides={"a/b/c/d": []}))
    with pytest.raises(ValueError, match="layer_counts lacks"):
        grid.expected_examples(_spec(tmp_path, layer_counts={}))


def _fake_launch(calls, fail=(), busy=()):
    def launch(run):
        calls.append(run.name)
        os.makedirs(run.workdir, exist_ok=True)
        if run.name in busy:
            return subprocess.CompletedProcess([], 2, stdout=f"error: {run.workdir} is in use by someone")
        if run.name in fail:
            return subprocess.CompletedProcess([], 1, stdout="line 1\nValueError: boom")
        return subprocess.CompletedProcess([], 0, stdout="done")

    return launch


def test_worker_skips_finished_and_locked_runs_and_records_failures(tmp_path):
    runs = grid.expand(_spec(tmp_path))
    finished, held, failing, raced = runs[0], runs[1], runs[2], runs[3]
    os.makedirs(finished.workdir)
    with open(os.path.join(finished.workdir, grid.DONE_FILE), "w") as f:
        f.write("{}")
    calls = []
    with workdir_lock.hold(held.workdir, "another worker", log=lambda _: None):
        counts = grid.run_worker(
            runs, worker="w1", launch=_fake_launch(calls, fail={failing.name}, busy={raced.name}), log=lambda _: None
        )
    assert finished.name not in calls and held.name not in calls
    assert counts == {
        "trained": len(runs) - 4, "finished_before": 1, "busy": 2, "failed": 1, "gave_up": 0, "preempted": 0
    }  # fmt: skip
    with open(os.path.join(failing.workdir, grid.FAILED_FILE)) as f:
        record = json.load(f)
    assert record["attempts"] == 1 and record["tail"][-1] == "ValueError: boom"
    assert grid.run_state(raced) == "pending"  # another worker's claim is not a failure
    # the next pass retries the failure (until max_attempts) and the previously held run
    calls2 = []
    counts = grid.run_worker(runs, worker="w2", launch=_fake_launch(calls2, fail={failing.name}), log=lambda _: None)
    assert sorted(calls2) == sorted([held.name, failing.name, raced.name])
    calls3 = []
    counts = grid.run_worker(runs, worker="w3", max_attempts=2, launch=_fake_launch(calls3), log=lambda _: None)
    assert calls3 == [] and counts["gave_up"] == 1


def test_workers_walk_in_different_orders():
    runs = [grid.RunSpec(f"r{i}", f"/x/r{i}", (), (), "t", "a", "r", 1, None, None) for i in range(20)]
    a = [r.name for r in grid.worker_order(runs, "host-a:1")]
    b = [r.name for r in grid.worker_order(runs, "host-b:2")]
    assert sorted(a) == sorted(b) and a != b
    assert a == [r.name for r in grid.worker_order(runs, "host-a:1")]


def test_data_with_seed_replaces_only_the_training_seed():
    class Data:
        num_classes = 10

        def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
            return (global_batch_size, start_step, seed)

    wrapped = seeded_data.DataWithSeed(Data(), 7)
    assert wrapped.train_dataset(global_batch_size=2, input_context=None, start_step=3, seed=0) == (2, 3, 7)
    assert wrapped.num_classes == 10
    assert seeded_data.DataWithSeed(Data(), None).train_dataset(
        global_batch_size=2, input_context=None, start_step=0, seed=5
    ) == (2, 0, 5)
    with pytest.raises(ValueError, match="non-negative int"):
        seeded_data.DataWithSeed(Data(), -3)


def _thesis_runs():
    cli_config.parse_gin_config(["identification/grid_thesis.gin"], clear=True)
    spec = gin.get_configurable(grid.GridSpec)()
    gin.clear_config()
    return spec, grid.expand(spec)


def test_thesis_grid_file_is_the_thesis_dataset():
    spec, runs = _thesis_runs()
    assert len(runs) == 1056
    assert grid.expected_examples(spec)["total"] == 20736


@pytest.mark.parametrize("task", ["imagenet", "simclr", "wsn", "cifar10"])
def test_thesis_grid_runs_configure_the_recorder_and_the_rule(task):
    _, runs = _thesis_runs()
    for rule in ("sgdm", "adam", "fa", "ia"):
        arch = "knet4" if task == "cifar10" else "alexnet"
        run = next(r for r in runs if (r.task, r.architecture, r.rule) == (task, arch, rule))
        extra = ["DATA_DIR = '/tmp/unused'"] if task == "wsn" else []
        try:
            cli_config.parse_gin_config(list(run.gin_files), [*run.bindings, *extra], clear=True)
            hooks = [str(h) for h in gin.query_parameter("goaldriven.tasks.loop.run.hooks")]
            assert hooks[-1] == "@recorder.ObservablesRecorder()"
            assert ("@training.AlignmentTraining()" in hooks) == (rule == "ia")
            rate = gin.query_parameter("BASE_LEARNING_RATE/macro.value")
            expected = {"sgdm": 0.0125, "adam": 0.001, "fa": 0.001, "ia": 0.1}[rule]  # AlexNets (IA: per 2048)
            if task == "cifar10":
                expected = {"sgdm": 0.01, "adam": 0.001, "fa": 0.001, "ia": 0.01}[rule]
            assert rate == pytest.approx(expected), run.name
            assert gin.query_parameter("DATASET_SEED/macro.value") == grid.derived_seed(run.name, "dataset")
        finally:
            gin.clear_config()


def test_a_preempted_run_stops_the_worker_and_is_not_a_failure(tmp_path):
    runs = grid.expand(_spec(tmp_path))
    calls = []

    def launch(run):
        calls.append(run.name)
        os.makedirs(run.workdir, exist_ok=True)
        return subprocess.CompletedProcess([], 143, stdout="done: status preempted at step 7")

    counts = grid.run_worker(runs, worker="w", launch=launch, log=lambda _: None)
    assert len(calls) == 1 and counts["preempted"] == 1 and counts["trained"] == 0
    assert grid.run_state(next(r for r in runs if r.name == calls[0])) == "pending"


def test_subprocess_launch_maps_a_clean_preemption_exit(tmp_path, monkeypatch):
    run = grid.expand(_spec(tmp_path))[0]
    script = "print('step 3'); print('done: status preempted at step 3; outputs in x')"
    monkeypatch.setattr(grid.RunSpec, "command", lambda self, python=None, extra_flags=(): ["python", "-c", script])
    result = grid.launch_subprocess(run, ())
    assert result.returncode == 143 and "preempted" in result.stdout
    assert any(name.startswith("train.") for name in os.listdir(run.workdir))  # the output is kept, never overwritten
