"""Learning rules (alignment/rules.py) through aligned layers: fixed points and flows (spec ch5 2.2-2.3, 9.1, 14.3).

Each test trains only B of a tiny layer with frozen W on R = the layer's alignment loss, collected inside
`scope.collect_alignment_losses()`, by plain gradient descent B <- B - lr dR/dB. Expected dynamics (code convention,
B in W's shape, C = x^T x / n the input second moment):

    SA   dR/dB = 2e-3 (B - W)               B - W shrinks by (1 - 2e-3 lr) per step       -> B = W^T
    AA   dR/dB = 2e-3 C (B - W)             B - W shrinks along C's eigenvectors          -> B = W^T (C full rank)
    FA   R = 0                              B never moves
    KP   B gets dW^T + 2 decay B, W gets dW + 2 decay W: W - B^T shrinks by (1 - 2 lr decay) per step
    WM   E[dR/dB] = 2 decay B - amp sigma^2 W (noise inputs, batch-centred)  -> B = amp sigma^2 / (2 decay) W^T
    WM scalar ODE (spec 9.1, alpha = beta): d/dt [w, b] = -A [w, b], A = [[lam, -x^2], [-x^2, lam]]; u = w + b
         decays for lam > x^2, grows for lam < x^2, is constant at lam = x^2; v = w - b always decays.
"""

# n: batch, h/w: space, c: channels
import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import diagnostics, layers, ops, rules, scope


def _alignment_loss(layer, x):
    with scope.collect_alignment_losses() as collected:
        layer(x, training=True)
    return collected.total(), collected


def _gd_on_backward_kernel(layer, x, lr, steps):
    """`steps` plain gradient-descent steps on B of R(x); returns the per-step B history (steps + 1, ...)."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss, _ = _alignment_loss(layer, x)
        layer.backward_kernel.assign_sub(lr * tape.gradient(loss, layer.backward_kernel))

    history = [layer.backward_kernel.numpy()]
    for _ in range(steps):
        step()
        history.append(layer.backward_kernel.numpy())
    return np.stack(history)


def _b_in_w_shape(layer, b=None):
    b = layer.backward_kernel.numpy() if b is None else b
    return b.T if isinstance(layer, layers.AlignedDense) else b


# ------------------------------------------------------------------------------------------------- registry
def test_get_rule_and_config_round_trip():
    for abbrev, cls in (("bp", rules.Backprop), ("fa", rules.FeedbackAlignment), ("wm", rules.WeightMirror),
                        ("ia", rules.InformationAlignment), ("sa", rules.SymmetricAlignment),
                        ("aa", rules.ActivationAlignment), ("kp", rules.KolenPollack)):  # fmt: skip
        assert type(rules.get_rule(abbrev)) is cls
        assert type(rules.get_rule(abbrev.upper())) is cls
        assert type(rules.get_rule(cls.name)) is cls
        assert rules.from_config(cls().get_config()) == cls()
    assert type(rules.get_rule(None)) is rules.Backprop
    custom = rules.WeightMirror(sigma=0.3, decay_weight=0.1)
    assert rules.get_rule(custom) is custom
    assert rules.from_config(custom.get_config()) == custom
    with pytest.raises(ValueError, match="kolen_pollack"):
        rules.get_rule("hebb")
    for bad in ({"amp_weight": -1.0}, {"input_noise": "laplace"}, {"sigma": 0.0}):
        with pytest.raises(ValueError):
            rules.LearningRule(**bad)


def test_defaults_are_the_thesis_metaparameters():
    """Section 5.9.2 (code convention, A1), Table 5.5 (thesis naming, A2), the reference code's KP decay."""
    sa, aa, kp = rules.SymmetricAlignment(), rules.ActivationAlignment(), rules.KolenPollack()
    assert (sa.self_weight, sa.decay_weight, aa.amp_weight, aa.sparse_weight) == (2e-3, 1e-3, 2e-3, 1e-3)
    assert (kp.decay_weight, kp.tie_grad) == (1e-3, True)
    wm, ia = rules.WeightMirror(), rules.InformationAlignment()
    np.testing.assert_allclose([wm.amp_weight, wm.decay_weight, wm.sigma], [0.44320, 0.0283, 0.6905], rtol=1e-4)
    np.testing.assert_allclose([ia.amp_weight, ia.decay_weight, ia.null_weight, ia.sigma],
                               [1032.769, 7.9990, 3.1610e-6, 0.8176], rtol=1e-4)  # fmt: skip
    assert wm.input_noise == ia.input_noise == "normal"
    assert not rules.FeedbackAlignment().has_alignment_loss and not rules.Backprop().uses_backward_kernel


def test_alignment_path_inputs():
    """Steps 2-4 of spec 4.1, seen through the `project` callback: noise std, per-example and batch centering."""
    x = tf.random.stateless_normal([512, 6], [0, 1]) * 3.0 + 1.0
    w = tf.random.stateless_normal([6, 2], [0, 2])

    def inputs_seen(**flags):
        seen = []
        rules.LearningRule(amp_weight=1.0, **flags).alignment_loss(
            x=x, w=w, b=w, bias=None, activation=None,
            project=lambda inputs, kernel: seen.append(inputs.numpy()) or tf.matmul(inputs, kernel),
            reconstruct=lambda outputs, kernel: tf.matmul(outputs, kernel, transpose_b=True),
        )  # fmt: skip
        return seen  # [forward input, backward input]

    normal, uniform = inputs_seen(input_noise="normal", sigma=0.5), inputs_seen(input_noise="uniform", sigma=0.5)
    for seen in (normal, uniform):
        np.testing.assert_allclose(np.std(seen[0]), 0.5, rtol=0.05)
        assert np.abs(np.mean(seen[0])) < 0.03
    assert np.max(np.abs(uniform[0])) <= 0.5 * np.sqrt(3) + 1e-6
    fwmc = inputs_seen(bi_fwmc=True)[0]
    np.testing.assert_allclose(fwmc, x - np.mean(x, axis=1, keepdims=True), atol=1e-5)
    l2n = inputs_seen(bi_fwl2n=True)[0]
    np.testing.assert_allclose(np.linalg.norm(l2n, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.mean(l2n, axis=1), 0.0, atol=1e-6)
    forward, backward = inputs_seen(bi_bwmc=True)
    np.testing.assert_allclose(forward, x, atol=1e-6)
    np.testing.assert_allclose(backward, x - np.mean(x, axis=0), atol=1e-5)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_linear_amp_shortcut_matches_the_amp_primitive(kind):
    """With `kernel_adjoint`, amp is -<B, adjoint(x_b, f)> / n: the same R and dR/dB as amp(f, x_b B + bias)."""
    if kind == "dense":
        x, w = tf.random.normal([6, 5], dtype=tf.float64), tf.random.normal([5, 3], dtype=tf.float64)
        project = lambda inputs, kernel: tf.matmul(inputs, kernel)
        reconstruct = lambda outputs, kernel: tf.matmul(outputs, kernel, transpose_b=True)
        adjoint = lambda inputs, outputs: tf.matmul(inputs, outputs, transpose_a=True)
    else:
        x, w = tf.random.normal([2, 7, 7, 2], dtype=tf.float64), tf.random.normal([3, 3, 2, 3], dtype=tf.float64)
        project = lambda inputs, kernel: tf.nn.conv2d(inputs, kernel, 2, "SAME")
        reconstruct = lambda outputs, kernel: ops.conv2d_transpose(outputs, kernel, x.shape, 2, "SAME")
        adjoint = lambda inputs, outputs: ops.conv2d_kernel_gradient(inputs, outputs, w.shape, 2, "SAME")
    bias = tf.random.normal([3], dtype=tf.float64)
    b = tf.Variable(tf.random.normal(w.shape, dtype=tf.float64))
    rule = rules.LearningRule(amp_weight=0.7, decay_weight=0.1, fo_bias=True, fo_relu=True, bo_bias=True,
                              fo_bwmc=True, bi_bwmc=True)  # fmt: skip
    results = []
    for kernel_adjoint in (None, adjoint):
        with tf.GradientTape() as tape:
            loss = rule.alignment_loss(x=x, w=w, b=b, bias=bias, activation=tf.nn.relu, project=project,
                                       reconstruct=reconstruct, kernel_adjoint=kernel_adjoint)  # fmt: skip
        results.append((float(loss), tape.gradient(loss, b).numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------- fixed points
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_symmetric_alignment_converges_to_transpose(kind):
    if kind == "dense":
        layer, x = layers.AlignedDense(4, rule="sa", dtype="float64"), tf.random.normal([2, 6], dtype=tf.float64)
    else:
        layer = layers.AlignedConv2D(3, 3, rule="sa", padding="same", dtype="float64")
        x = tf.random.normal([2, 8, 8, 2], dtype=tf.float64)
    layer.build(x.shape)
    w = layer.kernel.numpy()
    lr = 50.0  # contraction 1 - 2e-3 * lr = 0.9 per step
    history = _gd_on_backward_kernel(layer, x, lr, steps=200)
    gaps = np.stack([_b_in_w_shape(layer, b) - w for b in history])
    np.testing.assert_allclose(gaps[1:11], 0.9 * gaps[:10], rtol=1e-4, atol=1e-7)
    assert diagnostics.angle(w, _b_in_w_shape(layer, history[0])) > 45
    assert diagnostics.angle(w, _b_in_w_shape(layer)) < 1e-3
    np.testing.assert_allclose(_b_in_w_shape(layer), w, atol=1e-6)


def test_activation_alignment_converges_to_transpose_on_full_rank_inputs():
    rng = np.random.default_rng(0)
    x_full = rng.normal(size=(32, 5))
    x_low = rng.normal(size=(32, 2)) @ rng.normal(size=(2, 5))  # rank 2: only B^T x = W x on the span
    for x, full_rank in ((x_full, True), (x_low, False)):
        layer = layers.AlignedDense(3, rule="aa", dtype="float64")  # linear: no ReLU on either path
        layer.build(x.shape)
        layer.bias.assign(rng.normal(size=3))  # the shared bias cancels in b - f
        w, b0 = layer.kernel.numpy(), layer.backward_kernel.numpy()
        second_moment = x.T @ x / len(x)
        lr = 1.0 / (2e-3 * np.linalg.eigvalsh(second_moment)[-1])
        history = _gd_on_backward_kernel(layer, tf.constant(x), lr, steps=300)
        # one step against the closed form: B <- B - lr 2e-3 (B - W^T) C
        np.testing.assert_allclose(history[1], b0 - lr * 2e-3 * (b0 - w.T) @ second_moment, rtol=1e-5, atol=1e-7)
        b = history[-1]
        np.testing.assert_allclose(x @ b.T, x @ w, atol=1e-4)
        if full_rank:
            assert diagnostics.angle(w, b.T) < 1e-2
        else:
            assert diagnostics.angle(w, b.T) > 5


def test_activation_alignment_conv_converges_to_kernel():
    x = tf.random.normal([2, 8, 8, 2], dtype=tf.float64)
    layer = layers.AlignedConv2D(3, 3, rule="aa", padding="same", dtype="float64")
    layer.build(x.shape)
    # R's Hessian in B (per output channel) is 2e-3 P^T P / n, P the (positions, kh kw c) patch matrix
    patches = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME").numpy().reshape(-1, 18)
    eigs = np.linalg.eigvalsh(2e-3 * patches.T @ patches / 2)
    history = _gd_on_backward_kernel(layer, x, 1.0 / eigs[-1], steps=300)
    w = layer.kernel.numpy()
    predicted = np.linalg.norm(history[0] - w) * (1 - eigs[0] / eigs[-1]) ** 300  # slowest mode bound
    assert np.linalg.norm(history[-1] - w) <= predicted + 1e-6
    assert diagnostics.angle(w, history[-1]) < 1e-2


def test_feedback_alignment_leaves_backward_kernel_unchanged():
    layer = layers.AlignedDense(3, rule="fa")
    x, target = tf.random.normal([4, 5]), tf.random.normal([4, 3])
    layer.build(x.shape)
    b0, w0 = layer.backward_kernel.numpy(), layer.kernel.numpy()
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(3):
        with tf.GradientTape() as tape:
            with scope.collect_alignment_losses() as collected:
                loss = tf.reduce_mean(tf.square(layer(x, training=True) - target))
            loss += collected.total()
        assert collected.losses == []
        grads = tape.gradient(loss, layer.trainable_weights)
        optimizer.apply(grads, layer.trainable_weights)
    np.testing.assert_array_equal(layer.backward_kernel.numpy(), b0)
    assert not np.allclose(layer.kernel.numpy(), w0)


@pytest.mark.parametrize("decay_weight", [1e-3, 0.05])
def test_kolen_pollack_shrinks_asymmetry(decay_weight):
    layer = layers.AlignedDense(3, rule=rules.KolenPollack(decay_weight=decay_weight), use_bias=False, dtype="float64")
    layer.build((None, 5))
    lr, factor = 0.5, 1 - 0.5 * 2 * decay_weight
    for step in range(8):
        x, target = tf.random.normal([4, 5], dtype=tf.float64), tf.random.normal([4, 3], dtype=tf.float64)
        w, b = layer.kernel.numpy(), layer.backward_kernel.numpy()
        with tf.GradientTape(persistent=True) as tape:
            with scope.collect_alignment_losses() as collected:
                task = tf.reduce_mean(tf.square(layer(x, training=True) - target))
            total = task + tf.cast(collected.total(), tf.float64)
        grad_w_task = tape.gradient(task, layer.kernel).numpy()
        grad_b = tape.gradient(total, layer.backward_kernel).numpy()
        np.testing.assert_allclose(grad_b, grad_w_task.T + 2 * decay_weight * b, rtol=1e-6, atol=1e-9)
        layer.kernel.assign(w - lr * (grad_w_task + 2 * decay_weight * w))  # W: the same update + equal decay
        layer.backward_kernel.assign(b - lr * grad_b)
        gap, new_gap = w - b.T, layer.kernel.numpy() - layer.backward_kernel.numpy().T
        np.testing.assert_allclose(new_gap, factor * gap, rtol=1e-6, atol=1e-10)
        assert np.linalg.norm(grad_w_task) > 1e-3  # the task gradient was not trivially zero


def test_weight_mirror_on_noise_grows_along_transpose():
    """Linear layer, R_WM^TPE defaults, vanilla GD with lr 1.0 (Table 5.5): B -> amp sigma^2 / (2 decay) W^T."""
    rule = rules.WeightMirror()
    layer = layers.AlignedDense(8, rule=rule)
    x = tf.random.normal([256, 16])  # only its shape matters: the rule replaces it by noise
    layer.build(x.shape)
    w = layer.kernel.numpy()
    assert diagnostics.angle(w, layer.backward_kernel.numpy().T) > 70
    history = _gd_on_backward_kernel(layer, x, 1.0, steps=150)
    b = history[-1].T
    assert diagnostics.angle(w, b) < 10
    expected_ratio = rule.amp_weight * rule.sigma**2 * (1 - 1 / 256) / (2 * rule.decay_weight)  # ~3.7
    np.testing.assert_allclose(np.linalg.norm(b) / np.linalg.norm(w), expected_ratio, rtol=0.1)
    angles = [diagnostics.angle(w, h.T) for h in history[:61:15]]  # the transient (time constant ~18 steps)
    assert all(later < earlier for earlier, later in zip(angles, angles[1:]))


# ------------------------------------------------------------------------------------------------- spec 9.1 flows
def _scalar_layer(rule):
    layer = layers.AlignedDense(1, rule=rule, use_bias=False, dtype="float64")
    layer.build((None, 1))
    return layer


def _scalar_rules(lam):
    """The spec 9.1 systems as rule objects: R's gradient reaches w too (update_forward), alpha = beta."""
    plain = {"fo_bias": False, "bo_bias": False, "update_forward": True}
    return {
        "sa": rules.SymmetricAlignment(self_weight=1.0, decay_weight=0.5, **plain),
        "aa": rules.ActivationAlignment(amp_weight=1.0, sparse_weight=0.5, **plain),
        "wm": rules.WeightMirror(
            amp_weight=1.0, decay_weight=lam / 2, input_noise=None, fo_relu=False, fo_bwmc=False, bi_bwmc=False, **plain
        ),  # fmt: skip
    }


def test_scalar_flow_matrices():
    """The Hessian of R in (w, b) is the spec's A; eigenvalues 0 and 2 (SA), 0 and 2x^2 (AA; A12), lam -+ x^2."""
    x0, lam = 1.5, 0.7
    x = tf.constant([[x0]], tf.float64)
    s = x0**2
    expected = {"sa": [[1, -1], [-1, 1]], "aa": [[s, -s], [-s, s]], "wm": [[lam, -s], [-s, lam]]}
    eigenvalues = {"sa": [0, 2], "aa": [0, 2 * s], "wm": [lam - s, lam + s]}
    for name, rule in _scalar_rules(lam).items():
        layer = _scalar_layer(rule)
        variables = [layer.kernel, layer.backward_kernel]
        with tf.GradientTape(persistent=True) as outer:
            with tf.GradientTape() as inner:
                loss, _ = _alignment_loss(layer, x)
            grads = inner.gradient(loss, variables)
        hessian = np.array([[float(outer.gradient(g, v)[0, 0]) for v in variables] for g in grads])
        np.testing.assert_allclose(hessian, expected[name], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.linalg.eigvalsh(hessian), eigenvalues[name], atol=1e-6, err_msg=name)


@pytest.mark.parametrize("lam,regime", [(2.0, "decay"), (0.5, "growth"), (1.0, "stable")])
def test_weight_mirror_scalar_ode(lam, regime):
    """Euler-integrate d/dt [w, b] = -A_WM [w, b] by GD on w and b of a 1x1 layer with constant input x = 1."""
    layer = _scalar_layer(_scalar_rules(lam)["wm"])
    layer.kernel.assign([[0.3]])
    layer.backward_kernel.assign([[0.9]])
    x, dt = tf.constant([[1.0]], tf.float64), 0.02
    variables = [layer.kernel, layer.backward_kernel]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss, _ = _alignment_loss(layer, x)
        for v, g in zip(variables, tape.gradient(loss, variables)):
            v.assign_sub(dt * g)

    u, v = [], []
    for _ in range(300):
        w, b = float(layer.kernel[0, 0]), float(layer.backward_kernel[0, 0])
        u.append(w + b)
        v.append(w - b)
        step()
    u, v = np.array(u), np.array(v)
    # per-step factors while the components are far above R's float32 resolution
    np.testing.assert_allclose(u[1:50] / u[:49], 1 - dt * (lam - 1.0), rtol=1e-6)  # lambda_u = lam - x^2
    np.testing.assert_allclose(v[1:50] / v[:49], 1 - dt * (lam + 1.0), rtol=1e-6)  # lambda_v = lam + x^2
    assert abs(v[-1]) < 0.1 * abs(v[0])
    if regime == "decay":
        assert u[-1] < 0.2 * u[0]
    elif regime == "growth":
        assert u[-1] > 15 * u[0]
    else:
        np.testing.assert_allclose(u[-1], u[0], rtol=1e-6)
