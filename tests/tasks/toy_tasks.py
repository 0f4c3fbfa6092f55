"""A tiny linear-regression Task for loop tests (fast, exact, and able to produce a NaN on demand)."""

import keras
import tensorflow as tf

from goaldriven import runtime
from goaldriven.tasks import base


class LinearTask(base.Task):
    """y = x . w_true; MSE loss; the loss becomes NaN from step `nan_from_step` on (if given)."""

    name = "linear"

    def __init__(self, dim: int = 3, nan_from_step: int | None = None):
        self.dim = dim
        self.nan_from_step = nan_from_step

    @property
    def metric_names(self):
        return ("mae",)

    def build_model(self):
        model = keras.Sequential(
            [
                keras.Input((self.dim,)),
                keras.layers.Dense(4, activation="tanh"),
                keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(1e-3)),
            ]
        )
        return model

    def _make(self, global_batch_size):
        def make(step, seed):
            x = tf.random.stateless_normal([global_batch_size, self.dim], tf.cast(seed, tf.int64))
            y = tf.reduce_sum(x * tf.range(1.0, self.dim + 1.0), axis=-1, keepdims=True)
            return {"x": x, "y": y, "step": tf.fill([global_batch_size], step)}

        return make

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return runtime.step_indexed_dataset(
            self._make(global_batch_size),
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=start_step,
            seed=seed,
        )

    def compute_loss(self, model, batch, *, training):
        error = model(batch["x"], training=training) - batch["y"]
        loss = tf.reduce_mean(tf.square(error))
        if self.nan_from_step is not None:
            loss = tf.where(batch["step"][0] >= self.nan_from_step, tf.constant(float("nan")), loss)
        return loss, {"mae": tf.reduce_mean(tf.abs(error))}
