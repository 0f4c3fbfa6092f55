"""The primitives of alignment/primitives.py against thesis Table 5.1 (spec ch5 2.1, 14.3 items 10-11).

Dense layer in code notation: x (n, in), W (in, out), B_code (out, in); f = x W, b = x B_code^T, r_f = f B_code.
Code convention (no 1/2, sum over features, mean over the batch), gradients with respect to B_code:

    decay   = sum W^2 + sum B^2           dB = 2 B
    amp     = -sum f * b / n              dB = -f^T x / n            (thesis: -x_l x_{l+1}^T)
    null    = sum r_f^2 / n               dB = 2 f^T f B / n         (thesis, 1/2: B x_{l+1} x_{l+1}^T)
    sparse  = sum (f^2 + b^2) / n         dB = 2 B x^T x / n         (thesis, 1/2: x_l x_l^T B)
    self    = -sum W * B^T                dB = -W^T                  (thesis: -W^T)

half=True halves decay, null and sparse (the thesis' convention). Identities of spec 14.3 item 11 with f = x W, at
the rules' default coefficients (code convention, "alpha = beta" means self = 2 decay, amp = 2 sparse, amp = 2 null):

    SA  (self 2e-3, decay 1e-3):   dR/dB = 2e-3 (B - W^T)             = 2e-3 d/dB 1/2 ||W - B^T||^2
    AA  (amp 2e-3, sparse 1e-3):   dR/dB = 2e-3 (b - f)^T x / n        = 2e-3 d/dB 1/2 mean_n ||x_n W - x_n B^T||^2
    IA  (amp c, null c/2, decay d): dR/dB = c d/dB 1/2 mean_n ||x_n - f_n B||^2 + 2 d B   (linear autoencoder)
"""

# n: batch, in/out: features
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import primitives, rules

N, IN, OUT = 6, 4, 3
TOL = {"rtol": 1e-5, "atol": 1e-6}  # the primitives compute in float32


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(N, IN)), rng.normal(size=(IN, OUT)), rng.normal(size=(OUT, IN))
    return x, w, b


def _value_and_grad(fn, b):
    """fn(B_code tensor) -> scalar; returns (value, dvalue/dB_code) as NumPy."""
    b = tf.Variable(b, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = fn(b)
    return float(value), tape.gradient(value, b).numpy()


@pytest.mark.parametrize("half", [False, True])
def test_decay(half):
    _, w, b = _setup()
    value, grad = _value_and_grad(lambda bv: primitives.decay(tf.constant(w), tf.transpose(bv), half=half), b)
    scale = 0.5 if half else 1.0
    np.testing.assert_allclose(value, scale * (np.sum(w**2) + np.sum(b**2)), **TOL)
    np.testing.assert_allclose(grad, 2 * scale * b, **TOL)  # thesis (half): B


def test_amp():
    x, w, b = _setup()
    f = x @ w
    value, grad = _value_and_grad(lambda bv: primitives.amp(tf.constant(f), tf.matmul(x, bv, transpose_b=True)), b)
    np.testing.assert_allclose(value, -np.sum(f * (x @ b.T)) / N, **TOL)
    np.testing.assert_allclose(grad, -f.T @ x / N, **TOL)
    # thesis form, column vectors: -mean_n x_n x_{n,l+1}^T is B_l's gradient, B_l = B_code^T
    thesis = -np.mean([np.outer(x[i], f[i]) for i in range(N)], axis=0)
    np.testing.assert_allclose(grad.T, thesis, **TOL)


@pytest.mark.parametrize("half", [False, True])
def test_null(half):
    x, w, b = _setup()
    f = x @ w
    scale = 0.5 if half else 1.0
    value, grad = _value_and_grad(lambda bv: primitives.null(tf.matmul(tf.constant(f), bv), half=half), b)
    np.testing.assert_allclose(value, scale * np.sum((f @ b) ** 2) / N, **TOL)
    np.testing.assert_allclose(grad, 2 * scale * f.T @ f @ b / N, **TOL)
    if half:  # thesis: B_l x_{l+1} x_{l+1}^T, batch mean
        thesis = np.mean([np.outer(b.T @ f[i], f[i]) for i in range(N)], axis=0)
        np.testing.assert_allclose(grad.T, thesis, **TOL)
    # the second argument (the backward reconstruction r_b) adds its own energy
    r_b = x @ b.T @ w.T
    both = primitives.null(tf.constant(f @ b), tf.constant(r_b), half=half)
    np.testing.assert_allclose(float(both), scale * (np.sum((f @ b) ** 2) + np.sum(r_b**2)) / N, **TOL)


@pytest.mark.parametrize("half", [False, True])
def test_sparse(half):
    x, w, b = _setup()
    f = x @ w
    scale = 0.5 if half else 1.0

    def fn(bv):
        return primitives.sparse(tf.constant(f), tf.matmul(x, bv, transpose_b=True), half=half)

    value, grad = _value_and_grad(fn, b)
    np.testing.assert_allclose(value, scale * (np.sum(f**2) + np.sum((x @ b.T) ** 2)) / N, **TOL)
    np.testing.assert_allclose(grad, 2 * scale * b @ x.T @ x / N, **TOL)
    if half:  # thesis: x_l x_l^T B_l, batch mean
        thesis = np.mean([np.outer(x[i], x[i]) for i in range(N)], axis=0) @ b.T
        np.testing.assert_allclose(grad.T, thesis, **TOL)
    without_f = primitives.sparse(None, tf.constant(x @ b.T), half=half)
    np.testing.assert_allclose(float(without_f), scale * np.sum((x @ b.T) ** 2) / N, **TOL)


def test_self_alignment():
    _, w, b = _setup()
    value, grad = _value_and_grad(lambda bv: primitives.self_alignment(tf.constant(w), tf.transpose(bv)), b)
    np.testing.assert_allclose(value, -np.sum(w * b.T), **TOL)
    np.testing.assert_allclose(grad, -w.T, **TOL)


# ------------------------------------------------------------------------------------ spec 14.3 item 11 identities
def _rule_grad(rule, x, w, b):
    """dR/dB_code of `rule` on a linear dense layer without bias (the layer's alignment path, spelled out)."""
    bv = tf.Variable(b, dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = rule.alignment_loss(
            x=tf.constant(x),
            w=tf.constant(w),
            b=tf.transpose(bv),
            bias=None,
            activation=None,
            project=lambda inputs, kernel: tf.matmul(inputs, kernel),
            reconstruct=lambda outputs, kernel: tf.matmul(outputs, kernel, transpose_b=True),
        )
    return tape.gradient(loss, bv).numpy()


def _grad_of(fn, b):
    return _value_and_grad(fn, b)[1]


def test_symmetric_alignment_is_half_squared_distance():
    x, w, b = _setup(1)
    rule = rules.SymmetricAlignment()
    assert (rule.self_weight, rule.decay_weight) == (2e-3, 1e-3)  # thesis Section 5.9.2, code convention (A1)
    target = _grad_of(lambda bv: 0.5 * tf.reduce_sum(tf.square(w - tf.transpose(bv))), b)
    np.testing.assert_allclose(target, b - w.T, rtol=1e-12)
    np.testing.assert_allclose(_rule_grad(rule, x, w, b), 2e-3 * target, **TOL)


def test_activation_alignment_is_half_squared_activation_distance():
    x, w, b = _setup(2)
    rule = rules.ActivationAlignment()
    assert (rule.amp_weight, rule.sparse_weight) == (2e-3, 1e-3)

    def half_distance(bv):
        return 0.5 * tf.reduce_sum(tf.square(x @ w - tf.matmul(x, bv, transpose_b=True))) / N

    target = _grad_of(half_distance, b)
    np.testing.assert_allclose(target, (x @ b.T - x @ w).T @ x / N, rtol=1e-12)
    np.testing.assert_allclose(_rule_grad(rule, x, w, b), 2e-3 * target, **TOL)


def test_information_alignment_is_linear_autoencoder():
    x, w, b = _setup(3)
    c, d = 0.3, 0.05
    rule = rules.LearningRule(amp_weight=c, null_weight=c / 2, decay_weight=d)

    def autoencoder(bv):
        return 0.5 * tf.reduce_sum(tf.square(x - (x @ w) @ bv)) / N

    target = _grad_of(autoencoder, b)
    np.testing.assert_allclose(target, -(x @ w).T @ (x - x @ w @ b) / N, rtol=1e-12)
    np.testing.assert_allclose(_rule_grad(rule, x, w, b), c * target + 2 * d * b, **TOL)
    # the thesis convention (half=True) puts amp and null at equal weights, as its alpha = gamma
    half = rules.LearningRule(amp_weight=c, null_weight=c, decay_weight=d, half=True)
    np.testing.assert_allclose(_rule_grad(half, x, w, b), c * target + d * b, **TOL)
