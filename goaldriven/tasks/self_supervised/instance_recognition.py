"""Instance recognition (Wu et al. 2018) as a task and a memory-bank loop hook (thesis eq. 3.13; spec ch3 A4.5).

    z = l2n(W h + c)  (128-d)                   h: the backbone's representation, one linear layer
    h(u) = [exp(u.z / t) / Z] / (exp(u.z / t) / Z + m / N),   t = 0.07, Z = 2876934.2 / 1281167 x N (fixed, [C])
    L = -log h(v) - sum_{j=1}^{m} log(1 - h(v_j))          v = the example's bank entry, v_j: m = 4096 negatives
    after the optimizer:  v <- l2n(lambda v + (1 - lambda) z),  lambda = 0.5

The bank (N x 128 unit vectors, N = training examples) lives in `MemoryBank`, a loop hook: one variable replicated on
every replica (ONLY_FIRST_REPLICA aggregation, the same pattern as the MoCo queue: every replica gathers the global
batch's (index, z) and writes the same rows, so the copies never diverge) and checkpointed with the run. Full
ImageNet: 1,281,167 x 128 float32 = 656 MB per replica (bench/ssl_step.py measures it). Initial entries: random unit
vectors (stateless, from the run seed).

Decisions: by default the m negatives are drawn uniformly (with replacement) from the whole bank once per step and
replica and shared by that replica's examples; each example still sees m uniform draws, at b times less memory
traffic than the reference's per-example draws (b x m x 128 floats: 537 MB per step at b = 256).
`per_example_negatives=True` draws them per example as the reference does. An example drawn as its own negative is kept (as in the reference). When one
global batch holds an example twice (a batch spanning an epoch boundary), every copy writes the update computed from
its LAST occurrence, so the write is deterministic.
"""

# b: per-replica batch, g: global batch, d: embedding width (128), m: negatives, N: bank rows
import functools
from typing import Any

import tensorflow as tf

from goaldriven import hooks
from goaldriven.models import heads as ssl_heads
from goaldriven.tasks.self_supervised import base, losses

BANK_SEED = 0x1B


class MemoryBank(hooks.LoopHook):
    """The memory bank of instance recognition (module docstring).

    Args:
      num_examples: N (rows; the training split's size).
      dim: embedding width (128).
      momentum: lambda of the update (0.5).
    """

    def __init__(self, num_examples: int, *, dim: int = 128, momentum: float = 0.5):
        if not isinstance(num_examples, int) or num_examples < 1:
            raise ValueError(f"num_examples must be a positive int (the training split). Received: {num_examples!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1) (thesis: 0.5). Received: {momentum}")
        self.num_examples, self.dim, self.momentum = num_examples, dim, float(momentum)
        self.bank = None

    def build(self, state: hooks.LoopState) -> dict:
        initial = tf.math.l2_normalize(
            tf.random.stateless_normal([self.num_examples, self.dim], [state.seed, BANK_SEED]), axis=1
        )
        self.bank = tf.Variable(
            initial, trainable=False, name="memory_bank", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
        )
        return {"memory_bank": self.bank}

    def rows(self, index: tf.Tensor) -> tf.Tensor:
        """Bank entries (.., d) of `index` (no gradient)."""
        return tf.stop_gradient(tf.gather(self.bank, index))

    def update(self, index: tf.Tensor, z: tf.Tensor) -> None:
        """Writes l2n(lambda v + (1 - lambda) z) to rows `index` (g,) of the global batch (deduplicated: module
        docstring)."""
        index = tf.cast(index, tf.int64)
        same = tf.equal(index[:, None], index[None, :])  # (g, g)
        positions = tf.range(tf.shape(index, out_type=tf.int64)[0])
        last = tf.reduce_max(tf.where(same, positions[None, :], -1), axis=1)  # (g,): last occurrence of each index
        z = tf.gather(tf.cast(z, self.bank.dtype), last)
        new = losses.memory_bank_update(tf.gather(self.bank, index), z, momentum=self.momentum)
        self.bank.scatter_update(tf.IndexedSlices(new, index))  # in place (rows only), any strategy

    def after_replica_step(self, ctx: hooks.StepContext, phase, substep) -> None:
        del phase, substep
        self.update(base.all_gather(ctx.outputs["ir_index"]), base.all_gather(ctx.outputs["ir_embedding"]))


class InstanceRecognitionTask(base.SelfSupervisedTask):
    """Instance recognition (module docstring).

    Args (beyond `SelfSupervisedTask`'s):
      temperature: t (0.07).
      num_negatives: m (4096).
      embedding_dim: 128.
      bank_momentum: lambda (0.5).
      normalizer: Z (None: the reference's fixed 2876934.2 / 1281167 x N).
      per_example_negatives: draw m negatives per example (the reference) instead of per replica batch.
      num_examples: N, the bank's rows (None: `dataset.num_train_examples()`, read when the run starts).
    """

    name = "instance_recognition"

    def __init__(
        self,
        *,
        backbone_fn,
        feature: str,
        dataset: Any,
        temperature: float = 0.07,
        num_negatives: int = 4096,
        embedding_dim: int = 128,
        bank_momentum: float = 0.5,
        normalizer: float | None = None,
        per_example_negatives: bool = False,
        num_examples: int | None = None,
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
            raise ValueError(f"temperature must be > 0 (thesis: 0.07). Received: {temperature}")
        if not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"num_negatives must be a positive int (thesis: 4096). Received: {num_negatives!r}")
        if num_examples is not None and (not isinstance(num_examples, int) or num_examples < 1):
            raise ValueError(f"num_examples must be None or a positive int. Received: {num_examples!r}")
        self.temperature, self.num_negatives, self.embedding_dim = float(temperature), num_negatives, embedding_dim
        self._num_examples, self._normalizer = num_examples, normalizer
        self.bank_momentum = bank_momentum
        self.per_example_negatives = bool(per_example_negatives)
        self.seeds = base.StepSeeds()

    @functools.cached_property
    def num_examples(self) -> int:
        """N: the bank's rows (the training split's size unless given)."""
        return int(self.dataset.num_train_examples()) if self._num_examples is None else self._num_examples

    @property
    def normalizer(self) -> float:
        """Z (the reference's fixed value for N unless given)."""
        return losses.ir_normalizer(self.num_examples) if self._normalizer is None else float(self._normalizer)

    @functools.cached_property
    def memory(self) -> MemoryBank:
        return MemoryBank(self.num_examples, dim=self.embedding_dim, momentum=self.bank_momentum)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return losses.IR_METRICS

    def hooks(self):
        return (self.seeds, self.memory)

    def head_specs(self, feature_width: int) -> dict[str, ssl_heads.HeadSpec]:
        del feature_width
        return {"embedding": ssl_heads.HeadSpec((), self.embedding_dim)}

    def compute_loss(self, model, batch, *, training):
        views = base.views(batch, 1)  # (b, 1, s, s, 3)
        if "index" not in batch:
            raise KeyError("instance recognition needs each example's 'index' (its memory-bank row) in the batch.")
        index = tf.cast(batch["index"], tf.int64)  # (b,)
        z = tf.math.l2_normalize(model(views[:, 0], training=training)["embedding"], axis=1)  # (b, d)
        shape = [views.shape[0], self.num_negatives] if self.per_example_negatives else [self.num_negatives]
        negative_rows = tf.random.stateless_uniform(
            shape, self.seeds.seed(2, base.replica_id()), 0, self.num_examples, dtype=tf.int64
        )  # (m,) or (b, m)
        hooks.record("ir_index", index)
        hooks.record("ir_embedding", tf.stop_gradient(z))
        return losses.instance_recognition_loss(
            z,
            self.memory.rows(index),
            self.memory.rows(negative_rows),
            temperature=self.temperature,
            normalizer_z=self.normalizer,
            num_examples=self.num_examples,
        )
