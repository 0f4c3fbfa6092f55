"""The model-level learning-rule switch: every model family of the zoo trains under any rule by one argument.

Checks per family (spec ch5 3.1-3.2, 4): (a) a rule build has the backprop build's forward weights (names, shapes,
counts) plus one backward kernel per kernel, in the kernel's shape (dense: transposed); (b) the backprop build has no
aligned layer; (c) a training step gives finite gradients, R-gradients for B (SA: exactly 2e-3 (B - W^T), averaged over calls,
from the spec's code convention) and no task gradient for B except under Kolen-Pollack (dW^T); (d) ConvRNNs work with
the training weight chain and refuse remat for rules with an R; (e) with B = W^T the rule model's gradients equal
backprop's.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import layers as aligned_layers
from goaldriven.alignment import scope, training
from goaldriven.models import alexnet, convrnn_zoo, small_resnets, zoo
from goaldriven.tasks import train_step
from tests import strategies

CLASSES = 5
# name -> (build_model kwargs, image size, mark)
FAMILIES = {
    "small_resnet8": ({}, 16, ()),
    "basenet6": ({"width_multiplier": 0.0625}, 32, ()),
    "ugrnn_shallow": ({"width_multiplier": 0.0625, "unroll_length": 7}, 32, ()),
    "resnet18_v1": ({}, 64, pytest.mark.slow),  # 64 px: a 2x2 last map, so BN does not see only 2 values
    "resnet50_v2": ({}, 64, pytest.mark.slow),
    "alexnet": ({}, 32, pytest.mark.slow),
    "rgc_intermediate": ({"width_multiplier": 0.0625, "unroll_length": 12}, 32, pytest.mark.slow),
}
ALL = [pytest.param(name, id=name, marks=mark) for name, (_, _, mark) in FAMILIES.items()]
RULES = ["fa", "kp", "wm", "ia", "aa"]


def _build(name, rule):
    kwargs, size, _ = FAMILIES[name]
    if name == "alexnet":  # no dropout, so the two builds' gradients are comparable
        return alexnet.build_alexnet(num_classes=CLASSES, image_size=size, dropout=0.0, learning_rule=rule)
    return zoo.build_model(name, num_classes=CLASSES, image_size=size, learning_rule=rule, **kwargs)


def _batch(name):
    size = FAMILIES[name][1]
    return tf.random.stateless_normal((2, size, size, 3), (1, 2)), tf.constant([1, 3])


def _is_backward(v) -> bool:
    return v.path.rsplit("/", 1)[-1].endswith("backward_kernel")


def _strip(model, v) -> str:
    return v.path.removeprefix(f"{model.name}/")


def _partner(model, kernel_path):
    """The forward kernel a backward kernel belongs to: .../backward_kernel -> .../kernel (separable: per part)."""
    forward = kernel_path.replace("backward_kernel", "kernel")
    (match,) = [v for v in model.weights if v.path == forward]
    return match


def _gradients(model, x, y):
    """Task loss J and alignment loss R of one training forward pass, and their gradients."""
    backward = aligned_layers.backward_kernels(model)
    ids = {id(v) for v in backward}
    forward = [v for v in model.trainable_variables if id(v) not in ids]
    with tf.GradientTape(persistent=True) as tape:
        with scope.collect_alignment_losses() as collected:
            out = model(x, training=True)
        task = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out["logits"], from_logits=True))
        r = collected.total()
    zero = lambda gs, vs: [np.zeros(v.shape) if g is None else g.numpy() for g, v in zip(gs, vs)]  # noqa: E731
    grads = {
        "task_forward": zero(tape.gradient(task, forward), forward),
        "task_backward": zero(tape.gradient(task, backward), backward),
        "r_backward": zero(tape.gradient(r, backward), backward),
        "r_forward": zero(tape.gradient(r, forward), forward),
    }
    return forward, backward, grads, collected


def _w_like_b(model, b):
    """W in B's shape: W^T for dense layers (rank 2), W for convs."""
    w = _partner(model, b.path).numpy()
    return w.T if w.ndim == 2 else w


@pytest.mark.parametrize("name", ALL)
def test_rule_build_adds_one_backward_kernel_per_kernel(name):
    bp, sa = _build(name, None), _build(name, "sa")
    # (b) the backprop build is the plain model: no aligned layer, no backward kernel, same as learning_rule="bp".
    assert aligned_layers.aligned_layers(bp) == []
    assert not any(isinstance(layer, aligned_layers._AlignedMixin) for layer in bp._flatten_layers())
    assert not any(_is_backward(v) for v in bp.weights)
    explicit_bp = _build(name, "bp")
    assert [_strip(explicit_bp, v) for v in explicit_bp.weights] == [_strip(bp, v) for v in bp.weights]
    # (a) forward weights identical in names and shapes (so parameter counts and checkpoints agree) ...
    plain = [(_strip(bp, v), tuple(v.shape)) for v in bp.weights]
    assert [(_strip(sa, v), tuple(v.shape)) for v in sa.weights if not _is_backward(v)] == plain
    # ... plus one backward kernel per kernel (separable: depthwise and pointwise), in B's shape.
    kernels = [(p.rsplit("/", 1)[0], p.rsplit("/", 1)[1], s) for p, s in plain if p.endswith("kernel")]
    backward = {_strip(sa, v): tuple(v.shape) for v in sa.weights if _is_backward(v)}
    expected = {
        f"{owner}/{leaf.replace('kernel', 'backward_kernel')}": shape[::-1] if len(shape) == 2 else shape
        for owner, leaf, shape in kernels
    }
    assert backward == expected and len(backward) > 0
    assert all(v.regularizer is None for v in aligned_layers.backward_kernels(sa))  # B is never decayed
    regularizers = [repr(v.regularizer.get_config()) if v.regularizer else None for v in bp.weights]
    forward = [v for v in sa.weights if not _is_backward(v)]
    assert [repr(v.regularizer.get_config()) if v.regularizer else None for v in forward] == regularizers
    n_layers = len(aligned_layers.aligned_layers(sa))
    assert n_layers == len({owner for owner, _, _ in kernels})


@pytest.mark.parametrize("name", ALL)
def test_symmetric_alignment_step_gradients(name):
    model = _build(name, "sa")
    forward, backward, grads, collected = _gradients(model, *_batch(name))
    for group in grads.values():
        assert all(np.all(np.isfinite(g)) for g in group)
    assert any(np.any(g != 0) for g in grads["task_forward"])
    assert all(not np.any(g) for g in grads["task_backward"])  # B gets no task gradient
    assert all(not np.any(g) for g in grads["r_forward"])  # R does not reach W
    # R_SA = 2e-3 * (-sum W.B) + 1e-3 * (sum W^2 + sum B^2): dR/dB = 2e-3 (B - W^T); a layer called at every time
    # step contributes the mean of its calls' R, so the gradient does not grow with the unroll.
    owners = {
        id(v): layer
        for layer in aligned_layers.aligned_layers(model)
        for v in aligned_layers.layer_backward_kernels(layer)
    }
    for b, g in zip(backward, grads["r_backward"]):
        assert any(layer is owners[id(b)] for layer in collected.layers)
        np.testing.assert_allclose(g, 2e-3 * (b.numpy() - _w_like_b(model, b)), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", ["small_resnet8", "ugrnn_shallow"])
def test_other_rules_step_gradients(name, rule):
    model = _build(name, rule)
    _, backward, grads, collected = _gradients(model, *_batch(name))
    for group in grads.values():
        assert all(np.all(np.isfinite(g)) for g in group)
    assert all(not np.any(g) for g in grads["r_forward"])
    if rule == "fa":
        assert collected.losses == [] and all(not np.any(g) for g in grads["r_backward"])
    else:
        assert all(np.any(g) for g in grads["r_backward"])
    if rule == "kp":
        # B receives W's task gradient (transposed for dense layers), the transported update of Kolen-Pollack.
        by_id = {id(v): g for v, g in zip(model.trainable_variables, _task_grads_all(model, *_batch(name)))}
        for b, g in zip(backward, grads["task_backward"]):
            w_grad = by_id[id(_partner(model, b.path))]
            np.testing.assert_allclose(g, w_grad.T if w_grad.ndim == 2 else w_grad, rtol=1e-5, atol=1e-8)
        assert any(np.any(g) for g in grads["task_backward"])
    else:
        assert all(not np.any(g) for g in grads["task_backward"])


def _task_grads_all(model, x, y):
    with tf.GradientTape() as tape:
        logits = model(x, training=True)["logits"]
        task = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    return [
        np.zeros(v.shape) if g is None else g.numpy()
        for g, v in zip(tape.gradient(task, model.trainable_variables), model.trainable_variables)
    ]


def _assert_close_normwise(got, want, rtol=5e-4):
    """Per tensor ||got - want|| <= rtol ||want|| + 1e-6 ||all of want||: float32 round-off through deep nets with
    BN at batch 2 is elementwise large where gradients cancel, and gradients that are zero in exact arithmetic (a bias
    before BN) are pure round-off; an asymmetric B would differ at O(1)."""
    floor = 1e-6 * np.sqrt(sum(float(np.sum(np.square(w))) for w in want))
    for g, w in zip(got, want):
        assert np.linalg.norm(g - w) <= rtol * np.linalg.norm(w) + floor, (np.linalg.norm(g - w), np.linalg.norm(w))


def _copy_with_symmetric_b(bp, rule_model):
    """Gives `rule_model` bp's forward weights and B = W^T (dense) / W (convs)."""
    forward = [v for v in rule_model.weights if not _is_backward(v)]
    assert len(forward) == len(bp.weights)
    for target, source in zip(forward, bp.weights):
        target.assign(source)
    for b in aligned_layers.backward_kernels(rule_model):
        b.assign(_w_like_b(rule_model, b))


@pytest.mark.parametrize("name", ALL)
def test_symmetric_backward_kernels_give_backprop_gradients(name):
    bp, fa = _build(name, None), _build(name, "fa")
    _copy_with_symmetric_b(bp, fa)
    x, y = _batch(name)
    expected = _task_grads_all(bp, x, y)
    _, _, grads, _ = _gradients(fa, x, y)
    assert len(grads["task_forward"]) == len(expected)
    _assert_close_normwise(grads["task_forward"], expected)


@pytest.mark.parametrize("rule", ["sa", "kp", "ia"])
def test_symmetric_backward_kernels_give_backprop_gradients_under_any_rule(rule):
    bp, model = _build("small_resnet8", None), _build("small_resnet8", rule)
    _copy_with_symmetric_b(bp, model)
    x, y = _batch("small_resnet8")
    _assert_close_normwise(_gradients(model, x, y)[2]["task_forward"], _task_grads_all(bp, x, y))


def test_convrnn_weight_chain_and_remat():
    name = "ugrnn_shallow"
    kwargs, size, _ = FAMILIES[name]
    x, y = _batch(name)
    # Feedback alignment has no R, so remat works: its gradients equal the non-rematerialised ones (same weights).
    plain = zoo.build_model(name, num_classes=CLASSES, image_size=size, learning_rule="fa", **kwargs)
    remat = zoo.build_model(name, num_classes=CLASSES, image_size=size, learning_rule="fa", remat=1, **kwargs)
    for target, source in zip(remat.weights, plain.weights):
        target.assign(source)
    for got, want in zip(_task_grads_all(remat, x, y), _task_grads_all(plain, x, y)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    # Rules with an R cannot rematerialise (R would give B no gradient): a clear error at build time.
    for rule in ("sa", "kp"):
        with pytest.raises(ValueError, match="remat=False"):
            zoo.build_model(name, num_classes=CLASSES, image_size=size, learning_rule=rule, remat=1, **kwargs)
    with pytest.raises(ValueError, match="build=True"):
        convrnn_zoo.build_convrnn(name, image_size=size, width_multiplier=0.0625, learning_rule="sa", build=False)


def test_learning_rule_none_is_backprop_and_never_inherits_the_enclosing_scope():
    # None used to mean "the enclosing scope's rule"; now it is backprop, so inside another rule's scope it raises.
    with scope.learning_rule("sa"):
        with pytest.raises(ValueError, match="never inherits a rule"):
            _build("small_resnet8", None)
        with pytest.raises(ValueError, match="never inherits a rule"):
            _build("small_resnet8", "bp")
        explicit = _build("small_resnet8", "sa")
    plain = _build("small_resnet8", None)
    assert aligned_layers.aligned_layers(explicit) and not aligned_layers.aligned_layers(plain)
    assert {layer.rule.name for layer in aligned_layers.aligned_layers(explicit)} == {"symmetric_alignment"}


class _Task:
    metric_names = ()

    def compute_loss(self, model, batch, *, training):
        logits = model(batch["x"], training=training)["logits"]
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))
        return loss, {}


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["sa", "fa", "kp"])
@pytest.mark.parametrize("distributed", [False, True], ids=["xla_one_device", "mirrored"])
def test_loop_train_step(rule, distributed):
    # XLA on one device (the TPU proxy); MirroredStrategy over logical CPUs without XLA (XLA there cannot reach
    # replica variables on the other device, tensorflow.org/xla/known_issues), as the loop's own tests do.
    strategy = strategies.mirrored() if distributed else strategies.one_device()
    x, y = _batch("small_resnet8")
    with strategy.scope():
        model = _build("small_resnet8", rule)
        opt = keras.optimizers.SGD(1e-3)
    groups = training.variable_groups(model)
    before = {id(v): v.numpy() for v in model.trainable_variables}
    backward = aligned_layers.backward_kernels(model)
    gap_before = [np.linalg.norm(b.numpy() - _w_like_b(model, b)) for b in backward]
    data = strategy.distribute_datasets_from_function(
        lambda ctx: tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(1 if distributed else 2).repeat()
    )
    # The loop's step with the alignment hook a model with aligned layers gets (Adam 1e-3 on the backward kernels).
    train, _ = train_step.build_train_loop(_Task(), model, opt, strategy, jit_compile=not distributed)
    sums = train(iter(data), tf.constant(2, tf.int32))
    assert all(np.isfinite(float(v)) for v in sums.values())
    forward = [v for v in groups.task if not _is_backward(v)]
    assert any(np.any(v.numpy() != before[id(v)]) for v in forward)
    moved = [np.any(b.numpy() != before[id(b)]) for b in backward]
    if rule == "fa":
        assert not any(moved)
    else:
        assert all(moved)
    if rule == "sa":  # Adam steps on 2e-3 (B - W^T) pull every B towards W^T
        gap_after = [np.linalg.norm(b.numpy() - _w_like_b(model, b)) for b in backward]
        assert all(a < b for a, b in zip(gap_after, gap_before))


def test_mixed_bfloat16_rule_step():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _build("small_resnet8", "sa")
    _, _, grads, collected = _gradients(model, *_batch("small_resnet8"))
    assert collected.losses and all(np.all(np.isfinite(g)) for group in grads.values() for g in group)
    assert all(np.any(g) for g in grads["r_backward"])


@pytest.mark.parametrize("rule", ["sa", "kp"])
def test_xla_gradients_match_eager(rule):
    model = small_resnets.build_small_resnet(8, 2, num_classes=3, image_size=8, learning_rule=rule)
    x, y = tf.random.stateless_normal((2, 8, 8, 3), (3, 4)), tf.constant([0, 2])
    backward = aligned_layers.backward_kernels(model)

    def grads():
        with tf.GradientTape(persistent=True) as tape:
            with scope.collect_alignment_losses() as collected:
                logits = model(x, training=True)["logits"]
            task = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            r = collected.total()
        return tape.gradient(task, model.trainable_variables) + tape.gradient(r, backward)

    eager, xla = grads(), tf.function(grads, jit_compile=True)()
    for a, b in zip(eager, xla):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)
    assert any(np.any(g.numpy()) for g in xla[-len(backward) :])
