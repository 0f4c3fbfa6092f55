"""Self-supervised models: any backbone of the zoo, one named feature, and the objective's MLP heads.

Reference: thesis Sections 3.6.5 (spec ch3 A4: SimCLR, MoCo v2, SimSiam, instance recognition heads) and 6.3.8
(spec ch5 6.4: the Chapter 6 SimCLR head of two aligned dense layers).

    h = flatten(backbone(images)["features"][feature])        the representation (b, d)
    head k (in order) reads h or an earlier head's output:   out_k = mlp_k(in_k)
    mlp:   for each hidden width w: x = relu?(BN?(dense(x) -> w)); then x = BN?(dense(x) -> out)

The backbone's own readout ("logits") is computed but unused (no gradient reaches it; its weight decay still applies:
bind the backbone's num_classes to 1 in SSL configs, which costs nothing). Heads are made with the alignment
factories (goaldriven/alignment/layers.py), so `build_self_supervised_model(..., learning_rule="fa")` trains heads
and backbone under the same rule (the Chapter 6 SimCLR); the backbone must be built under that rule too.

Model contract: `model(images, training=...)` returns {"representation": (b, d) float32, "features": the backbone's
features plus "representation" and every head's output (so neural fits and linear probes can read any of them),
<head name>: (b, out) float32 for each head, "logits": the backbone's logits}.
"""

# b: batch, d: representation width
import dataclasses
import math

import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.weight_decay import tf1_l2


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """One MLP head.

    Args:
      hidden: widths of the hidden layers (each dense -> [BN] -> ReLU).
      output: width of the output layer (dense -> [BN], no ReLU).
      source: "representation" or the name of an earlier head whose output this head reads.
      hidden_bn: BN after each hidden dense (SimCLR, SimSiam, Chapter 6: yes; MoCo v2: no).
      output_bn: BN after the output dense (SimSiam projector, Chapter 6 SimCLR: yes).
      output_bias: bias on the output dense (Chapter 6 nl_1: no).
      hidden_bias: bias on the hidden denses.
      synchronized_bn: BN statistics over the global batch (SimCLR's global BN; the ResNets' BN is synchronized too)
        or per replica (the Chapter 6 SimCLR: no cross-replica BN).
    """

    hidden: tuple[int, ...]
    output: int
    source: str = "representation"
    hidden_bn: bool = True
    output_bn: bool = False
    output_bias: bool = True
    hidden_bias: bool = True
    synchronized_bn: bool = True

    def __post_init__(self):
        widths = (*self.hidden, self.output)
        if any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"head widths must be positive ints. Received hidden={self.hidden}, output={self.output}")


@keras.saving.register_keras_serializable(package="goaldriven")
class MLPHead(keras.layers.Layer):
    """dense -> [BN] -> ReLU per hidden width, then dense -> [BN] (see `HeadSpec`)."""

    def __init__(self, spec: HeadSpec, weight_decay: float = 0.0, bn_momentum: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.weight_decay, self.bn_momentum = spec, weight_decay, bn_momentum
        self.denses, self.norms = [], []
        widths = (*spec.hidden, spec.output)
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            self.denses.append(
                aligned_layers.dense(
                    width,
                    use_bias=spec.output_bias if last else spec.hidden_bias,
                    kernel_regularizer=tf1_l2(weight_decay) if weight_decay else None,
                    alignment_relu=not last,
                    name=f"dense{i}",
                )
            )
            use_bn = spec.output_bn if last else spec.hidden_bn
            self.norms.append(
                keras.layers.BatchNormalization(
                    momentum=bn_momentum, epsilon=1e-5, synchronized=spec.synchronized_bn, name=f"bn{i}"
                )
                if use_bn
                else None
            )

    def call(self, x, training=False):
        for i, (dense, norm) in enumerate(zip(self.denses, self.norms)):
            x = dense(x)
            if norm is not None:
                x = norm(x, training=training)
            if i < len(self.denses) - 1:
                x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.spec.output)


@keras.saving.register_keras_serializable(package="goaldriven")
class SelfSupervisedModel(keras.Model):
    """A backbone, the feature it is read at, and MLP heads (module docstring for the contract).

    Args:
      backbone: a built model of the zoo contract ({"logits", "features"}).
      feature: name of the backbone feature used as the representation (flattened): ResNets "pool", AlexNet "fc7",
        StreamNets their pooled readout input.
      heads: {name: HeadSpec}, applied in order (a head's source must come before it).
      weight_decay: TF1 lambda on the heads' kernels.
    """

    def __init__(self, backbone: keras.Model, feature: str, heads: dict, weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        names = getattr(backbone, "feature_names", None)
        if names is not None and feature not in names:
            raise ValueError(
                f"backbone {backbone.name!r} has no feature {feature!r}; its features are {', '.join(names)}."
            )
        seen = {"representation"}
        for name, spec in heads.items():
            if spec.source not in seen:
                raise ValueError(
                    f"head {name!r} reads {spec.source!r}, which is neither 'representation' nor an earlier head "
                    f"({sorted(seen)}); order the heads so sources come first."
                )
            seen.add(name)
        self.backbone, self.feature, self.head_specs = backbone, feature, dict(heads)
        self.heads = {name: MLPHead(spec, weight_decay, name=name) for name, spec in heads.items()}

    @property
    def feature_names(self) -> tuple[str, ...]:
        base = tuple(getattr(self.backbone, "feature_names", ()))
        return base + ("representation",) + tuple(self.heads)

    def call(self, images, training=False):
        out = self.backbone(images, training=training)
        feature = out["features"][self.feature]
        width = math.prod(feature.shape[1:])
        if width is None or any(size is None for size in feature.shape[1:]):
            raise ValueError(
                f"feature {self.feature!r} has shape {feature.shape}; the representation needs static non-batch sizes "
                "(build and call the model with a fixed image size)."
            )
        representation = ops.reshape(feature, (-1, width))  # (b, d)
        values = {"representation": representation}
        for name, head in self.heads.items():
            values[name] = head(values[self.head_specs[name].source], training=training)
        result = {name: ops.cast(value, "float32") for name, value in values.items()}
        result["features"] = {**out["features"], **values}
        result["logits"] = out["logits"]
        return result


@binding.builds_under_rule
def build_self_supervised_model(
    backbone: keras.Model,
    feature: str,
    heads: dict,
    *,
    image_size: int,
    weight_decay: float = 0.0,
    learning_rule=None,
) -> SelfSupervisedModel:
    """Wraps a built backbone with MLP heads (built for `image_size` px inputs) under `learning_rule` (the backbone
    must have been built under the same rule; the check covers it)."""
    del learning_rule  # bound by the decorator: the heads' factories see it through the scope
    model = SelfSupervisedModel(backbone, feature, heads, weight_decay=weight_decay, name="self_supervised")
    model(keras.KerasTensor((None, image_size, image_size, 3)))
    return model
