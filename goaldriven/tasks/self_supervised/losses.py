"""The self-supervised losses as pure TensorFlow functions (thesis Section 3.6.5, spec ch3 A4.2-A4.8; Chapter 6
SimCLR, spec ch5 6.4). RotNet is plain 4-way cross-entropy and has no function here.

Every `*_loss` returns (loss, metrics): a float32 scalar and a dict of float32 scalars. Inputs are cast to float32
before any arithmetic, so the losses are exact when the model runs in mixed_bfloat16 (bfloat16 in, float32 out).
Only float64 inputs stay float64 (loss too), for finite-difference tests. They run eagerly, in tf.function, under XLA (jit_compile=True) and in a
replica context of tf.distribute; only `nt_xent_loss(cross_replica=True)` talks to the other replicas.

Notation: l2n(x) = x / ||x||_2 (tf.math.l2_normalize: x / sqrt(max(||x||^2, 1e-12))); sg(x) = stop-gradient;
a.b = dot product; cos(a, b) = l2n(a).l2n(b); t = temperature; softplus(x) = log(1 + exp(x)).

NT-Xent (SimCLR, Chen et al. 2020; thesis Eq. 3.16), `nt_xent_loss`:
    the 2N projections {l2n(z1_1..z1_N), l2n(z2_1..z2_N)} are the keys; every one of them is also an anchor a,
    whose positive p(a) is the other view of the same example:
    l_a = -log( exp(a.p(a)/t) / sum_{k != a} exp(a.k/t) )       (the sum runs over the 2N - 1 other keys)
    L = mean of l_a over this replica's 2b anchors                (N = global batch with cross_replica, else b)
  With equal per-replica batches the mean over replicas of L is the mean over all 2N anchors, the thesis' "computed
  for every positive pair (both orders) in the batch and averaged". The published SimCLR code (google-research/simclr
  add_contrastive_loss) reports loss_a + loss_b, the two directions each averaged over N anchors and then summed:
  twice this L (same gradient direction, twice the scale).

MoCo v2 (He et al. 2020; thesis Eq. 3.15), `moco_loss`:
    q' = l2n(q), k' = sg(l2n(k)), queue rows u_1..u_K (unit vectors, sg)
    L = mean_i -log( exp(q'_i.k'_i/t) / (exp(q'_i.k'_i/t) + sum_j exp(q'_i.u_j/t)) )
  i.e. cross-entropy on the logits [q'.k', q'.queue^T]/t with the positive first (label 0).

SimSiam (Chen & He 2021; thesis Eq. 3.14), `simsiam_loss`:
    L = mean_i -1/2 ( cos(p1_i, sg(z2_i)) + cos(p2_i, sg(z1_i)) )

Instance recognition (Wu et al. 2018; thesis Eq. 3.13), `instance_recognition_loss` (NCE against a memory bank):
    P(u|z) = exp(u.z/t) / Z,   h(u) = P(u|z) / (P(u|z) + m/N)
    L = mean_i [ -log h(v_i) - sum_{j=1..m} log(1 - h(v_ij)) ]
  v_i is example i's current bank entry, v_ij its m negatives, N the bank size (training-set size), Z a fixed
  normaliser (`ir_normalizer`: Z = 2876934.2 / 1281167 * N, the reference's constant). Computed in log space: with
  s = u.z/t - log Z and c = log(m/N),  log h = -softplus(c - s)  and  log(1 - h) = -softplus(s - c),  so
    L = mean_i [ softplus(c - s(v_i)) + sum_j softplus(s(v_ij) - c) ]
  (the reference adds 1e-7 inside both logs; with m/N ~ 3e-3 that changes nothing measurable).
  Negatives: the thesis draws "m = 4096 negatives uniformly from the bank"; the reference code draws them per example
  (torch.randint of shape (b, m), with replacement, the positive may be drawn). Both shapes are accepted:
  (b, m, d) per-example negatives (the reference, and what the IR task draws) or (m, d) shared by the whole batch.
  Bank update after the step (`memory_bank_update`): v <- l2n(momentum * v + (1 - momentum) * z), momentum 0.5.

The reconstruction losses (sparse autoencoder, depth) live with their tasks in reconstruction.py.
"""

# b: per-replica batch, n: global batch, r: replicas, d: embedding size, m: IR negatives, k: MoCo queue length,
# h/w: image space, c: channels
import tensorflow as tf

_MASKED_LOGIT = -1e9  # a logit that exp() sends to exactly 0 in float32 and float64
IR_NORMALIZER_PER_EXAMPLE = 2876934.2 / 1281167  # the reference's Z / N, estimated once on ImageNet (Wu et al.)
# The metric names each loss returns (tasks declare them as their metric_names).
NT_XENT_METRICS = ("contrast_accuracy", "positive_similarity")
MOCO_METRICS = ("contrast_accuracy", "positive_similarity")
SIMSIAM_METRICS = ("representation_std",)
IR_METRICS = ("data_loss", "noise_loss", "positive_similarity")


def _dtype(*tensors) -> tf.DType:
    """float64 if any input is float64, else float32 (bfloat16 / float16 inputs are computed in float32)."""
    return tf.float64 if any(t.dtype == tf.float64 for t in tensors) else tf.float32


def _cast(*values):
    tensors = [tf.convert_to_tensor(v) for v in values]
    dtype = _dtype(*tensors)
    return [tf.cast(t, dtype) for t in tensors]


def _float32(metrics: dict) -> dict:
    return {name: tf.cast(value, tf.float32) for name, value in metrics.items()}


def _check_positive(name: str, value) -> None:
    if isinstance(value, (int, float)) and not value > 0:
        raise ValueError(f"{name} must be > 0. Received: {name}={value}")


def _check_same_shape(a: tf.Tensor, b: tf.Tensor, names: str) -> None:
    if not a.shape.is_compatible_with(b.shape):
        raise ValueError(f"{names} must have the same shape (no broadcasting). Received: {a.shape} and {b.shape}")


def _cross_replica_keys(z1: tf.Tensor, z2: tf.Tensor):
    """The global (n, d) z1 and z2 of all replicas, in replica order, and this replica's first row in them."""
    context = tf.distribute.get_replica_context()
    if context is None:
        raise RuntimeError(
            "nt_xent_loss(cross_replica=True) must run in a replica context (inside strategy.run, or outside any "
            "strategy); it was called in a cross-replica context."
        )
    if context.num_replicas_in_sync == 1:
        return z1, z2, tf.constant(0, tf.int32)
    # ReplicaContext.all_gather's gradient all-reduces (sums) every replica's upstream gradient and hands this replica
    # its own rows. With the loop's convention (each replica differentiates loss / num_replicas, the optimizer sums
    # the gradients) the gradient reaching this replica's z is d(mean of all replicas' losses)/dz, the single-device
    # gradient on the global batch, and the summed parameter gradient equals the single-device one.
    global_z1, global_z2 = context.all_gather([z1, z2], axis=0)  # (n, d) each
    sizes = context.all_gather(tf.shape(z1)[:1], axis=0)  # (r,): per-replica batch sizes (uneven ones work too)
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    before = tf.range(context.num_replicas_in_sync) < replica_id
    offset = tf.reduce_sum(tf.where(before, sizes, tf.zeros_like(sizes)))
    return global_z1, global_z2, offset


def nt_xent_loss(z1, z2, *, temperature: float = 0.1, cross_replica: bool = True):
    """SimCLR's NT-Xent loss, the mean over this replica's 2b anchors (module docstring).

    Args:
      z1, z2: (b, d) projections of the two views of the same b examples (normalised here).
      temperature: t (thesis 0.1).
      cross_replica: negatives from every replica's batch (gathered; N = global batch). False: negatives from this
        replica's batch only (Chapter 6, spec ch5 6.4). Outside any strategy both are the same.

    Returns:
      (loss, metrics): metrics "contrast_accuracy" (fraction of anchors whose positive has the top similarity
      among the 2N - 1 keys) and "positive_similarity" (mean cos(z1_i, z2_i)), both over this replica's anchors.

    Distributed: differentiate loss / num_replicas on each replica and sum the gradients (the loop's convention);
    the result is the single-device gradient of this loss on the global batch (see `_cross_replica_keys`).
    """
    _check_positive("temperature", temperature)
    z1, z2 = _cast(z1, z2)
    _check_same_shape(z1, z2, "z1 and z2")
    z1 = tf.math.l2_normalize(z1, axis=-1)  # (b, d)
    z2 = tf.math.l2_normalize(z2, axis=-1)  # (b, d)
    if cross_replica:
        keys1, keys2, offset = _cross_replica_keys(z1, z2)  # (n, d), (n, d), ()
    else:
        keys1, keys2, offset = z1, z2, tf.constant(0, tf.int32)
    anchors = tf.concat([z1, z2], axis=0)  # (2b, d)
    keys = tf.concat([keys1, keys2], axis=0)  # (2n, d)
    logits = tf.matmul(anchors, keys, transpose_b=True) / tf.cast(temperature, z1.dtype)  # (2b, 2n)
    per_replica_batch, global_batch = tf.shape(z1)[0], tf.shape(keys1)[0]
    rows = tf.range(per_replica_batch) + offset  # (b,): this replica's examples among the n
    self_column = tf.concat([rows, rows + global_batch], axis=0)  # (2b,)
    positive_column = tf.concat([rows + global_batch, rows], axis=0)  # (2b,)
    is_self = tf.range(2 * global_batch)[None, :] == self_column[:, None]  # (2b, 2n)
    logits = tf.where(is_self, tf.constant(_MASKED_LOGIT, logits.dtype), logits)
    positive_logit = tf.gather(logits, positive_column[:, None], axis=1, batch_dims=1)[:, 0]  # (2b,)
    loss = tf.reduce_mean(tf.reduce_logsumexp(logits, axis=1) - positive_logit)
    top = tf.argmax(logits, axis=1, output_type=tf.int32)  # (2b,)
    metrics = {
        "contrast_accuracy": tf.reduce_mean(tf.cast(top == positive_column, tf.float32)),
        "positive_similarity": tf.reduce_mean(tf.reduce_sum(z1 * z2, axis=-1)),
    }
    return loss, _float32(metrics)


def moco_loss(q, k, queue, *, temperature: float = 0.2):
    """MoCo v2's InfoNCE against a queue of keys (module docstring).

    Args:
      q: (b, d) queries (normalised here).
      k: (b, d) keys of the other view from the momentum encoder (normalised here; no gradient).
      queue: (k, d) earlier keys, already unit vectors (no gradient).
      temperature: t (thesis 0.2).

    Returns:
      (loss, metrics): metrics "contrast_accuracy" (fraction of queries whose own key has the top logit among the
      K + 1) and "positive_similarity" (mean q'.k').
    """
    _check_positive("temperature", temperature)
    q, k, queue = _cast(q, k, queue)
    _check_same_shape(q, k, "q and k")
    q = tf.math.l2_normalize(q, axis=-1)  # (b, d)
    k = tf.stop_gradient(tf.math.l2_normalize(k, axis=-1))  # (b, d)
    queue = tf.stop_gradient(queue)  # (k, d)
    positive = tf.reduce_sum(q * k, axis=-1, keepdims=True)  # (b, 1)
    negative = tf.matmul(q, queue, transpose_b=True)  # (b, k)
    logits = tf.concat([positive, negative], axis=1) / tf.cast(temperature, q.dtype)  # (b, 1 + k)
    loss = tf.reduce_mean(tf.reduce_logsumexp(logits, axis=1) - logits[:, 0])
    metrics = {
        "contrast_accuracy": tf.reduce_mean(tf.cast(tf.argmax(logits, axis=1) == 0, tf.float32)),
        "positive_similarity": tf.reduce_mean(positive),
    }
    return loss, _float32(metrics)


def simsiam_loss(p1, p2, z1, z2):
    """SimSiam's symmetrised negative cosine with stop-gradient on the projections (module docstring).

    Args:
      p1, p2: (b, d) predictor outputs of views 1 and 2.
      z1, z2: (b, d) projector outputs of views 1 and 2 (targets: no gradient flows into them from this loss).

    Returns:
      (loss, metrics): metrics "representation_std", the mean over dimensions of the batch std of l2n(z1), the
      collapse monitor of Chen & He (about 1/sqrt(d) when healthy, 0 when collapsed).
    """
    p1, p2, z1, z2 = _cast(p1, p2, z1, z2)
    _check_same_shape(p1, z2, "p1 and z2")
    _check_same_shape(p2, z1, "p2 and z1")

    def cosine(p, z):  # (b,)
        target = tf.stop_gradient(tf.math.l2_normalize(z, axis=-1))
        return tf.reduce_sum(tf.math.l2_normalize(p, axis=-1) * target, axis=-1)

    loss = -0.5 * tf.reduce_mean(cosine(p1, z2) + cosine(p2, z1))
    metrics = {"representation_std": tf.reduce_mean(tf.math.reduce_std(tf.math.l2_normalize(z1, axis=-1), axis=0))}
    return loss, _float32(metrics)


def ir_normalizer(num_examples: int) -> float:
    """The reference's fixed NCE normaliser Z = 2876934.2 / 1281167 * N (about 2.2456 N) for a bank of N rows."""
    _check_positive("num_examples", num_examples)
    return IR_NORMALIZER_PER_EXAMPLE * num_examples


def instance_recognition_loss(z, positives, negatives, *, temperature: float = 0.07, normalizer_z, num_examples):
    """Instance recognition's NCE loss against the memory bank, in log space (module docstring).

    Args:
      z: (b, d) unit embeddings of the batch (already l2-normalised by the task: the same z updates the bank).
      positives: (b, d) the examples' current bank entries v_i (no gradient).
      negatives: (b, m, d) per-example negatives (the reference's draw) or (m, d) shared ones, bank rows (no gradient).
      temperature: t (thesis 0.07).
      normalizer_z: Z (`ir_normalizer(num_examples)` for the reference's constant).
      num_examples: N, the bank size; the noise distribution is uniform, m * P_n = m / N.

    Returns:
      (loss, metrics): metrics "data_loss" (mean -log h(v_i)), "noise_loss" (mean -sum_j log(1 - h(v_ij))) and
      "positive_similarity" (mean v_i.z_i).
    """
    _check_positive("temperature", temperature)
    _check_positive("normalizer_z", normalizer_z)
    _check_positive("num_examples", num_examples)
    z, positives, negatives = _cast(z, positives, negatives)
    _check_same_shape(z, positives, "z and positives")
    positives, negatives = tf.stop_gradient(positives), tf.stop_gradient(negatives)
    dtype = z.dtype
    if negatives.shape.rank == 3:
        negative_dot = tf.einsum("bmd,bd->bm", negatives, z)  # (b, m)
    elif negatives.shape.rank == 2:
        negative_dot = tf.matmul(z, negatives, transpose_b=True)  # (b, m)
    else:
        raise ValueError(f"negatives must be (b, m, d) or (m, d). Received shape {negatives.shape}")
    positive_dot = tf.reduce_sum(positives * z, axis=-1)  # (b,)
    num_negatives = tf.cast(tf.shape(negatives)[-2], dtype)
    log_noise = tf.math.log(num_negatives) - tf.math.log(tf.cast(num_examples, dtype))  # c = log(m / N)
    log_z = tf.math.log(tf.cast(normalizer_z, dtype))
    temperature = tf.cast(temperature, dtype)
    positive_score = positive_dot / temperature - log_z  # (b,): s = log P(v_i | z_i)
    negative_score = negative_dot / temperature - log_z  # (b, m)
    data_loss = tf.reduce_mean(tf.math.softplus(log_noise - positive_score))  # -log h
    noise_loss = tf.reduce_mean(tf.reduce_sum(tf.math.softplus(negative_score - log_noise), axis=-1))  # -log(1 - h)
    metrics = {"data_loss": data_loss, "noise_loss": noise_loss, "positive_similarity": tf.reduce_mean(positive_dot)}
    return data_loss + noise_loss, _float32(metrics)


def memory_bank_update(bank_rows, z, momentum: float = 0.5):
    """The new bank rows l2n(momentum * v + (1 - momentum) * z) in float32 (no gradient flows into z).

    Args:
      bank_rows: (b, d) the examples' current bank entries v.
      z: (b, d) the examples' embeddings from this step.
      momentum: the weight of the old entry (thesis lambda = 0.5).
    """
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1]. Received: momentum={momentum}")
    bank_rows, z = _cast(bank_rows, z)
    _check_same_shape(bank_rows, z, "bank_rows and z")
    momentum = tf.cast(momentum, bank_rows.dtype)
    mixed = momentum * bank_rows + (1.0 - momentum) * tf.stop_gradient(z)
    return tf.math.l2_normalize(mixed, axis=-1)
