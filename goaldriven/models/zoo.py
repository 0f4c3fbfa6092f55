"""Every image model of the library by name: the ConvRNN zoo and BaseNets (convrnn_zoo), AlexNet, the ResNets, the
small CIFAR ResNets of the learning-rule experiments (small_resnets), and the architectures of the learning-rule
identification dataset of thesis Chapter 6 (spec ch5 6.1-6.3, 11.1): ResNet-18/34 v1 (`resnet18_v1_ch6`,
`resnet34_v1_ch6`: TPU layout with a stage-1 projection) and v2 (`resnet18_v2`, `resnet34_v2`), AlexNet and
AlexNet-LRN (`alexnet_ch6`, `alexnet_ch6_lrn`: conv4 kernel 4, conv bias 0; `alexnet` is the Chapter 2 model), and
KNet4/KNet5 with and without LRN (`knet4`, `knet4_lrn`, `knet5`, `knet5_lrn`); and the models of mouse visual cortex
of thesis Chapter 3 (spec ch3 A3): the StreamNets (`streamnet_single`, `streamnet_dual`, `streamnet_six`) and the
primate baselines as that chapter uses them, torchvision's AlexNet (`alexnet_tv`), AlexNet-BN (`alexnet_bn`), VGG16
(`vgg16`) and ResNet-18 (`resnet18_tv`), at 64 px by default (any size; `image_size=(64, 81)` for the CIFAR-10
StreamNets shown the scenes' aspect ratio). These carry `neural_fit_layers` (the layers Table 3.4 counts).

`build_model(name, ...)` is what gin binds (`gin/models/zoo.gin`), what `MODEL` names, and what neural-fit reports
print. All models follow the library's contract: `model(images, training=...)` returns
{"logits": (b, classes) float32, "features": {name: tensor}} (ConvRNNs add "logits_per_step").

`learning_rule` is the model-level switch of thesis Chapter 5: any model trains under any learning rule (backprop,
feedback alignment, weight mirror, information/symmetric/activation alignment, Kolen-Pollack; alignment/rules.py)
because model code makes its conv and dense layers through the factories of alignment/layers.py, which return aligned
layers (a backward kernel each) under the builder's rule and the plain Keras layers under backprop. Every builder
(this one included) binds its `learning_rule` through `alignment.binding.builds_under_rule` and passes it on to the
builder it calls; None always means backprop.
"""

import functools
from typing import Any, Callable

import keras

from goaldriven.alignment import binding
from goaldriven.models import (
    alexnet,
    convrnn_zoo,
    input_shape,
    knet,
    mouse_baselines,
    resnets,
    small_resnets,
    streamnet,
)

FEEDFORWARD: dict[str, Callable[..., keras.Model]] = {
    "alexnet": alexnet.build_alexnet,
    "alexnet_nolrn": alexnet.build_alexnet,  # use_lrn=False: the Chapter 6 "AlexNet" beside "AlexNet-LRN"
    "resnet18_v1": resnets.resnet18_v1,
    "resnet34_v1": resnets.resnet34_v1,
    "resnet18_v1_ch6": resnets.resnet18_v1_ch6,
    "resnet34_v1_ch6": resnets.resnet34_v1_ch6,
    "resnet18_v2": resnets.resnet18_v2,
    "resnet34_v2": resnets.resnet34_v2,
    "resnet50_v1": resnets.resnet50_v1,
    "resnet50_v2": resnets.resnet50_v2,
    "resnet101_v2": resnets.resnet101_v2,
    "resnet152_v2": resnets.resnet152_v2,
    "alexnet_ch6": alexnet.build_alexnet_ch6,  # Chapter 6 "AlexNet" (no LRN)
    "alexnet_ch6_lrn": alexnet.build_alexnet_ch6,  # Chapter 6 "AlexNet-LRN"
    "knet4": knet.build_knet,
    "knet4_lrn": knet.build_knet,
    "knet5": knet.build_knet,
    "knet5_lrn": knet.build_knet,
}
MOUSE: dict[str, Callable[..., keras.Model]] = {
    **{
        f"streamnet_{variant}": functools.partial(streamnet.build_streamnet, n)
        for variant, n in streamnet.VARIANTS.items()
    },
    **{name: functools.partial(mouse_baselines.build_mouse_baseline, name) for name in mouse_baselines.BUILDERS},
}  # thesis Chapter 3; default image size 64 (mouse acuity), weight decay 5e-4 (ResNet-18: 1e-4)
SIZED = ("alexnet", "alexnet_nolrn", "alexnet_ch6", "alexnet_ch6_lrn")  # fc6's fan-in depends on the input size
SMALL: dict[str, int] = {f"small_resnet{depth}": depth for depth in small_resnets.DEPTHS}  # name -> depth
DEFAULT_WEIGHT_DECAY = {
    "alexnet": 5e-4,
    "alexnet_nolrn": 5e-4,
    "alexnet_ch6": 5e-4,  # spec ch5 6.2
    "alexnet_ch6_lrn": 5e-4,
    **{name: 1e-5 for name in ("knet4", "knet4_lrn", "knet5", "knet5_lrn")},  # spec ch5 6.3 (IA: 1e-12, per experiment)
    **{f"streamnet_{variant}": 5e-4 for variant in streamnet.VARIANTS},  # spec ch3 A4.1 ([C] recipe)
    **mouse_baselines.DEFAULT_WEIGHT_DECAY,
}  # spec ch2 7.3; everything else 1e-4 (He et al. for the small ResNets)
# ConvRNN options that feedforward models accept only at their defaults, so one gin file can bind them for every model.
CONVRNN_DEFAULTS = {
    "cell_weight_decay": None,
    "unroll_length": "full",
    "width_multiplier": 1.0,
    "remat": False,
    "cell_overrides": None,
    "feedback": None,
    "image_off": None,
}


def model_names() -> tuple[str, ...]:
    """Names `build_model` accepts."""
    return convrnn_zoo.model_names() + tuple(FEEDFORWARD) + tuple(SMALL) + tuple(MOUSE)


@binding.builds_under_rule
def build_model(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int | tuple[int, int] = 224,
    channels: int = 3,
    weight_decay: float | None = None,
    learning_rule: Any = None,
    **convrnn_kwargs: Any,
) -> keras.Model:
    """Builds the named model with all weights created.

    Args:
      name: one of `model_names()`.
      num_classes: classes of the readout.
      image_size: input side in pixels (AlexNet's fc6, the KNets' readout and the ConvRNNs' kernel clipping depend on
        it), or (h, w) for non-square inputs (feedforward models except the small ResNets; e.g. (203, 400) for the
        WSN cochleagrams).
      channels: input channels of the feedforward models (3; 1 for cochleagrams). ConvRNNs and the small ResNets
        take 3 only.
      weight_decay: TF1 lambda of the backbone (default: 5e-4 for AlexNet, 1e-4 otherwise; thesis Section 2.5.1).
      learning_rule: how the model's conv and dense layers learn: None or "bp" (backprop) give the plain Keras layers;
        a rule name or abbreviation ("fa", "wm", "ia", "sa", "aa", "kp", "symmetric_alignment", ...) or an
        `alignment.rules.LearningRule` gives aligned layers trained under it (thesis Chapter 5; train with
        `tasks.loop.run(..., hooks=[alignment.training.AlignmentTraining(...)])`). A layer that cannot honour the rule raises (alignment/binding.py).
      **convrnn_kwargs: ConvRNN/BaseNet options of `convrnn_zoo.build_convrnn` (cell_weight_decay, unroll_length,
        width_multiplier, remat, blank_value, decoder, decoder_start, unroll, cell_overrides, feedback, image_off).
    """
    decay = DEFAULT_WEIGHT_DECAY.get(name, 1e-4) if weight_decay is None else weight_decay
    if name in MOUSE:
        _check_feedforward_options(name, convrnn_kwargs)
        common = dict(num_classes=num_classes, weight_decay=decay, learning_rule=learning_rule)
        return MOUSE[name](image_size=image_size, channels=channels, **common)
    if name in FEEDFORWARD or name in SMALL:
        _check_feedforward_options(name, convrnn_kwargs)
        common = dict(num_classes=num_classes, weight_decay=decay, learning_rule=learning_rule)
        if name in SMALL:
            return small_resnets.build_small_resnet(
                SMALL[name], image_size=_square(name, image_size, channels), **common
            )
        input_shape.image_hw(image_size)  # checked here for every model (the ResNets do not need it)
        common["channels"] = channels
        if name in SIZED:
            return FEEDFORWARD[name](image_size=image_size, use_lrn=name in ("alexnet", "alexnet_ch6_lrn"), **common)
        if name.startswith("knet"):
            return knet.build_knet(int(name[4]), use_lrn=name.endswith("_lrn"), image_size=image_size, **common)
        return FEEDFORWARD[name](**common)
    if name not in convrnn_zoo.model_names():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}.")
    image_size = _square(name, image_size, channels)
    return convrnn_zoo.build_convrnn(
        name,
        num_classes=num_classes,
        image_size=image_size,
        weight_decay=decay,
        learning_rule=learning_rule,
        **convrnn_kwargs,
    )


def _check_feedforward_options(name: str, convrnn_kwargs: dict) -> None:
    """Raises if ConvRNN-only options are set away from their defaults for a feedforward model."""
    unsupported = sorted(k for k, v in convrnn_kwargs.items() if CONVRNN_DEFAULTS.get(k, object()) != v)
    if unsupported:
        raise ValueError(
            f"{name} is a feedforward model without the ConvRNN options {unsupported}; drop them (or the gin "
            "macros that set them) for this model."
        )


def _square(name: str, image_size, channels: int) -> int:
    """The int side of a model built for square RGB inputs only."""
    if not isinstance(image_size, int) or channels != 3:
        raise ValueError(
            f"{name} takes square 3-channel images (an int image_size, channels=3); received image_size="
            f"{image_size!r}, channels={channels!r}. Non-square or 1-channel inputs: use a ResNet, AlexNet or KNet."
        )
    return image_size
