"""StreamNets: the shallow multi-stream models of mouse visual cortex (single, dual and six streams).

Reference: thesis Sections 3.4.1 and 3.6.4, Table 3.2 (spec ch3 A3.1, C.1-C.3). The encoder is the plan of
`encoder_plans.streamnet_plan(streams)` run by `mirrored.PlanEncoder` (the same graph the sparse autoencoder and the
depth hour-glass mirror):

    VISp       = maxpool_3/2(relu(BN(conv_11x11/4(pad2(x)) -> 64)))                       64 -> 15 -> 7
    stream s   = relu(BN(conv_3x3(pad1(maxpool_3/2(relu(BN(conv_5x5(pad2(VISp)) -> 192))))) -> 384))   7 -> 3
    deep area  = relu(BN(conv_3x3/2(VISp) -> 256)) + sum_s relu(BN(conv_3x3(pad1(stream s)) -> 256))    3 x 3
    pool       = flatten(adaptive_avg_pool_6x6(concat(VISpor[, VISam])))                  (b, D * 256 * 36)
    logits     = dense(dropout(pool))

Streams: single "ventral"; dual "ventral", "dorsal"; six VISl, VISrl, VISal, VISli, VISpm, VISpl (the reference's
names). Deep areas: VISpor (single) or VISpor and VISam (dual, six). Convs have biases (PyTorch's default); every conv
is followed by BN (momentum 0.9 = PyTorch's 0.1, epsilon 1e-5, cross-replica as the SyncBN of SimCLR and SimSiam) and
ReLU. Kernels start as PyTorch's defaults, U(+-1 / sqrt(fan_in)), biases at 0. Explicit zero padding then valid convs and valid pools reproduce PyTorch's index arithmetic (spec C.1), and the
readout pool is PyTorch's AdaptiveAvgPool2d (an up-sampling by replication from 3 x 3 to 6 x 6).

Counts (exact, thesis Table 3.4): trainable parameters without the readout 2,029,632 / 5,806,848 / 16,780,800; units
of the neural-fit layers (every area, not the pool) 8,896 / 14,656 / 28,480 at 64 x 64 and 11,712 / 19,392 / 37,824
at 64 x 81 (the CIFAR-10 models, shown the scenes' aspect ratio). Any input from 32 to 224 px, square or (h, w): the
network is fully convolutional up to the adaptive pool.

Learning rules: the convs and the readout come from the alignment factories, so a StreamNet trains under any rule of
thesis Chapter 5 (the mirrored decoder of the autoencoder does not: backprop only).
"""

# b: batch, h/w: space, c: channels, k: classes
import math

import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import encoder_plans, input_shape, mirrored
from goaldriven.models.adaptive_average_pooling2d import AdaptiveAveragePooling2D
from goaldriven.weight_decay import tf1_l2

VARIANTS = {"single": 1, "dual": 2, "six": 6}
READOUT_SIZE = 6
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 224


@keras.saving.register_keras_serializable(package="goaldriven")
class StreamNet(keras.Model):
    """A StreamNet with 1, 2 or 6 streams (module docstring).

    Args:
      streams: 1, 2 or 6.
      num_classes: classes of the readout.
      weight_decay: TF1 lambda (= PyTorch's weight_decay) on the conv and readout kernels. Thesis recipe: 5e-4.
      dropout: drop rate before the readout (PyTorch nn.Dropout: 0.5).
      readout_size: side of the adaptive average pool before the readout.

    Call args:
      images: (b, h, w, 3), static h, w in [32, 224].
      training: BN mode and dropout.

    Returns:
      {"logits": (b, k) float32, "features": {"VISp": (b, 7, 7, 64), <stream>: (b, 3, 3, 384), ..., "VISpor":
       (b, 3, 3, 256)[, "VISam": (b, 3, 3, 256)], "pool": (b, D * 256 * readout_size^2)}} (sizes at 64 px).
    """

    def __init__(
        self, streams=2, num_classes=1000, weight_decay=5e-4, dropout=0.5, readout_size=READOUT_SIZE, **kwargs
    ):
        super().__init__(**kwargs)
        input_shape.check_readout(num_classes, weight_decay, dropout)
        self.plan = encoder_plans.streamnet_plan(streams)  # validates streams
        self.streams, self.num_classes, self.weight_decay = streams, num_classes, weight_decay
        self.dropout, self.readout_size = dropout, readout_size
        self.encoder = mirrored.PlanEncoder(
            self.plan, weight_decay, synchronized_bn=True, torch_init=True, name="encoder"
        )
        self.pool = AdaptiveAveragePooling2D(readout_size, name="avgpool")
        self.drop = keras.layers.Dropout(dropout, name="dropout")
        self.readout = aligned_layers.dense(
            num_classes,
            kernel_initializer=mirrored.torch_default_kernel(),
            kernel_regularizer=tf1_l2(weight_decay),
            name="readout",
        )

    @property
    def stream_names(self) -> tuple[str, ...]:
        return encoder_plans.STREAMS[self.streams]

    @property
    def neural_fit_layers(self) -> tuple[str, ...]:
        """The layers thesis Table 3.4 counts as units: every area (VISp, the streams, the deep areas)."""
        return self.plan.nodes

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.plan.nodes + ("pool",)

    def call(self, images, training=False):
        known = [size for size in images.shape[1:3] if size is not None]
        if known and not MIN_IMAGE_SIZE <= min(known) <= max(known) <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"StreamNets take images of {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px (thesis Fig. 3.4). Received shape "
                f"{images.shape}"
            )
        encoded = self.encoder(images, training=training)
        pooled = self.pool(encoded["code"])  # (b, 6, 6, D * 256)
        width = math.prod(pooled.shape[1:])
        pooled = ops.reshape(pooled, (-1, width))  # (b, D * 256 * 36), Keras' (h, w, c) order
        logits = self.readout(self.drop(pooled, training=training))  # (b, k)
        features = {**encoded["features"], "pool": pooled}
        return {"logits": ops.cast(logits, "float32"), "features": features}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "streams": self.streams,
                "num_classes": self.num_classes,
                "weight_decay": self.weight_decay,
                "dropout": self.dropout,
                "readout_size": self.readout_size,
            }
        )
        return config


@binding.builds_under_rule
def build_streamnet(
    streams=2,
    num_classes=1000,
    weight_decay=5e-4,
    dropout=0.5,
    image_size=64,
    channels=3,
    learning_rule=None,
    name=None,
) -> StreamNet:
    """Builds a StreamNet with all weights created for (None, h, w, channels) inputs (`image_size`: int or (h, w)).

    `learning_rule`: None or "bp" (backprop), a rule name/abbreviation or a `LearningRule` (alignment/binding.py).
    """
    del learning_rule  # bound by the decorator: the factories see it through the scope
    height, width = input_shape.image_hw(image_size)
    if not MIN_IMAGE_SIZE <= min(height, width) <= max(height, width) <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"StreamNets take images of {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px (thesis Fig. 3.4 sweeps 32-224). "
            f"Received image_size={image_size!r}"
        )
    variant = {n: v for v, n in VARIANTS.items()}.get(streams, streams)
    model = StreamNet(
        streams=streams,
        num_classes=num_classes,
        weight_decay=weight_decay,
        dropout=dropout,
        name=name or f"streamnet_{variant}",
    )
    model(keras.KerasTensor((None, height, width, input_shape.check_channels(channels))))
    return model
