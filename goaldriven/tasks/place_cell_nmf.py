"""Non-negative matrix factorisation of the place-cell code: the "Grid Cell Model" baseline of thesis Chapter 4.

Thesis (Section 4.10.2, spec ch3_ch4 B5.5 item 5): P in R^{n_x x n_P} holds the place-cell activations at n_x locations
of the environment; sklearn.decomposition.NMF factorises P ~ A C with A >= 0 (n_x x n_G) and C >= 0 (n_G x n_P), the
fixed point of a one-layer Hebbian network with non-negative weights (Dordek et al. 2016). The columns of A, the
location x component factor, are the baseline's "MEC units"; n_G = 9 is the Grid Cell Model (Sorscher et al. 2019),
and higher ranks titrate up to the full-rank NMF (n_G = min(n_x, n_P) = n_P).

Decisions (Ambiguity 29; docs/decisions/path_integration.md):
  * Locations: a regular lattice with `spacing` (default 2 cm) covering the place cells' environment edge to edge (the
    2.2 m training box, or the 4 m track: then a 1-D lattice along y = 0), i.e. uniform occupancy, the expectation of
    the open-field exploration without its sampling noise, and the same P for every run.
  * Solver: NMF(init="nndsvda", solver="cd", beta_loss="frobenius", no regularisation, max_iter=1000, tol=1e-4,
    random_state=0): deterministic; A is sklearn's W (fit_transform), C its components_, at sklearn's scale.
  * Activity away from the lattice (positions along trajectories): bilinear interpolation of A between the four
    surrounding lattice locations (linear between two on the track), non-negative like A; positions outside the
    lattice take the value at its edge.
"""

# x: lattice locations, p: place cells, k: NMF components (n_G), r/c: lattice rows (y) / columns (x)
import dataclasses
import math
import warnings

import numpy as np
import sklearn.decomposition
import sklearn.exceptions
import tensorflow as tf

FULL_RANK = "full"


@dataclasses.dataclass(frozen=True)
class Lattice:
    """A regular lattice of locations covering a box centred at the origin (rows = y, columns = x).

    Attributes:
      width, height: box extent in metres (height 0: a track along y = 0, one row).
      columns, rows: lattice points along x and y (rows = 1 on a track).
    """

    width: float
    height: float
    columns: int
    rows: int

    @classmethod
    def covering(cls, width: float, height: float, spacing: float) -> "Lattice":
        """The lattice with points on both edges and a spacing of at most `spacing` metres."""
        if spacing <= 0 or width <= 0 or height < 0:
            raise ValueError(f"need spacing > 0, width > 0, height >= 0; received {spacing}, {width}, {height}.")
        rows = 1 if height == 0 else math.ceil(height / spacing - 1e-9) + 1
        return cls(float(width), float(height), math.ceil(width / spacing - 1e-9) + 1, rows)

    @property
    def positions(self) -> np.ndarray:
        """Locations (x, 2) float64, row-major (x varies fastest)."""
        xs = np.linspace(-self.width / 2, self.width / 2, self.columns)
        ys = np.linspace(-self.height / 2, self.height / 2, self.rows) if self.rows > 1 else np.zeros(1)
        grid_x, grid_y = np.meshgrid(xs, ys)  # (r, c)
        return np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)

    def interpolate(self, table: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
        """Bilinear (track: linear) interpolation of `table` (x, k) at `positions` (..., 2) -> (..., k)."""
        positions = tf.cast(positions, table.dtype)
        shape = tf.shape(positions)[:-1]
        flat = tf.reshape(positions, [-1, 2])  # (n, 2)
        i0x, i1x, fx = _axis_weights(flat[:, 0], self.width, self.columns, table.dtype)
        i0y, i1y, fy = _axis_weights(flat[:, 1], self.height, self.rows, table.dtype)
        corners = (
            (i0y * self.columns + i0x, (1 - fy) * (1 - fx)),
            (i0y * self.columns + i1x, (1 - fy) * fx),
            (i1y * self.columns + i0x, fy * (1 - fx)),
            (i1y * self.columns + i1x, fy * fx),
        )
        values = tf.add_n([tf.gather(table, index) * weight[:, None] for index, weight in corners])  # (n, k)
        return tf.reshape(values, tf.concat([shape, tf.shape(table)[-1:]], axis=0))


def _axis_weights(coordinate, extent, n_points, dtype):
    """Lower and upper lattice indices and the upper weight along one axis (one point: index 0, weight 0)."""
    if n_points == 1:
        zero = tf.zeros_like(coordinate, tf.int32)
        return zero, zero, tf.zeros_like(coordinate)
    u = tf.clip_by_value((coordinate + extent / 2) * ((n_points - 1) / extent), 0.0, n_points - 1.0)
    lower = tf.minimum(tf.cast(tf.floor(u), tf.int32), n_points - 2)
    return lower, lower + 1, tf.cast(u - tf.cast(lower, u.dtype), dtype)


@dataclasses.dataclass(frozen=True)
class NMFResult:
    """A factorisation P ~ activations @ components.

    Attributes:
      activations: A, (x, k) float64 >= 0, the location x component factor (the baseline's units).
      components: C, (k, p) float64 >= 0, the weights from place cells to units.
      relative_error: ||P - A C||_F / ||P||_F.
      n_iter: solver iterations.
    """

    activations: np.ndarray
    components: np.ndarray
    relative_error: float
    n_iter: int


def n_components_for(n_components: int | str, place_matrix_shape: tuple[int, int]) -> int:
    """n_G from an int or "full" (= min(n_x, n_P), the full-rank NMF)."""
    full = min(place_matrix_shape)
    if n_components == FULL_RANK:
        return full
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= full:
        raise ValueError(
            f"n_components must be an int in [1, min(n_x, n_P) = {full}] or {FULL_RANK!r}; received {n_components!r}."
        )
    return n_components


def fit_nmf(
    place_matrix: np.ndarray, n_components: int | str = 9, *, max_iter: int = 1000, tol: float = 1e-4, seed: int = 0
) -> NMFResult:
    """sklearn NMF of P (x, p) with n_G = `n_components` (int or "full"); settings in the module docstring."""
    place_matrix = np.asarray(place_matrix, np.float64)
    if place_matrix.ndim != 2 or place_matrix.min() < 0:
        raise ValueError(f"P must be a non-negative (n_x, n_P) matrix; received shape {place_matrix.shape}.")
    k = n_components_for(n_components, place_matrix.shape)
    model = sklearn.decomposition.NMF(
        n_components=k, init="nndsvda", solver="cd", beta_loss="frobenius", max_iter=max_iter, tol=tol,
        random_state=seed,
    )  # fmt: skip
    with warnings.catch_warnings():  # reaching max_iter is reported through n_iter, not as a warning
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        activations = model.fit_transform(place_matrix)
    components = model.components_
    error = np.linalg.norm(place_matrix - activations @ components) / np.linalg.norm(place_matrix)
    return NMFResult(activations, components, float(error), int(model.n_iter_))
