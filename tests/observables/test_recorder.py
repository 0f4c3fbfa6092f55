"""The observables recorder in real tiny training runs through goaldriven.tasks.loop.run: recorded epochs, values
against NumPy on the initial model, identical output after SIGTERM-resume, MirroredStrategy = one device."""

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import runtime
from goaldriven.observables import recorder, storage
from goaldriven.observables import statistics as stats
from goaldriven.tasks import base, loop
from tests import loop_testing, strategies

N_EVAL, BATCH = 10, 4


class TinyConvTask(base.Task):
    """Softmax regression of random labels from random 6x6x2 images through two convs and a dense readout."""

    name = "tiny_conv"
    metric_names = ()

    def build_model(self):
        return keras.Sequential(
            [
                keras.Input((6, 6, 2)),
                keras.layers.Conv2D(3, 3, activation="relu", name="c1"),
                keras.layers.Conv2D(2, 3, name="c2"),
                keras.layers.Flatten(),
                keras.layers.Dense(3, name="fc"),
            ]
        )

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        def make(step, step_seed):
            del step
            images = tf.random.stateless_normal([global_batch_size, 6, 6, 2], step_seed)
            labels = tf.random.stateless_uniform([global_batch_size], step_seed + 1, maxval=3, dtype=tf.int32)
            return {"images": images, "labels": labels}

        return runtime.step_indexed_dataset(
            make, global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )

    def compute_loss(self, model, batch, *, training):
        logits = model(batch["images"], training=training)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], logits)), {}


class EvalData:
    """N_EVAL fixed stimuli, padded to whole global batches with weight 0 (the eval-data contract)."""

    images = np.random.default_rng(7).normal(size=(N_EVAL, 6, 6, 2)).astype(np.float32)

    def eval_dataset(self, *, global_batch_size, input_context):
        context = input_context or tf.distribute.InputContext()
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        total = -(-N_EVAL // global_batch_size) * global_batch_size
        images = np.concatenate([self.images, np.zeros((total - N_EVAL, 6, 6, 2), np.float32)])
        weight = (np.arange(total) < N_EVAL).astype(np.float32)
        dataset = tf.data.Dataset.from_tensor_slices({"images": images, "weight": weight}).batch(per_replica)
        return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)


def _recorder(**kwargs):
    kwargs.setdefault("epochs", range(5))
    return recorder.ObservablesRecorder(
        EvalData(), steps_per_epoch=2, task="tiny", architecture="tinyconv", rule="adam", batch_size=BATCH,
        model_seed=0, eval_batch_size=4, **kwargs,
    )  # fmt: skip


def _run(workdir, steps, extra=(), strategy=None, log=None, **recorder_kwargs):
    return loop.run(
        task=TinyConvTask(),
        strategy=strategy or strategies.one_device(),
        workdir=str(workdir),
        train_steps=steps,
        global_batch_size=BATCH,
        learning_rate=0.05,
        steps_per_loop=100,
        checkpoint_every=100,
        evaluate_at_end=False,
        hooks=[_recorder(**recorder_kwargs), *extra],
        log=log or (lambda _: None),
    )


def _np_stats(x, wanted):
    """NumPy statistics (fn, stat) of each row of x (b, n)."""
    fns = {"raw": x, "abs": np.abs(x), "sq": x**2}
    out = []
    for fn, stat in wanted:
        v = fns[fn].astype(np.float64)
        out.append(
            {
                "mean": v.mean(1),
                "norm": np.sqrt((v**2).sum(1)),
                "var": v.var(1),
                "median": np.percentile(v, 50, axis=1),
                "thirdquartile": np.percentile(v, 75, axis=1),
            }[stat]
        )
    return np.stack(out, 1)  # (b, S)


def test_epochs_recorded_and_epoch_zero_matches_numpy_on_the_initial_model(tmp_path):
    lines = []
    _run(tmp_path, steps=6, log=lines.append)  # epochs 0-3 reached (4 would be step 8)
    obs = storage.read(str(tmp_path / recorder.FILENAME))
    np.testing.assert_array_equal(obs.epochs, [0, 1, 2, 3])
    assert [layer.name for layer in obs.layers] == ["c1", "c2", "fc"]
    assert [layer.kind for layer in obs.layers] == ["conv", "conv", "dense"] and obs.statistics == list(
        stats.ADMISSIBLE
    )
    assert obs.run == storage.RunInfo("tiny", "tinyconv", "adam", BATCH, 0, None)
    assert sum("observables epoch" in line and " s" in line and "10 stimuli" in line for line in lines) == 4
    values = obs.values()
    assert np.isfinite(values).all() and not np.allclose(values[0], values[3])
    # Epoch 0 from the initial weights (the loop seeds with seed=0 before building), independently in NumPy.
    keras.utils.set_random_seed(0)
    model = TinyConvTask().build_model()
    kernels = [model.get_layer(n).kernel.numpy() for n in ("c1", "c2", "fc")]
    first = keras.Model(model.inputs[0], model.get_layer("c1").output)(EvalData.images).numpy()  # post-ReLU (A18)
    second = keras.Model(model.inputs[0], model.get_layer("c2").output)(EvalData.images).numpy()
    index = {name: i for i, name in enumerate(obs.statistics)}
    weights_wanted = [tuple(n.split("_")[1:]) for n in stats.ADMISSIBLE if n.startswith("weights")]
    acts_wanted = [tuple(n.split("_")[1:]) for n in stats.ADMISSIBLE if n.startswith("activations")]
    for li, kernel in enumerate(kernels):
        expected = _np_stats(kernel.reshape(1, -1), weights_wanted)[0]
        got = values[0, li, [index["weights_" + "_".join(w)] for w in weights_wanted]]
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
    for li, act in ((0, first), (1, second)):
        expected = _np_stats(act.reshape(N_EVAL, -1), acts_wanted).mean(0)  # averaged over the 10 real stimuli
        got = values[0, li, [index["activations_" + "_".join(a)] for a in acts_wanted]]
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
    # The linear readout: v_i = sum_j W_ij for every stimulus; gradavg_f = sum_i f(v_i) / n_out.
    v = kernels[2].sum(1)
    gradavg = values[0, 2, [index["gradavg_raw"], index["gradavg_abs"], index["gradavg_sq"]]]
    np.testing.assert_allclose(gradavg, [v.sum() / 3, np.abs(v).sum() / 3, (v**2).sum() / 3], rtol=1e-5)


PERTURBATIONS = ((1.0, 0.0, 0), (0.3, 0.5, 1))


def test_sigterm_resume_gives_a_byte_identical_table(tmp_path):
    assert threading.current_thread() is threading.main_thread()  # the loop's SIGTERM handler needs it
    common = dict(perturbations=PERTURBATIONS)
    _run(tmp_path / "straight", steps=8, **common)
    split = tmp_path / "split"
    stopped = _run(split, steps=8, extra=[loop_testing.SigtermAt(3)], **common)
    assert stopped["status"] == "preempted" and stopped["step"] == 3
    path = str(split / recorder.FILENAME)
    assert storage.recorded_epochs(path) == [0, 1]
    # As if epoch 2 (step 4) had been recorded and the run then killed before any checkpoint: dropped on resume.
    fake = storage.read(path).table
    storage.append(path, {**{k: v[:5] for k, v in fake.items()}, "epoch": np.full(5, 2)})
    lines = []
    resumed = _run(split, steps=8, log=lines.append, **common)
    assert resumed["status"] == "finished" and any("dropping observables of epochs [2]" in line for line in lines)
    a, b = storage.read(str(tmp_path / "straight" / recorder.FILENAME)), storage.read(path)
    np.testing.assert_array_equal(a.epochs, [0, 1, 2, 3, 4])
    assert a.table.keys() == b.table.keys() and len(a.table["value"]) == 5 * 3 * 24 * 2
    for name in a.table:
        assert a.table[name].tobytes() == b.table[name].tobytes(), name
    for f, n, s in PERTURBATIONS:
        assert a.values(f, n, s).tobytes() == b.values(f, n, s).tobytes()
    assert not np.array_equal(a.values(*PERTURBATIONS[1]), a.values())


@pytest.mark.slow  # ~15 s: two runs, one of them mirrored over 2 logical CPUs
def test_mirrored_strategy_matches_one_device(tmp_path):
    common = dict(epochs=(0, 1), perturbations=((1.0, 0.0, 0), (0.3, 0.0, 5)))
    _run(tmp_path / "one", steps=2, **common)
    _run(tmp_path / "two", steps=2, strategy=strategies.mirrored(), **common)
    one, two = (storage.read(str(tmp_path / d / recorder.FILENAME)) for d in ("one", "two"))
    np.testing.assert_array_equal(one.epochs, two.epochs)
    for p in ((1.0, 0.0, 0), (0.3, 0.0, 5)):
        np.testing.assert_allclose(one.values(*p), two.values(*p), rtol=1e-5, atol=1e-6)


def test_untrained_run_records_epoch_zero_only_all_45_and_refuses_another_header(tmp_path):
    _run(tmp_path, steps=0, statistics=stats.STATISTICS)
    obs = storage.read(str(tmp_path / recorder.FILENAME))
    np.testing.assert_array_equal(obs.epochs, [0])
    values = obs.values()[0]  # (L, 45): the admissible ones finite here; skew etc. are computed too
    assert values.shape == (3, 45) and np.isfinite(values[:, [obs.statistics.index(n) for n in stats.ADMISSIBLE]]).all()
    with pytest.raises(ValueError, match="another run or setting"):
        _run(tmp_path, steps=0)


def test_alternating_rules_record_at_the_task_optimizers_epochs():
    class Data:
        def eval_dataset(self, *, global_batch_size, input_context):
            raise AssertionError("not read")

    from goaldriven.observables import recorder as recorder_lib  # pylint: disable=g-import-not-at-top

    # IA: 7 alignment-only delay steps, then (R, J) pairs: 2 x 10 loop steps per task epoch
    rec = recorder_lib.ObservablesRecorder(
        Data(), steps_per_epoch=20, first_step=7, task="t", architecture="a", rule="ia", batch_size=2, epochs=(0, 1, 5)
    )
    assert [rec.step_of(e) for e in (0, 1, 5)] == [0, 27, 107]
    assert [rec.next_stop(s) for s in (0, 26, 27, 106, 107)] == [27, 27, 107, 107, None]
    assert [rec.epoch_at(s) for s in (0, 26, 27, 200)] == [0, 0, 1, 5]
    with pytest.raises(ValueError, match="first_step"):
        recorder_lib.ObservablesRecorder(
            Data(), steps_per_epoch=2, first_step=-1, task="t", architecture="a", rule="r", batch_size=2
        )
