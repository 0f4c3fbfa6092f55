"""Simulated place cells: the targets and the position decoder of the path-integration task (thesis Eq. 4.13, 4.16).

Thesis (Section 4.10.1): n_P = 512 difference-of-Gaussians cells with centres c_i uniform in the box,
    p_i(x) = exp(-|x - c_i|^2 / 2 s1^2) - exp(-|x - c_i|^2 / 2 s2^2),  s1 = 0.12 m, s2^2 = 2 s1^2.
As printed this is <= 0 everywhere (s1 < s2) and cannot be a cross-entropy target. The reference code (spec
ch3_ch4 B5.3, Ambiguity 22) uses normalised Gaussians instead, which is what we implement:
    p(x) = softmax_i(-d_i^2 / 2 s1^2) - softmax_i(-d_i^2 / 2 s2^2);  p -= min_i p;  p /= sum_i p,
so the 512 targets are a probability distribution (the two softmaxes have equal mass, so min_i p <= 0 and the shift
makes the minimum exactly 0). With `difference_of_gaussians=False` the target is the first softmax alone.
Decoding (Eq. 4.16): the position estimate is the mean centre of the k = 3 most active cells.
"""

# b: batch, t: time, n: place cells
import random

import numpy as np
import tensorflow as tf

CENTRES = ("numpy", "reference")


def reference_centres(n_cells: int = 512, box_width: float = 2.2, box_height: float | None = None) -> np.ndarray:
    """Centres (n_cells, 2) float64 as the reference code draws them (neuroailab/mec, the released models' centres).

    Reference (mec/models/place_cells.py): `tf.random.set_seed(0)`, then `tf.random.uniform((Np,), min_x, max_x,
    tf.float64)` for x and the same for y, in eager mode, in a box centred at the origin (training: 2.2 m). Eager TF
    gives those two ops the seeds (0, r1) and (0, r2), r1 and r2 the first two `random.Random(0).randint(0, 2**31 -
    1)`; the same Philox kernels are run here with those seeds in a new graph, so the caller's global seed and eager
    kernel cache are left alone. Checked against `tf.random.set_seed(0)` + `tf.random.uniform` in TF 2.21, not
    against the TF 2.0.1 GPU run that trained the release.
    """
    box_height = box_width if box_height is None else box_height
    draws = random.Random(0)
    seeds = [draws.randint(0, 2**31 - 1) for _ in range(2)]

    @tf.function(autograph=False)
    def uniforms():
        return [tf.raw_ops.RandomUniform(shape=[n_cells], dtype=tf.float64, seed=0, seed2=s) for s in seeds]

    centres = []
    for u, extent in zip(uniforms(), (box_width, box_height)):
        low, high = tf.constant(-extent / 2.0, tf.float64), tf.constant(extent / 2.0, tf.float64)
        centres.append(u * (high - low) + low)  # as tf.random.uniform: rnd * (maxval - minval) + minval
    return tf.stack(centres, axis=-1).numpy()


class PlaceCells:
    """Place-cell code of a box centred at the origin; centres are fixed by `seed` (identical across models).

    Args:
      n_cells: number of place cells (thesis: 512).
      sigma: tuning width s1 in metres (thesis: 0.12).
      surround_scale: s2^2 / s1^2 of the inhibitory surround (thesis: 2).
      difference_of_gaussians: subtract the surround (thesis: True).
      box_width, box_height: box in which the centres are drawn (the training arena, 2.2 m).
      seed: NumPy seed of the centres when `centres` is "numpy".
      centres: "numpy" (goaldriven's draw, NumPy under `seed`) or "reference" (the reference code's TensorFlow draw,
        `reference_centres`: the centres the released MEC models were trained with; goaldriven-import sets it).
    """

    def __init__(
        self,
        n_cells: int = 512,
        sigma: float = 0.12,
        surround_scale: float = 2.0,
        difference_of_gaussians: bool = True,
        box_width: float = 2.2,
        box_height: float | None = None,
        seed: int = 0,
        centres: str = "numpy",
    ):
        if n_cells < 3:
            raise ValueError(f"n_cells must be >= 3 (decoding averages the top 3); received {n_cells}.")
        if sigma <= 0 or surround_scale <= 1.0:
            raise ValueError(
                f"need sigma > 0 and surround_scale > 1; received sigma={sigma}, surround_scale={surround_scale}."
            )
        self.n_cells = n_cells
        self.sigma = sigma
        self.surround_scale = surround_scale
        self.difference_of_gaussians = difference_of_gaussians
        self.box_width = box_width
        self.box_height = box_width if box_height is None else box_height
        if centres not in CENTRES:
            raise ValueError(f"centres must be one of {CENTRES}; received {centres!r}.")
        self.centres_kind = centres
        if centres == "reference":
            self.centres = reference_centres(n_cells, self.box_width, self.box_height).astype(np.float32)  # (n, 2)
        else:
            half = np.array([self.box_width, self.box_height]) / 2
            self.centres = np.random.default_rng(seed).uniform(-half, half, size=(n_cells, 2)).astype(np.float32)

    def activations(self, positions: tf.Tensor) -> tf.Tensor:
        """Target code (..., n) of positions (..., 2); each code sums to 1."""
        positions = tf.cast(positions, tf.float32)
        sq_dist = tf.reduce_sum(tf.square(positions[..., None, :] - self.centres), axis=-1)  # (..., n)
        code = tf.nn.softmax(-sq_dist / (2 * self.sigma**2), axis=-1)
        if self.difference_of_gaussians:
            code -= tf.nn.softmax(-sq_dist / (2 * self.surround_scale * self.sigma**2), axis=-1)
            code -= tf.reduce_min(code, axis=-1, keepdims=True)
            code /= tf.reduce_sum(code, axis=-1, keepdims=True)
        return code

    def decode(self, activity: tf.Tensor, k: int = 3) -> tf.Tensor:
        """Positions (..., 2): mean centre of the k most active cells of `activity` (..., n) (logits or rates)."""
        _, top = tf.math.top_k(tf.cast(activity, tf.float32), k=k)
        return tf.reduce_mean(tf.gather(tf.constant(self.centres), top), axis=-2)
