"""Loop hooks (goaldriven/hooks.py): a MoCo-shaped task (EMA key encoder + per-step queue write) plugged into the
unchanged loop, under XLA, under MirroredStrategy, and resumed bit-identically after SIGTERM; the interface's checks."""

import os
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import hooks
from goaldriven.tasks import loop
from tests import loop_testing, strategies
from tests.tasks import momentum_toy

BATCH, QUEUE, MOMENTUM = 4, 12, 0.9


def _run(workdir, *, steps, strategy=None, jit=False, extra_hooks=(), log=None):
    return loop.run(
        task=momentum_toy.MomentumContrastTask(queue_size=QUEUE, momentum=MOMENTUM),
        strategy=strategy or strategies.one_device(),
        workdir=str(workdir),
        train_steps=steps,
        global_batch_size=BATCH,
        learning_rate=0.05,
        steps_per_loop=2,
        checkpoint_every=100,
        jit_compile=jit,
        evaluate_at_end=False,
        hooks=list(extra_hooks),
        log=log or (lambda _: None),
    )


def _saved(workdir):
    """Every variable of the newest checkpoint by name (weights, optimizer slots, key encoder, queue, pointer)."""
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in n and "save_counter" not in n]
    return {n: reader.get_tensor(n) for n in names}


def _find(saved, prefix):
    found = {n: v for n, v in saved.items() if n.startswith(prefix + "/")}
    assert found, f"no checkpoint entry under {prefix}: {sorted(saved)}"
    return [found[n] for n in sorted(found, key=lambda n: int(n.split("/")[1]) if n.split("/")[1].isdigit() else n)]


def test_momentum_encoder_and_queue_after_one_step_match_their_definitions(tmp_path):
    result = _run(tmp_path, steps=1, jit=True)
    assert result["status"] == "finished" and np.isfinite(result["train"]["loss"])
    saved = _saved(tmp_path)
    task = momentum_toy.MomentumContrastTask(queue_size=QUEUE, momentum=MOMENTUM)
    keras.utils.set_random_seed(0)  # the loop seeds with seed=0 before building
    initial = task.build_model()
    w0 = [w.numpy() for w in initial.weights]
    w1 = _find(saved, "model_variables")
    k1 = _find(saved, "key_encoder")
    assert len(w0) == len(w1) == len(k1) == 4
    for a, b, k in zip(w0, w1, k1):
        assert np.abs(b - a).max() > 1e-5  # the query encoder trained
        np.testing.assert_allclose(k, MOMENTUM * a + (1 - MOMENTUM) * b, rtol=1e-6, atol=1e-7)  # EMA of it
    # The queue's first rows are step 0's keys from the key encoder before its update (= the initial weights).
    batch = next(iter(task.train_dataset(global_batch_size=BATCH, input_context=tf.distribute.InputContext(),
                                         start_step=0, seed=0)))  # fmt: skip
    keys = tf.math.l2_normalize(initial(batch["view2"]), axis=1).numpy()
    queue = saved["key_queue/.ATTRIBUTES/VARIABLE_VALUE"]
    np.testing.assert_allclose(queue[:BATCH], keys, rtol=1e-5, atol=1e-6)
    untouched = tf.math.l2_normalize(tf.random.stateless_normal([QUEUE, 4], [0, 7]), axis=1).numpy()[BATCH:]
    np.testing.assert_array_equal(queue[BATCH:], untouched)
    assert int(saved["queue_pointer/.ATTRIBUTES/VARIABLE_VALUE"]) == BATCH


def test_queue_wraps_around_and_mirrored_matches_one_device(tmp_path):
    _run(tmp_path / "one", steps=4)  # 16 keys through a queue of 12: the pointer wraps to 4
    _run(tmp_path / "two", steps=4, strategy=strategies.mirrored())
    one, two = _saved(tmp_path / "one"), _saved(tmp_path / "two")
    assert one.keys() == two.keys() and int(one["queue_pointer/.ATTRIBUTES/VARIABLE_VALUE"]) == 4 * BATCH % QUEUE
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("strategy, jit", [(strategies.one_device, True), (strategies.mirrored, False)],
                         ids=["xla_one_device", "mirrored"])  # fmt: skip
def test_sigterm_then_resume_is_bit_identical_to_an_uninterrupted_run(strategy, jit, tmp_path):
    # The loop's SIGTERM handler is installed only on the main thread (pytest and xdist run tests there).
    assert threading.current_thread() is threading.main_thread()
    straight = _run(tmp_path / "straight", steps=8, strategy=strategy(), jit=jit)
    stopped = _run(tmp_path / "split", steps=8, strategy=strategy(), jit=jit, extra_hooks=[loop_testing.SigtermAt(3)])
    assert stopped["status"] == "preempted" and stopped["step"] == 3  # next_stop cut the first loop at 3
    lines = []
    resumed = _run(tmp_path / "split", steps=8, strategy=strategy(), jit=jit, log=lines.append)
    assert resumed["status"] == "finished" and any("resumed from" in line and "ckpt-3" in line for line in lines)
    a, b = _saved(tmp_path / "straight"), _saved(tmp_path / "split")
    assert a.keys() == b.keys() and any(n.startswith("key_queue") for n in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # (The last progress lines average different windows, 7-8 and 8: the resumed loops start at step 3.)
    assert resumed["step"] == straight["step"] == 8


class _Named(hooks.LoopHook):
    def __init__(self, name, stop=None):
        self.name, self.stop = name, stop

    def build(self, state):
        return {self.name: tf.Variable(0.0)}

    def next_stop(self, step):
        return self.stop


def test_hook_checkpoint_names_must_be_unique(tmp_path):
    with pytest.raises(ValueError, match="'counter', a name already taken"):
        _run(tmp_path, steps=2, extra_hooks=[_Named("counter"), _Named("counter")])
    with pytest.raises(ValueError, match="'optimizer', a name already taken"):
        _run(tmp_path / "b", steps=2, extra_hooks=[_Named("optimizer")])


def test_next_stop_must_lie_ahead(tmp_path):
    with pytest.raises(ValueError, match=r"next_stop\(0\) returned 0"):
        _run(tmp_path, steps=2, extra_hooks=[_Named("x", stop=0)])


def test_substeps_are_the_least_common_multiple_and_record_needs_a_step():
    class Two(hooks.LoopHook):
        def substeps(self, phase):
            return 2

    class Three(hooks.LoopHook):
        def substeps(self, phase):
            return 3

    assert hooks.substeps([Two(), Three(), hooks.LoopHook()], (None, None, None)) == 6
    hooks.record("ignored", tf.constant(1.0))  # outside a step: nothing happens
    with hooks.recording_outputs() as outputs:
        hooks.record("keys", tf.constant(2.0))
        with pytest.raises(ValueError, match="recorded twice"):
            hooks.record("keys", tf.constant(3.0))
    assert list(outputs) == ["keys"]
