"""MoCo v2 (He et al. 2020; Chen et al. 2020b) as a task and a loop hook (thesis eq. 3.15; spec ch3 A4.7).

    q = l2n(f_q(x1)),  k = l2n(f_k(x2)) (no gradient),  f = backbone + MLP (2048 -> ReLU -> 128)
    L = mean_b -log(exp(q.k / t) / (exp(q.k / t) + sum_{i=1}^{K} exp(q.queue_i / t))),  t = 0.2, K = 65,536
    after the optimizer:  queue <- the global batch of keys replaces the oldest K rows (FIFO ring, pointer)
                          theta_k <- m theta_k + (1 - m) theta_q over the trainable weights, m = 0.999

The key encoder f_k and the queue live in `MomentumEncoder`, a loop hook (goaldriven/hooks.py): built and
checkpointed with the run (key weights, its BN statistics, queue, pointer), so a resumed run continues exactly.
f_k starts as a copy of f_q. Only the trainable weights are averaged (MoCo's parameter EMA); f_k's BN moving
statistics follow its own forward passes in training mode, as in the reference.

Queue across replicas: every replica gathers the global batch of keys (replica order) and writes the same rows, so
the queue (ONLY_FIRST_REPLICA aggregation) is one consistent queue; K must be a multiple of the global batch.

Shuffled BN (`shuffle_bn=True`): the keys are computed on a stateless random permutation of the global batch of
second views split over the replicas, then un-permuted, so the BN statistics behind a query and its key come from
different sub-batches (MoCo's guard against the positive being found through batch statistics). It only matters for
per-replica BN: models whose BN is synchronized across replicas (this library's ResNets) compute the same global
statistics either way, and on one replica there is nothing to shuffle; both cases run unshuffled.
"""

# b: per-replica batch, g: global batch, d: key width, K: queue length
from typing import Any

import tensorflow as tf

from goaldriven import hooks
from goaldriven.models import heads as ssl_heads
from goaldriven.tasks.self_supervised import base, losses

QUEUE_SEED = 0x51


class MomentumEncoder(hooks.LoopHook):
    """The key encoder, its EMA and the key queue of MoCo (module docstring).

    Args:
      build_model: builds a fresh model of the query encoder's architecture (the task's `build_model`).
      queue_size: K.
      momentum: m of the EMA.
      key_output: the model output used as the key ("projection").
    """

    def __init__(self, build_model, *, queue_size: int = 65536, momentum: float = 0.999, key_output="projection"):
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive int (thesis: 65536). Received: {queue_size!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (thesis: 0.999). Received: {momentum}")
        self.build_model = build_model
        self.queue_size, self.momentum, self.key_output = queue_size, float(momentum), key_output
        self.key_encoder = self.queue = self.pointer = None
        self._pairs = []

    def build(self, state: hooks.LoopState) -> dict:
        self.key_encoder = self.build_model()
        self._pairs = list(zip(self.key_encoder.trainable_variables, state.model.trainable_variables))
        if len(self._pairs) != len(state.model.trainable_variables) or any(k.shape != q.shape for k, q in self._pairs):
            raise ValueError("the key encoder built by build_model does not match the query encoder's weights.")
        for variable in self.key_encoder.trainable_variables:
            variable.trainable = False  # f_k gets no gradient; the EMA moves it
        self.key_encoder.set_weights(state.model.get_weights())
        dim = int(state.model.heads[self.key_output].spec.output)
        initial = tf.math.l2_normalize(
            tf.random.stateless_normal([self.queue_size, dim], [state.seed, QUEUE_SEED]), axis=1
        )
        only_first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.queue = tf.Variable(initial, trainable=False, name="moco_queue", aggregation=only_first)
        self.pointer = tf.Variable(0, dtype=tf.int32, trainable=False, name="moco_pointer", aggregation=only_first)
        return {
            "moco_key_encoder": list(self.key_encoder.variables),
            "moco_queue": self.queue,
            "moco_pointer": self.pointer,
        }

    def enqueue(self, keys: tf.Tensor) -> None:
        """Writes the global batch `keys` (g, d) over the oldest rows (replica context or no strategy)."""
        g = keys.shape[0]
        if g is None or self.queue_size % g:
            raise ValueError(
                f"the MoCo queue ({self.queue_size} keys) must be a multiple of the global batch ({g}); change "
                "QUEUE_SIZE or GLOBAL_BATCH_SIZE."
            )
        rows = self.pointer + tf.range(g)  # (g,): no wrap inside one batch since K % g == 0
        self.queue.scatter_update(tf.IndexedSlices(tf.cast(keys, self.queue.dtype), rows))  # in place, any strategy
        self.pointer.assign((self.pointer + g) % self.queue_size)

    def after_replica_step(self, ctx: hooks.StepContext, phase, substep) -> None:
        del phase, substep
        self.enqueue(base.all_gather(ctx.outputs["moco_keys"]))

    def after_step(self, state: hooks.LoopState, phase, substep) -> None:
        del state, phase, substep
        m = self.momentum
        for key, query in self._pairs:
            key.assign(m * key + (1.0 - m) * query)


class MoCoTask(base.SelfSupervisedTask):
    """MoCo v2 (module docstring).

    Args (beyond `SelfSupervisedTask`'s):
      temperature: t (thesis: 0.2).
      queue_size: K (thesis: 65,536).
      momentum: EMA momentum m (thesis: 0.999).
      hidden_dim, projection_dim: the MLP head (2048 -> 128, no BN).
      shuffle_bn: shuffle the keys' batch across replicas (module docstring).
    """

    name = "moco_v2"

    def __init__(
        self,
        *,
        backbone_fn,
        feature: str,
        dataset: Any,
        temperature: float = 0.2,
        queue_size: int = 65536,
        momentum: float = 0.999,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        shuffle_bn: bool = True,
        head_weight_decay: float = 0.0,
        learning_rule: Any = None,
    ):
        super().__init__(
            backbone_fn=backbone_fn,
            feature=feature,
            dataset=dataset,
            head_weight_decay=head_weight_decay,
            learning_rule=learning_rule,
        )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (thesis: 0.2). Received: {temperature}")
        self.temperature = float(temperature)
        self.hidden_dim, self.projection_dim = hidden_dim, projection_dim
        self.shuffle_bn = bool(shuffle_bn)
        self.memory = MomentumEncoder(self.build_model, queue_size=queue_size, momentum=momentum)
        self.seeds = base.StepSeeds()

    @property
    def metric_names(self) -> tuple[str, ...]:
        return losses.MOCO_METRICS

    def hooks(self):
        return (self.seeds, self.memory)

    def head_specs(self, feature_width: int) -> dict[str, ssl_heads.HeadSpec]:
        del feature_width
        return {"projection": ssl_heads.HeadSpec((self.hidden_dim,), self.projection_dim, hidden_bn=False)}

    def keys(self, views2: tf.Tensor, *, training: bool) -> tf.Tensor:
        """l2n(f_k(x2)) (b, d) for this replica's second views, through the shuffled-BN permutation if enabled."""
        encoder = self.memory.key_encoder
        if encoder is None:
            raise RuntimeError("MoCoTask.compute_loss runs inside the loop (its MomentumEncoder hook builds f_k).")
        replicas = base.num_replicas()
        if not (self.shuffle_bn and replicas > 1):
            return tf.stop_gradient(tf.math.l2_normalize(encoder(views2, training=training)["projection"], axis=1))
        b = views2.shape[0]
        everything = base.all_gather(views2)  # (g, s, s, 3)
        order = tf.random.experimental.stateless_shuffle(tf.range(b * replicas), self.seeds.seed(1))  # (g,)
        mine = tf.gather(everything, tf.gather(order, base.replica_id() * b + tf.range(b)))
        keys = tf.math.l2_normalize(encoder(mine, training=training)["projection"], axis=1)  # shuffled order
        gathered = base.all_gather(keys)  # (g, d): row j is the key of example order[j]
        unshuffled = tf.scatter_nd(order[:, None], gathered, tf.shape(gathered))  # row i: key of example i
        return tf.stop_gradient(tf.gather(unshuffled, base.replica_id() * b + tf.range(b)))

    def compute_loss(self, model, batch, *, training):
        views = base.views(batch, 2)  # (b, 2, s, s, 3)
        q = model(views[:, 0], training=training)["projection"]  # (b, d)
        k = self.keys(views[:, 1], training=training)  # (b, d)
        hooks.record("moco_keys", k)
        return losses.moco_loss(q, k, tf.stop_gradient(self.memory.queue), temperature=self.temperature)
