"""Self-supervised losses against NumPy implementations written from the spec's equations (ch3 A4.2-A4.8), their
gradients (finite differences, stop-gradients), the cross-replica NT-Xent under MirroredStrategy, XLA and bfloat16."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks.self_supervised import losses
from tests import strategies

# b: batch, d: embedding size, m: IR negatives, k: MoCo queue length


def _normal(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --- NumPy references, one anchor / example at a time, straight from the equations --------------------------------


def _nt_xent_reference(z1, z2, temperature):
    """Thesis Eq. 3.16 for every anchor among the 2N, averaged; also the accuracy and positive similarity."""
    keys = _unit(np.concatenate([z1, z2]).astype(np.float64))  # (2n, d)
    n = len(z1)
    per_anchor, correct = [], []
    for a in range(2 * n):
        positive = a + n if a < n else a - n
        similarity = keys @ keys[a] / temperature
        others = [k for k in range(2 * n) if k != a]
        per_anchor.append(-np.log(np.exp(similarity[positive]) / np.sum(np.exp(similarity[others]))))
        correct.append(others[int(np.argmax(similarity[others]))] == positive)
    positive_similarity = np.mean(np.sum(keys[:n] * keys[n:], axis=1))
    return np.mean(per_anchor), np.mean(correct), positive_similarity


def _published_simclr_reference(z1, z2, temperature):
    """The published SimCLR code's convention: per direction, softmax cross-entropy over [other view, same view without
    self] averaged over the N anchors; the two directions summed."""
    h1, h2 = _unit(z1.astype(np.float64)), _unit(z2.astype(np.float64))

    def direction(a, b):
        same = a @ a.T / temperature - 1e9 * np.eye(len(a))
        logits = np.concatenate([a @ b.T / temperature, same], axis=1)  # the positive is column i
        log_softmax = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
        return -np.mean(np.diag(log_softmax[:, : len(a)]))

    return direction(h1, h2) + direction(h2, h1)


def _moco_reference(q, k, queue, temperature):
    q, k = _unit(q.astype(np.float64)), _unit(k.astype(np.float64))
    per_query, correct = [], []
    for i in range(len(q)):
        logits = np.concatenate([[q[i] @ k[i]], queue @ q[i]]) / temperature
        per_query.append(-np.log(np.exp(logits[0]) / np.sum(np.exp(logits))))
        correct.append(np.argmax(logits) == 0)
    return np.mean(per_query), np.mean(correct)


def _cosine(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def _simsiam_reference(p1, p2, z1, z2):
    return np.mean([-0.5 * (_cosine(p1[i], z2[i]) + _cosine(p2[i], z1[i])) for i in range(len(p1))])


def _instance_recognition_reference(z, positives, negatives, temperature, normalizer_z, num_examples):
    """Thesis Eq. 3.13 with h(u) = [exp(u.z/t)/Z] / (exp(u.z/t)/Z + m/N); negatives (b, m, d) or (m, d)."""
    z, positives, negatives = (x.astype(np.float64) for x in (z, positives, negatives))
    m = negatives.shape[-2]

    def h(u, zi):
        p = np.exp(u @ zi / temperature) / normalizer_z
        return p / (p + m / num_examples)

    total = []
    for i in range(len(z)):
        negatives_i = negatives[i] if negatives.ndim == 3 else negatives
        total.append(-np.log(h(positives[i], z[i])) - sum(np.log(1 - h(v, z[i])) for v in negatives_i))
    return np.mean(total)


# --- NT-Xent ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("cross_replica", [True, False])
def test_nt_xent_matches_the_thesis_equation(temperature, cross_replica):
    z1, z2 = _normal(6, 5, seed=1), _normal(6, 5, seed=2)
    z2[:3] = z1[:3] + 0.1 * z2[:3]  # half the pairs close, so the accuracy is neither 0 nor 1
    loss, metrics = losses.nt_xent_loss(z1, z2, temperature=temperature, cross_replica=cross_replica)
    expected_loss, expected_accuracy, expected_similarity = _nt_xent_reference(z1, z2, temperature)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["contrast_accuracy"].numpy(), expected_accuracy)
    assert 0.0 < expected_accuracy < 1.0
    np.testing.assert_allclose(metrics["positive_similarity"].numpy(), expected_similarity, rtol=1e-5)


def test_nt_xent_is_half_the_published_simclr_value():
    z1, z2 = _normal(5, 4, seed=3), _normal(5, 4, seed=4)
    loss, _ = losses.nt_xent_loss(z1, z2, temperature=0.2)
    published = _published_simclr_reference(z1, z2, 0.2)
    np.testing.assert_allclose(published, 2 * _nt_xent_reference(z1, z2, 0.2)[0], rtol=1e-12)  # the two references
    np.testing.assert_allclose(2 * loss.numpy(), published, rtol=1e-5)


def test_nt_xent_does_not_depend_on_projection_norms():
    z1, z2 = _normal(4, 3, seed=5), _normal(4, 3, seed=6)
    scaled, _ = losses.nt_xent_loss(3.0 * z1, 0.5 * z2)
    np.testing.assert_allclose(scaled.numpy(), losses.nt_xent_loss(z1, z2)[0].numpy(), rtol=1e-6)


def test_nt_xent_gradient_matches_finite_differences():
    z1, z2 = _normal(3, 4, seed=7, dtype=np.float64), _normal(3, 4, seed=8, dtype=np.float64)
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: losses.nt_xent_loss(a, b, temperature=0.5)[0], [tf.constant(z1), tf.constant(z2)], delta=1e-5
    )
    for analytic, finite in zip(theoretical, numerical):
        assert np.abs(analytic).max() > 1e-2
        np.testing.assert_allclose(analytic, finite, atol=1e-7)


def _per_replica(strategy, *arrays, sizes):
    """Distributed values: replica r gets rows [sum(sizes[:r]), sum(sizes[:r + 1])) of each array."""
    starts = np.cumsum([0, *sizes])

    def value(context):
        r = context.replica_id_in_sync_group
        return tuple(tf.constant(a[starts[r] : starts[r + 1]]) for a in arrays)

    return strategy.experimental_distribute_values_from_function(value)


def _single_device_projection_gradients(z1, z2, **kwargs):
    z1, z2 = tf.constant(z1), tf.constant(z2)
    with tf.GradientTape() as tape:
        tape.watch([z1, z2])
        loss, _ = losses.nt_xent_loss(z1, z2, **kwargs)
    return loss.numpy(), [g.numpy() for g in tape.gradient(loss, [z1, z2])]


@pytest.mark.parametrize("sizes", [(4, 4), (3, 5)])
def test_cross_replica_nt_xent_equals_the_single_device_step(sizes):
    strategy = strategies.mirrored()
    z1, z2 = _normal(8, 5, seed=9), _normal(8, 5, seed=10)
    z2[:4] = z1[:4] + 0.3 * z2[:4]

    def replica_step(views):
        a, b = views
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss, _ = losses.nt_xent_loss(a, b, temperature=0.1)
            # Each replica's share of the global mean; with equal batches this is the loop's loss / num_replicas
            # (the optimizer then sums the replicas' gradients).
            scaled = loss * tf.cast(tf.shape(a)[0], tf.float32) / len(z1)
        return loss, tape.gradient(scaled, [a, b])

    loss, grads = tf.function(lambda v: strategy.run(replica_step, args=(v,)))(
        _per_replica(strategy, z1, z2, sizes=sizes)
    )
    expected_loss, expected_grads = _single_device_projection_gradients(z1, z2, temperature=0.1)
    replica_losses = np.array([x.numpy() for x in strategy.experimental_local_results(loss)])
    weights = np.array(sizes) / sum(sizes)  # each replica's loss is the mean over its own anchors
    np.testing.assert_allclose(np.sum(weights * replica_losses), expected_loss, rtol=1e-5)
    for got, expected in zip(grads, expected_grads):
        stacked = np.concatenate([x.numpy() for x in strategy.experimental_local_results(got)])
        np.testing.assert_allclose(stacked, expected, atol=1e-6)
    assert np.abs(expected_grads[0]).max() > 1e-2


def test_cross_replica_nt_xent_gradient_of_a_dense_layer_equals_the_single_device_gradient():
    strategy = strategies.mirrored()
    replicas = strategy.num_replicas_in_sync
    x1, x2 = _normal(8, 6, seed=11), _normal(8, 6, seed=12)
    with strategy.scope():
        dense = keras.layers.Dense(4)
        dense.build((None, 6))
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()

    def replica_step(views):
        a, b = views
        with tf.GradientTape() as tape:
            loss, _ = losses.nt_xent_loss(dense(a), dense(b), temperature=0.1)
            scaled = loss / replicas
        return tape.gradient(scaled, [dense.kernel, dense.bias])

    @tf.function
    def step(views):
        grads = strategy.run(replica_step, args=(views,))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]

    grads = step(_per_replica(strategy, x1, x2, sizes=(4, 4)))
    w, c = tf.Variable(kernel), tf.Variable(bias)
    with tf.GradientTape() as tape:
        loss, _ = losses.nt_xent_loss(x1 @ w + c, x2 @ w + c, temperature=0.1)
    expected = tape.gradient(loss, [w, c])
    for got, want in zip(grads, expected):
        assert np.abs(want.numpy()).max() > 1e-3
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_per_replica_nt_xent_is_the_mean_of_the_halves_losses():
    strategy = strategies.mirrored()
    z1, z2 = _normal(8, 5, seed=13), _normal(8, 5, seed=14)
    loss = tf.function(
        lambda v: strategy.run(lambda views: losses.nt_xent_loss(*views, cross_replica=False)[0], args=(v,))
    )(_per_replica(strategy, z1, z2, sizes=(4, 4)))
    got = np.mean([x.numpy() for x in strategy.experimental_local_results(loss)])
    halves = [_nt_xent_reference(z1[s], z2[s], 0.1)[0] for s in (slice(0, 4), slice(4, 8))]
    np.testing.assert_allclose(got, np.mean(halves), rtol=1e-5)
    assert abs(got - _nt_xent_reference(z1, z2, 0.1)[0]) > 0.1  # per-replica negatives are not the global loss


def test_nt_xent_refuses_a_cross_replica_context():
    with strategies.mirrored().scope():
        with pytest.raises(RuntimeError, match="replica context"):
            losses.nt_xent_loss(_normal(2, 3), _normal(2, 3))


# --- MoCo, SimSiam --------------------------------------------------------------------------------------------------


def test_moco_matches_the_equation_and_only_the_query_gets_gradient():
    q, k = _normal(4, 5, seed=15), _normal(4, 5, seed=16)
    k[:2] = q[:2]
    queue = _unit(_normal(7, 5, seed=17))
    loss, metrics = losses.moco_loss(q, k, queue, temperature=0.2)
    expected_loss, expected_accuracy = _moco_reference(q, k, queue, 0.2)
    np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["contrast_accuracy"].numpy(), expected_accuracy)
    q, k, queue = (tf.constant(x, tf.float64) for x in (q, k, queue))
    with tf.GradientTape() as tape:
        tape.watch([q, k, queue])
        loss, _ = losses.moco_loss(q, k, queue)
    grad_q, grad_k, grad_queue = tape.gradient(loss, [q, k, queue])
    assert grad_k is None and grad_queue is None
    theoretical, numerical = tf.test.compute_gradient(lambda x: losses.moco_loss(x, k, queue)[0], [q], delta=1e-5)
    np.testing.assert_allclose(grad_q.numpy().ravel(), theoretical[0].ravel())
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-7)


def test_simsiam_matches_the_equation():
    p1, p2, z1, z2 = (_normal(4, 6, seed=s) for s in (18, 19, 20, 21))
    loss, metrics = losses.simsiam_loss(p1, p2, z1, z2)
    np.testing.assert_allclose(loss.numpy(), _simsiam_reference(p1, p2, z1, z2), rtol=1e-5)
    np.testing.assert_allclose(metrics["representation_std"].numpy(), np.mean(np.std(_unit(z1), axis=0)), rtol=1e-5)


def test_simsiam_gradient_reaches_z_only_through_the_predictor():
    z1, z2 = (
        tf.constant(_normal(4, 3, seed=22, dtype=np.float64)),
        tf.constant(_normal(4, 3, seed=23, dtype=np.float64)),
    )
    w = tf.constant(_normal(3, 3, seed=24, dtype=np.float64))  # the predictor h(z) = z w
    with tf.GradientTape() as tape:
        tape.watch([z1, z2])
        loss, _ = losses.simsiam_loss(z1 @ w, z2 @ w, z1, z2)
    got = tape.gradient(loss, [z1, z2])
    # The same loss with the targets frozen as constants: only the p = h(z) path is left.
    targets = [tf.constant(z.numpy()) for z in (z1, z2)]
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: losses.simsiam_loss(a @ w, b @ w, targets[0], targets[1])[0], [z1, z2], delta=1e-5
    )
    for g, analytic, finite in zip(got, theoretical, numerical):
        np.testing.assert_allclose(g.numpy().ravel(), analytic.ravel(), atol=1e-12)
        np.testing.assert_allclose(analytic, finite, atol=1e-7)
    with tf.GradientTape() as tape:  # control: without the stop-gradient the z path would add a different term
        tape.watch([z1, z2])
        full = -0.5 * tf.reduce_mean(
            tf.reduce_sum(tf.math.l2_normalize(z1 @ w, -1) * tf.math.l2_normalize(z2, -1), -1)
            + tf.reduce_sum(tf.math.l2_normalize(z2 @ w, -1) * tf.math.l2_normalize(z1, -1), -1)
        )
    assert np.abs(tape.gradient(full, z1).numpy() - got[0].numpy()).max() > 1e-3
    independent = [tf.constant(_normal(4, 3, seed=25)), tf.constant(_normal(4, 3, seed=26))]
    z = [tf.constant(_normal(4, 3, seed=27)), tf.constant(_normal(4, 3, seed=28))]
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss, _ = losses.simsiam_loss(*independent, *z)
    assert tape.gradient(loss, z) == [None, None]


# --- Instance recognition --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_negatives", [False, True])
def test_instance_recognition_matches_the_equation(shared_negatives):
    num_examples = 50
    z = _unit(_normal(3, 4, seed=29))
    positives = _unit(z + 0.3 * _normal(3, 4, seed=30))
    negatives = _unit(_normal(6, 4, seed=31) if shared_negatives else _normal(3, 6, 4, seed=31))
    normalizer_z = losses.ir_normalizer(num_examples)
    loss, metrics = losses.instance_recognition_loss(
        z, positives, negatives, temperature=0.07, normalizer_z=normalizer_z, num_examples=num_examples
    )
    expected = _instance_recognition_reference(z, positives, negatives, 0.07, normalizer_z, num_examples)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose((metrics["data_loss"] + metrics["noise_loss"]).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["positive_similarity"].numpy(), np.mean(np.sum(z * positives, 1)), rtol=1e-5)


def test_instance_recognition_is_stable_at_imagenet_scale():
    """N = 1,281,167, m = 4096, t = 0.07: exp(u.z/t) spans e^-14..e^14; the float32 loss matches float64 NumPy."""
    num_examples, normalizer_z = 1281167, losses.ir_normalizer(1281167)
    z = _unit(_normal(2, 16, seed=32))
    positives = np.stack([z[0], -z[1]])  # h close to 1 and close to 0
    negatives = _unit(_normal(2, 4096, 16, seed=33))
    negatives[0, :3] = z[0]  # negatives that equal the embedding: 1 - h tiny
    loss, _ = losses.instance_recognition_loss(
        z, positives, negatives, normalizer_z=normalizer_z, num_examples=num_examples
    )
    expected = _instance_recognition_reference(z, positives, negatives, 0.07, normalizer_z, num_examples)
    assert np.isfinite(loss.numpy())
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_instance_recognition_gradient_matches_finite_differences():
    z = tf.constant(_unit(_normal(2, 3, seed=34, dtype=np.float64)))
    positives, negatives = (
        _unit(_normal(2, 3, seed=35, dtype=np.float64)),
        _unit(_normal(2, 5, 3, seed=36, dtype=np.float64)),
    )
    theoretical, numerical = tf.test.compute_gradient(
        lambda x: losses.instance_recognition_loss(
            x, positives, negatives, temperature=0.5, normalizer_z=3.0, num_examples=20
        )[0],
        [z],
        delta=1e-5,
    )
    assert np.abs(theoretical[0]).max() > 1e-2
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-7)


def test_ir_normalizer_is_the_reference_constant():
    assert losses.ir_normalizer(1281167) == pytest.approx(2876934.2)
    assert losses.ir_normalizer(1000) == pytest.approx(2245.6, rel=1e-4)


def test_memory_bank_update_mixes_and_renormalises():
    bank, z = _unit(_normal(5, 4, seed=37)), 3.0 * _normal(5, 4, seed=38)  # z not unit: the result still is
    z[0] = -bank[0]  # equal weights of opposite unit vectors: only the norm floor keeps this finite
    z[0] *= 1.0 / np.linalg.norm(z[0])
    new = losses.memory_bank_update(bank, z, momentum=0.5).numpy()
    expected = _unit(0.5 * bank[1:] + 0.5 * z[1:])
    np.testing.assert_allclose(new[1:], expected, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(new[1:], axis=1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(new))
    np.testing.assert_allclose(losses.memory_bank_update(bank, z, momentum=1.0).numpy(), bank, rtol=1e-6)
    assert losses.memory_bank_update(bank.astype(tf.bfloat16.as_numpy_dtype), z).dtype == tf.float32


# --- All losses: XLA, bfloat16, argument checks -------------------------------------------------------------------------


def _cases():
    z1, z2 = _normal(4, 6, seed=44), _normal(4, 6, seed=45)
    return {
        "nt_xent": (losses.nt_xent_loss, (z1, z2), {}),
        "nt_xent_per_replica": (losses.nt_xent_loss, (z1, z2), {"cross_replica": False}),
        "moco": (losses.moco_loss, (z1, z2, _unit(_normal(9, 6, seed=47))), {}),
        "simsiam": (losses.simsiam_loss, (z1, z2, _normal(4, 6, seed=48), _normal(4, 6, seed=49)), {}),
        "instance_recognition": (
            losses.instance_recognition_loss,
            (_unit(z1), _unit(z2), _unit(_normal(4, 7, 6, seed=50))),
            {"normalizer_z": losses.ir_normalizer(100), "num_examples": 100},
        ),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_xla_matches_eager(name):
    fn, args, kwargs = _cases()[name]
    eager_loss, eager_metrics = fn(*args, **kwargs)
    xla_loss, xla_metrics = tf.function(lambda *a: fn(*a, **kwargs), jit_compile=True)(*args)
    np.testing.assert_allclose(xla_loss.numpy(), eager_loss.numpy(), rtol=1e-5)
    for key in eager_metrics:
        np.testing.assert_allclose(xla_metrics[key].numpy(), eager_metrics[key].numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(_cases()))
def test_bfloat16_inputs_are_computed_in_float32(name):
    fn, args, kwargs = _cases()[name]
    low = [tf.cast(a, tf.bfloat16) for a in args]
    loss, metrics = fn(*low, **kwargs)
    assert loss.dtype == tf.float32 and all(m.dtype == tf.float32 for m in metrics.values())
    rounded, _ = fn(*[tf.cast(a, tf.float32) for a in low], **kwargs)
    np.testing.assert_allclose(loss.numpy(), rounded.numpy(), rtol=1e-6)


def test_arguments_are_checked():
    z = _normal(2, 3)
    with pytest.raises(ValueError, match="temperature"):
        losses.nt_xent_loss(z, z, temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        losses.nt_xent_loss(z, _normal(3, 3))
    with pytest.raises(ValueError, match=r"\(b, m, d\) or \(m, d\)"):
        losses.instance_recognition_loss(z, z, _normal(3), normalizer_z=1.0, num_examples=10)
    with pytest.raises(ValueError, match="momentum"):
        losses.memory_bank_update(z, z, momentum=1.5)


def test_declared_metric_names_are_what_the_losses_return():
    rng = np.random.default_rng(0)
    z = [tf.constant(rng.normal(size=(4, 3)), tf.float32) for _ in range(4)]
    queue = tf.math.l2_normalize(tf.constant(rng.normal(size=(6, 3)), tf.float32), axis=1)
    cases = {
        losses.NT_XENT_METRICS: losses.nt_xent_loss(z[0], z[1]),
        losses.MOCO_METRICS: losses.moco_loss(z[0], z[1], queue),
        losses.SIMSIAM_METRICS: losses.simsiam_loss(*z),
        losses.IR_METRICS: losses.instance_recognition_loss(
            tf.math.l2_normalize(z[0], axis=1), tf.math.l2_normalize(z[1], axis=1), queue, normalizer_z=2.0,
            num_examples=10),
    }  # fmt: skip
    for names, (_, metrics) in cases.items():
        assert set(metrics) == set(names)
