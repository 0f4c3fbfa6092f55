"""A simulated OST dataset of known truth: planted per-image solution times in a model's features, and the primate
targets (behavioural d', IT OST, V4/IT responses) that go with them.

Reference: thesis Section 2.5.8 and spec ch2 Sections 9 and 11 (item 11: OST on synthetic curves); the targets'
layout is ost_data.py. Nothing is downloaded. The planted model:

  image i (object y_i of n_objects, `per_object` each) has a solution step s_i ~ U(s_min, s_max) (10 ms steps);
  recurrent IT-like layer L at step t:  x_L(i, t) = A clip((t - s_i) / ramp, 0, 1) m_L[y_i] + z_L(i) + e
  feedforward layer l (of k, hierarchy order):  x_l(i) = A clip((l + 1 - k u_i) / ramp_ff, 0, 1) m_l[y_i] + z_l(i) + e
  with m_L orthonormal object directions, z_L(i) an image-specific pattern fixed in time, e step noise;
  the "v4" layer carries the image patterns only (no object signal; it is read by the V4 units).

  IT OST_i = 10 s_i + jitter ms (recurrent) or 70 + 180 u_i + jitter ms (feedforward: u_i ~ U(0, 1) ranks the layer
  from which image i is separable), so a model whose d' follows the planted signal has OSTs ordered like IT's.
  Behavioural d' ~ U(1.5, 3); a fraction of the images has no IT d' (the PLS-OST training images), and a few
  evaluation images are unsolved by IT (NaN OST).

  Responses: V4 units = noisy linear readouts of the v4 layer, IT units of the IT-like layers, per 10 ms bin
  [10 t, 10 t + 10) for t = 0..25 and `n_trials` trials, so the IT-preferred layer selection must pick the IT-like
  layers and the PLS-OST mapping has time-resolved IT targets.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.data.ost_data import OSTTargets

# n: images, t: model steps (10 ms), p: features per layer, u: units, r: trials

N_STEPS = 26  # 260 ms at 10 ms per step (spec 1.3)


@dataclasses.dataclass
class PlantedOST:
    """The planted model's features, the planted truth and the primate-side data built from it."""

    recurrent: dict[str, np.ndarray]  # {layer: (n, t, p)} per-step features: "v4", "it_a", "it_b"
    feedforward: dict[str, np.ndarray]  # {layer: (n, 1, p)} k layers in hierarchy order
    labels: np.ndarray  # (n,) int object index
    solution_step: np.ndarray  # (n,) planted solution step s_i (recurrent model)
    layer_rank: np.ndarray  # (n,) planted u_i in [0, 1] (feedforward model)
    recurrent_data: NeuralData  # V4 + IT responses and labels of the recurrent truth
    recurrent_targets: OSTTargets
    feedforward_targets: OSTTargets  # same behavioural d', IT OST from the feedforward truth
    it_layers: tuple[str, ...] = ("it_a", "it_b")


def _object_directions(rng, n_objects: int, p: int) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(p, n_objects)))[0].T  # (n_objects, p) orthonormal rows


def _readout(rng, features: np.ndarray, n_units: int, n_trials: int, noise: float) -> np.ndarray:
    """(n, u, t, r) noisy linear readouts of (n, t, p) features with unit-variance signals."""
    w = rng.normal(size=(features.shape[-1], n_units))
    signal = np.einsum("ntp,pu->nut", features, w)  # (n, u, t)
    signal /= signal.std(axis=(0, 2), keepdims=True) + 1e-12
    return signal[..., None] + noise * rng.normal(size=(*signal.shape, n_trials))


def planted_ost(
    n_objects: int = 4,
    per_object: int = 24,
    p: int = 32,
    n_feedforward: int = 4,
    amplitude: float = 4.0,
    ramp: float = 3.0,
    pattern: float = 0.5,
    step_range: tuple[float, float] = (8.0, 19.0),
    jitter_ms: float = 5.0,
    pls_fraction: float = 0.25,
    unsolved_fraction: float = 0.05,
    n_units: int = 16,
    n_trials: int = 4,
    noise: float = 0.3,
    trial_noise: float = 0.5,
    seed: int = 0,
) -> PlantedOST:
    """The planted OST dataset (module docstring); every random draw comes from `seed`."""
    rng = np.random.default_rng(seed)
    n = n_objects * per_object
    labels = np.repeat(np.arange(n_objects), per_object)
    steps = np.arange(N_STEPS)
    s = rng.uniform(*step_range, size=n)
    amp = amplitude * np.clip((steps[None, :] - s[:, None]) / ramp, 0.0, 1.0)  # (n, t)

    recurrent = {"v4": np.repeat(rng.normal(size=(n, 1, p)), N_STEPS, axis=1)}
    recurrent["v4"] += noise * rng.normal(size=recurrent["v4"].shape)
    for name in ("it_a", "it_b"):
        m = _object_directions(rng, n_objects, p)
        z = pattern * rng.normal(size=(n, 1, p))
        recurrent[name] = amp[:, :, None] * m[labels][:, None, :] + z + noise * rng.normal(size=(n, N_STEPS, p))

    u = rng.uniform(size=n)
    feedforward = {}
    for layer in range(n_feedforward):
        m = _object_directions(rng, n_objects, p)
        a = amplitude * np.clip(layer + 1 - n_feedforward * u, 0.0, 1.0)  # (n,) separable from layer ~ k u_i on
        x = a[:, None] * m[labels] + pattern * rng.normal(size=(n, p)) + noise * rng.normal(size=(n, p))
        feedforward[f"ff{layer + 1}"] = x[:, None, :]

    v4 = _readout(rng, recurrent["v4"], n_units, n_trials, trial_noise)
    it = _readout(rng, np.concatenate([recurrent["it_a"], recurrent["it_b"]], axis=2), n_units, n_trials, trial_noise)
    data = NeuralData(
        responses=np.concatenate([v4, it], axis=1).astype(np.float32),
        stimulus_ids=[f"img{i:04d}" for i in range(n)],
        unit_ids=[f"V4/{j:03d}" for j in range(n_units)] + [f"IT/{j:03d}" for j in range(n_units)],
        animal=["planted"] * (2 * n_units),
        area=["V4"] * n_units + ["IT"] * n_units,
        time_bins_ms=np.stack([10.0 * steps, 10.0 * steps + 10.0], axis=1),
        stimulus_labels=[f"object{y}" for y in labels],
        presentation={"image_on_ms": 100.0, "trial_ms": 260.0, "normalization": "simulated (planted OSTs)"},
        attrs={"per_stimulus": {"solution_step": s, "layer_rank": u}},
    )

    beh = rng.uniform(1.5, 3.0, size=n)
    defined = np.ones(n, dtype=bool)
    defined[rng.permutation(n)[: int(round(pls_fraction * n))]] = False
    unsolved = defined & (rng.uniform(size=n) < unsolved_fraction)

    def targets(ost_ms):
        ost_ms = ost_ms + jitter_ms * rng.normal(size=n)
        return OSTTargets.create(beh, np.where(defined & ~unsolved, ost_ms, np.nan), defined)

    return PlantedOST(
        recurrent=recurrent,
        feedforward=feedforward,
        labels=labels,
        solution_step=s,
        layer_rank=u,
        recurrent_data=data,
        recurrent_targets=targets(10.0 * s),
        feedforward_targets=targets(70.0 + 180.0 * u),
    )
