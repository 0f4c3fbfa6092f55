"""Any feedforward zoo model built for a given input shape (h, w, c), e.g. the 203 x 400 x 1 cochleagrams of the WSN
task (thesis Section 6.3.8; spec ch5 6.5), instead of the zoo's square RGB images.

`zoo.build_model` builds every model for (None, s, s, 3). Here the named model is built once as a template at 32 px
(AlexNet's minimum; cheap) under the learning rule, then re-created from its config inside the same rule scope and
built for (None, h, w, c): the first conv's input channels and AlexNet's fc6 fan-in follow the input, everything else
is the template's (checked: same config, same number of weights). Works for every model whose config round-trips
(the ResNets, AlexNets, KNets and small ResNets of the zoo). `zoo.build_model(name, image_size=(h, w), channels=c)`
builds the ResNets, AlexNets and KNets for such inputs directly; this module serves every feedforward zoo model the same
way, the small ResNets (square RGB only in the zoo) included, which is what the WSN task files need.
"""

from typing import Any, Sequence

import keras

from goaldriven.alignment import binding
from goaldriven.models import zoo

TEMPLATE_SIZE = 32  # side of the square template build (AlexNet's minimum)


@binding.builds_under_rule
def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int = 1000,
    weight_decay: float | None = None,
    learning_rule: Any = None,
) -> keras.Model:
    """The zoo model `name` (feedforward: ResNets, AlexNets, small ResNets) built for (None, *input_shape) inputs.

    Args:
      name: a feedforward name of `models.zoo.model_names()`.
      input_shape: (height, width, channels) of the cochleagram, e.g. (203, 400, 1).
      num_classes: outputs (WSN: 794).
      weight_decay: the backbone's TF1 lambda (None: the zoo default, 1e-4 ResNets / 5e-4 AlexNets, as for ImageNet).
      learning_rule: as in `zoo.build_model` (None or "bp" is backprop).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints. Received: {input_shape}")
    template = zoo.build_model(
        name,
        num_classes=num_classes,
        image_size=TEMPLATE_SIZE,
        weight_decay=weight_decay,
        learning_rule=learning_rule,
    )
    config = template.get_config()
    model = type(template).from_config(config)
    model(keras.KerasTensor((None, *input_shape)))
    if model.get_config() != config or len(model.weights) != len(template.weights):
        raise ValueError(
            f"zoo model {name!r} does not re-create from its config ({type(template).__name__}); build it with "
            "input_shape support in models/zoo.py instead."
        )
    return model
