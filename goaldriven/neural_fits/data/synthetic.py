"""Synthetic recordings with known ground truth: linear readouts of a known network's features plus trial noise.

Reference: the estimators of A. Nayebi, PhD thesis (2022), Sections 2.5.6-2.5.7 and 3.6.2-3.6.3 (split-half
Spearman-Brown reliability, noise-corrected predictivity, inter-animal consistency); used to test that they recover
a known truth. Data layout: `goaldriven.neural_fits.data.neural_data.NeuralData`.

Generative model, for unit j of area a (reading feature layer L(a)), stimulus i, time bin k, trial l:

    Z      = features of L(a), each column z-scored over stimuli (over stimuli and time for (n, t, p) features)
    w_j    = sparse readout: w_jq = b_jq g_jq, b_jq ~ Bernoulli(readout_density), g_jq ~ N(0, 1)
    (n, p) features:    mu_ijk = c_j (Z w_j)_i h_j(k),   c_j makes Var_i(c_j (Z w_j)_i) = 1 exactly
                        h_j = gamma-like time course over the bin centres (peak 1), or 1 ("flat")
    (n, t, p) features: mu_ijk = c_j (Z_k w_j)_i,         c_j makes max_k Var_i(mu_ijk) = 1 exactly
    x_ijkl = mu_ijk + sigma_j e_ijkl,   e ~ N(0, 1) independent over stimuli, bins, trials, units and animals

So the signal variance at a unit's peak bin is 1 and V_jk = Var_i(mu_ijk) (population variance over the n
stimuli, recorded exactly) elsewhere. Ground truth, with r trials and halves of h = floor(r / 2) trials:

    half means  s_1 = mu + mean of h noise terms: Var(noise) = sigma^2 / h, independent between halves, so
    rho_half    = Corr(s_1, s_2) = V / (V + sigma^2 / h)                     (true split-half reliability)
    SB          = 2 rho_half / (1 + rho_half) = V / (V + sigma^2 / (2 h))     (true Spearman-Brown reliability)
    R_full      = Corr(mu, mean of r trials)^2 = V / (V + sigma^2 / r)         (= SB when r is even)
    noise ceiling = sqrt(R_full): the expected correlation of the true mu with the r-trial mean; the
    noise-corrected predictivity of a model that predicts mu exactly is therefore ~1.

These are population values; sample correlations over n stimuli scatter around them (bias O(1 / n)).

Animals: shared_readout=True gives every animal of an area the same readouts (and time courses) as animal 0, so
their noise-free responses are identical (inter-animal consistency 1); noise stays independent.
shared_readout=False draws independent readouts of the same features. Note that independent readouts of the SAME
features are still linearly predictable from each other when units >> feature rank, so that is NOT inter-animal
consistency ~0; private_features=True makes each animal read out its own private N(0, 1) features instead (unrelated
to the network and to other animals: inter-animal consistency and model predictivity ~0 by construction).
"""

from __future__ import annotations

import numpy as np

from goaldriven.neural_fits.data.neural_data import NeuralData

# n: stimuli, p: features, u: units, t: time bins, r: trials, h/w/c: image height/width/channels

__all__ = [
    "simulate_recordings",
    "default_dataset",
    "default_images",
    "random_network_features",
    "true_reliability",
    "true_noise_ceiling",
]

_NETWORK_SEED = 20220101  # the "fixed random two-layer network" of default_dataset never changes with `seed`


class _Standardized:
    """Features z-scored per column without copying them: Z v = F (v / sd) - mean . (v / sd) (constant columns: 0)."""

    def __init__(self, features: np.ndarray, rows: int = 4096):
        self.features = features
        flat = features.reshape(-1, features.shape[-1])
        total = np.zeros(flat.shape[1])
        for start in range(0, len(flat), rows):  # two passes in row blocks: bounded float64 temporaries
            total += flat[start : start + rows].sum(axis=0, dtype=np.float64)
        self.mean = total / len(flat)
        squares = np.zeros(flat.shape[1])
        for start in range(0, len(flat), rows):
            squares += ((flat[start : start + rows] - self.mean) ** 2).sum(axis=0)
        std = np.sqrt(squares / len(flat))
        self.usable = std > 0
        self.inverse_std = np.where(self.usable, 1.0 / np.where(self.usable, std, 1.0), 0.0)

    @property
    def shape(self) -> tuple:
        return self.features.shape

    @property
    def ndim(self) -> int:
        return self.features.ndim

    def __matmul__(self, weights: np.ndarray) -> np.ndarray:
        scaled = weights * self.inverse_std
        return self.features @ scaled.astype(self.features.dtype) - float(self.mean @ scaled)


def _gamma_profile(centers_ms: np.ndarray, latency_ms: float, tau_ms: float, shape: float = 2.0) -> np.ndarray:
    x = np.clip(centers_ms - latency_ms, 0.0, None) / tau_ms
    profile = x**shape * np.exp(-x)
    if profile.max() <= 0:
        raise ValueError(
            f"the gamma time course (latency {latency_ms:.0f} ms) is zero in every bin (centres {centers_ms.min():g}-"
            f"{centers_ms.max():g} ms). Fix: use later time bins or time_profile='flat'."
        )
    return profile / profile.max()


def _readout(rng: np.random.Generator, usable: np.ndarray, density: float) -> np.ndarray:
    weights = np.zeros(usable.size)
    chosen = usable & (rng.random(usable.size) < density)
    if not chosen.any():
        chosen[rng.choice(np.flatnonzero(usable))] = True
    weights[chosen] = rng.standard_normal(int(chosen.sum()))
    return weights


def _prepare(features: dict, areas, time_bins_ms, time_profile):
    """Check shapes; return ({area: layer}, {layer: z-scored features}, n, time bins (t, 2), profile name)."""
    if not isinstance(features, dict) or not features:
        raise TypeError("features must be a non-empty dict {layer name: (n, p) or (n, t, p) array}.")
    areas = {k: k for k in features} if areas is None else areas
    areas = {a: a for a in areas} if not isinstance(areas, dict) else dict(areas)
    unknown = {a: layer for a, layer in areas.items() if layer not in features}
    if unknown:
        raise ValueError(f"areas {unknown} name unknown feature layers; layers: {sorted(features)}.")
    arrays = {layer: _as_float(features[layer]) for layer in set(areas.values())}
    shapes = {layer: x.shape for layer, x in arrays.items()}
    if any(x.ndim not in (2, 3) for x in arrays.values()) or len({s[0] for s in shapes.values()}) != 1:
        raise ValueError(f"features must be (n, p) or (n, t, p) with one n for all layers; received {shapes}.")
    n = next(iter(shapes.values()))[0]
    steps = {s[1] for s in shapes.values() if len(s) == 3}
    if len(steps) > 1:
        raise ValueError(f"(n, t, p) features must share t; received {shapes}.")
    if steps and time_profile is not None:
        raise ValueError("time_profile applies to (n, p) features; (n, t, p) features carry their own time course.")
    if time_bins_ms is None:
        t = steps.pop() if steps else 25  # model step k <-> [10 k, 10 k + 10) ms (spec ch2 A-2); else 0-250 ms
        start = np.arange(t) * 10.0
        time_bins_ms = np.stack([start, start + 10.0], axis=1)
    time_bins_ms = np.asarray(time_bins_ms, dtype=np.float64)
    if steps and time_bins_ms.shape[0] != next(iter(steps)):
        raise ValueError(f"time_bins_ms has {time_bins_ms.shape[0]} bins but the features have t = {steps}.")
    profile = time_profile or "gamma"
    if profile not in ("gamma", "flat"):
        raise ValueError(f"time_profile must be 'gamma', 'flat' or None; received {time_profile!r}.")
    return areas, {layer: _Standardized(x) for layer, x in arrays.items()}, n, time_bins_ms, profile


def _as_float(array) -> np.ndarray:
    array = np.asarray(array)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def simulate_recordings(
    features: dict,
    *,
    areas=None,
    n_animals: int = 4,
    units_per_animal=8,
    n_trials: int = 10,
    noise_std=1.0,
    time_bins_ms=None,
    time_profile: str | None = None,
    readout_density: float = 0.25,
    shared_readout: bool = False,
    private_features: bool = False,
    stimulus_ids=None,
    stimulus_labels=None,
    stimuli=None,
    seed: int = 0,
    return_signal: bool = False,
):
    """Simulated recordings of known signal and noise (model in the module docstring).

    Args:
        features: {layer: (n, p) or (n, t, p)} hidden features of a known network.
        areas: {area: layer} (or a list of layer names used as area names); default one area per layer.
        n_animals: animals per area, named "animal0", ...
        units_per_animal: int, or {area: int}.
        n_trials: r trials per stimulus.
        noise_std: trial noise std sigma: a float, or (low, high) for a per-unit uniform draw. Must be > 0.
        time_bins_ms: (t, 2) bins; default 10 ms bins (0-250 ms for (n, p) features; [10 k, 10 k + 10) for step k).
        time_profile: (n, p) features only: "gamma" (default; latency ~ U(40, 80) ms, tau ~ U(15, 30) ms) or "flat".
        readout_density: expected fraction of non-zero readout weights.
        shared_readout, private_features: see the module docstring.
        stimulus_ids, stimulus_labels, stimuli: passed to NeuralData (ids default "stim0000", ...).
        seed: the only source of randomness.
        return_signal: also return the noise-free mu, (n, u, t).

    Returns:
        NeuralData (units ordered area, animal, unit) with attrs["per_unit"] = {signal_variance (u, t),
        noise_variance (u,), split_half_reliability (u, t), spearman_brown_reliability (u, t),
        full_trial_reliability (u, t), latency_ms (u,)} and attrs["synthetic"] (settings and
        feature_layer_of_area); with return_signal, (data, mu).
    """
    areas, zscored, n, bins, profile = _prepare(features, areas, time_bins_ms, time_profile)
    if n_trials < 1 or n_animals < 1:
        raise ValueError(f"n_trials and n_animals must be >= 1; received {n_trials}, {n_animals}.")
    low, high = (noise_std, noise_std) if np.isscalar(noise_std) else tuple(noise_std)
    if not 0 < low <= high:
        raise ValueError(f"noise_std must be > 0 (a float or (low, high)); received {noise_std!r}.")
    rng = np.random.default_rng(seed)
    t, centers = bins.shape[0], bins.mean(axis=1)
    signals, latencies, unit_rows = [], [], []
    for area, layer in areas.items():
        z = zscored[layer]
        count = units_per_animal[area] if isinstance(units_per_animal, dict) else units_per_animal
        usable = z.usable
        if not usable.any():
            raise ValueError(f"feature layer {layer!r} is constant over stimuli; it cannot drive simulated units.")
        drawn = None
        for m in range(n_animals):
            source = _Standardized(rng.standard_normal(z.shape)) if private_features else z
            if drawn is None or not shared_readout:
                drawn = [
                    (_readout(rng, usable, readout_density), rng.uniform(40.0, 80.0), rng.uniform(15.0, 30.0))
                    for _ in range(count)
                ]
            for k, (weights, latency, tau) in enumerate(drawn):
                s = np.asarray(source @ weights, dtype=np.float64)  # (n,) or (n, t)
                if s.ndim == 1:
                    s = (s - s.mean()) / s.std()
                    course = _gamma_profile(centers, latency, tau) if profile == "gamma" else np.ones(t)
                    mu = s[:, None] * course[None, :]
                else:
                    mu = s / np.sqrt(s.var(axis=0).max())
                signals.append(mu)
                latencies.append(latency if s.ndim == 1 and profile == "gamma" else np.nan)
                unit_rows.append((f"animal{m}/{area}/{k:03d}", f"animal{m}", area))
    mu = np.stack(signals, axis=1)  # (n, u, t)
    u = mu.shape[1]
    sigma = rng.uniform(low, high, size=u) if high > low else np.full(u, float(low))
    noise = rng.standard_normal((n, u, t, n_trials)) * sigma[None, :, None, None]
    responses = (mu[..., None] + noise).astype(np.float32)

    signal_var = mu.var(axis=0)  # (u, t)
    noise_var = sigma**2
    half = max(1, n_trials // 2)
    split_half = signal_var / (signal_var + noise_var[:, None] / half)
    per_unit = {
        "signal_variance": signal_var,
        "noise_variance": noise_var,
        "split_half_reliability": split_half,
        "spearman_brown_reliability": 2 * split_half / (1 + split_half),
        "full_trial_reliability": signal_var / (signal_var + noise_var[:, None] / n_trials),
        "latency_ms": np.asarray(latencies),
    }
    synthetic = {
        "seed": int(seed),
        "n_trials": int(n_trials),
        "noise_std_range": np.array([low, high], dtype=np.float64),
        "readout_density": float(readout_density),
        "time_profile": profile if all(z.ndim == 2 for z in zscored.values()) else "features",
        "shared_readout": bool(shared_readout),
        "private_features": bool(private_features),
        "feature_layer_of_area": dict(areas),
    }
    ids, animals, area_names = (np.array(col) for col in zip(*unit_rows))
    data = NeuralData(
        responses=responses,
        stimulus_ids=np.char.mod("stim%04d", np.arange(n)) if stimulus_ids is None else stimulus_ids,
        unit_ids=ids,
        animal=animals,
        area=area_names,
        time_bins_ms=bins,
        has_trials=n_trials > 1,
        stimuli=stimuli,
        stimulus_labels=stimulus_labels,
        presentation={"normalization": "none (synthetic)"},
        attrs={"per_unit": per_unit, "synthetic": synthetic},
    )
    return (data, mu.astype(np.float32)) if return_signal else data


# ------------------------------------------------------------------------------------------ the default dataset
def default_images(n_stimuli: int = 64, n_categories: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8, 8, 3) float32 images in [0, 1] (half a category prototype, half noise) and (n,) labels "cat<k>"."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((n_categories, 8, 8, 3))
    labels = np.arange(n_stimuli) % n_categories
    images = 0.5 * prototypes[labels] + 0.5 * rng.random((n_stimuli, 8, 8, 3))
    return images.astype(np.float32), np.char.mod("cat%d", labels)


def random_network_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Features of a fixed random two-layer ReLU network on (n, 8, 8, 3) images: layer1 (n, 64), layer2 (n, 32)."""
    images = np.asarray(images, dtype=np.float64)
    if images.shape[1:] != (8, 8, 3):
        raise ValueError(f"random_network_features expects (n, 8, 8, 3) images; received {images.shape}.")
    rng = np.random.default_rng(_NETWORK_SEED)
    w1 = rng.standard_normal((192, 64)) / np.sqrt(192)
    w2 = rng.standard_normal((64, 32)) / np.sqrt(64)
    x = images.reshape(len(images), -1)
    layer1 = np.maximum(0.0, (x - 0.5) @ w1)
    layer2 = np.maximum(0.0, (layer1 - layer1.mean(axis=0)) @ w2)
    return {"layer1": layer1.astype(np.float32), "layer2": layer2.astype(np.float32)}


def default_dataset(seed: int = 0, **overrides) -> NeuralData:
    """Small dataset needing no model: 64 images, V4 <- layer1 and IT <- layer2, 4 animals x 4 units, 10 trials.

    The features are random_network_features(data.stimuli); `overrides` go to simulate_recordings.
    """
    images, labels = default_images(seed=seed)
    settings = dict(
        areas={"V4": "layer1", "IT": "layer2"},
        n_animals=4,
        units_per_animal=4,
        n_trials=10,
        noise_std=(0.5, 2.0),
        stimulus_ids=np.char.mod("img%04d", np.arange(len(images))),
        stimulus_labels=labels,
        stimuli=images,
        seed=seed,
    )
    settings.update(overrides)
    return simulate_recordings(random_network_features(images), **settings)


# ----------------------------------------------------------------------------------------------- ground truth
def true_reliability(data: NeuralData) -> dict[str, np.ndarray]:
    """The recorded ground truth of simulated data: {name: (u, t) or (u,) array} (see simulate_recordings)."""
    per_unit = data.attrs.get("per_unit", {})
    if "synthetic" not in data.attrs or "full_trial_reliability" not in per_unit:
        raise ValueError("true_reliability needs data from simulate_recordings (attrs['synthetic'] is missing).")
    return dict(per_unit)


def true_noise_ceiling(data: NeuralData) -> np.ndarray:
    """(u, t) sqrt(V / (V + sigma^2 / r)): expected Corr(true signal, r-trial mean) per unit and bin."""
    return np.sqrt(true_reliability(data)["full_trial_reliability"])
