"""KNet4 / KNet5 and their LRN variants, the CIFAR-10 networks of the learning-rule dataset of thesis Chapter 6
(Section 6.3.8; spec ch5 6.3, A21). KNet4-LRN is Krizhevsky's Caffe "cifar10_full" network; KNet5 adds a fourth conv.

    conv1 = pool_max(conv_5x5(x) -> 32)                   LRN variants: conv1 = LRN(relu(conv1))
    conv2 = pool_avg(relu(conv_5x5(conv1) -> 32))         LRN variants: conv2 = LRN(conv2)
    conv3 = pool_avg(relu(conv_5x5(conv2) -> 64))
    conv4 = pool_avg(relu(conv_5x5(conv3) -> 128))        KNet5 only
    logits = W flatten(conv_last) + b                     named fc4 (KNet4) or fc5 (KNet5)

Convs are stride 1 SAME; every pool is 3x3 stride 2 SAME (ceil(n / 2)). LRN: depth_radius 3, bias 1, alpha 5e-5,
beta 0.75 (`tf.nn.local_response_normalization` semantics, local_response_normalization.py). Initialisers: conv1
N(0, 1e-4^2) (std 1e-4, Caffe's gaussian std 0.0001), every other kernel N(0, 0.01^2), biases 0. Weight decay:
`weight_decay` is the TF1 lambda of lambda * sum(w^2) / 2 on kernels (thesis: 1e-5; IA 1e-12, set by the experiment).

A21 (the reference code's quirk): without LRN (and without BN) the code applies no ReLU after conv1 + max pool, so the
non-LRN KNets start with two linear stages. `conv1_relu=None` (default) reproduces it (ReLU only in the LRN
variants); `conv1_relu=True` adds the ReLU to the non-LRN variants (relu commutes with the max pool).

At 32 x 32 x 3 with 10 classes: KNet4 (+-LRN) has 89,578 parameters, KNet5 (+-LRN) 289,386 (tests/models/test_knet.py
derives them). Features: each conv stage's output (after its pool, ReLU and LRN), in forward order.

Learning rules (spec ch5 3): the convs and the dense layer come from goaldriven/alignment/layers.py's factories, so
`build_knet(..., learning_rule="fa")` trains under feedback alignment. The alignment path uses each conv's own ReLU;
conv1 has `alignment_relu=True` when a ReLU follows it (after the pool).
"""

# b: batch, h/w: space, c: channels, k: classes
import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models.input_shape import check_channels, image_hw
from goaldriven.models.local_response_normalization import LocalResponseNormalization
from goaldriven.weight_decay import tf1_l2

WIDTHS = {4: (32, 32, 64), 5: (32, 32, 64, 128)}  # depth -> conv widths
LRN_SETTINGS = dict(depth_radius=3, bias=1.0, alpha=5e-5, beta=0.75)


@keras.saving.register_keras_serializable(package="goaldriven")
class KNet(keras.Model):
    """KNet4 or KNet5, with or without LRN: images -> logits and named features (module docstring).

    Args:
      depth: 4 (KNet4) or 5 (KNet5): conv layers + the dense readout.
      use_lrn: the LRN variant (ReLU + LRN after conv1's pool, LRN after conv2's pool).
      num_classes: number of output classes (CIFAR-10: 10).
      weight_decay: TF1 lambda on conv and dense kernels; 0 disables it.
      conv1_relu: None (the reference code, A21: ReLU after conv1 only with LRN), True or False (force it).

    Call args:
      images: (b, h, w, c) float, already normalised.
      training: unused (no dropout or BN); accepted for the model contract.

    Returns:
      {"logits": (b, k) float32, "features": {"conv1": (b, h/2, w/2, 32), "conv2": (b, h/4, w/4, 32),
       "conv3": (b, h/8, w/8, 64)[, "conv4": (b, h/16, w/16, 128)]}} (sizes rounded up).
    """

    def __init__(self, depth=4, use_lrn=False, num_classes=10, weight_decay=1e-5, conv1_relu=None, **kwargs):
        super().__init__(**kwargs)
        if depth not in WIDTHS:
            raise ValueError(f"depth must be 4 (KNet4) or 5 (KNet5). Received: {depth!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int. Received: {num_classes!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (it is the TF1 lambda; 0 disables). Received: {weight_decay}")
        if conv1_relu not in (None, True, False):
            raise ValueError(f"conv1_relu must be None (the code's A21 quirk), True or False. Received: {conv1_relu!r}")
        self.depth = depth
        self.use_lrn = bool(use_lrn)
        self.num_classes = num_classes
        self.weight_decay = weight_decay
        self.conv1_relu = conv1_relu
        self.relu_after_conv1 = self.use_lrn if conv1_relu is None else conv1_relu

        self.convs, self.pools = [], []
        for i, width in enumerate(WIDTHS[depth]):
            first = i == 0
            self.convs.append(
                aligned_layers.conv2d(
                    width,
                    5,
                    padding="same",
                    activation=None if first else "relu",
                    alignment_relu=first and self.relu_after_conv1,
                    kernel_initializer=keras.initializers.RandomNormal(stddev=1e-4 if first else 0.01),
                    bias_initializer="zeros",
                    kernel_regularizer=tf1_l2(weight_decay),
                    name=f"conv{i + 1}",
                )
            )
            pool = keras.layers.MaxPooling2D if first else keras.layers.AveragePooling2D
            self.pools.append(pool(3, 2, padding="same", name=f"pool{i + 1}"))
        self.lrns = [LocalResponseNormalization(**LRN_SETTINGS, name=f"lrn{i}") for i in (1, 2)] if use_lrn else []
        self.flatten = keras.layers.Flatten(name="flatten")
        self.readout = aligned_layers.dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            kernel_regularizer=tf1_l2(weight_decay),
            name=f"fc{depth}",
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the returned features, in forward order."""
        return tuple(conv.name for conv in self.convs)

    def call(self, images, training=False):
        del training  # no dropout or BN
        x, features = images, {}
        for i, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            x = pool(conv(x))  # (b, ceil(h / 2^(i+1)), ceil(w / 2^(i+1)), c_i)
            if i == 0 and self.relu_after_conv1:
                x = ops.relu(x)
            if i < len(self.lrns):
                x = self.lrns[i](x)
            features[conv.name] = x
        logits = self.readout(self.flatten(x))  # (b, k)
        return {"logits": ops.cast(logits, "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth": self.depth,
                "use_lrn": self.use_lrn,
                "num_classes": self.num_classes,
                "weight_decay": self.weight_decay,
                "conv1_relu": self.conv1_relu,
            }
        )
        return config


@binding.builds_under_rule
def build_knet(
    depth=4,
    use_lrn=False,
    num_classes=10,
    weight_decay=1e-5,
    image_size=32,
    channels=3,
    conv1_relu=None,
    learning_rule=None,
) -> KNet:
    """Builds a KNet with all weights created for (None, h, w, channels) inputs (the readout's fan-in depends on them).

    `image_size`: an int (square) or (h, w). `learning_rule`: None or "bp" (backprop), a rule name/abbreviation or a
    `LearningRule`: the layers are aligned layers trained under that rule (bound by alignment/binding.py).
    """
    height, width = image_hw(image_size)
    suffix = "_lrn" if use_lrn else ""
    model = KNet(
        depth=depth,
        use_lrn=use_lrn,
        num_classes=num_classes,
        weight_decay=weight_decay,
        conv1_relu=conv1_relu,
        name=f"knet{depth}{suffix}",
    )
    model(keras.KerasTensor((None, height, width, check_channels(channels))))
    return model
