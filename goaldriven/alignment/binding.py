"""How a model builder receives its learning rule, and the check that every layer of the built model honours it.

One mechanism for every builder of goaldriven/models (thesis Chapter 5: any model trains under any rule):

    @binding.builds_under_rule
    def build_alexnet(num_classes=1000, ..., learning_rule=None) -> AlexNet: ...

* `learning_rule` goes through `rules.get_rule`: None and "bp" are backprop (plain Keras layers); a rule name, an
  abbreviation ("sa") or a `rules.LearningRule` is that rule. None always means backprop, never "the rule of an
  enclosing context".
* The builder runs inside `scope.learning_rule(rule)`, so the factories of alignment/layers.py (`dense`, `conv2d`,
  `separable_conv2d`) return aligned layers under a rule and plain Keras layers under backprop. The builder receives
  the resolved `LearningRule` as `learning_rule` and passes it on explicitly to any builder it calls.
* Nesting: a builder called inside `scope.learning_rule(R)` (inside another builder, or user code in the scope) must
  be given R or an equal rule; any other `learning_rule`, None included, raises. So a builder that forgets to pass
  its rule on to the builder it calls fails at once instead of building backprop layers.
* After the build, under any rule but backprop, `check_rule_honoured(model, rule)` walks every layer of the model
  and raises on the first one that would silently train with backprop (`unhonoured_layers` says why):
    - an aligned layer (alignment/layers.py) without a backward kernel or under another rule;
    - a plain Keras layer with a kernel (`KERAS_KERNEL_LAYERS`: Dense, EinsumDense, Conv*, Conv*Transpose,
      SeparableConv*, DepthwiseConv*, GRUCell/LSTMCell/SimpleRNNCell, so also the GRU/LSTM/SimpleRNN layers);
    - any other layer owning a trainable weight of rank >= 2 directly (not through a sub-layer: a custom layer doing
      its own matmul with its own kernel), unless its class declares `honours_learning_rules = True`.
  Under backprop nothing is checked.

Opt-in: a layer class sets `honours_learning_rules = True` when the rank >= 2 weights it owns itself need no
backward kernel (elementwise weights such as ConvLSTM peepholes, like a norm's gamma, keep exact gradients under
every rule) and its dense and conv parts come from the alignment factories (sub-layers are checked on their own).
Lookup and elementwise Keras layers (`RULE_NEUTRAL`: Embedding, PReLU, the normalisations) are accepted as they are.

`build_under_rule(builder, learning_rule, *args, **kwargs)` is the same mechanism as a call, for code that is not a
decorated builder: `build_under_rule(lambda: keras.Sequential([layers.dense(8), ...]), "sa")`.
"""

import functools
import inspect
from typing import Any, Callable

import keras

from goaldriven.alignment import layers, rules, scope

HONOURS_ATTRIBUTE = "honours_learning_rules"
KERAS_KERNEL_LAYERS = (
    keras.layers.Dense, keras.layers.EinsumDense,
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose,
    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.GRUCell, keras.layers.LSTMCell, keras.layers.SimpleRNNCell,
)  # fmt: skip
RULE_NEUTRAL = (
    keras.layers.Embedding, keras.layers.PReLU, keras.layers.BatchNormalization, keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
)  # fmt: skip
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_FIX = (
    "make its dense/conv parts with goaldriven.alignment.layers.dense/conv2d/separable_conv2d inside the builder, set "
    f"`{HONOURS_ATTRIBUTE} = True` on its class if its own weights need no backward kernel, or build with "
    "learning_rule='bp'"
)


def build_under_rule(builder: Callable[..., Any], learning_rule: Any, /, *args: Any, **kwargs: Any) -> Any:
    """`builder(*args, **kwargs)` inside `scope.learning_rule(learning_rule)`, then `check_rule_honoured`.

    `learning_rule`: None or "bp" (backprop), a rule name or abbreviation, or a `rules.LearningRule`. Raises if an
    enclosing `scope.learning_rule` holds a different rule (module docstring: no inheriting).
    """
    rule = rules.get_rule(learning_rule)
    enclosing = scope.current_rule()
    if enclosing is not None and enclosing != rule:
        name = getattr(builder, "__qualname__", repr(builder))
        received = f"{rule.name!r}" + (" configured otherwise" if rule.name == enclosing.name else "")
        raise ValueError(
            f"{name} was called inside scope.learning_rule({enclosing.name!r}) with learning_rule={received}; a "
            "builder never inherits a rule (None is backprop): pass it the enclosing rule explicitly, or call it "
            "outside the scope."
        )
    with scope.learning_rule(rule):
        model = builder(*args, **kwargs)
    check_rule_honoured(model, rule)
    return model


def builds_under_rule(builder: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the builder's `learning_rule=None` argument is bound by `build_under_rule` (module docstring).

    The builder body receives the resolved `rules.LearningRule`; the signature (and so gin's binding) is unchanged.
    """
    signature = inspect.signature(builder)
    parameter = signature.parameters.get("learning_rule")
    if parameter is None or parameter.default is not None or parameter.kind not in _KEYWORD_KINDS:
        raise TypeError(
            f"{builder.__qualname__} needs a `learning_rule=None` keyword parameter to be a rule-bound builder. "
            f"Received signature: {signature}"
        )

    @functools.wraps(builder)
    def build(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        rule = rules.get_rule(bound.arguments.get("learning_rule"))
        bound.arguments["learning_rule"] = rule
        return build_under_rule(builder, rule, *bound.args, **bound.kwargs)

    return build


def unhonoured_layers(model: keras.layers.Layer, rule: rules.LearningRule) -> list[tuple[keras.layers.Layer, str]]:
    """(layer, reason) for every layer of `model` (itself included) that would not train under `rule`."""
    found = []
    for layer in model._flatten_layers(include_self=True):  # pylint: disable=protected-access
        reason = _unhonoured_reason(layer, rule)
        if reason:
            found.append((layer, reason))
    return found


def check_rule_honoured(model: keras.layers.Layer, rule: Any) -> None:
    """Raises a one-line ValueError naming the first layer of `model` that cannot train under `rule` (a no-op under
    backprop)."""
    rule = rules.get_rule(rule)
    if not rule.uses_backward_kernel:
        return
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"a rule-bound builder must return a Keras layer or model. Received: {type(model).__name__}")
    found = unhonoured_layers(model, rule)
    if not found:
        return
    (layer, reason), others = found[0], [layer_path(other) for other, _ in found[1:]]
    more = f" (as would {len(others)} more layers: {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
    raise ValueError(
        f"layer {layer_path(layer)!r} ({type(layer).__name__}) cannot train under learning_rule={rule.name!r}: it "
        f"{reason}, so it would silently train with backprop{more if others else ''}; {_FIX}."
    )


def layer_path(layer: keras.layers.Layer) -> str:
    """The layer's path in the model (its weights' path prefix), or its name before it is built."""
    return getattr(layer, "path", None) or layer.name


def _unhonoured_reason(layer, rule) -> str | None:
    if isinstance(layer, layers.ALIGNED_CLASSES):
        if not layer.uses_backward_kernel:
            return "is an aligned layer under backprop (no backward kernel)"
        if layer.rule != rule:
            return f"is an aligned layer under another rule ({layer.rule.name!r})"
        return None
    if getattr(type(layer), HONOURS_ATTRIBUTE, False):
        return None
    if isinstance(layer, KERAS_KERNEL_LAYERS):
        return "is a plain Keras layer with a kernel"
    if isinstance(layer, RULE_NEUTRAL) or not layer.trainable:
        return None
    owned = [v for v in layer._trainable_variables if v.trainable and len(v.shape) >= 2]  # pylint: disable=protected-access
    if owned:
        weight = owned[0]
        return f"owns the trainable weight {weight.name!r} of shape {tuple(weight.shape)} and is not an aligned layer"
    return None
