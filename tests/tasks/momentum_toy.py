"""A MoCo-shaped toy task for the loop's hook interface: a momentum (EMA) key encoder and a queue of keys written
every step, added without touching tasks/loop.py (the future MoCo's skeleton).

Per step: two noisy views x1, x2 of random vectors; queries q = l2n(f(x1)) from the trained encoder f, keys
k = l2n(f_k(x2)) from the momentum encoder f_k (no gradient); InfoNCE over [q.k, q.queue^T] / temperature with the
positive first. After the optimizer: the global batch of keys (gathered over replicas, in replica order) overwrites
the oldest queue rows (`after_replica_step`, a per-step buffer write in replica context), then
f_k <- m f_k + (1 - m) f (`after_step`, an EMA update in cross-replica context).
"""

# b: batch, d: key dimension, K: queue length
import keras
import tensorflow as tf

from goaldriven import hooks, runtime
from goaldriven.tasks import base


class MomentumQueue(hooks.LoopHook):
    """The momentum encoder and the key queue, checkpointed through `build`."""

    def __init__(self, *, queue_size: int = 16, momentum: float = 0.9):
        self.queue_size, self.momentum = queue_size, momentum
        self.key_encoder = self.queue = self.pointer = self._model = None

    def build(self, state: hooks.LoopState) -> dict:
        self._model = state.model
        self.key_encoder = keras.models.clone_model(state.model)
        self.key_encoder.build(state.model.input_shape)
        self.key_encoder.set_weights(state.model.get_weights())
        self.key_encoder.trainable = False
        dim = state.model.output_shape[-1]
        initial = tf.math.l2_normalize(tf.random.stateless_normal([self.queue_size, dim], [state.seed, 7]), axis=1)
        # ONLY_FIRST_REPLICA: every replica writes the same gathered keys; replica context keeps the first one's.
        only_first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.queue = tf.Variable(initial, trainable=False, name="key_queue", aggregation=only_first)
        self.pointer = tf.Variable(0, dtype=tf.int32, trainable=False, name="queue_pointer", aggregation=only_first)
        return {"key_encoder": list(self.key_encoder.variables), "key_queue": self.queue, "queue_pointer": self.pointer}

    def after_replica_step(self, ctx: hooks.StepContext, phase, substep) -> None:
        del phase, substep
        keys = tf.distribute.get_replica_context().all_gather(ctx.outputs["keys"], axis=0)  # (global b, d)
        rows = (self.pointer + tf.range(tf.shape(keys)[0])) % self.queue_size
        self.queue.assign(tf.tensor_scatter_nd_update(self.queue, rows[:, None], keys))
        self.pointer.assign((self.pointer + tf.shape(keys)[0]) % self.queue_size)

    def after_step(self, state: hooks.LoopState, phase, substep) -> None:
        del state, phase, substep
        for key, query in zip(self.key_encoder.weights, self._model.weights):
            key.assign(self.momentum * key + (1.0 - self.momentum) * query)


class MomentumContrastTask(base.Task):
    """InfoNCE with a momentum key encoder and a queue (module docstring)."""

    name = "momentum_toy"

    def __init__(self, dim: int = 3, temperature: float = 0.5, **queue_kwargs):
        self.dim, self.temperature = dim, temperature
        self.memory = MomentumQueue(**queue_kwargs)

    @property
    def metric_names(self):
        return ("positive_similarity",)

    def hooks(self):
        return (self.memory,)

    def build_model(self):
        return keras.Sequential(
            [keras.Input((self.dim,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(4)], name="query"
        )

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        def make(step, step_seed):
            del step
            x = tf.random.stateless_normal([global_batch_size, self.dim], step_seed)
            noise = tf.random.stateless_normal([2, global_batch_size, self.dim], step_seed + 1, stddev=0.1)
            return {"view1": x + noise[0], "view2": x + noise[1]}

        return runtime.step_indexed_dataset(
            make, global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )

    def compute_loss(self, model, batch, *, training):
        q = tf.math.l2_normalize(model(batch["view1"], training=training), axis=1)  # (b, d)
        k = tf.stop_gradient(tf.math.l2_normalize(self.memory.key_encoder(batch["view2"]), axis=1))  # (b, d)
        hooks.record("keys", k)
        positive = tf.reduce_sum(q * k, axis=1, keepdims=True)  # (b, 1)
        negatives = tf.matmul(q, self.memory.queue, transpose_b=True)  # (b, K)
        logits = tf.concat([positive, negatives], axis=1) / self.temperature
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(tf.zeros_like(positive[:, 0], tf.int32), logits)
        )
        return loss, {"positive_similarity": tf.reduce_mean(positive)}
