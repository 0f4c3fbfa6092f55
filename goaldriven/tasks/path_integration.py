"""Path integration in a 2-D box (thesis Chapter 4): from velocity inputs, predict the place-cell code (or the
position) along simulated trajectories; the hidden layer develops grid-, border- and heterogeneous spatial tuning.

Losses (thesis Eq. 4.13, 4.14), averaged over batch and time:
  place cells:  L = -sum_i p_i log softmax(y)_i   (targets p from place_cells.PlaceCells, a distribution)
  position:     L = 1/2 * |position - y|^2          (2 Cartesian outputs; initial state from the start position)
plus the models' L2 penalty (1e-4 on the recurrent kernel, added by the loop). Metric: decoding error in cm, the
distance between the true position and the mean centre of the 3 most active predicted place cells (Eq. 4.16).
Place-cell targets are computed on the accelerator from the positions, so the input pipeline only carries positions
and velocities (about 100x less infeed than the 512-cell targets).
"""

# b: batch, t: time, p: place cells
import dataclasses
from typing import Any, Callable

import keras
import tensorflow as tf

from goaldriven import runtime
from goaldriven.models import path_integrators
from goaldriven.tasks import base, path_integration_eval
from goaldriven.tasks import place_cells as place_cells_lib
from goaldriven.tasks import trajectories as trajectories_lib

TARGETS = ("place_cells", "position")
_BATCH_KEYS = ("inputs", "position", "init_position")


class PathIntegrationTask(base.Task):
    """Path integration with place-cell (default) or position targets.

    Args:
      model_fn: builds the network given input_dim, init_dim and output_dim (default: build_path_integrator).
      trajectories: the training trajectory generator (thesis: 2.2 m box, T = 20).
      place_cells: the place-cell code (default: 512 cells drawn in the training box).
      target: "place_cells" or "position".
      evaluation: what `evaluate` computes (rate maps, scores, figures, knockouts).
    """

    name = "path_integration"

    def __init__(
        self,
        *,
        model_fn: Callable[..., keras.Model] = path_integrators.build_path_integrator,
        trajectories: trajectories_lib.TrajectoryGenerator | None = None,
        place_cells: place_cells_lib.PlaceCells | None = None,
        target: str = "place_cells",
        evaluation: path_integration_eval.PathIntegrationEvaluation | None = None,
    ):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; received {target!r}.")
        self.model_fn = model_fn
        self.trajectories = trajectories or trajectories_lib.TrajectoryGenerator()
        self.place_cells = place_cells or place_cells_lib.PlaceCells(
            box_width=self.trajectories.box_width, box_height=self.trajectories.height
        )
        self.target = target
        self.evaluation = evaluation or path_integration_eval.PathIntegrationEvaluation()

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("decoding_error_cm",)

    @property
    def output_dim(self) -> int:
        return self.place_cells.n_cells if self.target == "place_cells" else 2

    def build_model(self) -> keras.Model:
        return self.model_fn(
            input_dim=self.trajectories.input_dim, init_dim=self.output_dim, output_dim=self.output_dim
        )

    def make_batch(self, generator: trajectories_lib.TrajectoryGenerator, global_batch_size: int):
        """Returns (step, seed) -> global batch of `generator` with the keys the model needs."""

        def make(step, seed):
            del step
            batch = generator.generate(global_batch_size, seed)
            return {k: batch[k] for k in _BATCH_KEYS}

        return make

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return runtime.step_indexed_dataset(
            self.make_batch(self.trajectories, global_batch_size),
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=start_step,
            seed=seed,
        )

    def encode(self, positions: tf.Tensor) -> tf.Tensor:
        """Target code of positions (..., 2): place-cell distributions (..., p) or the positions themselves."""
        return self.place_cells.activations(positions) if self.target == "place_cells" else positions

    def decode(self, logits: tf.Tensor) -> tf.Tensor:
        """Position estimates (..., 2) from model outputs."""
        return self.place_cells.decode(logits) if self.target == "place_cells" else logits

    def forward(
        self,
        model: keras.Model,
        batch: dict[str, tf.Tensor],
        *,
        training: bool = False,
        unit_mask: tf.Tensor | None = None,
    ) -> dict[str, Any]:
        """Runs the model on a batch; returns its outputs plus "decoded" positions (b, t, 2)."""
        kwargs = {} if unit_mask is None else {"unit_mask": unit_mask}
        inputs = {"inputs": batch["inputs"], "init_code": self.encode(batch["init_position"])}
        if getattr(model, "reads_position", False):  # baselines (path_integration_baselines), not path integrators
            inputs.update(position=batch["position"], init_position=batch["init_position"])
        out = model(inputs, training=training, **kwargs)
        return {**out, "decoded": self.decode(out["logits"])}

    def compute_loss(self, model, batch, *, training):
        out = self.forward(model, batch, training=training)
        logits, positions = out["logits"], batch["position"]
        if self.target == "place_cells":
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=self.encode(positions), logits=logits))
        else:
            loss = 0.5 * tf.reduce_mean(tf.reduce_sum(tf.square(positions - logits), axis=-1))
        error_cm = 100.0 * tf.reduce_mean(tf.norm(out["decoded"] - positions, axis=-1))
        return loss, {"decoding_error_cm": error_cm}

    def evaluate(self, model, *, strategy, output_dir, step, log=print):
        return path_integration_eval.evaluate(
            self, model, strategy=strategy, output_dir=output_dir, step=step, config=self.evaluation, log=log
        )

    def evaluation_generator(
        self, box_width: float, cue_probability: float | None = None, environment: str | None = None
    ) -> trajectories_lib.TrajectoryGenerator:
        """The training generator moved to an evaluation box (or track: `environment`), with ordinary (not
        reward-biased) episodes."""
        changes = {} if cue_probability is None else {"cue_probability": cue_probability}
        if environment is not None:
            changes["environment"] = environment
        return dataclasses.replace(
            self.trajectories, box_width=box_width, box_height=None, reward_epsilon=1.0, **changes
        )
