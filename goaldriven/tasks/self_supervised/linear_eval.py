"""Linear evaluation of a self-supervised model (thesis Section 3.6.6; spec ch3 A4.10): a frozen network, trained or
untrained, and one linear readout trained with softmax cross-entropy.

    f = flatten(model(x, training=False)["features"][feature])     frozen: no weight of the model trains, BN uses its
                                                                   moving statistics
    logits = W f + b,   W initialised to 0 (SimCLR's linear evaluation), b = 0, L2 (TF1 lambda) weight_decay on W

`LinearProbe` follows the model contract ({"logits", "features"}), so the existing classification tasks train and
evaluate it unchanged (top-1/top-5 over the whole evaluation split) and the loop checkpoints it. `probe_model` builds
the SSL model with its task, restores its weights from an SSL run (every model variable must be in the checkpoint:
a mismatched config fails in one line instead of evaluating random weights) and wraps it; `checkpoint=None` is the
untrained control. One command from a saved SSL run to top-1: the SSL experiment file, then gin/tasks/linear_eval.gin
(ImageNet: 100 epochs, SGD momentum 0.9, lr 0.1 x0.1 at epochs 30, 60 and 90, batch 256, weight decay 1e-9) or
gin/tasks/linear_eval_digits.gin, with SSL_WORKDIR.
"""

# b: batch, d: probe input width, k: classes
import math
from typing import Any, Callable

import keras
from keras import ops

from goaldriven import checkpointing
from goaldriven.weight_decay import tf1_l2


@keras.saving.register_keras_serializable(package="goaldriven")
class LinearProbe(keras.Model):
    """A frozen model and a linear readout on one of its features (module docstring).

    Args:
      frozen: a built model of the {"features"} contract (a `SelfSupervisedModel`, a zoo model).
      feature: the feature read (default "representation": the backbone's, before any head).
      num_classes: k.
      weight_decay: TF1 lambda on W (thesis: 1e-9).
    """

    def __init__(self, frozen: keras.Model, feature: str, num_classes: int, weight_decay: float = 1e-9, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2. Received: {num_classes!r}")
        self.frozen, self.feature, self.num_classes = frozen, feature, num_classes
        frozen.trainable = False
        self.readout = keras.layers.Dense(
            num_classes,
            kernel_initializer="zeros",
            kernel_regularizer=tf1_l2(weight_decay) if weight_decay else None,
            name="readout",
        )

    def call(self, images, training=False):
        del training  # the frozen model always runs in inference mode
        out = self.frozen(images, training=False)
        features = out.get("features", {})
        if self.feature not in features:
            raise ValueError(
                f"the frozen model has no feature {self.feature!r}; its features are {', '.join(features)}."
            )
        value = features[self.feature]
        flat = ops.reshape(value, (-1, math.prod(value.shape[1:])))  # (b, d)
        logits = ops.cast(self.readout(ops.stop_gradient(flat)), "float32")  # (b, k)
        return {"logits": logits, "features": {**features, "probe_input": flat}}


def probe_model(
    *,
    ssl_task: Any,
    checkpoint: str | None,
    num_classes: int,
    feature: str = "representation",
    weight_decay: float = 1e-9,
    log: Callable[[str], None] = print,
) -> LinearProbe:
    """The frozen SSL model of `ssl_task`, restored from `checkpoint` (an SSL workdir, its checkpoints/ folder or a
    prefix; None: untrained), with a linear readout; built for the task's image size."""
    model = ssl_task.build_model()
    if checkpoint is None:
        log("linear probe on the UNTRAINED network (checkpoint=None): the thesis' untrained control")
    else:
        prefix = checkpointing.restore_model(model, checkpoint)
        log(f"linear probe on the frozen network of {prefix}")
    probe = LinearProbe(model, feature, num_classes, weight_decay, name="linear_probe")
    size = ssl_task.input_spec.image_size
    probe(keras.KerasTensor((None, size, size, 3)))
    return probe
