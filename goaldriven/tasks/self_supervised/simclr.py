"""SimCLR (Chen et al. 2020) as a task: two views, an MLP projection, NT-Xent (thesis eq. 3.16; spec ch3 A4.8).

    h = flatten(backbone(x)[feature]);  z = g(h), g = MLP;  z1, z2 from the two views of each image
    L = mean over the 2N anchors of -log(exp(sim(z_i, z_j(i)) / t) / sum_{k != i} exp(sim(z_i, z_k) / t))
    (losses.nt_xent_loss: the per-anchor mean; the published SimCLR code reports twice this value)

Both views go through the model in ONE batch (2b images), as in the SimCLR code: batch statistics of BN cover both
views (the ResNets' BN is synchronized across replicas, SimCLR's global BN).

Heads:
  "chapter3" (thesis Chapter 3, [C] the mouse-vision NonLinearNeckSimCLR, OpenSelfSup's): dense 2048 (no bias) -> BN
             -> ReLU -> dense 128 (no bias) -> BN (with beta, as the reference; the official SimCLR's last BN has none).
  "chapter6" (thesis Chapter 6, spec ch5 6.4): nl_0 = dense(feature width) -> BN -> ReLU; nl_1 = dense(128, no
             bias) -> BN; both aligned layers under the run's learning rule, L2 1e-6; negatives from this replica's
             batch only (`cross_replica=False`), no LARS.
Recipes (gin/tasks/simclr.gin): Chapter 3: batch 4096, 200 epochs, LARS lr 4.8 (0.3 x batch / 256), wd 1e-6,
10 warm-up epochs then cosine, t = 0.1. Chapter 6: the rule's ImageNet optimizer and schedule, L2 1e-6.
"""

# b: per-replica batch, v: views, s: image side
from typing import Any

import tensorflow as tf

from goaldriven.models import heads as ssl_heads
from goaldriven.tasks.self_supervised import base, losses

HEAD_STYLES = ("chapter3", "chapter6")


def chapter3_head(hidden_dim: int = 2048, projection_dim: int = 128) -> ssl_heads.HeadSpec:
    """The Chapter 3 projection (module docstring): the released six_stream_simclr neck's layout."""
    return ssl_heads.HeadSpec((hidden_dim,), projection_dim, hidden_bias=False, output_bias=False, output_bn=True)


class SimCLRTask(base.SelfSupervisedTask):
    """SimCLR (module docstring).

    Args (beyond `SelfSupervisedTask`'s):
      temperature: NT-Xent temperature t (thesis: 0.1).
      cross_replica: negatives from the whole global batch (True, Chapter 3) or from this replica's batch only
        (False, the Chapter 6 variant).
      head_style: "chapter3" or "chapter6" (module docstring).
      hidden_dim: hidden width of the "chapter3" head (2048); the "chapter6" head uses the feature width.
      projection_dim: output width (128).
    """

    name = "simclr"

    def __init__(
        self,
        *,
        backbone_fn,
        feature: str,
        dataset: Any,
        temperature: float = 0.1,
        cross_replica: bool = True,
        head_style: str = "chapter3",
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        head_weight_decay: float = 0.0,
        learning_rule: Any = None,
    ):
        super().__init__(
            backbone_fn=backbone_fn,
            feature=feature,
            dataset=dataset,
            head_weight_decay=head_weight_decay,
            learning_rule=learning_rule,
        )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (thesis: 0.1). Received: {temperature}")
        if head_style not in HEAD_STYLES:
            raise ValueError(f"head_style must be one of {HEAD_STYLES}. Received: {head_style!r}")
        self.temperature = float(temperature)
        self.cross_replica = bool(cross_replica)
        self.head_style = head_style
        self.hidden_dim = hidden_dim
        self.projection_dim = projection_dim

    @property
    def metric_names(self) -> tuple[str, ...]:
        return losses.NT_XENT_METRICS

    def head_specs(self, feature_width: int) -> dict[str, ssl_heads.HeadSpec]:
        if self.head_style == "chapter3":
            return {"projection": chapter3_head(self.hidden_dim, self.projection_dim)}
        spec = ssl_heads.HeadSpec(
            (feature_width,), self.projection_dim, output_bn=True, output_bias=False, synchronized_bn=False
        )
        return {"projection": spec}

    def compute_loss(self, model, batch, *, training):
        views = base.views(batch, 2)  # (b, 2, s, s, 3)
        b = tf.shape(views)[0]
        images = tf.concat([views[:, 0], views[:, 1]], axis=0)  # (2b, s, s, 3)
        z = model(images, training=training)["projection"]  # (2b, 128)
        return losses.nt_xent_loss(z[:b], z[b:], temperature=self.temperature, cross_replica=self.cross_replica)
