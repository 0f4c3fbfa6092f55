"""Every ImageNet model of the library by name: the ConvRNN zoo and BaseNets (convrnn_zoo), AlexNet and the ResNets.

`build_model(name, ...)` is what gin binds (`gin/models/zoo.gin`), what `MODEL` names, and what neural-fit reports
print. All models follow the library's contract: `model(images, training=...)` returns
{"logits": (b, classes) float32, "features": {name: tensor}} (ConvRNNs add "logits_per_step").
"""

from typing import Any, Callable

import keras

from goaldriven.models import alexnet, convrnn_zoo, resnets

FEEDFORWARD: dict[str, Callable[..., keras.Model]] = {
    "alexnet": alexnet.build_alexnet,
    "resnet18_v1": resnets.resnet18_v1,
    "resnet34_v1": resnets.resnet34_v1,
    "resnet50_v1": resnets.resnet50_v1,
    "resnet50_v2": resnets.resnet50_v2,
    "resnet101_v2": resnets.resnet101_v2,
    "resnet152_v2": resnets.resnet152_v2,
}
DEFAULT_WEIGHT_DECAY = {"alexnet": 5e-4}  # spec ch2 7.3; everything else 1e-4


def model_names() -> tuple[str, ...]:
    """Names `build_model` accepts."""
    return convrnn_zoo.model_names() + tuple(FEEDFORWARD)


def build_model(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    weight_decay: float | None = None,
    **convrnn_kwargs: Any,
) -> keras.Model:
    """Builds the named model with all weights created.

    Args:
      name: one of `model_names()`.
      num_classes: classes of the readout.
      image_size: input side in pixels (AlexNet's fc6 and the ConvRNNs' kernel clipping depend on it).
      weight_decay: TF1 lambda of the backbone (default: 5e-4 for AlexNet, 1e-4 otherwise; thesis Section 2.5.1).
      **convrnn_kwargs: ConvRNN/BaseNet options of `convrnn_zoo.build_convrnn` (cell_weight_decay, unroll_length,
        width_multiplier, remat, blank_value, decoder, decoder_start, unroll).
    """
    decay = DEFAULT_WEIGHT_DECAY.get(name, 1e-4) if weight_decay is None else weight_decay
    if name in FEEDFORWARD:
        # ConvRNN options are accepted only at their defaults, so one gin file can bind them for every model.
        defaults = {"cell_weight_decay": None, "unroll_length": "full", "width_multiplier": 1.0, "remat": False}
        unsupported = sorted(k for k, v in convrnn_kwargs.items() if defaults.get(k, object()) != v)
        if unsupported:
            raise ValueError(
                f"{name} is a feedforward model without the ConvRNN options {unsupported}; drop them (or the gin "
                "macros that set them) for this model."
            )
        if name == "alexnet":
            return alexnet.build_alexnet(num_classes=num_classes, weight_decay=decay, image_size=image_size)
        return FEEDFORWARD[name](num_classes=num_classes, weight_decay=decay)
    if name not in convrnn_zoo.model_names():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}.")
    return convrnn_zoo.build_convrnn(
        name, num_classes=num_classes, image_size=image_size, weight_decay=decay, **convrnn_kwargs
    )
