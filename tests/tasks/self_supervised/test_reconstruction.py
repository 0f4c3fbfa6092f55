"""The sparse-autoencoder and depth-prediction tasks: losses against NumPy, and each task's train step through the
loop's compiled step (goaldriven.tasks.train_step) under XLA, mixed bfloat16 and MirroredStrategy, on tiny plans."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import runtime
from goaldriven.models import mirrored
from goaldriven.tasks import train_step
from goaldriven.tasks.self_supervised import reconstruction
from goaldriven.tasks.self_supervised.depth_data import DepthData
from tests import strategies
from tests.tasks.self_supervised import test_depth_data

GLOBAL_BATCH = 4
# A small DAG for the train steps (compile time grows with the ops): a fan-out of "shallow" and a merge into "deep".
MICRO_PLAN = mirrored.Plan(
    edges=(
        mirrored.Edge(mirrored.INPUT, "shallow", (mirrored.Conv(4, 5, 2, 2), mirrored.MaxPool())),  # 32 -> 16 -> 7
        mirrored.Edge("shallow", "stream", (mirrored.Conv(4, 3, 1, 1), mirrored.MaxPool())),  # 7 -> 3
        mirrored.Edge("stream", "deep", (mirrored.Conv(6, 3, 1, 1),)),
        mirrored.Edge("shallow", "deep", (mirrored.Conv(6, 3, 2, 0),)),  # skip: 7 -> 3
    ),
    outputs=("deep",),
)


@dataclasses.dataclass(frozen=True)
class _SmoothViews:
    """An SSL dataset with one view per example: smooth random 32 px images, {"views": (b, 1, s, s, 3)}."""

    image_size: int = 32
    pixel_mean: float = 0.0
    pixel_std: float = 1.0

    def num_train_examples(self):
        return 1000

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        def make(step, step_seed):
            coarse = tf.random.stateless_normal([global_batch_size, 4, 4, 3], step_seed)
            images = tf.image.resize(coarse, [self.image_size, self.image_size], method="bilinear")
            return {
                "views": images[:, None],
                "index": step * global_batch_size + tf.range(global_batch_size, dtype=tf.int64),
            }

        return runtime.step_indexed_dataset(
            make, global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )


def test_sparse_autoencoder_loss_matches_numpy():
    rng = np.random.default_rng(0)
    f, x, v = rng.normal(size=(3, 8, 8, 3)), rng.normal(size=(3, 8, 8, 3)), rng.normal(size=(3, 16))
    squared = (f - x) ** 2
    l1 = np.abs(v).sum(axis=1) / 16  # (lambda / d) ||v||_1 without lambda, per example
    thesis = np.mean(squared.sum(axis=(1, 2, 3)) / (2 * 8 * 8) + 5e-4 * l1)  # Eq. 3.12, batch mean
    reference = np.mean(squared) + 5e-4 * np.mean(np.abs(v))  # the reference code
    for normalization, expected in (("thesis", thesis), ("mean", reference)):
        loss, metrics = reconstruction.sparse_autoencoder_loss(f, x, v, normalization=normalization)
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
        np.testing.assert_allclose(float(metrics["reconstruction_mse"]), np.mean(squared), rtol=1e-5)
        np.testing.assert_allclose(float(metrics["l1"]), np.mean(np.abs(v)), rtol=1e-5)
    assert abs(thesis - reference) > 0.1  # the two normalisations differ (3/2 for RGB)
    with pytest.raises(ValueError, match="normalization must be one of"):
        reconstruction.sparse_autoencoder_loss(f, x, v, normalization="sum")


def test_depth_loss_normalises_each_map_and_matches_numpy():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 10, size=(3, 6, 5, 1)) * np.array([1.0, 100.0, 0.01])[:, None, None, None]
    prediction = rng.normal(size=(3, 6, 5, 1))
    mean = depth.mean(axis=(1, 2, 3), keepdims=True)
    std = depth.std(axis=(1, 2, 3), keepdims=True)  # population std
    target = (depth - mean) / std
    np.testing.assert_allclose(reconstruction.normalize_depth(depth).numpy(), target, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(reconstruction.depth_loss(prediction, depth)), np.mean((prediction - target) ** 2),
                               rtol=1e-5)  # fmt: skip
    flat = reconstruction.normalize_depth(np.full((1, 4, 4, 1), 3.0)).numpy()
    assert np.all(flat == 0)  # a constant map is all zeros, not NaN


def test_tasks_read_images_or_single_views_and_check_their_data():
    images = tf.random.normal([2, 8, 8, 3])
    np.testing.assert_array_equal(reconstruction.batch_images({"images": images}), images)
    np.testing.assert_array_equal(reconstruction.batch_images({"views": images[:, None]}), images)
    with pytest.raises(ValueError, match="needs 1 views per example"):
        reconstruction.batch_images({"views": tf.stack([images, images], axis=1)})
    with pytest.raises(ValueError, match="reconstruction_normalization"):
        reconstruction.SparseAutoencoderTask(dataset=_SmoothViews(), reconstruction_normalization="sum")
    with pytest.raises(TypeError, match="train_dataset"):
        reconstruction.DepthPredictionTask(dataset=object())
    task = reconstruction.SparseAutoencoderTask(dataset=_SmoothViews())
    assert task.input_spec.image_size == 32 and task.plan == mirrored.alexnet_plan()


def _depth_task(tmp_path):
    directory = test_depth_data._write(tmp_path / "depth")
    return reconstruction.DepthPredictionTask(
        dataset=DepthData(directory, image_size=32, crop_size=36), plan=MICRO_PLAN, weight_decay=1e-4
    )


def _autoencoder_task(tmp_path):
    del tmp_path
    return reconstruction.SparseAutoencoderTask(dataset=_SmoothViews(), plan=MICRO_PLAN, embedding_dim=16)


def _train(task, strategy, *, jit, steps):
    with strategy.scope():
        model = task.build_model()
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    before = [v.numpy() for v in model.trainable_variables]
    first = next(iter(task.train_dataset(global_batch_size=GLOBAL_BATCH, input_context=tf.distribute.InputContext(),
                                         start_step=0, seed=0)))  # fmt: skip
    eager_loss = float(task.compute_loss(model, first, training=True)[0])
    data = strategy.distribute_datasets_from_function(
        lambda ctx: task.train_dataset(global_batch_size=GLOBAL_BATCH, input_context=ctx, start_step=0, seed=0)
    )
    train, prepared = train_step.build_train_loop(task, model, optimizer, strategy, jit_compile=jit)
    assert set(task.metric_names) <= set(prepared.metric_names)
    iterator = iter(data)
    sums = [{k: float(v) for k, v in train(iterator, tf.constant(1)).items()} for _ in range(steps)]
    assert all(np.isfinite(v) for step in sums for v in step.values())
    moved = [np.any(v.numpy() != b) for v, b in zip(model.trainable_variables, before)]
    assert all(moved), [v.path for v, m in zip(model.trainable_variables, moved) if not m]
    return model, eager_loss, sums


@pytest.mark.parametrize("make_task", [_autoencoder_task, _depth_task], ids=["autoencoder", "depth"])
def test_train_step_compiles_with_xla_and_computes_the_task_loss(make_task, tmp_path):
    task = make_task(tmp_path)
    _, eager_loss, sums = _train(task, strategies.one_device(), jit=True, steps=6)
    np.testing.assert_allclose(sums[0]["loss"], eager_loss, rtol=1e-4)  # step 0's loss, before the update
    assert sums[0]["reg_loss"] > 0  # the kernels' weight decay reaches the loop
    assert sums[-1]["loss"] < sums[0]["loss"]


@pytest.mark.parametrize("make_task", [_autoencoder_task, _depth_task], ids=["autoencoder", "depth"])
def test_train_step_under_mixed_bfloat16(make_task, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # (XLA: the test above; both together cost 25 s)
    model, _, _ = _train(make_task(tmp_path), strategies.one_device(), jit=False, steps=2)
    assert all(v.dtype == "float32" for v in model.trainable_variables)


@pytest.mark.parametrize("make_task", [_autoencoder_task, _depth_task], ids=["autoencoder", "depth"])
def test_train_step_under_mirrored_strategy(make_task, tmp_path):
    # MirroredStrategy over logical CPUs without XLA (XLA there cannot reach replica variables on the other device),
    # as the loop's own tests do.
    _train(make_task(tmp_path), strategies.mirrored(), jit=False, steps=2)


@pytest.mark.parametrize("make_task", [_autoencoder_task, _depth_task], ids=["autoencoder", "depth"])
def test_sigterm_then_resume_is_bit_identical(make_task, tmp_path):
    from goaldriven.tasks import loop
    from tests import loop_testing

    def run(workdir, extra_hooks=()):
        return loop.run(task=make_task(tmp_path), strategy=strategies.one_device(), workdir=str(workdir),
                        train_steps=4, global_batch_size=GLOBAL_BATCH, optimizer=keras.optimizers.SGD,
                        learning_rate=0.01, steps_per_loop=2, checkpoint_every=100, jit_compile=False,
                        evaluate_at_end=False, hooks=list(extra_hooks), log=lambda _: None)  # fmt: skip

    run(tmp_path / "straight")
    assert run(tmp_path / "split", [loop_testing.SigtermAt(3)])["status"] == "preempted"
    assert run(tmp_path / "split")["status"] == "finished"
    readers = [tf.train.load_checkpoint(str(tmp_path / d / "checkpoints")) for d in ("straight", "split")]

    def saved(reader):
        return sorted(
            n for n in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in n and "save_counter" not in n
        )

    names = saved(readers[0])
    assert names and names == saved(readers[1])
    for name in names:
        np.testing.assert_array_equal(readers[0].get_tensor(name), readers[1].get_tensor(name), err_msg=name)
