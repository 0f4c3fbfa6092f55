"""RotNet (Gidaris et al. 2018) as a task: predict which of 4 rotations was applied (thesis Section 3.6.5; spec ch3
A4.4).

    views = the image rotated by 0, 90, 180, 270 degrees (labels 0..3; made by the data pipeline)
    L = mean over the 4b rotated images of CE(W h + c, rotation)       one linear 4-way layer on the representation

The effective batch is 4 x the image batch (thesis: 192 images, 768 rotated). Recipe (gin/tasks/rotnet.gin): 50
epochs, SGD Nesterov 0.9, wd 5e-4, lr 0.01 x0.1 at epochs 15, 30, 45.
"""

# b: per-replica batch, s: image side
import tensorflow as tf

from goaldriven.models import heads as ssl_heads
from goaldriven.tasks.self_supervised import base

ROTATIONS = 4


class RotNetTask(base.SelfSupervisedTask):
    """RotNet (module docstring); the data must give the 4 rotations as views."""

    name = "rotnet"

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("rotation_accuracy",)

    def head_specs(self, feature_width: int) -> dict[str, ssl_heads.HeadSpec]:
        del feature_width
        return {"rotation": ssl_heads.HeadSpec((), ROTATIONS)}

    def compute_loss(self, model, batch, *, training):
        views = base.views(batch, ROTATIONS)  # (b, 4, s, s, 3)
        b = tf.shape(views)[0]
        images = tf.reshape(views, tf.concat([[-1], tf.shape(views)[2:]], 0))  # (4b, s, s, 3), rotations innermost
        images = tf.ensure_shape(images, [None, *views.shape[2:]])
        labels = tf.tile(tf.range(ROTATIONS), [b])  # (4b,)
        logits = model(images, training=training)["rotation"]  # (4b, 4)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, {"rotation_accuracy": accuracy}
