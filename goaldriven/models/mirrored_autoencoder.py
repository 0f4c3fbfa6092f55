"""The reconstruction networks of thesis Chapter 3: the sparse autoencoder and the depth-prediction hour-glass.

Reference: thesis Section 3.6.5, Eq. 3.12 (spec ch3 A4.2, A4.3, C.6). Both are a plan's encoder and its mirrored
decoder (mirrored.py):

    sparse autoencoder  code = encoder(x)                                       (b, h_o, w_o, c_o)
                        v = dense(flatten(adaptive_avg_pool(code, 6 x 6)))      (b, 128), the embedding (linear)
                        code' = adaptive_avg_pool(reshape(dense(v)), h_o x w_o) (b, h_o, w_o, c_o)
                        reconstruction = decoder(code', the encoder's argmax switches)       (b, h, w, 3)
    depth hour-glass    reconstruction = decoder(encoder(x), switches)          no bottleneck
                        prediction = conv_k(reconstruction) -> 1 channel        the final conv 3 -> 1 (linear)

The readout pool uses PyTorch's adaptive-pooling arithmetic (adaptive_average_pooling2d.py); the flattening order is
Keras' (h, w, c), which matters only for loading PyTorch weights. The thesis does not state the kernel size of
the depth head; 1 x 1 by default.

Model contract: `model(images, training=...)` returns {"reconstruction": (b, h, w, 3) float32,
["embedding": (b, d) float32,] ["prediction": (b, h, w, k) float32,] "features": {encoder node: value, "pool": (b, 36 c_o) the flattened 6 x 6 readout pool (the linear probe's input, as the
reference's), ["embedding"]}}. `neural_fit_layers` are the encoder's nodes (thesis Table 3.4 counts).
No "logits": the tasks (tasks/self_supervised/reconstruction.py) read these keys, neural fits read "features".

Backprop only: the decoder's transposed convs have no aligned layer, so the builders raise under any other rule.
"""

# b: batch, h/w: space, c: channels, d: embedding
import math

import keras
from keras import ops

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import mirrored
from goaldriven.models.adaptive_average_pooling2d import AdaptiveAveragePooling2D
from goaldriven.weight_decay import tf1_l2

EMBEDDING_DIM = 128  # spec A4.2
READOUT_SIZE = 6  # AdaptiveAvgPool(6 x 6), as the AlexNet and StreamNet readouts


@keras.saving.register_keras_serializable(package="goaldriven")
class MirroredAutoencoder(keras.Model):
    """A plan's encoder, an optional dense bottleneck, its mirrored decoder and an optional conv head.

    Args:
      plan: a `mirrored.Plan` (or its config dict).
      image_size: int s (s x s) or (h, w) of the 3-channel inputs; the decoder is built for it.
      embedding_dim: width of the linear bottleneck v (None: no bottleneck, the hour-glass).
      readout_size: side of the adaptive pool before the bottleneck.
      head_channels: channels of a final conv on the reconstruction, returned as "prediction" (None: no head).
      head_kernel_size: its kernel size ("same" padding).
      weight_decay: TF1 lambda on every conv, transposed-conv and dense kernel.
    """

    def __init__(
        self,
        plan,
        image_size,
        embedding_dim: int | None = EMBEDDING_DIM,
        readout_size: int = READOUT_SIZE,
        head_channels: int | None = None,
        head_kernel_size: int = 1,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.plan = plan if isinstance(plan, mirrored.Plan) else mirrored.Plan.from_config(plan)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(not isinstance(n, int) or n < 1 for n in size):
            raise ValueError(f"image_size must be a positive int or (h, w). Received: {image_size!r}")
        for name, value in (("embedding_dim", embedding_dim), ("head_channels", head_channels)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive int. Received: {value!r}")
        self.image_size, self.embedding_dim, self.readout_size = size, embedding_dim, readout_size
        self.head_channels, self.head_kernel_size, self.weight_decay = head_channels, head_kernel_size, weight_decay
        self.code_shape = self.plan.shapes((*size, 3)).code  # (h_o, w_o, c_o)
        regularizer = tf1_l2(weight_decay)
        self.encoder = mirrored.PlanEncoder(self.plan, weight_decay, name="encoder")
        self.readout_pool = AdaptiveAveragePooling2D(readout_size, name="readout_pool")
        if embedding_dim is not None:
            h_o, w_o, c_o = self.code_shape
            self.embed = aligned_layers.dense(embedding_dim, kernel_regularizer=regularizer, name="embed")
            self.expand = aligned_layers.dense(
                readout_size * readout_size * c_o, kernel_regularizer=regularizer, name="expand"
            )
            self.restore_pool = AdaptiveAveragePooling2D((h_o, w_o), name="restore_pool")
        self.decoder = mirrored.MirroredDecoder(self.plan, (*size, 3), weight_decay, name="decoder")
        self.head = None
        if head_channels is not None:
            self.head = aligned_layers.conv2d(
                head_channels, head_kernel_size, padding="same", kernel_regularizer=regularizer, name="head"
            )

    @property
    def neural_fit_layers(self) -> tuple[str, ...]:
        return self.plan.nodes

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.plan.nodes + ("pool",) + (("embedding",) if self.embedding_dim is not None else ())

    def call(self, images, training=False):
        encoded = self.encoder(images, training=training)
        features, code = dict(encoded["features"]), encoded["code"]
        result = {}
        pooled = self.readout_pool(code)  # (b, 6, 6, c_o)
        pooled = ops.reshape(pooled, (-1, math.prod(pooled.shape[1:])))  # (b, 36 c_o): the linear probe's input
        features["pool"] = pooled
        if self.embedding_dim is not None:
            embedding = self.embed(pooled)  # (b, d)
            expanded = ops.reshape(self.expand(embedding), (-1, self.readout_size, self.readout_size, code.shape[-1]))
            code = self.restore_pool(expanded)  # (b, h_o, w_o, c_o)
            features["embedding"] = embedding
            result["embedding"] = ops.cast(embedding, "float32")
        reconstruction = self.decoder(code, encoded["switches"], training=training)  # (b, h, w, 3)
        result["reconstruction"] = ops.cast(reconstruction, "float32")
        if self.head is not None:
            result["prediction"] = ops.cast(self.head(reconstruction), "float32")  # (b, h, w, k)
        result["features"] = features
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "plan": self.plan.get_config(),
                "image_size": self.image_size,
                "embedding_dim": self.embedding_dim,
                "readout_size": self.readout_size,
                "head_channels": self.head_channels,
                "head_kernel_size": self.head_kernel_size,
                "weight_decay": self.weight_decay,
            }
        )
        return config


def _built(model: MirroredAutoencoder) -> MirroredAutoencoder:
    model(keras.KerasTensor((None, *model.image_size, 3)))
    return model


@binding.builds_under_rule
def build_sparse_autoencoder(
    plan: mirrored.Plan,
    *,
    image_size=64,
    embedding_dim: int = EMBEDDING_DIM,
    readout_size: int = READOUT_SIZE,
    weight_decay: float = 0.0,
    learning_rule=None,
) -> MirroredAutoencoder:
    """The sparse autoencoder of spec A4.2 (built; backprop only)."""
    del learning_rule  # bound by the decorator; check_backprop reads it from the scope
    mirrored.check_backprop("the sparse autoencoder")
    return _built(
        MirroredAutoencoder(
            plan,
            image_size,
            embedding_dim=embedding_dim,
            readout_size=readout_size,
            weight_decay=weight_decay,
            name="sparse_autoencoder",
        )
    )


@binding.builds_under_rule
def build_depth_hourglass(
    plan: mirrored.Plan, *, image_size=64, head_kernel_size: int = 1, weight_decay: float = 0.0, learning_rule=None
) -> MirroredAutoencoder:
    """The depth-prediction hour-glass of spec A4.3: no bottleneck, a final conv 3 -> 1 (built; backprop only)."""
    del learning_rule
    mirrored.check_backprop("the depth-prediction hour-glass")
    return _built(
        MirroredAutoencoder(
            plan,
            image_size,
            embedding_dim=None,
            head_channels=1,
            head_kernel_size=head_kernel_size,
            weight_decay=weight_decay,
            name="depth_hourglass",
        )
    )
