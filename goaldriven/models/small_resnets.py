"""Small CIFAR-style ResNets for small-scale learning-rule experiments (thesis Chapter 5 rules on CPU-sized runs).

Reference: He et al. (2016a), "Deep Residual Learning for Image Recognition", Section 4.2 (CIFAR-10): ResNet-(6n + 2)
with three stages of n basic blocks on 32 x 32 images,

    stem:     x = relu(BN(conv_3x3(x) -> w))
    block:    y = relu(s(x) + BN(conv_3x3(relu(BN(conv_3x3/stride(x))))))        (resnet_blocks.BasicBlockV1)
    stages:   n blocks each, widths (w, 2w, 4w), stride (1, 2, 2) in the first block of a stage
    s(x):     BN(conv_1x1/stride(x)) when the shape changes (He et al.'s option B), else x
    head:     global average pool, dense logits.

Depth 6n + 2 counts the stem, the 6n block convs and the dense layer (8, 14, 20, 32, 44, 56, 110). With
c = 3 input channels and k classes the trainable parameters are (n >= 1; BN has gamma and beta per channel)

    9cw + 2w                                                      stem
    + n (18 w^2 + 4w)                                             stage 1
    + [9 w 2w + 9 (2w)^2 + 2w^2 + 3 (4w)] + (n - 1)(18 (2w)^2 + 4 (2w))        stage 2 (first block projects)
    + [9 2w 4w + 9 (4w)^2 + 8w^2 + 3 (8w)] + (n - 1)(18 (4w)^2 + 4 (4w))       stage 3
    + 4wk + k                                                     logits

(78,042 for n = 1, w = 16, k = 10). Convs have no bias (BN follows); He-normal conv kernels, RandomNormal(0.01)
logits, BN momentum 0.9 and epsilon 1e-5 (spec ch5 6.1 v1 values). `weight_decay` is the TF1 lambda of
lambda * sum(w^2) / 2 (He et al.: 1e-4) on conv and dense kernels, as `L2(lambda / 2)`.

Learning rules: every conv and the dense layer comes from goaldriven/alignment/layers.py's factories, so
`build_small_resnet(..., learning_rule="sa")` trains under symmetric alignment; `alignment_relu=True` on the stem conv
and the first conv of each block (followed by BN + ReLU, spec ch5 6.1).
"""

# b: batch, h/w: space, c: channels, k: classes
import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import resnet_blocks

DEPTHS = (8, 14, 20, 32, 44, 56, 110)


@keras.saving.register_keras_serializable(package="goaldriven")
class SmallResNet(resnet_blocks.Regularized, keras.Model):
    """A CIFAR ResNet-(6n + 2) (module docstring): images -> logits and named features.

    Args:
      depth: 6n + 2 with n >= 1 (8, 14, 20, 32, ...).
      width: w, the stem and first-stage channels (He et al.: 16); stages have w, 2w, 4w.
      num_classes: number of output classes.
      weight_decay: TF1 lambda on conv and dense kernels; 0 disables it.
      bn_momentum, bn_epsilon: BatchNormalization settings.

    Call args:
      images: (b, h, w, 3) float, already normalised.
      training: BN mode.

    Returns:
      {"logits": (b, k) float32, "features": {"stem": (b, h, w, w), "stage{i}_block{j}": (b, ., ., c),
       "pool": (b, 4w)}}, features in forward order (`feature_names`).
    """

    def __init__(
        self, depth=20, width=16, num_classes=10, weight_decay=1e-4, bn_momentum=0.9, bn_epsilon=1e-5, **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...). Received: {depth!r}")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive int. Received: {width!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int. Received: {num_classes!r}")
        self.depth = depth
        self.width = width
        self.num_classes = num_classes
        self._make_layers_config(weight_decay, False, bn_momentum, bn_epsilon)

        self.stem_conv = self._conv(width, 3, alignment_relu=True, name="stem_conv")
        self.stem_bn = self._bn("stem_bn")
        self.blocks, channels = [], width
        for i in range(3):
            stage_width = width * 2**i
            for j in range((depth - 2) // 6):
                strides = 2 if i > 0 and j == 0 else 1
                block = resnet_blocks.BasicBlockV1(
                    stage_width,
                    strides=strides,
                    projection=stage_width != channels or strides != 1,
                    **self._regularization_config(),
                    name=f"stage{i + 1}_block{j + 1}",
                )
                self.blocks.append(block)
                channels = stage_width
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.logits = aligned_layers.dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            kernel_regularizer=self._l2(),
            name="logits",
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the returned features, in forward order."""
        return ("stem",) + tuple(block.name for block in self.blocks) + ("pool",)

    def call(self, images, training=False):
        x = ops.relu(self.stem_bn(self.stem_conv(images), training=training))  # (b, h, w, w)
        features = {"stem": x}
        for block in self.blocks:
            x = block(x, training=training)  # (b, h / 2^(i-1), w / 2^(i-1), w 2^(i-1)) in stage i
            features[block.name] = x
        pooled = self.global_pool(x)  # (b, 4w)
        features["pool"] = pooled
        return {"logits": ops.cast(self.logits(pooled), "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update({"depth": self.depth, "width": self.width, "num_classes": self.num_classes})
        config.update(self._regularization_config())
        config.pop("decay_biases")
        return config


@binding.builds_under_rule
def build_small_resnet(
    depth=8,
    width=16,
    num_classes=10,
    weight_decay=1e-4,
    image_size=32,
    learning_rule=None,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
) -> SmallResNet:
    """Builds a CIFAR ResNet-`depth` with all weights created for (None, image_size, image_size, 3) inputs.

    `learning_rule`: None or "bp" (backprop), a rule name or abbreviation ("sa", "feedback_alignment") or an
    `alignment.rules.LearningRule` makes every conv and the dense layer an aligned layer trained under it (bound by
    alignment/binding.py).
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int. Received: {image_size!r}")
    model = SmallResNet(
        depth=depth,
        width=width,
        num_classes=num_classes,
        weight_decay=weight_decay,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        name=f"small_resnet{depth}",
    )
    model(keras.KerasTensor((None, image_size, image_size, 3)))
    return model
