"""Simulated recordings from a trained model's own layers on embedded stimuli (the README's no-download walkthrough).

Stimuli: scikit-learn's 1,797 handwritten digits (8 x 8 grey, shipped with the package), stored as uint8 pixels
(value * 255 / 16) with their digit as the stimulus label (splits are stratified by digit). Each area reads one layer
of the model (synthetic.simulate_recordings: sparse linear readouts of the z-scored features, unit signal variance,
Gaussian trial noise), so a correct pipeline finds that layer best for that area with noise-corrected predictivity
near 1. Feedforward features get a gamma-like time course over 10 ms bins from 0 to 250 ms; a ConvRNN's features
are used per time step (step k <-> [10 k, 10 k + 10) ms), with its own dynamics.
"""

# n: stimuli, p: features, t: time steps
import dataclasses
import functools
import os
from typing import Callable, Mapping, Sequence

import numpy as np
import sklearn.datasets

from goaldriven.neural_fits.data import neural_data, synthetic
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore


@functools.cache
def digits_stimuli() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (1797, 8, 8, 1) uint8, labels (1797,) str digit) from scikit-learn's embedded digits."""
    digits = sklearn.datasets.load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return pixels, digits.target.astype(str)


@dataclasses.dataclass(frozen=True)
class SimulateSpec:
    """What to simulate: each area's units read one layer of the model (the --simulate flags of goaldriven-fit)."""

    area_layers: Mapping[str, str]  # {area: the model layer its units read}
    n_animals: int = 3
    units_per_animal: int = 20
    n_trials: int = 10
    noise_std: float = 1.0  # trial noise s.d. (units have unit signal variance)
    seed: int = 0
    time_bins_ms: tuple[tuple[float, float], ...] | None = None  # None: 10 ms bins 0-250 ms (synthetic.py)
    time_profile: str | None = None  # "gamma" | "flat" (feedforward features); None: synthetic.py's default
    readout_density: float | None = None  # expected fraction of features a unit reads; None: synthetic.py's 0.25

    @classmethod
    def from_items(cls, items: Sequence[str], **settings) -> "SimulateSpec":
        """From 'area=layer' strings (the --simulate flag)."""
        pairs = [item.partition("=") for item in items]
        bad = [item for item, (area, sep, layer) in zip(items, pairs) if not (area and sep and layer)]
        if bad or not items:
            raise ValueError(f"--simulate takes area=layer,... (e.g. V1=stage1_block1,IT=stage3_block1); got {bad}.")
        return cls({area: layer for area, _, layer in pairs}, **settings)


def simulate(
    store: FeatureStore,
    spec: SimulateSpec,
    *,
    path: str,
    log: Callable[[str], None] = print,
    stimuli: tuple[np.ndarray, Sequence[str], Sequence[str] | None] | None = None,
) -> neural_data.NeuralData:
    """Simulates recordings of `spec.area_layers` ({area: layer}) from a model's features on `digits_stimuli()`, or
    on `stimuli` = (pixels (n, h, w, c), ids, labels or None) (e.g. the mouse walkthrough's scenes).

    `store` holds the features of those stimuli, in that order. The recordings, with the stimuli, are
    saved to `path`; an existing file from the same settings is reused, one from other settings is an error (never
    overwritten).
    """
    area_layers = dict(spec.area_layers)
    settings = repr(
        (
            sorted(area_layers.items()),
            spec.n_animals,
            spec.units_per_animal,
            spec.n_trials,
            float(spec.noise_std),
            spec.seed,
        )
    )
    extra = (spec.time_bins_ms, spec.time_profile, spec.readout_density)
    if any(value is not None for value in extra):  # files simulated without them keep their settings string
        settings = settings[:-1] + "".join(f", {value!r}" for value in extra) + ")"
    if os.path.exists(path):
        recordings = neural_data.load_neural_data(path)
        if recordings.attrs.get("simulation_settings") != settings:
            raise FileExistsError(
                f"{path} holds recordings simulated with other settings; use a new --workdir or delete the file."
            )
        log(f"simulated recordings: reusing {path}")
        return recordings
    pixels, ids, labels = (*digits_stimuli()[:1], digit_ids(), digits_stimuli()[1]) if stimuli is None else stimuli
    if len(store.stimulus_ids) != len(pixels):
        raise ValueError(f"the features cover {len(store.stimulus_ids)} stimuli, not the {len(pixels)} to simulate.")
    missing = sorted(set(area_layers.values()) - set(store.layers))
    if missing:
        raise ValueError(f"no features of layers {missing} to simulate from; the model has {list(store.layers)}.")
    hidden = {}
    for layer in sorted(set(area_layers.values())):
        array = np.asarray(store[layer], np.float32)  # (n, t, ...)
        n, t = array.shape[:2]
        hidden[layer] = array.reshape(n, -1) if t == 1 else array.reshape(n, t, -1)
    recordings = synthetic.simulate_recordings(
        hidden,
        areas=area_layers,
        n_animals=spec.n_animals,
        units_per_animal=spec.units_per_animal,
        n_trials=spec.n_trials,
        noise_std=spec.noise_std,
        time_bins_ms=None if spec.time_bins_ms is None else np.asarray(spec.time_bins_ms, np.float64),
        time_profile=spec.time_profile,
        **({} if spec.readout_density is None else {"readout_density": spec.readout_density}),
        stimulus_ids=np.asarray(ids),
        stimulus_labels=labels,
        stimuli=pixels,
        seed=spec.seed,
    )
    recordings.attrs["simulation_settings"] = settings
    recordings.attrs["source"] = f"simulated from {store.attrs.get('checkpoint', 'a model')} layers {area_layers}"
    neural_data.save_neural_data(path, recordings)
    log(f"simulated recordings: {recordings.num_units} units of {area_layers} -> {path}")
    return recordings


def digit_ids() -> list[str]:
    return [f"digit{i:04d}" for i in range(len(digits_stimuli()[0]))]
