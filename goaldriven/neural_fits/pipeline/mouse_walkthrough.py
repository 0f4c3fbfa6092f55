"""The embedded mouse walkthrough: simulated Allen-like areas read out of a StreamNet, found again by a Chapter 3 fit.

Reference: thesis Chapter 3 (Sections 3.3, 3.6.1-3.6.2, Table 3.3; spec ch3 A1, A2.4-A2.6). Nothing is downloaded:

  stimuli     118 greyscale "scenes" of the Allen aspect ratio (230 x 294, a quarter of 918 x 1174): an oriented
              grating background with two of scikit-learn's embedded digits pasted in (`scene_stimuli`)
  model       a StreamNet checkpoint (default: `streamnet_six` trained a few dozen steps on the digits at 64 px, by
              `python -m goaldriven.train`, run here in a subprocess when no --checkpoint is given)
  areas       VISp <- VISp (shallow), VISl <- VISl, VISal <- VISal, VISrl <- VISrl, VISpm <- VISpm (the streams),
              VISam <- VISam (deep): noisy sparse linear readouts (synthetic.simulate_recordings) of the features of
              the stimuli as Chapter 3 presents them (resize 256 -> centre crop 224 -> 64, or 64 x 81 for
              --trained_on=cifar10), 118 stimuli x 50 trials, one 0-250 ms bin, 4 animals x 30 units per area, noise s.d. 1
  fit         the Chapter 3 fit (mouse_fit.chapter3_fit): PLS-25 per target animal, train fraction 0.5, pooled-source
              inter-animal consistency; the per-area best layer must be the layer the area reads

  python -m goaldriven.neural_fits.pipeline.mouse_walkthrough --workdir=/tmp/mouse_walkthrough

prints the per-area table and the Table 3.3 row and writes them (mouse_table.json/.md, mouse_areas.png, units.csv,
summary.json, walkthrough.json with the recovered layers and the run time) into --workdir.
"""

# n: stimuli, h/w: pixels
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import sklearn.datasets

from goaldriven import checkpointing
from goaldriven.neural_fits.pipeline import mouse_tables, simulate_from_model
from goaldriven.neural_fits.pipeline.extraction import extract_features
from goaldriven.neural_fits.pipeline.mouse_fit import chapter3_fit
from goaldriven.neural_fits.pipeline.mouse_tables import Chapter3Fit
from goaldriven.neural_fits.pipeline.simulate_from_model import SimulateSpec
from goaldriven.neural_fits.pipeline.stimuli import PresentedInput, StimulusTransform

AREA_LAYERS = {"VISp": "VISp", "VISl": "VISl", "VISal": "VISal", "VISrl": "VISrl", "VISam": "VISam", "VISpm": "VISpm"}
SCENE_HW = (230, 294)  # 918 x 1174 / 4 (aspect 1.279)
N_STIMULI, N_TRIALS = 118, 50


def scene_stimuli(n: int = N_STIMULI, hw: tuple[int, int] = SCENE_HW, seed: int = 0):
    """(pixels (n, h, w, 1) uint8, ids, labels): a grating of random orientation, frequency and phase with two digits
    (scikit-learn's 8 x 8, upsampled 6-12x) pasted at random places; the label is the first digit."""
    rng = np.random.default_rng(seed)
    digits = sklearn.datasets.load_digits()
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w] / float(h)
    pixels = np.empty((n, h, w, 1), np.uint8)
    labels = []
    for i in range(n):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 12), rng.uniform(0, 2 * np.pi)
        scene = 0.5 + 0.25 * rng.uniform(0.3, 1) * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        scene = np.roll(scene, int(phase / (2 * np.pi) * w), axis=1)
        picks = rng.integers(0, len(digits.images), size=2)
        for k in picks:
            zoom = int(rng.integers(6, 13))
            glyph = np.kron(digits.images[k] / 16.0, np.ones((zoom, zoom)))
            top, left = rng.integers(0, h - glyph.shape[0]), rng.integers(0, w - glyph.shape[1])
            patch = scene[top : top + glyph.shape[0], left : left + glyph.shape[1]]
            patch[:] = np.where(glyph > 0.1, glyph * rng.choice([0.0, 1.0]), patch)
        pixels[i, :, :, 0] = np.clip(255 * scene, 0, 255).astype(np.uint8)
        labels.append(str(digits.target[picks[0]]))
    return pixels, [f"scene{i:03d}" for i in range(n)], np.array(labels)


def train_quick_checkpoint(workdir: str, model: str = "streamnet_six", steps: int = 40, log=print) -> str:
    """Trains `model` `steps` steps on the embedded digits at 64 px with goaldriven.train (a subprocess: the entry
    point parses the gin files); returns the training workdir. Reuses a finished run in `workdir`."""
    if os.path.exists(os.path.join(workdir, "checkpoints")):
        log(f"quick checkpoint: reusing {workdir}")
        return workdir
    bindings = [
        f"MODEL='{model}'",
        "IMAGE_SIZE=64",
        f"TRAIN_STEPS={steps}",
        "WARMUP_STEPS=5",
        f"STEPS_PER_LOOP={max(1, steps // 2)}",
        "GLOBAL_BATCH_SIZE=32",
        "BASE_LEARNING_RATE=0.01",
    ]
    command = [sys.executable, "-m", "goaldriven.train", "--gin_file=gin/experiments/digits__small_resnet8.gin"]
    command += ["--gin_file=gin/runtime/cpu.gin", "--strategy=cpu", f"--workdir={workdir}"]
    command += [f"--gin_bindings={b}" for b in bindings]
    log("quick checkpoint: " + " ".join(command))
    subprocess.run(command, check=True)
    return workdir


def run(
    workdir: str,
    *,
    checkpoint: str | None = None,
    model_name: str = "streamnet_six",
    trained_on: str = "imagenet",
    modality: str = "neuropixels",
    n_animals: int = 4,
    units_per_animal: int = 30,
    noise_std: float = 1.0,
    readout_density: float = 0.01,
    n_splits: int = 10,
    n_boot: int = 10,
    compare_mappings: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """The walkthrough (module docstring); returns walkthrough.json's content."""
    from goaldriven.models import zoo  # a model library import only when the walkthrough runs

    began = time.time()
    os.makedirs(workdir, exist_ok=True)
    checkpoint = checkpoint or train_quick_checkpoint(os.path.join(workdir, "train"), model_name, log=log)
    trained = time.time()
    model = zoo.build_model(model_name, num_classes=10, image_size=64)
    spec_input = PresentedInput.chapter3(PresentedInput(64), trained_on)
    transform = StimulusTransform.for_input(spec_input)
    pixels, ids, labels = scene_stimuli()
    model(transform(pixels[:1]), training=False)
    prefix = checkpointing.restore_model(model, checkpoint)
    layers = tuple(getattr(model, "neural_fit_layers", AREA_LAYERS.values()))
    log(f"{model.name} from {prefix}: stimuli {pixels.shape[1:3]} -> {transform.output_hw(*pixels.shape[1:3])}")
    store = extract_features(
        model, pixels, transform=transform, layers=layers, stimulus_ids=ids, checkpoint=prefix, log=log
    )
    simulate = SimulateSpec(
        {area: layer for area, layer in AREA_LAYERS.items() if layer in layers},
        n_animals=n_animals,
        units_per_animal=units_per_animal,
        n_trials=N_TRIALS,
        noise_std=noise_std,
        seed=seed,
        time_bins_ms=((0.0, 250.0),),
        time_profile="flat",
        readout_density=readout_density,
    )
    recordings = simulate_from_model.simulate(
        store, simulate, path=os.path.join(workdir, "synthetic_neural_data.h5"), log=log, stimuli=(pixels, ids, labels)
    )
    fit_spec = Chapter3Fit(modality=modality, n_splits=n_splits, n_boot=n_boot, trained_on=trained_on, seed=seed)
    fit = chapter3_fit(
        store,
        recordings,
        fit_spec,
        workdir,
        layers=layers,
        model_name=f"{model_name} (quick digits checkpoint)",
        compare_mappings=compare_mappings,
        log=log,
    )
    recovered = {area: entry["best_layer"] for area, entry in fit.columns["areas"].items()}
    out = {
        "planted": dict(simulate.area_layers),
        "recovered": recovered,
        "all_recovered": all(recovered.get(a) == layer for a, layer in simulate.area_layers.items()),
        "scores": {a: e["median"] for a, e in fit.columns["areas"].items()},
        "inter_animal": {a: e.get("inter_animal", {}).get("median") for a, e in fit.columns["areas"].items()},
        "pooled": fit.columns["pooled"],
        "fraction_of_ceiling": fit.columns["fraction_of_ceiling"],
        "markdown": fit.columns["markdown"],
        "seconds": {"train": round(trained - began, 1), "fit": round(time.time() - trained, 1)},
        "settings": {
            "model": model_name,
            "trained_on": trained_on,
            "modality": modality,
            "n_stimuli": len(ids),
            "n_trials": N_TRIALS,
            "n_animals": n_animals,
            "units_per_animal": units_per_animal,
            "noise_std": noise_std,
            "readout_density": readout_density,
            "n_splits": n_splits,
            "n_boot": n_boot,
        },
    }
    with open(os.path.join(workdir, "walkthrough.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, default=float)
    log(mouse_tables.markdown_table(fit.columns))
    log(f"recovered every area's layer: {out['all_recovered']}; {out['seconds']} s")
    store.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goaldriven.neural_fits.pipeline.mouse_walkthrough")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--checkpoint", default=None, help="a StreamNet training run (default: train a quick one)")
    parser.add_argument("--model", default="streamnet_six")
    parser.add_argument("--trained_on", default="imagenet", choices=("imagenet", "cifar10", "none"))
    parser.add_argument("--modality", default="neuropixels", choices=tuple(mouse_tables.MODALITIES))
    parser.add_argument("--n_splits", type=int, default=10)
    parser.add_argument("--n_boot", type=int, default=10, help="thesis: 100 (about 10x the fit time)")
    parser.add_argument("--units_per_animal", type=int, default=30)
    parser.add_argument("--noise_std", type=float, default=1.0)
    parser.add_argument("--readout_density", type=float, default=0.01)
    parser.add_argument("--compare_mappings", action="store_true")
    args = parser.parse_args(argv)
    try:
        out = run(
            args.workdir,
            checkpoint=args.checkpoint,
            model_name=args.model,
            trained_on=args.trained_on,
            modality=args.modality,
            n_splits=args.n_splits,
            n_boot=args.n_boot,
            units_per_animal=args.units_per_animal,
            noise_std=args.noise_std,
            readout_density=args.readout_density,
            compare_mappings=args.compare_mappings,
        )
    except (ValueError, OSError, subprocess.CalledProcessError) as e:
        print(f"mouse_walkthrough: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0 if out["all_recovered"] else 1


if __name__ == "__main__":
    sys.exit(main())
