"""step_indexed_dataset: the concatenation over replicas and pipelines is the single-device global batch."""

import numpy as np
import tensorflow as tf

from goaldriven import runtime


def _make(step, seed):
    values = tf.random.stateless_uniform([8, 3], tf.cast(seed, tf.int64))
    return {"v": values, "step": tf.fill([8], step)}


def _take(context, steps=3, start=0):
    ds = runtime.step_indexed_dataset(_make, global_batch_size=8, input_context=context, start_step=start, seed=5)
    return [e for e in ds.take(steps * (context.num_replicas_in_sync // context.num_input_pipelines))]


def test_replicas_and_pipelines_split_the_same_global_batch():
    single = _take(tf.distribute.InputContext(1, 0, 1))
    two_replicas = _take(tf.distribute.InputContext(1, 0, 2))
    pipeline0 = _take(tf.distribute.InputContext(2, 0, 2))
    pipeline1 = _take(tf.distribute.InputContext(2, 1, 2))
    for step in range(3):
        whole = single[step]["v"].numpy()
        assert whole.shape == (8, 3)
        np.testing.assert_array_equal(
            np.concatenate([two_replicas[2 * step]["v"], two_replicas[2 * step + 1]["v"]]), whole
        )
        np.testing.assert_array_equal(np.concatenate([pipeline0[step]["v"], pipeline1[step]["v"]]), whole)
        assert (single[step]["step"].numpy() == step).all()


def test_resuming_at_a_step_gives_the_same_batches():
    full = _take(tf.distribute.InputContext(1, 0, 1), steps=5)
    resumed = _take(tf.distribute.InputContext(1, 0, 1), steps=2, start=3)
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a["v"].numpy(), b["v"].numpy())


def test_uneven_global_batch_is_refused():
    try:
        runtime.check_global_batch_size(10, 4)
    except ValueError as e:
        assert "multiple of 4" in str(e)
    else:
        raise AssertionError("expected a ValueError")
