"""Benchmark: time per observables recording (goaldriven/observables/recorder.py) on a KNet-sized CIFAR network.

Reference: spec ch5_ch6 Section 11.3 (recorded at epochs 0, 5, ..., 100 over the whole validation set); the issue
asks for the recorder's overhead per checkpoint relative to one training epoch.

A KNet4-shaped network (conv 5x5x64 -> pool -> conv 5x5x64 -> pool -> dense 384 -> dense 192 -> dense 10, ReLU) on
random 32x32x3 images trains under the real loop (OneDeviceStrategy, CPU) for `--epochs` epochs of `--steps-per-epoch`
steps at batch `--batch`, with the recorder at every epoch over `--stimuli` validation images. Reported: the first
recording (probe trace + two tf.function traces + the pass), the median of the later ones, and the median time of a
training step, from which one training epoch of `--epoch-steps` steps (CIFAR-10 at batch 128: 390) is estimated.

Usage: python bench/observables.py [--stimuli 1000] [--batch 128] [--epochs 3] [--steps-per-epoch 10]
       [--all-statistics] [--perturbations 1]
"""

import argparse
import re
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from goaldriven import hooks, runtime
from goaldriven.observables import recorder
from goaldriven.observables import statistics as stats
from goaldriven.tasks import base, loop


class KNetLike(base.Task):
    name = "knet_like"
    metric_names = ()

    def build_model(self):
        layers = keras.layers
        return keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                layers.Conv2D(64, 5, padding="same", activation="relu"),
                layers.MaxPooling2D(3, 2, padding="same"),
                layers.Conv2D(64, 5, padding="same", activation="relu"),
                layers.MaxPooling2D(3, 2, padding="same"),
                layers.Flatten(),
                layers.Dense(384, activation="relu"),
                layers.Dense(192, activation="relu"),
                layers.Dense(10),
            ]
        )

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        def make(step, step_seed):
            del step
            images = tf.random.stateless_normal([global_batch_size, 32, 32, 3], step_seed)
            labels = tf.random.stateless_uniform([global_batch_size], step_seed + 1, maxval=10, dtype=tf.int32)
            return {"images": images, "labels": labels}

        return runtime.step_indexed_dataset(
            make, global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )

    def compute_loss(self, model, batch, *, training):
        logits = model(batch["images"], training=training)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], logits)), {}


class Validation:
    def __init__(self, n):
        self.images = np.random.default_rng(0).normal(size=(n, 32, 32, 3)).astype(np.float32)

    def eval_dataset(self, *, global_batch_size, input_context):
        context = input_context or tf.distribute.InputContext()
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        return tf.data.Dataset.from_tensor_slices({"images": self.images}).batch(per_replica)


class StepTimer(hooks.LoopHook):
    """Stops the loop after every step so each step's wall time is measured by the host."""

    def __init__(self):
        self.times, self._last = [], None

    def next_stop(self, step):
        return step + 1

    def on_loop_end(self, state, step):
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stimuli", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--eval-batch", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--epoch-steps", type=int, default=390)
    parser.add_argument("--all-statistics", action="store_true")
    parser.add_argument("--perturbations", type=int, default=1)
    args = parser.parse_args()
    perturbations = [(1.0, 0.0, 0)] + [(0.1, 1.0, seed) for seed in range(1, args.perturbations)]
    lines, timer = [], StepTimer()
    rec = recorder.ObservablesRecorder(
        Validation(args.stimuli), steps_per_epoch=args.steps_per_epoch, task="bench", architecture="knet_like",
        rule="sgdm", batch_size=args.batch, epochs=range(args.epochs + 1), eval_batch_size=args.eval_batch,
        statistics=stats.STATISTICS if args.all_statistics else stats.ADMISSIBLE, perturbations=perturbations,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        loop.run(
            task=KNetLike(), strategy=tf.distribute.OneDeviceStrategy("/cpu:0"), workdir=workdir,
            train_steps=args.epochs * args.steps_per_epoch, global_batch_size=args.batch, learning_rate=0.01,
            checkpoint_every=10**6, evaluate_at_end=False, hooks=[rec, timer], log=lines.append,
        )  # fmt: skip
    seconds = [float(m.group(1)) for line in lines if (m := re.search(r"observables epoch .* in ([0-9.]+) s", line))]
    step = statistics.median(timer.times[1:])  # (the first includes the train step's trace)
    later = statistics.median(seconds[1:])
    print(f"statistics {len(rec.statistics)}, perturbations {len(perturbations)}, {args.stimuli} stimuli")
    print(f"first recording (with traces): {seconds[0]:.2f} s; later recordings: median {later:.2f} s")
    print(f"training step (batch {args.batch}): median {step * 1e3:.1f} ms (includes one recording per epoch)")
    print(f"recording / training epoch of {args.epoch_steps} steps: {later / (step * args.epoch_steps):.3f}")


if __name__ == "__main__":
    main()
