"""Baselines and controls of the path integrators (thesis Chapter 4, Sections 4.4 and 4.10.2; spec ch3_ch4 B5.5).

Each is a fixed (untrained) map from the animal's path to "MEC units", built like a path integrator so that the
path-integration task, its evaluation (rate maps, grid and border scores) and the rate-map neural fits read it as they
read a trained network's layer "g":
  kind="nmf":         the NMF of the place-cell code P (tasks/place_cell_nmf.py); g = the location x component factor,
                      interpolated at the position. n_G = 9 is the "Grid Cell Model"; higher ranks up to "full".
  kind="place_cells": g = the place-cell code p(x) (n_P units). The features of "Place Cell Ground Truth" and of the
                      "Place Cell Linear MEC" control, whose ElasticNet-CV regression from P to the source animals'
                      MEC units (fit on 20% of the position bins) belongs to the neural-fit pipeline, not here.
  kind="velocity":    the velocity-linear input control (Ambiguity 30): g = the velocity input, the displacement per
                      step (v_x, v_y) in m/step; rectified=True gives (v_x+, v_x-, v_y+, v_y-) (non-negative "rates").
These are not path integrators: they read the true position. The task passes it (`reads_position`), and the logits
are the true target code (the place-cell code, or the position for the position loss), so their decoding error is the
decoder's floor, not a result. Nothing is trained (run them with TRAIN_STEPS = 0); the NMF factor is a non-trainable
weight, so a checkpoint holds it.
"""

# b: batch, t: time, p: place cells, k: NMF components, u: units of g
import keras
import numpy as np
import tensorflow as tf

from goaldriven.tasks import place_cell_nmf
from goaldriven.tasks import place_cells as place_cells_lib

KINDS = ("nmf", "place_cells", "velocity")


class PositionBaseline(keras.Model):
    """A baseline "MEC layer" g computed from the true path (module docstring).

    Args:
      kind: one of KINDS.
      place_cells: the task's place-cell code (the same centres as the task's targets).
      output_dim: n_P (place-cell loss: logits = log of the true code) or 2 (position loss: logits = the position).
      nmf: for kind="nmf", the factorisation (place_cell_nmf.NMFResult) and `lattice` its locations.
      rectified: for kind="velocity", half-wave rectified components.

    Call args:
      inputs: {"position": (b, t, 2), "init_position": (b, 2)} (other keys, e.g. "inputs", are ignored).
      unit_mask: optional (u,) 0/1 mask over g units.

    Returns:
      {"logits": (b, t, output_dim), "features": {"g": (b, t, u)}}.
    """

    reads_position = True  # PathIntegrationTask.forward adds the true positions to the inputs

    def __init__(
        self,
        kind: str,
        place_cells: place_cells_lib.PlaceCells,
        output_dim: int,
        *,
        nmf: place_cell_nmf.NMFResult | None = None,
        lattice: place_cell_nmf.Lattice | None = None,
        rectified: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; received {kind!r}.")
        if output_dim not in (2, place_cells.n_cells):
            raise ValueError(
                f"output_dim must be 2 (position) or n_P = {place_cells.n_cells} (place cells); received {output_dim}."
            )
        if (kind == "nmf") != (nmf is not None and lattice is not None):
            raise ValueError("kind='nmf' needs nmf= and lattice= (and the other kinds neither); use build_baseline.")
        self.kind, self.place_cells, self.output_dim = kind, place_cells, output_dim
        self.lattice, self.rectified = lattice, rectified
        self.nmf_activations = None
        if nmf is not None:
            self.nmf_activations = self.add_weight(
                shape=nmf.activations.shape,
                initializer=keras.initializers.Constant(nmf.activations.astype(np.float32)),
                trainable=False,
                name="nmf_activations",
            )  # (x, k)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("g",)

    @property
    def units(self) -> int:
        """Number of units of g."""
        if self.kind == "nmf":
            return int(self.nmf_activations.shape[-1])
        return self.place_cells.n_cells if self.kind == "place_cells" else 2 * (1 + self.rectified)

    def call(self, inputs, training=False, unit_mask=None):
        del training
        position = tf.cast(inputs["position"], tf.float32)  # (b, t, 2)
        code = self.place_cells.activations(position)  # (b, t, p)
        if self.kind == "nmf":
            g = self.lattice.interpolate(tf.convert_to_tensor(self.nmf_activations), position)  # (b, t, k)
        elif self.kind == "place_cells":
            g = code
        else:
            before = tf.concat([tf.cast(inputs["init_position"], tf.float32)[:, None], position[:, :-1]], axis=1)
            g = position - before  # (b, t, 2) the generator's velocity input, m/step
            if self.rectified:
                g = tf.concat([tf.nn.relu(g[..., :1]), tf.nn.relu(-g[..., :1]), tf.nn.relu(g[..., 1:]),
                               tf.nn.relu(-g[..., 1:])], axis=-1)  # fmt: skip
        if unit_mask is not None:
            g = g * tf.cast(unit_mask, g.dtype)
        logits = position if self.output_dim == 2 else tf.math.log(code + 1e-30)  # softmax(logits) = the true code
        return {"logits": logits, "features": {"g": g}}


def place_cell_matrix(
    place_cells: place_cells_lib.PlaceCells, spacing: float = 0.02
) -> tuple[place_cell_nmf.Lattice, np.ndarray]:
    """The lattice covering the place cells' environment and P there, (x, p) float64 (place_cell_nmf decisions)."""
    lattice = place_cell_nmf.Lattice.covering(place_cells.box_width, place_cells.box_height, spacing)
    code = place_cells.activations(tf.constant(lattice.positions, tf.float32))
    return lattice, np.asarray(code, np.float64)


def build_baseline(
    *,
    input_dim: int,
    init_dim: int,
    output_dim: int,
    kind: str = "nmf",
    place_cells: place_cells_lib.PlaceCells | None = None,
    n_components: int | str = 9,
    lattice_spacing: float = 0.02,
    max_iter: int = 1000,
    rectified: bool = False,
    seed: int = 0,
    log=print,
) -> PositionBaseline:
    """Builds a baseline with the task's sizes (PathIntegrationTask.build_model's signature).

    Args:
      input_dim, init_dim: unused (the baselines read the true position).
      output_dim: as the task's (n_P or 2).
      kind: one of KINDS.
      place_cells: the task's place cells (gin binds the same PlaceCells configurable: identical centres).
      n_components: n_G of the NMF, an int or "full" (= n_P).
      lattice_spacing: NMF lattice spacing in metres.
      max_iter: NMF solver iterations.
      rectified: velocity control with rectified components.
      seed: NMF random_state.
      log: progress messages (the NMF's fit).
    """
    del input_dim, init_dim
    place_cells = place_cells or place_cells_lib.PlaceCells()
    nmf = lattice = None
    if kind == "nmf":
        lattice, matrix = place_cell_matrix(place_cells, lattice_spacing)
        nmf = place_cell_nmf.fit_nmf(matrix, n_components, max_iter=max_iter, seed=seed)
        log(
            f"baseline: NMF of P ({matrix.shape[0]} locations x {matrix.shape[1]} place cells) with n_G = "
            f"{nmf.components.shape[0]}: relative error {nmf.relative_error:.4f} after {nmf.n_iter} iterations"
        )
    name = f"nmf_{nmf.components.shape[0]}" if nmf is not None else f"{kind}_baseline"
    model = PositionBaseline(kind, place_cells, output_dim, nmf=nmf, lattice=lattice, rectified=rectified, name=name)
    model({"position": tf.zeros((1, 1, 2)), "init_position": tf.zeros((1, 2))})
    return model
