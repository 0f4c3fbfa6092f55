"""AlexNet with local response normalisation, the feedforward baseline of thesis Chapter 2 (spec ch2 5.5, 11.1).

Reference: Krizhevsky, Sutskever & Hinton (2012), single-tower layout as in the lab's TF AlexNet (neuroailab tfutils
`model_tool.alexnet`), which the thesis trains at 224 px with ResNet preprocessing (63.9% top-1):

    conv1 = pool(LRN(relu(conv_11x11/4 VALID(x) -> 96)))        pool = max 3x3 stride 2 SAME
    conv2 = pool(LRN(relu(conv_5x5(conv1) -> 256)))             convs without a stride are SAME
    conv3 = relu(conv_3x3(conv2) -> 384)
    conv4 = relu(conv_3x3(conv3) -> 384)
    conv5 = pool(relu(conv_3x3(conv4) -> 256))                  7x7x256 at 224 px
    fc6   = relu(W6 flatten(conv5) + b6);  fc7 = relu(W7 dropout(fc6) + b7);  logits = W8 dropout(fc7) + b8
    LRN: depth_radius 5, bias 1, alpha 1e-4, beta 0.75 (local_response_normalization.py).

Initialisers (spec 5.5): conv kernels Glorot uniform with bias 1.0; fc kernels TruncatedNormal(0.01) with bias 0.1
(fc6, fc7) and 0 (fc8). Weight decay: `weight_decay` is the TF1 lambda of lambda * sum(w^2) / 2, applied as
`L2(lambda / 2)` to conv and fc kernels only (biases are not decayed). At 224 px the model has 76,009,832 parameters
(spec 11.1 variant (a), decision A-20); fc6's fan-in follows the input size, so other sizes give other counts.

Features are the outputs of each numbered layer (after its pool, where it has one; fc6/fc7 after ReLU, before dropout).

Chapter 6 AlexNet / AlexNet-LRN (`build_alexnet_ch6`; spec ch5 6.2, A22): the same layers with conv biases 0 and conv4
of kernel 4 (as written in the reference code; the standard is 3), LRN only in the LRN variant. 77,042,024 parameters
at 224 x 224 x 3 (conv4 adds 7 x 384 x 384 = 1,032,192 weights). Inputs may be non-square and single-channel (the
203 x 400 x 1 cochleagrams of the Word-Speaker-Noise task): `image_size=(h, w)`, `channels=1`.

Learning rules (thesis Chapter 5-6, spec ch5 3, 6.2): convs and fc layers come from the factories of
goaldriven/alignment/layers.py: `build_alexnet(..., learning_rule="ia")` gives aligned layers (each with a backward
kernel; the alignment path uses each layer's own ReLU), the default (None, backprop) the plain Keras layers. LRN has
no weights, so every layer honours any rule (alignment/binding.py checks it).
"""

# b: batch, h/w: space, c: channels, k: classes
import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import input_shape
from goaldriven.models.local_response_normalization import LocalResponseNormalization
from goaldriven.weight_decay import tf1_l2

FEATURE_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
MIN_IMAGE_SIZE = 32


@keras.saving.register_keras_serializable(package="goaldriven")
class AlexNet(keras.Model):
    """AlexNet with LRN: images -> logits and named features.

    Args:
      num_classes: number of output classes (ImageNet: 1000).
      weight_decay: TF1 lambda (lambda * sum(w^2) / 2) on conv and fc kernels; 0 disables it. Thesis: 5e-4.
      dropout: dropout rate before fc7 and fc8 (1 - keep_prob). Thesis: 0.5.
      use_lrn: apply LRN after conv1 and conv2 (the thesis model does; False gives the LRN-free variant).
      conv_bias: initial value of the conv biases (Chapter 2: 1.0; Chapter 6: 0).
      conv4_kernel_size: conv4's kernel side (Chapter 2: 3; Chapter 6: 4, A22).

    Call args:
      images: (b, h, w, c) float, already normalised; h, w >= 32.
      training: enables dropout.

    Returns:
      {"logits": (b, k) float32, "features": {"conv1": (b, h1, w1, 96), ..., "conv5": (b, h5, w5, 256),
       "fc6": (b, 4096), "fc7": (b, 4096)}}.
    """

    def __init__(
        self,
        num_classes=1000,
        weight_decay=5e-4,
        dropout=0.5,
        use_lrn=True,
        conv_bias=1.0,
        conv4_kernel_size=3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        input_shape.check_readout(num_classes, weight_decay, dropout)
        self.num_classes = num_classes
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.use_lrn = use_lrn
        self.conv_bias = float(conv_bias)
        self.conv4_kernel_size = conv4_kernel_size

        def conv(filters, size, strides=1, padding="same", name=None):
            return aligned_layers.conv2d(
                filters,
                size,
                strides=strides,
                padding=padding,
                activation="relu",
                kernel_initializer="glorot_uniform",
                bias_initializer=keras.initializers.Constant(conv_bias),
                kernel_regularizer=tf1_l2(weight_decay),
                name=name,
            )

        def dense(units, bias, activation=None, name=None):
            return aligned_layers.dense(
                units,
                activation=activation,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
                bias_initializer=keras.initializers.Constant(bias),
                kernel_regularizer=tf1_l2(weight_decay),
                name=name,
            )

        self.conv1 = conv(96, 11, strides=4, padding="valid", name="conv1")
        self.conv2 = conv(256, 5, name="conv2")
        self.conv3 = conv(384, 3, name="conv3")
        self.conv4 = conv(384, conv4_kernel_size, name="conv4")
        self.conv5 = conv(256, 3, name="conv5")
        self.lrn1 = LocalResponseNormalization(5, 1.0, 1e-4, 0.75, name="lrn1") if use_lrn else None
        self.lrn2 = LocalResponseNormalization(5, 1.0, 1e-4, 0.75, name="lrn2") if use_lrn else None
        self.pool1 = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool1")
        self.pool2 = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool2")
        self.pool5 = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool5")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc6 = dense(4096, 0.1, "relu", name="fc6")
        self.drop6 = keras.layers.Dropout(dropout, name="drop6")
        self.fc7 = dense(4096, 0.1, "relu", name="fc7")
        self.drop7 = keras.layers.Dropout(dropout, name="drop7")
        self.fc8 = dense(num_classes, 0.0, name="fc8")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the returned features, in forward order."""
        return FEATURE_NAMES

    def call(self, images, training=False):
        known = [size for size in images.shape[1:3] if size is not None]
        if known and min(known) < MIN_IMAGE_SIZE:
            raise ValueError(f"AlexNet needs images of at least {MIN_IMAGE_SIZE} px. Received shape {images.shape}")
        x = self.conv1(images)  # (b, (h - 11) // 4 + 1, ., 96)
        x = self.lrn1(x) if self.use_lrn else x
        conv1 = self.pool1(x)  # (b, 27, 27, 96) at 224 px
        x = self.conv2(conv1)
        x = self.lrn2(x) if self.use_lrn else x
        conv2 = self.pool2(x)  # (b, 14, 14, 256)
        conv3 = self.conv3(conv2)  # (b, 14, 14, 384)
        conv4 = self.conv4(conv3)  # (b, 14, 14, 384)
        conv5 = self.pool5(self.conv5(conv4))  # (b, 7, 7, 256)
        fc6 = self.fc6(self.flatten(conv5))  # (b, 4096)
        fc7 = self.fc7(self.drop6(fc6, training=training))  # (b, 4096)
        logits = self.fc8(self.drop7(fc7, training=training))  # (b, k)
        features = {"conv1": conv1, "conv2": conv2, "conv3": conv3, "conv4": conv4, "conv5": conv5}
        features.update({"fc6": fc6, "fc7": fc7})
        return {"logits": ops.cast(logits, "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "weight_decay": self.weight_decay,
                "dropout": self.dropout,
                "use_lrn": self.use_lrn,
                "conv_bias": self.conv_bias,
                "conv4_kernel_size": self.conv4_kernel_size,
            }
        )
        return config


@binding.builds_under_rule
def build_alexnet(
    num_classes=1000,
    weight_decay=5e-4,
    dropout=0.5,
    image_size=224,
    use_lrn=True,
    learning_rule=None,
    channels=3,
    conv_bias=1.0,
    conv4_kernel_size=3,
    name="alexnet",
) -> AlexNet:
    """Builds AlexNet with all weights created for (None, h, w, channels) inputs (fc6's fan-in depends on h, w).

    `image_size`: an int (square) or (h, w). At 224 px (the default, spec 11.1 variant (a)) the Chapter 2 model has
    76,009,832 parameters. `learning_rule`: None or "bp" (backprop), a rule name/abbreviation or a `LearningRule`: the
    layers are aligned layers trained under that rule (bound by alignment/binding.py).
    """
    try:
        height, width = input_shape.image_hw(image_size)
    except ValueError:
        height = width = 0
    if min(height, width) < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be an int >= {MIN_IMAGE_SIZE} or an (h, w) pair of them. Received: {image_size!r}"
        )
    model = AlexNet(
        num_classes=num_classes,
        weight_decay=weight_decay,
        dropout=dropout,
        use_lrn=use_lrn,
        conv_bias=conv_bias,
        conv4_kernel_size=conv4_kernel_size,
        name=name,
    )
    model(keras.KerasTensor((None, height, width, input_shape.check_channels(channels))))
    return model


def build_alexnet_ch6(use_lrn=False, **kwargs) -> AlexNet:
    """The Chapter 6 AlexNet (use_lrn=False) or AlexNet-LRN: conv biases 0, conv4 kernel 4 (module docstring).

    Other arguments as `build_alexnet` (weight_decay 5e-4, dropout 0.5, image_size, channels, learning_rule).
    """
    name = "alexnet_ch6_lrn" if use_lrn else "alexnet_ch6"
    return build_alexnet(use_lrn=use_lrn, conv_bias=0.0, conv4_kernel_size=4, name=name, **kwargs)
