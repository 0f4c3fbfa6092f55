"""Thread-local contexts that connect aligned layers with model builders and the training loop.

* `learning_rule(rule)`: while models are built inside it, the layer factories of alignment/layers.py (`conv2d`,
  `dense`, `separable_conv2d`) return aligned layers trained under `rule`; outside it they return plain Keras layers.
  Model builders enter it through alignment/binding.py (`builds_under_rule`), which also checks the built model;
  a builder called inside it must be given the same rule (None is backprop, never "the enclosing rule").
* `collect_alignment_losses()`: while a training step's forward pass runs inside it, every aligned layer adds its
  alignment loss R (alignment/rules.py) to the returned list. Outside it layers compute no R (evaluation, inference).
* `exact_gradients()`: aligned layers use W in their input gradient (true backprop), for the diagnostics' reference
  gradient; `record_layer_inputs()` lets the diagnostics see each aligned layer's input tensor.

Thread-local because MirroredStrategy runs each replica's step in its own thread.
"""

import contextlib
import threading

_STATE = threading.local()


def _stack(name: str) -> list:
    if not hasattr(_STATE, name):
        setattr(_STATE, name, [])
    return getattr(_STATE, name)


@contextlib.contextmanager
def _pushed(name: str, value):
    """Pushes `value` on this thread's stack `name` for the duration of the context and yields it."""
    stack = _stack(name)
    stack.append(value)
    try:
        yield value
    finally:
        stack.pop()


@contextlib.contextmanager
def learning_rule(rule):
    """Layers made by the alignment factories inside this context use `rule` (None or Backprop: plain layers)."""
    from goaldriven.alignment import rules  # local: rules has no dependency on this module

    with _pushed("rules", rules.get_rule(rule)) as pushed:
        yield pushed


def current_rule():
    """The innermost `learning_rule`'s rule, or None outside any."""
    stack = _stack("rules")
    return stack[-1] if stack else None


class AlignmentLosses:
    """The alignment losses of one forward pass.

    A layer called several times in one pass (a ConvRNN's convs, once per time step) contributes the mean of its
    calls' R, so the alignment learning rate does not scale with the unroll length; a separable conv's depthwise and
    pointwise parts are separate entries (`part`).
    """

    def __init__(self):
        self._entries = {}  # (id(layer), part) -> (layer, [losses])

    def add(self, layer, loss, part: str = ""):
        self._entries.setdefault((id(layer), part), (layer, []))[1].append(loss)

    @property
    def layers(self) -> list:
        """One layer per entry, aligned with `losses`."""
        return [layer for layer, _ in self._entries.values()]

    @property
    def losses(self) -> list:
        """Per entry, the mean of its calls' R (float32 scalars)."""
        import tensorflow as tf

        return [
            tf.add_n(values) / len(values) if len(values) > 1 else values[0] for _, values in self._entries.values()
        ]

    def total(self):
        import tensorflow as tf

        losses = self.losses
        return tf.add_n(losses) if losses else tf.constant(0.0)


@contextlib.contextmanager
def collect_alignment_losses():
    """Aligned layers called inside add their R to the yielded `AlignmentLosses`."""
    with _pushed("collectors", AlignmentLosses()) as collector:
        yield collector


def current_collector():
    stack = _stack("collectors")
    return stack[-1] if stack else None


@contextlib.contextmanager
def exact_gradients():
    """Aligned layers called inside propagate the exact gradient (W^T), as backprop would."""
    with _pushed("exact", True):
        yield


def in_exact_gradients() -> bool:
    return bool(_stack("exact"))


@contextlib.contextmanager
def record_layer_inputs():
    """Yields a dict {layer path: [input tensors]} that aligned layers called inside fill."""
    with _pushed("inputs", {}) as inputs:
        yield inputs


def record_input(layer, x) -> None:
    stack = _stack("inputs")
    if stack:
        stack[-1].setdefault(layer.path, []).append(x)
