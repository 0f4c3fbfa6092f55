"""A path-integrator checkpoint against recorded MEC rate maps, as one library call (what goaldriven-fit --mec_data
runs after parsing its flags and gin files):

    task = cli_config.configured_task()      # the gin files the checkpoint was trained with
    env = ratemap_file.select_environment(ratemap_file.read_ratemaps("mec.h5"), "box100")
    paths = fit_checkpoint.fit_path_integrator("/tmp/pi_run", task=task, env=env, workdir="/tmp/pi_mec",
                                               spec=fit.MECFit(grid="short"))

Writes into `workdir` (holding its lock): model_ratemaps.npz (the model's rate maps per layer on the recorded bins)
and the fit's report (fit.write_report). Only box environments: the thesis' 1-D track evaluation of 2-D trained
models is unspecified (spec ambiguity 27) and not implemented here; fit.fit_environment takes track model maps made
elsewhere.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf

from goaldriven import workdir_lock
from goaldriven.neural_fits.mec import fit as fit_lib
from goaldriven.neural_fits.mec import model_ratemaps
from goaldriven.neural_fits.mec.ratemap_file import Environment, MECDataError

MODEL_MAPS_FILE = "model_ratemaps.npz"


def fit_path_integrator(
    checkpoint: str,
    *,
    task,
    env: Environment,
    workdir: str,
    spec: fit_lib.MECFit,
    layers: tuple[str, ...] | None = None,
    protocol: model_ratemaps.RateMapProtocol = model_ratemaps.RateMapProtocol(),
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = print,
) -> tuple[fit_lib.MECResult, list[str]]:
    """Restores the checkpoint, maps its units in the environment's box, fits and reports; (result, paths)."""
    if env.kind != "box":
        raise MECDataError(
            f"environment {env.name!r} is a {env.kind}: model rate maps are made in a box only (track evaluation of "
            "path integrators is not implemented; pass track model maps to fit.fit_environment)."
        )
    width, height = env.extent_m
    if abs(width - height) > 1e-9:
        raise MECDataError(f"environment {env.name!r} is {width} x {height} m; the model is evaluated in square boxes.")
    strategy = strategy or tf.distribute.get_strategy()
    os.makedirs(workdir, exist_ok=True)
    with workdir_lock.hold(workdir, "fit", log):
        model, _ = model_ratemaps.restore_path_integrator(task, checkpoint, strategy, log)
        maps = model_ratemaps.model_ratemaps(
            task, model, box_width=width, bins=env.bins_shape[1], layers=layers, protocol=protocol, strategy=strategy
        )
        for layer, m in maps.items():
            unvisited = np.isnan(m[0]).mean()
            log(f"mec: layer {layer}: {m.shape[0]} units, {unvisited:.1%} of the {env.n_bins} bins never visited")
        path = os.path.join(workdir, MODEL_MAPS_FILE)
        np.savez_compressed(path, **{k: v.astype(np.float32) for k, v in maps.items()})
        result = fit_lib.fit_environment(env, maps, spec, log)
        paths = [path, *fit_lib.write_report(result, workdir)]
    return result, paths
