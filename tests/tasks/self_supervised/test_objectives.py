"""The self-supervised objectives as tasks of the unchanged loop: XLA, MirroredStrategy, mixed_bfloat16, exact resume
after SIGTERM (queue and bank included), the MoCo queue (FIFO) and EMA, the instance-recognition bank update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks import loop, train_step
from goaldriven.tasks.self_supervised import (
    digits_data,
    instance_recognition,
    moco,
    rotnet,
    simclr,
    simsiam,
)
from tests import loop_testing, strategies
from tests.tasks.test_hooks import _saved

SIZE, BATCH = 16, 4


class TinyBackbone(keras.Model):
    """The zoo contract at the smallest size: conv 3x3 -> synchronized BN -> ReLU -> global pool ("pool")."""

    feature_names = ("conv", "pool")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(6, 3, strides=2, name="conv")
        self.norm = keras.layers.BatchNormalization(synchronized=True, name="bn")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.logits = keras.layers.Dense(1, name="logits")

    def call(self, images, training=False):
        conv = keras.ops.relu(self.norm(self.conv(images), training=training))
        pool = self.pool(conv)
        return {"logits": keras.ops.cast(self.logits(pool), "float32"), "features": {"conv": conv, "pool": pool}}


def _backbone():
    model = TinyBackbone(name="tiny")
    model(keras.KerasTensor((None, SIZE, SIZE, 3)))
    return model


def _data(views=2):
    if views == "rotations":
        return digits_data.DigitsSSLData(image_size=SIZE, mode="rotations")
    return digits_data.DigitsSSLData(image_size=SIZE, num_views=views)


TASKS = {
    "simclr": lambda: simclr.SimCLRTask(backbone_fn=_backbone, feature="pool", dataset=_data(), hidden_dim=16,
                                        projection_dim=8),
    "simclr_chapter6": lambda: simclr.SimCLRTask(backbone_fn=_backbone, feature="pool", dataset=_data(),
                                                 head_style="chapter6", cross_replica=False, projection_dim=8),
    "moco": lambda: moco.MoCoTask(backbone_fn=_backbone, feature="pool", dataset=_data(), queue_size=16,
                                  hidden_dim=16, projection_dim=8, momentum=0.9),
    "simsiam": lambda: simsiam.SimSiamTask(backbone_fn=_backbone, feature="pool", dataset=_data(), projector_dim=16,
                                           predictor_hidden=8),
    "instance_recognition": lambda: instance_recognition.InstanceRecognitionTask(
        backbone_fn=_backbone, feature="pool", dataset=_data(views=1), num_negatives=8, embedding_dim=8),
    "instance_recognition_per_example": lambda: instance_recognition.InstanceRecognitionTask(
        backbone_fn=_backbone, feature="pool", dataset=_data(views=1), num_negatives=8, embedding_dim=8,
        per_example_negatives=True),
    "rotnet": lambda: rotnet.RotNetTask(backbone_fn=_backbone, feature="pool", dataset=_data(views="rotations")),
}  # fmt: skip


def _run(name, workdir, *, steps, strategy=None, jit=False, extra_hooks=(), log=None):
    return loop.run(
        task=TASKS[name](),
        strategy=strategy or strategies.one_device(),
        workdir=str(workdir),
        train_steps=steps,
        global_batch_size=BATCH,
        optimizer=keras.optimizers.SGD,
        learning_rate=0.05,
        steps_per_loop=2,
        checkpoint_every=100,
        jit_compile=jit,
        evaluate_at_end=False,
        hooks=list(extra_hooks),
        log=log or (lambda _: None),
    )


@pytest.mark.parametrize("name", sorted(TASKS))
def test_train_step_compiles_with_xla_and_learns_something(name):
    task = TASKS[name]()
    strategy = strategies.one_device()
    with strategy.scope():
        model = task.build_model()
        optimizer = keras.optimizers.SGD(0.05)
    train, prepared = train_step.build_train_loop(
        task, model, optimizer, strategy, hooks=task.hooks(), jit_compile=True
    )
    before = [v.numpy() for v in model.trainable_variables]
    data = task.train_dataset(global_batch_size=BATCH, input_context=tf.distribute.InputContext(), start_step=0, seed=0)
    sums = train(iter(strategy.experimental_distribute_dataset(data)), tf.constant(2))
    assert set(sums) == set(prepared.metric_names) and set(task.metric_names) <= set(sums)
    assert all(np.isfinite(float(v)) for v in sums.values())
    moved = [np.abs(a - v.numpy()).max() for a, v in zip(before, model.trainable_variables)]
    assert max(moved) > 1e-6


@pytest.mark.parametrize("name", ["simclr", "moco", "instance_recognition", "simsiam", "rotnet"])
def test_mixed_bfloat16_step_is_finite(name, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    task = TASKS[name]()
    model = task.build_model()
    train, _ = train_step.build_train_loop(
        task, model, keras.optimizers.SGD(0.05), strategies.one_device(), hooks=task.hooks()
    )
    data = task.train_dataset(global_batch_size=BATCH, input_context=tf.distribute.InputContext(), start_step=0, seed=0)
    sums = train(iter(data), tf.constant(1))
    assert model.backbone.compute_dtype == "bfloat16"
    assert np.isfinite(float(sums["loss"]))


@pytest.mark.parametrize("name", ["moco", "instance_recognition", "simclr", "simsiam", "rotnet"])
def test_sigterm_then_resume_is_bit_identical_including_queue_and_bank(name, tmp_path):
    jit = name == "moco"  # XLA compiles three times per run; the compile itself is tested above for every objective
    _run(name, tmp_path / "straight", steps=4, jit=jit)
    stopped = _run(name, tmp_path / "split", steps=4, jit=jit, extra_hooks=[loop_testing.SigtermAt(3)])
    assert stopped["status"] == "preempted" and stopped["step"] == 3
    resumed = _run(name, tmp_path / "split", steps=4, jit=jit)
    assert resumed["status"] == "finished"
    a, b = _saved(tmp_path / "straight"), _saved(tmp_path / "split")
    assert a.keys() == b.keys()
    state = {"moco": "moco_queue", "instance_recognition": "memory_bank"}.get(name, "model_variables")
    assert any(n.startswith(state) for n in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("name", ["moco", "instance_recognition", "simclr", "simclr_chapter6", "simsiam", "rotnet"])
def test_mirrored_strategy_runs_and_keeps_one_consistent_queue_and_bank(name, tmp_path):
    result = _run(name, tmp_path, steps=2, strategy=strategies.mirrored())
    assert result["status"] == "finished" and np.isfinite(result["train"]["loss"])
    if name == "moco":
        saved = _saved(tmp_path)
        assert int(saved["moco_pointer/.ATTRIBUTES/VARIABLE_VALUE"]) == 2 * BATCH


def test_moco_queue_is_fifo_and_key_encoder_is_the_exact_ema(tmp_path):
    _run("moco", tmp_path, steps=1, jit=True)
    saved = _saved(tmp_path)
    task = TASKS["moco"]()
    keras.utils.set_random_seed(0)  # the loop seeds with seed=0 before building
    initial = task.build_model()
    w0 = [v.numpy() for v in initial.trainable_variables]
    query = [saved[n] for n in sorted(saved) if n.startswith("model_variables/")]
    assert query
    # The key encoder after one step: m * initial + (1 - m) * trained, for every trainable weight.
    names = {id(v): i for i, v in enumerate(initial.variables)}
    trainable = [names[id(v)] for v in initial.trainable_variables]
    key = [saved[f"moco_key_encoder/{i}/.ATTRIBUTES/VARIABLE_VALUE"] for i in trainable]
    trained = [saved[f"model_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"] for i in trainable]
    assert len(key) == len(w0) == len(trained)
    assert max(np.abs(t - a).max() for t, a in zip(trained, w0)) > 1e-6
    for k, a, t in zip(key, w0, trained):
        np.testing.assert_allclose(k, 0.9 * a + 0.1 * t, rtol=1e-5, atol=1e-6)
    # FIFO: rows [0, BATCH) hold step 0's keys (initial key encoder, training-mode BN); the rest is untouched.
    batch = next(iter(task.train_dataset(global_batch_size=BATCH, input_context=tf.distribute.InputContext(),
                                         start_step=0, seed=0)))  # fmt: skip
    keys = tf.math.l2_normalize(initial(batch["views"][:, 1], training=True)["projection"], axis=1).numpy()
    queue = saved["moco_queue/.ATTRIBUTES/VARIABLE_VALUE"]
    np.testing.assert_allclose(queue[:BATCH], keys, rtol=1e-4, atol=1e-5)
    untouched = tf.math.l2_normalize(tf.random.stateless_normal([16, 8], [0, moco.QUEUE_SEED]), axis=1).numpy()
    np.testing.assert_array_equal(queue[BATCH:], untouched[BATCH:])
    assert int(saved["moco_pointer/.ATTRIBUTES/VARIABLE_VALUE"]) == BATCH


def test_moco_queue_wraps_in_arrival_order():
    memory = moco.MomentumEncoder(lambda: None, queue_size=6, momentum=0.5)
    memory.queue = tf.Variable(np.zeros((6, 2), np.float32))
    memory.pointer = tf.Variable(0)
    for step in range(4):  # 4 batches of 3 keys through 6 rows
        memory.enqueue(tf.fill([3, 2], float(step + 1)))
    np.testing.assert_array_equal(memory.queue.numpy()[:, 0], [3, 3, 3, 4, 4, 4])
    assert int(memory.pointer.numpy()) == 0
    with pytest.raises(ValueError, match="multiple of the global batch"):
        memory.enqueue(tf.ones([4, 2]))


def test_memory_bank_update_normalises_and_resolves_duplicates_deterministically():
    bank = instance_recognition.MemoryBank(5, dim=2, momentum=0.5)
    bank.bank = tf.Variable(np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], np.float32))
    z = np.array([[0, 1], [1, 0], [0, -1]], np.float32)
    bank.update(tf.constant([0, 3, 0]), tf.constant(z))  # example 0 twice: its last occurrence (z = (0, -1)) wins
    expected = np.array([[1, 0], [0, 1], [1, 0], [0.5 + 0.5, 0.5 * 1], [1, 0]], np.float32)
    expected[0] = np.array([0.5, -0.5]) / np.linalg.norm([0.5, -0.5])
    expected[3] = np.array([0.5, 0.5]) / np.linalg.norm([0.5, 0.5])
    np.testing.assert_allclose(bank.bank.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(bank.bank.numpy(), axis=1), 1.0, rtol=1e-6)


def test_instance_recognition_bank_rows_after_one_step_are_the_updated_embeddings(tmp_path):
    _run("instance_recognition", tmp_path, steps=1)
    saved = _saved(tmp_path)
    task = TASKS["instance_recognition"]()
    keras.utils.set_random_seed(0)
    initial = task.build_model()
    batch = next(iter(task.train_dataset(global_batch_size=BATCH, input_context=tf.distribute.InputContext(),
                                         start_step=0, seed=0)))  # fmt: skip
    z = tf.math.l2_normalize(initial(batch["views"][:, 0], training=True)["embedding"], axis=1).numpy()
    n = task.dataset.num_train_examples()
    start = tf.math.l2_normalize(tf.random.stateless_normal([n, 8], [0, instance_recognition.BANK_SEED]), axis=1)
    start = start.numpy()
    index = batch["index"].numpy()
    expected = start.copy()
    update = 0.5 * start[index] + 0.5 * z
    expected[index] = update / np.linalg.norm(update, axis=1, keepdims=True)
    np.testing.assert_allclose(saved["memory_bank/.ATTRIBUTES/VARIABLE_VALUE"], expected, rtol=1e-4, atol=1e-5)


def test_objectives_reject_data_with_the_wrong_number_of_views():
    task = TASKS["simclr"]()
    model = task.build_model()
    batch = {"views": tf.zeros([2, 4, SIZE, SIZE, 3]), "labels": tf.zeros([2], tf.int32)}
    with pytest.raises(ValueError, match="needs 2 views"):
        task.compute_loss(model, batch, training=True)
    with pytest.raises(ValueError, match="has no feature 'nope'"):
        simclr.SimCLRTask(backbone_fn=_backbone, feature="nope", dataset=_data()).build_model()
