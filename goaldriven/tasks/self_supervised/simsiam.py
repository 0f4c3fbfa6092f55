"""SimSiam (Chen & He 2021) as a task (thesis eq. 3.14; spec ch3 A4.6).

    z_k = g(f(x_k)),  p_k = h(z_k)                     g: 3-layer projector, h: 2-layer predictor
    L = -1/2 (cos(p1, sg(z2)) + cos(p2, sg(z1)))       sg: stop-gradient, mean over the batch

Heads ([C], Ambiguity 8): projector dense 2048 -> BN -> ReLU -> dense 2048 -> BN -> ReLU -> dense 2048 -> BN;
predictor dense 512 -> BN -> ReLU -> dense 2048 (linear output). Each view is a separate forward pass (BN statistics
per view, as in the reference). Recipe (gin/tasks/simsiam.gin): batch 512, 100 epochs, SGD 0.9, wd 1e-4, lr 0.1 with
cosine decay to 0 and no warm-up.
"""

# b: per-replica batch, s: image side
from typing import Any

from goaldriven.models import heads as ssl_heads
from goaldriven.tasks.self_supervised import base, losses


class SimSiamTask(base.SelfSupervisedTask):
    """SimSiam (module docstring). Args beyond `SelfSupervisedTask`'s: projector_dim (2048), predictor_hidden (512)."""

    name = "simsiam"

    def __init__(
        self,
        *,
        backbone_fn,
        feature: str,
        dataset: Any,
        projector_dim: int = 2048,
        predictor_hidden: int = 512,
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
        self.projector_dim, self.predictor_hidden = projector_dim, predictor_hidden

    @property
    def metric_names(self) -> tuple[str, ...]:
        return losses.SIMSIAM_METRICS

    def head_specs(self, feature_width: int) -> dict[str, ssl_heads.HeadSpec]:
        del feature_width
        d = self.projector_dim
        return {
            "projector": ssl_heads.HeadSpec((d, d), d, output_bn=True),
            "predictor": ssl_heads.HeadSpec((self.predictor_hidden,), d, source="projector"),
        }

    def compute_loss(self, model, batch, *, training):
        views = base.views(batch, 2)  # (b, 2, s, s, 3)
        out1 = model(views[:, 0], training=training)
        out2 = model(views[:, 1], training=training)
        return losses.simsiam_loss(out1["predictor"], out2["predictor"], out1["projector"], out2["projector"])
