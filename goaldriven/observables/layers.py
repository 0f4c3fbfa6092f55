"""Which layers of a model are observed, and their inputs, outputs and Jacobian column sums on a batch.

Reference: spec ch5_ch6 Section 11.3 (per layer: forward kernel, output, layer-wise activity change), A17, A18.

Observed layers: every `keras.layers.Conv2D` and `keras.layers.Dense` (plain or the aligned subclasses of
goaldriven/alignment/layers.py), in the order the forward pass first calls them (`order_by_calls` eagerly; the
recorder from a trace of its replica step; `observed_layers` alone gives Keras' tracking order). Not observed: separable and depthwise convs (none in the Chapter 6 architectures, and their
forward kernel is two tensors), transposed convs, normalisation layers. A self-supervised model (an object with
`backbone` and a dict `heads`, goaldriven/models/heads.py) flags the heads' layers `is_head` (always "deep" in the
layer-position one-hot) and drops the backbone's unused readout (its last dense layer: "logits" in the ResNets,
"fc8" in AlexNet), as the thesis' SimCLR networks have two contrastive layers in place of the final layer (11.3:
ResNet-18 22 layers, its SimCLR version 23).

Activations (A18): the layer's own output, after its bias and its own activation: for the ResNets' convs (activation
None, BN after) that is the pre-BN conv output; for AlexNet and KNet convs it is post-ReLU.

Capture works for any model (functional, sequential, subclassed): inside `installed(layers)` each observed layer's
`call` is wrapped on the instance; inside `recording(...)` (thread-local, so each MirroredStrategy replica records
its own) the wrapper recomputes the call under a gradient tape in `alignment.scope.exact_gradients()` and hands
(x, y, v) to the recording, v = d(sum of y) / dx (statistics.jacobian_column_sums). Outside a recording the wrapper
only calls through. Wrapping happens at trace time: trace the measuring tf.function inside both contexts.
"""

# b: batch
import contextlib
import threading
from typing import Any, Callable, NamedTuple

import keras

from goaldriven.alignment import scope
from goaldriven.observables import statistics

_STATE = threading.local()


class ObservedLayer(NamedTuple):
    name: str  # unique within the model: the layer's path below the model
    layer: keras.layers.Layer
    kind: str  # "conv" | "dense"
    is_head: bool


def _kind(layer) -> str | None:
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


def _flatten(layer) -> list:
    return list(layer._flatten_layers(include_self=True))  # pylint: disable=protected-access


def observed_layers(model: keras.layers.Layer, exclude: tuple[str, ...] = ()) -> list[ObservedLayer]:
    """Every Conv2D and Dense of `model` in tracking order (module docstring), minus layers named in `exclude`."""
    heads = getattr(model, "heads", None)
    backbone = getattr(model, "backbone", None)
    head_ids, dropped = set(), set()
    if isinstance(heads, dict) and backbone is not None:
        head_ids = {id(sub) for head in heads.values() for sub in _flatten(head)}
        readouts = [sub for sub in _flatten(backbone) if _kind(sub) == "dense"]
        if readouts:
            dropped.add(id(readouts[-1]))
    found, names, seen = [], set(), set()
    for layer in _flatten(model):
        kind = _kind(layer)
        if kind is None or id(layer) in dropped or id(layer) in seen:
            continue
        seen.add(id(layer))
        name = layer.path or layer.name
        if name.startswith(f"{model.name}/"):
            name = name[len(model.name) + 1 :]  # relative to the model: the same in every process of the run
        if name in exclude or layer.name in exclude:
            continue
        base, index = name, 1
        while name in names:
            index += 1
            name = f"{base}#{index}"
        names.add(name)
        found.append(ObservedLayer(name, layer, kind, id(layer) in head_ids))
    if not found:
        raise ValueError(f"model {model.name!r} has no Conv2D or Dense layer to observe.")
    return found


class Recording:
    """What one forward pass recorded: per observed layer, its calls' (x, y, v) (v None without gradients)."""

    def __init__(self, layers: list[ObservedLayer], gradients: bool):
        self.index = {id(o.layer): i for i, o in enumerate(layers)}
        self.gradients = gradients
        self.calls: list[list[tuple[Any, Any, Any]]] = [[] for _ in layers]
        self.order: list[int] = []  # layer indices in first-call order

    def add(self, layer, x, y, v) -> None:
        i = self.index[id(layer)]
        if not self.calls[i]:
            self.order.append(i)
        self.calls[i].append((x, y, v))


def _active() -> Recording | None:
    stack = getattr(_STATE, "recordings", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def recording(layers: list[ObservedLayer], gradients: bool = True):
    """Yields a `Recording` that calls of the installed layers in this thread fill (module docstring)."""
    if not hasattr(_STATE, "recordings"):
        _STATE.recordings = []
    _STATE.recordings.append(Recording(layers, gradients))
    try:
        yield _STATE.recordings[-1]
    finally:
        _STATE.recordings.pop()


def _wrap(layer, original: Callable) -> Callable:
    def call(*args, **kwargs):
        rec = _active()
        if rec is None or id(layer) not in rec.index:
            return original(*args, **kwargs)
        if args:
            x, rest = args[0], args[1:]
            run = lambda t: original(t, *rest, **kwargs)
        else:
            kwargs = dict(kwargs)
            x = kwargs.pop("inputs")
            run = lambda t: original(inputs=t, **kwargs)
        if not rec.gradients:
            y = run(x)
            rec.add(layer, x, y, None)
            return y
        with scope.exact_gradients():
            y, v = statistics.jacobian_column_sums(run, x)
        rec.add(layer, x, y, v)
        return y

    return call


@contextlib.contextmanager
def installed(layers: list[ObservedLayer]):
    """Wraps each observed layer's `call` on its instance for the duration of the context (module docstring)."""
    saved = []
    try:
        for o in layers:
            own = o.layer.__dict__.get("call")
            saved.append((o.layer, own))
            object.__setattr__(o.layer, "call", _wrap(o.layer, o.layer.call))
        yield
    finally:
        for layer, own in saved:
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)


def layer_io(
    model: keras.layers.Layer, inputs: Any, layers: list[ObservedLayer], *, gradients: bool = True, **call_kwargs
) -> Recording:
    """Runs `model(inputs, training=False)` and returns what each observed layer saw (eager or inside tf.function)."""
    call_kwargs.setdefault("training", False)
    with installed(layers), recording(layers, gradients) as rec:
        model(inputs, **call_kwargs)
    return rec


def order_by_calls(model: keras.layers.Layer, inputs: Any, layers: list[ObservedLayer]) -> list[ObservedLayer]:
    """`layers` in the order the forward pass first calls them (layers never called are an error)."""
    rec = layer_io(model, inputs, layers, gradients=False)
    missing = [layers[i].name for i, calls in enumerate(rec.calls) if not calls]
    if missing:
        raise ValueError(f"observed layers {missing} are not called by the model's forward pass; exclude them.")
    return [layers[i] for i in rec.order]
