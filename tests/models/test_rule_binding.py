"""How builders receive the learning rule (alignment/binding.py): None is backprop, every builder binds the rule the
same way and passes it on, no builder inherits an enclosing rule, and a layer that cannot honour a rule raises."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cells, weight_decay
from goaldriven.alignment import binding, layers, rules, scope
from goaldriven.cells import base as cell_base
from goaldriven.models import (
    alexnet,
    convrnn_nodes,
    convrnn_zoo,
    fast_rnn,
    mouse_baselines,
    path_integrators,
    resnet_blocks,
    resnets,
    small_resnets,
    streamnet,
    zoo,
)

TINY = {"width_multiplier": 0.0625}
# builder name -> a call building a small model, given learning_rule=... or nothing.
BUILDERS = {
    "zoo.build_model": lambda **kw: zoo.build_model("small_resnet8", num_classes=3, image_size=16, **kw),
    "build_small_resnet": lambda **kw: small_resnets.build_small_resnet(8, 2, num_classes=3, image_size=8, **kw),
    "build_convrnn": lambda **kw: convrnn_zoo.build_convrnn(
        "ugrnn_shallow", num_classes=3, image_size=32, **TINY, **kw
    ),
    "build_alexnet": lambda **kw: alexnet.build_alexnet(num_classes=3, image_size=32, **kw),
    "build_resnet": lambda **kw: resnets.build_resnet(18, 1, num_classes=3, **kw),
    "build_path_integrator": lambda **kw: path_integrators.build_path_integrator(
        input_dim=2, init_dim=3, output_dim=4, kind="ugrnn", units=5, **kw
    ),
    "build_streamnet": lambda **kw: streamnet.build_streamnet(1, num_classes=3, image_size=32, **kw),
    "build_mouse_baseline": lambda **kw: mouse_baselines.build_mouse_baseline(
        "resnet18_tv", num_classes=3, image_size=32, **kw
    ),
}
DECORATED = [
    zoo.build_model,
    small_resnets.build_small_resnet,
    convrnn_zoo.build_convrnn,
    alexnet.build_alexnet,
    resnets.build_resnet,
    path_integrators.build_path_integrator,
    streamnet.build_streamnet,
    mouse_baselines.build_mouse_baseline,
]
SLOW_NAMES = {"resnet34_v1", "resnet50_v1", "resnet50_v2", "resnet101_v2", "resnet152_v2"}
SLOW_NAMES |= {"resnet34_v1_ch6", "resnet34_v2", "vgg16", "alexnet_tv", "streamnet_six"}
SLOW_NAMES |= {f"small_resnet{depth}" for depth in small_resnets.DEPTHS if depth > 14}
RULE_CYCLE = ("fa", "wm", "ia", "sa", "aa", "kp", rules.SymmetricAlignment(self_weight=1e-3, decay_weight=0.0))


def _weights(model):
    return [(v.path, tuple(v.shape)) for v in model.weights]


def _own_matrices(layer):
    """The trainable weights of rank >= 2 that `layer` owns itself (not through a sub-layer)."""
    return [v for v in layer._trainable_variables if v.trainable and len(v.shape) >= 2]


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_none_bp_and_backprop_build_the_same_plain_model(builder):
    build = BUILDERS[builder]
    default, none, bp = build(), build(learning_rule=None), build(learning_rule="bp")
    instance = build(learning_rule=rules.Backprop())
    for model in (default, none, bp, instance):
        assert layers.aligned_layers(model) == []
        assert not any(isinstance(layer, layers.ALIGNED_CLASSES) for layer in model._flatten_layers())
        assert _weights(model) == _weights(default)
    assert not any(v.path.endswith("backward_kernel") for v in default.weights)


@pytest.mark.parametrize("builder", DECORATED, ids=lambda f: f.__qualname__)
def test_builders_keep_their_signature_and_learning_rule_none(builder):
    parameter = inspect.signature(builder).parameters["learning_rule"]
    assert parameter.default is None
    assert builder is not builder.__wrapped__ and builder.__name__ == builder.__wrapped__.__name__
    assert builder.__doc__ and builder.__doc__ == builder.__wrapped__.__doc__


def _all_names():
    params = []
    for i, name in enumerate(zoo.model_names()):
        marks = [pytest.mark.slow] if name in SLOW_NAMES else []
        params.append(pytest.param(name, RULE_CYCLE[i % len(RULE_CYCLE)], id=name, marks=marks))
    return params


@pytest.mark.parametrize("name,rule", _all_names())
def test_every_model_under_a_rule_has_only_aligned_kernels(name, rule):
    kwargs = {} if name in zoo.FEEDFORWARD or name in zoo.SMALL or name in zoo.MOUSE else dict(TINY)
    size = 16 if name in zoo.SMALL else 64 if name.startswith("alexnet_") else 32
    model = zoo.build_model(name, num_classes=3, image_size=size, learning_rule=rule, **kwargs)
    expected = rules.get_rule(rule)
    aligned = layers.aligned_layers(model)
    assert aligned and all(layer.rule == expected for layer in aligned)
    for layer in model._flatten_layers(include_self=True):
        if isinstance(layer, binding.KERAS_KERNEL_LAYERS):
            assert isinstance(layer, layers.ALIGNED_CLASSES) and layer.uses_backward_kernel, layer.path
        if _own_matrices(layer) and not isinstance(layer, layers.ALIGNED_CLASSES):
            assert type(layer).honours_learning_rules is True, (layer.path, type(layer).__name__)
    kernels = [v for v in model.trainable_weights if v.path.rsplit("/", 1)[-1].endswith("kernel")]
    forward = [v for v in kernels if not v.path.endswith("backward_kernel")]
    assert len(kernels) == 2 * len(forward)  # one backward kernel per forward kernel: nothing left to backprop


def test_the_lstm_opt_peepholes_are_the_only_rule_neutral_weights():
    model = zoo.build_model("lstm_shallow", num_classes=3, image_size=32, learning_rule="fa", **TINY)
    opted = [layer for layer in model._flatten_layers() if _own_matrices(layer)]
    opted = [layer for layer in opted if not isinstance(layer, layers.ALIGNED_CLASSES)]
    assert [type(layer) for layer in opted] == [cells.ConvLSTMCell]  # conv4: the LSTM Opt cell with peepholes
    assert {v.name for v in _own_matrices(opted[0])} == {"peephole_i", "peephole_f", "peephole_o"}


class OwnKernel(keras.layers.Layer):
    """A custom layer doing its own matmul with its own kernel."""

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 3))

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)


class OwnKernelOptedIn(OwnKernel):
    honours_learning_rules = True


class OwnVectorAndFrozenMatrix(keras.layers.Layer):
    """Own weights that need no backward kernel: a per-unit scale and a frozen matrix."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],))
        self.fixed = self.add_weight(name="fixed", shape=(input_shape[-1], 3), trainable=False)

    def call(self, x):
        return keras.ops.matmul(x * self.scale, self.fixed)


class WrapsFactoryDense(keras.layers.Layer):
    """A custom layer whose matmul is a sub-layer from the alignment factories."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = layers.dense(3, name="inner")

    def call(self, x):
        return self.inner(x)


def _rnn(cell):
    return keras.layers.RNN(cell, name="offender")


# name -> (input shape without batch, layer maker (name="offender"), expected class name in the message)
UNHONOURED = {
    "dense": ((4,), lambda: keras.layers.Dense(3, name="offender"), "Dense"),
    "einsum_dense": ((4,), lambda: keras.layers.EinsumDense("ab,bc->ac", (3,), name="offender"), "EinsumDense"),
    "conv1d": ((6, 2), lambda: keras.layers.Conv1D(3, 2, name="offender"), "Conv1D"),
    "conv2d": ((6, 6, 2), lambda: keras.layers.Conv2D(3, 2, name="offender"), "Conv2D"),
    "conv3d": ((4, 4, 4, 2), lambda: keras.layers.Conv3D(3, 2, name="offender"), "Conv3D"),
    "conv2d_transpose": ((6, 6, 2), lambda: keras.layers.Conv2DTranspose(3, 2, name="offender"), "Conv2DTranspose"),
    "separable_conv2d": ((6, 6, 2), lambda: keras.layers.SeparableConv2D(3, 2, name="offender"), "SeparableConv2D"),
    "cells_separable": ((6, 6, 2), lambda: cells.separable.SeparableConv2D(3, 2, name="offender"), "SeparableConv2D"),
    "depthwise_conv2d": ((6, 6, 2), lambda: keras.layers.DepthwiseConv2D(2, name="offender"), "DepthwiseConv2D"),
    "gru_cell": ((3, 2), lambda: _rnn(keras.layers.GRUCell(3)), "GRUCell"),
    "lstm_cell": ((3, 2), lambda: _rnn(keras.layers.LSTMCell(3)), "LSTMCell"),
    "simple_rnn_cell": ((3, 2), lambda: _rnn(keras.layers.SimpleRNNCell(3)), "SimpleRNNCell"),
    "gru": ((3, 2), lambda: keras.layers.GRU(3, name="offender"), "GRUCell"),
    "lstm": ((3, 2), lambda: keras.layers.LSTM(3, name="offender"), "LSTMCell"),
    "simple_rnn": ((3, 2), lambda: keras.layers.SimpleRNN(3, name="offender"), "SimpleRNNCell"),
    "vector_ugrnn_cell": ((3, 2), lambda: _rnn(cells.VectorUGRNNCell(3)), "VectorUGRNNCell"),
    "custom_kernel": ((4,), lambda: OwnKernel(name="offender"), "OwnKernel"),
    "aligned_under_backprop": ((4,), lambda: layers.AlignedDense(3, rule="bp", name="offender"), "AlignedDense"),
    "aligned_under_another_rule": (
        (5, 5, 2),
        lambda: layers.AlignedConv2D(3, 1, rule="fa", name="offender"),
        "AlignedConv2D",
    ),
}


def _net(input_shape, make_layer):
    return keras.Sequential([keras.Input(input_shape), make_layer()], name="net")


@pytest.mark.parametrize("kind", sorted(UNHONOURED))
def test_a_layer_that_cannot_honour_the_rule_raises_naming_path_and_class(kind):
    shape, make_layer, class_name = UNHONOURED[kind]
    with pytest.raises(ValueError) as raised:
        binding.build_under_rule(_net, "sa", shape, make_layer)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("layer 'net/offender") and f"({class_name})" in message
    assert "learning_rule='symmetric_alignment'" in message
    assert "goaldriven.alignment.layers" in message and "honours_learning_rules = True" in message
    # Under backprop nothing is checked: the same model builds.
    assert binding.build_under_rule(_net, None, shape, make_layer).name == "net"


def test_sequence_rnn_of_the_path_integrators_raises():
    sequence = lambda: fast_rnn.SimpleRNNSequence(3, name="offender")  # noqa: E731

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.rnn = sequence()

        def call(self, x):
            return self.rnn(x, x[:, 0, :3] * 0 + 1)

    def build():
        model = Net()
        model(tf.zeros((1, 2, 3)))
        return model

    with pytest.raises(ValueError, match=r"^layer 'net/offender' \(SimpleRNNSequence\) .* weight 'kernel'"):
        binding.build_under_rule(build, "kp")


@pytest.mark.parametrize("kind", path_integrators.KINDS)
def test_path_integrators_train_with_backprop_only(kind):
    build = lambda rule: path_integrators.build_path_integrator(  # noqa: E731
        input_dim=2, init_dim=3, output_dim=4, kind=kind, units=5, learning_rule=rule
    )
    cell = {"rnn": "SimpleRNNSequence", "srnn": "SimpleRNNSequence", "ugrnn": "VectorUGRNNCell"}
    cell.update(gru="GRUCell", lstm="LSTMCell")
    with pytest.raises(ValueError, match=rf"^layer '{kind}_relu/rnn' \({cell[kind]}\) cannot train under"):
        build("fa")
    plain = build(None)
    assert type(plain.readout) is keras.layers.Dense and layers.aligned_layers(plain) == []


@pytest.mark.parametrize(
    "make_layer", [OwnKernelOptedIn, OwnVectorAndFrozenMatrix, WrapsFactoryDense], ids=lambda c: c.__name__
)
def test_layers_that_honour_rules_pass(make_layer):
    model = binding.build_under_rule(_net, "sa", (4,), lambda: make_layer(name="fine"))
    binding.check_rule_honoured(model, "sa")
    assert binding.unhonoured_layers(model, rules.get_rule("sa")) == []
    if make_layer is WrapsFactoryDense:
        assert [type(layer) for layer in layers.aligned_layers(model)] == [layers.AlignedDense]


def test_the_message_counts_the_other_unhonoured_layers():
    def build():
        return keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(2, name=f"d{i}") for i in range(6)], name="m")

    with pytest.raises(
        ValueError, match=r"^layer 'm/d0' \(Dense\) .* backprop \(as would 5 more layers: m/d1, m/d2, m/d3, \.\.\.\); "
    ):
        binding.build_under_rule(build, "fa")
    assert [layer.name for layer, _ in binding.unhonoured_layers(build(), rules.get_rule("fa"))] == [
        f"d{i}" for i in range(6)
    ]


def test_no_builder_inherits_an_enclosing_rule():
    build = BUILDERS["build_small_resnet"]
    with scope.learning_rule("sa"):
        with pytest.raises(ValueError, match=r"scope\.learning_rule\('symmetric_alignment'\) .*'backprop'.*never"):
            build()
        with pytest.raises(ValueError, match="never inherits"):
            build(learning_rule="bp")
        with pytest.raises(ValueError, match="'symmetric_alignment' configured otherwise"):
            build(learning_rule=rules.SymmetricAlignment(self_weight=1.0))
        with pytest.raises(ValueError, match="never inherits"):
            build(learning_rule="kp")
        same = build(learning_rule=rules.SymmetricAlignment())
    assert {layer.rule.name for layer in layers.aligned_layers(same)} == {"symmetric_alignment"}
    with scope.learning_rule("bp"):
        assert layers.aligned_layers(build()) == []
    assert scope.current_rule() is None


seen = []


@binding.builds_under_rule
def _forgets_the_rule(learning_rule=None):
    return small_resnets.build_small_resnet(8, 2, num_classes=3, image_size=8)


@binding.builds_under_rule
def _passes_the_rule(learning_rule=None):
    seen.append(learning_rule)
    return small_resnets.build_small_resnet(8, 2, num_classes=3, image_size=8, learning_rule=learning_rule)


def test_a_builder_that_forgets_to_pass_its_rule_on_fails():
    with pytest.raises(
        ValueError, match=r"build_small_resnet was called inside scope\.learning_rule\('kolen_pollack'\)"
    ):
        _forgets_the_rule(learning_rule="kp")
    assert layers.aligned_layers(_forgets_the_rule()) == []  # backprop: both sides agree
    seen.clear()
    model = _passes_the_rule(learning_rule="kp")
    assert seen == [rules.KolenPollack()] and type(seen[0]) is rules.KolenPollack  # the body gets the resolved rule
    assert {type(layer.rule) for layer in layers.aligned_layers(model)} == {rules.KolenPollack}


def test_builds_under_rule_needs_a_learning_rule_none_parameter():
    with pytest.raises(TypeError, match="learning_rule=None"):
        binding.builds_under_rule(lambda name: None)
    with pytest.raises(TypeError, match="learning_rule=None"):
        binding.builds_under_rule(lambda learning_rule="sa": None)
    with pytest.raises(TypeError, match="learning_rule=None"):
        binding.builds_under_rule(lambda *learning_rule: None)
    with pytest.raises(TypeError, match="Keras layer or model"):
        binding.build_under_rule(lambda: "not a model", "sa")
    assert binding.build_under_rule(lambda: "anything", None) == "anything"  # nothing is checked under backprop


def test_gin_binds_learning_rule_through_the_decorator():
    gin.clear_config()
    try:
        gin.parse_config(
            [
                "from __gin__ import dynamic_registration",
                "from goaldriven.models import zoo",
                "from goaldriven.alignment import rules",
                "zoo.build_model.learning_rule = @rules.SymmetricAlignment()",
                "rules.SymmetricAlignment.self_weight = 0.5",
                "zoo.build_model.num_classes = 3",
                "zoo.build_model.image_size = 16",
            ]
        )
        model = gin.get_configurable(zoo.build_model)("small_resnet8")
    finally:
        gin.clear_config()
    aligned = layers.aligned_layers(model)
    assert aligned and {(layer.rule.name, layer.rule.self_weight, layer.rule.decay_weight) for layer in aligned} == {
        ("symmetric_alignment", 0.5, 1e-3)
    }


def test_rules_has_no_flags_and_get_rule_none_is_backprop():
    assert not hasattr(rules, "FLAGS")
    assert rules.get_rule(None) == rules.get_rule("bp") == rules.Backprop()
    assert not rules.get_rule(None).uses_backward_kernel
    with scope.learning_rule("sa"):
        assert rules.get_rule(None) == rules.Backprop()


def test_one_tf1_weight_decay_helper():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(float(weight_decay.tf1_l2(0.3)(tf.constant(w))), 0.3 * np.sum(w**2) / 2, rtol=1e-6)
    assert weight_decay.tf1_l2(0.0) is None
    with pytest.raises(ValueError, match=r"weight_decay must be >= 0.*Received: -1"):
        weight_decay.tf1_l2(-1.0)
    for module in (cell_base, alexnet, resnet_blocks, convrnn_nodes):
        assert module.tf1_l2 is weight_decay.tf1_l2, module.__name__
    model = alexnet.build_alexnet(num_classes=3, image_size=32, weight_decay=0.3)
    assert all(layer.kernel_regularizer.l2 == pytest.approx(0.15) for layer in (model.conv1, model.fc6, model.fc8))
