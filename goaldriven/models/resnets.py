"""ResNets of thesis Chapters 2 and 6 (spec ch2 5.6, 5.7, 11.1; ch5 6.1): v1 (post-activation) and v2
(pre-activation: TF-Slim bottlenecks for 50/101/152, TF official basic blocks for 18/34).

References: He et al. (2016a), "Deep Residual Learning for Image Recognition" (v1); He et al. (2016b), "Identity
Mappings in Deep Residual Networks" (v2), as laid out in TF-Slim `resnet_v2`.

v1 (18/34: basic blocks; 50: bottleneck blocks), no conv biases, BN after every conv:
    stem:        x = maxpool_3x3/2(relu(BN(conv_7x7/2(x) -> 64)))
    basic:       y = relu(s(x) + BN(conv_3x3(relu(BN(conv_3x3/stride(x))))))
    bottleneck:  y = relu(s(x) + BN(conv_1x1 -> 4d (relu(BN(conv_3x3/stride(relu(BN(conv_1x1(x) -> d))))))))
    s(x) = BN(conv_1x1/stride(x)) when the shape changes, else x. Stride 2 in the FIRST block of stages 2-4, on the
    3x3 conv of a bottleneck (the "v1.5" placement of TF official and torchvision; same parameters as He et al.).
v2 (50/101/152: bottleneck blocks, TF-Slim):
    stem:        x = maxpool_3x3/2(conv_7x7/2(x) -> 64, with bias)          (no BN or ReLU: the first unit does it)
    unit:        p = relu(BN(x));  r = conv_1x1 -> 4d, with bias (relu(BN(conv_3x3/stride(relu(BN(conv_1x1(p) -> d))))))
                 y = s + r, with s = conv_1x1/stride(p) (with bias) when the depth changes, else x[:, ::stride, ::stride]
    head:        relu(BN(x)) ("postnorm") before the global average pool. Stride 2 in the LAST unit of stages 1-3.
v2 (18/34: basic blocks, TF official `resnet_model` v2, the ResNet-18v2/34v2 of thesis Chapter 6; TF-Slim has no
    18/34): stem x = maxpool_3x3/2(conv_7x7/2(x) -> 64), no bias, BN or ReLU;
                 unit: p = relu(BN(x)); y = s + conv_3x3(relu(BN(conv_3x3/stride(p)))), no conv biases;
                 s = conv_1x1/stride(p) in the FIRST block of EVERY stage (stage 1 too), else x; stride 2 in the
                 first block of stages 2-4; the same postnorm head. Layers (convs + dense): 22 (18) and 38 (34).
Chapter 6 v1 (`first_stage_projection=True`, zoo `resnet18_v1_ch6`/`resnet34_v1_ch6`, spec ch5 6.1): the TPU reference
    also projects in the first block of stage 1 (64 -> 64), giving the chapter's 22 and 38 layers (the torchvision
    layout of Chapter 2 has 21 and 37); with BN momentum 0.9 and decayed dense bias in the zoo.
All: stage widths d = 64, 128, 256, 512; global average pool; dense logits. Any h, w >= 32 and any channel count
(`build_resnet(..., channels=1)`; the weights do not depend on h, w): 224 px (v1), 299 px (v2 on ImageNet) or the
203 x 400 x 1 cochleagrams of the WSN task. Initialisers are He normal for every conv, v2-18/34 included (TF official:
`variance_scaling_initializer()`, scale 1; BN sits between every pair of convs, so only the initial scale differs).

Stride-2 convs use the fixed symmetric padding of TF-Slim/TF official (pad k - 1, then VALID); stride-1 convs are
SAME; max pools are SAME. BN is cross-replica (`synchronized=True`), momentum 0.997 and epsilon 1e-5 (A-15).
Initialisers: conv kernels He truncated normal (Slim `variance_scaling_initializer()`), logits RandomNormal(0.01),
biases 0. Weight decay: `weight_decay` is the TF1 lambda of lambda * sum(w^2) / 2 (Slim/TF official 1e-4), applied
as `L2(lambda / 2)` to conv and dense kernels; `decay_biases=True` also decays conv and dense biases (TF official's
"every variable except BN" rule); BN gamma/beta are never decayed.

Learning rules (thesis Chapter 5, spec ch5 3 and 6.1): convs and the logits layer come from the factories of
goaldriven/alignment/layers.py, so `build_resnet(..., learning_rule="sa")` gives aligned layers with a backward kernel
each, and the default (None, backprop) gives the plain Keras layers (same weight names and counts). `alignment_relu=True` (the alignment path's nonlinearity is ReLU) on the
convs followed by BN + ReLU: the stem conv, conv1 of basic blocks, conv1 and conv2 of bottlenecks; v2 uses the same
positions (its stem conv is followed by the first unit's BN + ReLU after the max pool).
"""

# b: batch, h/w: space, c: channels, k: classes
import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import input_shape, resnet_blocks

# depth -> (block kind, blocks per stage)
STAGES = {
    1: {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))},
    2: {
        18: ("basic", (2, 2, 2, 2)),
        34: ("basic", (3, 4, 6, 3)),
        50: ("bottleneck", (3, 4, 6, 3)),
        101: ("bottleneck", (3, 4, 23, 3)),
        152: ("bottleneck", (3, 8, 36, 3)),
    },
}
WIDTHS = (64, 128, 256, 512)
MIN_IMAGE_SIZE = 32
# The Chapter 6 v1 ResNets (TPU reference, spec ch5 6.1): L2 on the dense bias too (v1 convs have none), momentum 0.9.
CH6_V1 = {"first_stage_projection": True, "bn_momentum": 0.9, "decay_biases": True}


BLOCKS = {
    (1, "basic"): resnet_blocks.BasicBlockV1,
    (1, "bottleneck"): resnet_blocks.BottleneckV1,
    (2, "basic"): resnet_blocks.BasicBlockV2,
    (2, "bottleneck"): resnet_blocks.BottleneckV2,
}


@keras.saving.register_keras_serializable(package="goaldriven")
class ResNet(resnet_blocks.Regularized, keras.Model):
    """A v1 or v2 ImageNet ResNet: images -> logits and named features.

    Args:
      depth: 18, 34 or 50 for version 1; 18, 34, 50, 101 or 152 for version 2.
      version: 1 (post-activation, He et al. 2016a) or 2 (pre-activation: TF official for 18/34, TF-Slim for 50+).
      num_classes: number of output classes (ImageNet: 1000; Slim's 1001 background class is not used).
      weight_decay: TF1 lambda on conv and dense kernels (module docstring); 0 disables it.
      decay_biases: also decay conv and dense biases.
      bn_momentum, bn_epsilon: BatchNormalization settings (A-15: 0.997, 1e-5).
      first_stage_projection: v1 only: a projection shortcut in the first block of stage 1 too (Chapter 6 TPU layout).

    Call args:
      images: (b, h, w, c) float, already normalised; h, w >= 32.
      training: BN mode.

    Returns:
      {"logits": (b, k) float32, "features": {"stem": (b, h/4, w/4, 64), "stage{i}_block{j}": (b, ., ., c),
       "pool": (b, c_final)}}, features in forward order (`feature_names`).
    """

    def __init__(
        self,
        depth=50,
        version=2,
        num_classes=1000,
        weight_decay=1e-4,
        decay_biases=False,
        bn_momentum=0.997,
        bn_epsilon=1e-5,
        first_stage_projection=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if version not in STAGES:
            raise ValueError(f"version must be 1 or 2. Received: {version!r}")
        if depth not in STAGES[version]:
            raise ValueError(
                f"depth for version {version} must be one of {sorted(STAGES[version])}. Received: {depth!r}"
            )
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int. Received: {num_classes!r}")
        self.depth = depth
        self.version = version
        if first_stage_projection and version != 1:
            raise ValueError("first_stage_projection is a v1 option (v2-18/34 always project there); drop it for v2.")
        self.num_classes = num_classes
        self.first_stage_projection = bool(first_stage_projection)
        self._make_layers_config(weight_decay, decay_biases, bn_momentum, bn_epsilon)

        kind, counts = STAGES[version][depth]
        block_cls = BLOCKS[(version, kind)]
        slim = version == 2 and kind == "bottleneck"  # else the TF official / torchvision stage layout
        self.stem_conv = self._conv(64, 7, 2, use_bias=slim, alignment_relu=True, name="stem_conv")
        self.stem_bn = self._bn("stem_bn") if version == 1 else None
        self.stem_pool = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")
        project_first = version == 2 or self.first_stage_projection
        self.blocks, channels = [], 64
        for i, (width, count) in enumerate(zip(WIDTHS, counts)):
            for j in range(count):
                if slim:
                    strides = 2 if i < len(WIDTHS) - 1 and j == count - 1 else 1
                else:
                    strides = 2 if i > 0 and j == 0 else 1
                out_channels = width * block_cls.expansion
                projection = out_channels != channels or (not slim and (strides != 1 or (project_first and j == 0)))
                block = block_cls(
                    width,
                    strides=strides,
                    projection=projection,
                    **self._regularization_config(),
                    name=f"stage{i + 1}_block{j + 1}",
                )
                self.blocks.append(block)
                channels = out_channels
        self.postnorm = self._bn("postnorm") if version == 2 else None
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.logits = aligned_layers.dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            kernel_regularizer=self._l2(),
            bias_regularizer=self._l2(bias=True),
            name="logits",
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the returned features, in forward order."""
        return ("stem",) + tuple(block.name for block in self.blocks) + ("pool",)

    def call(self, images, training=False):
        known = [size for size in images.shape[1:3] if size is not None]
        if known and min(known) < MIN_IMAGE_SIZE:
            raise ValueError(f"ResNet needs images of at least {MIN_IMAGE_SIZE} px. Received shape {images.shape}")
        x = self.stem_conv(resnet_blocks.pad_for_stride(images, 7, 2))  # (b, h / 2, w / 2, 64)
        if self.version == 1:
            x = ops.relu(self.stem_bn(x, training=training))
        x = self.stem_pool(x)  # (b, h / 4, w / 4, 64)
        features = {"stem": x}
        for block in self.blocks:
            x = block(x, training=training)
            features[block.name] = x
        if self.version == 2:
            x = ops.relu(self.postnorm(x, training=training))
        pooled = self.global_pool(x)  # (b, c)
        features["pool"] = pooled
        return {"logits": ops.cast(self.logits(pooled), "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update({"depth": self.depth, "version": self.version, "num_classes": self.num_classes})
        config.update(self._regularization_config())
        config["first_stage_projection"] = self.first_stage_projection
        return config


@binding.builds_under_rule
def build_resnet(
    depth,
    version,
    num_classes=1000,
    weight_decay=1e-4,
    bn_momentum=0.997,
    bn_epsilon=1e-5,
    decay_biases=False,
    learning_rule=None,
    channels=3,
    first_stage_projection=False,
    name=None,
) -> ResNet:
    """Builds a ResNet with all weights created for `channels`-channel inputs (the weights do not depend on h, w).

    `learning_rule`: None or "bp" (backprop), a rule name or abbreviation ("sa", "information_alignment") or an
    `alignment.rules.LearningRule`: the convs and the logits layer are aligned layers trained under that rule (bound
    by alignment/binding.py).
    """
    model = ResNet(
        depth=depth,
        version=version,
        num_classes=num_classes,
        weight_decay=weight_decay,
        decay_biases=decay_biases,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        first_stage_projection=first_stage_projection,
        name=name or f"resnet{depth}_v{version}",
    )
    model(keras.KerasTensor((None, None, None, input_shape.check_channels(channels))))
    return model


def resnet18_v1(**kwargs) -> ResNet:
    return build_resnet(18, 1, **kwargs)


def resnet34_v1(**kwargs) -> ResNet:
    return build_resnet(34, 1, **kwargs)


def resnet18_v1_ch6(**kwargs) -> ResNet:
    """Chapter 6 ResNet-18 (TPU reference v1, spec ch5 6.1): stage-1 projection, BN momentum 0.9, decayed dense bias."""
    return build_resnet(18, 1, **{**CH6_V1, **kwargs}, name="resnet18_v1_ch6")


def resnet34_v1_ch6(**kwargs) -> ResNet:
    """Chapter 6 ResNet-34 (as resnet18_v1_ch6)."""
    return build_resnet(34, 1, **{**CH6_V1, **kwargs}, name="resnet34_v1_ch6")


def resnet18_v2(**kwargs) -> ResNet:
    return build_resnet(18, 2, **kwargs)


def resnet34_v2(**kwargs) -> ResNet:
    return build_resnet(34, 2, **kwargs)


def resnet50_v1(**kwargs) -> ResNet:
    return build_resnet(50, 1, **kwargs)


def resnet50_v2(**kwargs) -> ResNet:
    return build_resnet(50, 2, **kwargs)


def resnet101_v2(**kwargs) -> ResNet:
    return build_resnet(101, 2, **kwargs)


def resnet152_v2(**kwargs) -> ResNet:
    return build_resnet(152, 2, **kwargs)
