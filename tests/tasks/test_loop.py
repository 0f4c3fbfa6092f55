"""The training loop: replica equivalence, resume, non-finite losses, preemption, validation, multi-worker."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import path_integrators
from goaldriven.tasks import loop, path_integration, path_integration_eval, place_cells, trajectories
from tests import strategies
from tests.tasks import toy_tasks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONE_DEVICE = strategies.one_device
MIRRORED = strategies.mirrored


def _tiny_path_task(kind="ugrnn"):
    import functools  # pylint: disable=g-import-not-at-top

    return path_integration.PathIntegrationTask(
        model_fn=functools.partial(path_integrators.build_path_integrator, kind=kind, units=8),
        trajectories=trajectories.TrajectoryGenerator(sequence_length=3),
        place_cells=place_cells.PlaceCells(n_cells=16),
        evaluation=path_integration_eval.PathIntegrationEvaluation(
            batches=1, global_batch_size=4, knockout_batches=1, knockout_draws=2
        ),
    )


def _checkpoint_values(workdir):
    """Every saved variable of the latest checkpoint (weights, optimizer slots, step)."""
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in n and "save_counter" not in n]
    assert len(names) > 5, names
    return {n: reader.get_tensor(n) for n in names}


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("task_fn", [toy_tasks.LinearTask, _tiny_path_task], ids=["linear", "path_integration"])
def test_two_replicas_give_the_same_weights_as_one_device(task_fn, tmp_path):
    common = dict(
        train_steps=4,
        global_batch_size=8,
        steps_per_loop=2,
        checkpoint_every=4,
        learning_rate=1e-2,
        evaluate_at_end=False,
        log=lambda _: None,
    )
    loop.run(task=task_fn(), strategy=ONE_DEVICE(), workdir=str(tmp_path / "one"), **common)
    loop.run(task=task_fn(), strategy=MIRRORED(), workdir=str(tmp_path / "two"), **common)
    one, two = _checkpoint_values(tmp_path / "one"), _checkpoint_values(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=1e-4, atol=1e-6, err_msg=name)
    losses_one = [e["loss"] for e in _metrics(tmp_path / "one")["train"]]
    losses_two = [e["loss"] for e in _metrics(tmp_path / "two")["train"]]
    np.testing.assert_allclose(losses_one, losses_two, rtol=1e-4)


def test_resume_continues_the_uninterrupted_loss_trajectory(tmp_path):
    common = dict(
        task=toy_tasks.LinearTask(),
        strategy=ONE_DEVICE(),
        global_batch_size=8,
        steps_per_loop=1,
        checkpoint_every=3,
        learning_rate=0.1,
        evaluate_at_end=False,
        log=lambda _: None,
    )
    loop.run(workdir=str(tmp_path / "straight"), train_steps=8, **common)
    loop.run(workdir=str(tmp_path / "resumed"), train_steps=4, **common)  # "interrupted" after step 4 (ckpt at 3, 4)
    lines = []
    result = loop.run(workdir=str(tmp_path / "resumed"), train_steps=8, **{**common, "log": lines.append})
    assert result["status"] == "finished" and any("resumed from" in line and "step 4" in line for line in lines)
    straight = {e["step"]: e["loss"] for e in _metrics(tmp_path / "straight")["train"]}
    resumed = {e["step"]: e["loss"] for e in _metrics(tmp_path / "resumed")["train"]}
    assert sorted(resumed) == list(range(1, 9))
    assert straight[8] < 0.8 * straight[1]  # it is learning, so a restart from scratch would not match
    for step in range(5, 9):
        np.testing.assert_allclose(resumed[step], straight[step], rtol=1e-5, err_msg=f"step {step}")
    for name, value in _checkpoint_values(tmp_path / "straight").items():
        np.testing.assert_allclose(_checkpoint_values(tmp_path / "resumed")[name], value, rtol=1e-5)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "nan")
    with pytest.raises(loop.NonFiniteLossError, match=r"ckpt-4 \(step 4\)"):
        loop.run(
            task=toy_tasks.LinearTask(nan_from_step=5),
            strategy=ONE_DEVICE(),
            workdir=workdir,
            train_steps=10,
            global_batch_size=4,
            steps_per_loop=1,
            checkpoint_every=2,
            evaluate_at_end=False,
            log=lambda _: None,
        )
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-4")
    assert all(np.isfinite(v).all() for v in _checkpoint_values(workdir).values())
    record = _metrics(workdir)
    assert record["status"] == "non_finite_loss" and record["train"][-1]["step"] == 5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"precision": "mixed_float16"}, "precision"),
        ({"global_batch_size": 3}, "multiple of 2"),
        ({"train_steps": -1}, "train_steps"),
        ({"jit_compile": True}, "jit_compile"),
        ({"workdir": ""}, "workdir"),
        ({"mode": "predict"}, "mode"),
    ],
)
def test_bad_settings_fail_before_training(overrides, message, tmp_path):
    kwargs = dict(
        task=toy_tasks.LinearTask(),
        strategy=MIRRORED(),
        workdir=str(tmp_path),
        train_steps=2,
        global_batch_size=4,
        log=lambda _: None,
    )
    with pytest.raises(ValueError, match=message):
        loop.run(**{**kwargs, **overrides})


def _tiny_run(workdir, **overrides):
    """loop.run arguments for a tiny path-integration run on one device."""
    kwargs = dict(
        task=_tiny_path_task(),
        strategy=ONE_DEVICE(),
        workdir=str(workdir),
        train_steps=1,
        global_batch_size=4,
        log=lambda _: None,
    )
    return {**kwargs, **overrides}


def test_zero_steps_saves_and_evaluates_the_untrained_model(tmp_path):
    result = loop.run(**_tiny_run(tmp_path, train_steps=0))
    assert result["status"] == "finished" and result["step"] == 0 and np.isfinite(result["eval"]["decoding_error_cm"])
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints")).endswith("ckpt-0")


def test_re_evaluation_never_overwrites_an_earlier_evaluation(tmp_path):
    common = _tiny_run(tmp_path, train_steps=1)
    loop.run(**common)
    first = (tmp_path / "eval" / "step_1" / "summary.json").read_text()
    loop.run(**common, mode="eval")
    assert (tmp_path / "eval" / "step_1" / "summary.json").read_text() == first
    assert (tmp_path / "eval" / "step_1.1" / "summary.json").exists()


def test_eval_mode_needs_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        loop.run(
            task=toy_tasks.LinearTask(),
            strategy=ONE_DEVICE(),
            workdir=str(tmp_path),
            train_steps=2,
            global_batch_size=4,
            mode="eval",
            log=lambda _: None,
        )


@pytest.mark.parametrize("kind", ["rnn", "srnn", "gru", "lstm", "ugrnn"])
def test_every_path_integrator_train_step_compiles_with_xla(kind, tmp_path):
    """The loop's own step (loss, regularisers, optimizer) under jit_compile=True on one device (TPU proxy)."""
    result = loop.run(
        task=_tiny_path_task(kind),
        strategy=ONE_DEVICE(),
        workdir=str(tmp_path),
        train_steps=2,
        global_batch_size=4,
        steps_per_loop=2,
        jit_compile=True,
        evaluate_at_end=False,
        log=lambda _: None,
    )
    assert np.isfinite(result["train"]["loss"]) and np.isfinite(result["train"]["decoding_error_cm"])


def test_mixed_bfloat16_and_xla_train_step(tmp_path):
    for precision, jit in (("mixed_bfloat16", False), ("mixed_bfloat16", True)):
        result = loop.run(
            task=_tiny_path_task(),
            strategy=ONE_DEVICE(),
            workdir=str(tmp_path / f"{precision}{jit}"),
            train_steps=2,
            global_batch_size=4,
            steps_per_loop=2,
            precision=precision,
            jit_compile=jit,
            evaluate_at_end=False,
            log=lambda _: None,
        )
        assert np.isfinite(result["train"]["loss"])


def _train_cmd(workdir, *bindings, strategy="cpu"):
    return [
        sys.executable,
        "-m",
        "goaldriven.train",
        "--gin_file=gin/experiments/path_integration__ugrnn_relu_place_cells.gin",
        "--gin_file=gin/testing/smoke.gin",
        f"--workdir={workdir}",
        f"--strategy={strategy}",
        *[f"--gin_bindings={b}" for b in bindings],
    ]


def test_sigterm_writes_a_checkpoint_and_exits_cleanly_then_resumes(tmp_path):
    workdir = str(tmp_path / "preempted")
    proc = subprocess.Popen(
        _train_cmd(workdir, "TRAIN_STEPS = 100000", "STEPS_PER_LOOP = 1", "CHECKPOINT_EVERY = 100000"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics_path = os.path.join(workdir, "metrics.json")
    deadline = time.time() + 120
    while not (os.path.exists(metrics_path) and _metrics(workdir)["train"]):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "slow"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    record = _metrics(workdir)
    stopped_at = record["step"]
    assert record["status"] == "preempted" and 0 < stopped_at < 100000
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(f"ckpt-{stopped_at}")
    again = subprocess.run(
        _train_cmd(
            workdir, f"TRAIN_STEPS = {stopped_at + 2}", "STEPS_PER_LOOP = 1", "EVAL_BATCHES = 1", "KNOCKOUT_BATCHES = 0"
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout and _metrics(workdir)["status"] == "finished"
    assert _metrics(workdir)["step"] == stopped_at + 2


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes_on_localhost(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workdir = str(tmp_path / "multi")
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(
            subprocess.Popen(
                _train_cmd(workdir, "KNOCKOUT_BATCHES = 0", strategy="multi_worker"),
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "2 replica(s)" in outputs[0]
    record = _metrics(workdir)
    assert record["status"] == "finished" and record["step"] == 4
    assert not os.path.exists(os.path.join(workdir, "checkpoints_scratch"))
    assert not os.path.exists(os.path.join(workdir, "eval_scratch"))
    # Two workers of one replica each see the same global batches as one device: same weights.
    single = str(tmp_path / "single")
    out = subprocess.run(_train_cmd(single, "KNOCKOUT_BATCHES = 0"), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    for name, value in _checkpoint_values(single).items():
        np.testing.assert_allclose(_checkpoint_values(workdir)[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
