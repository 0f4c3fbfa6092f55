"""Per-layer alignment diagnostics (thesis Section 5.10, Figs. 5.9-5.10; spec ch5 3.3), computed by the loop.

* weight angle: the angle between vec(W) and vec(B^T) (dense) or vec(B) (convs); 0 degrees is exact backprop.
* norm ratio: ||B||_F / ||W||_F.
* gradient angle: the angle between the gradient of the loss with respect to the layer's input under the rule and
  the true (backprop) gradient, on the same batch and weights. The true one comes from a second forward pass in
  `scope.exact_gradients()`, never from inside a gradient function.

Angle(a, b) = acos(clip(<a/|a|, b/|b|>, -1, 1)) in degrees.
"""

import json
import math
import os
from typing import Callable

import keras
import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from goaldriven import atomic_write
from goaldriven.alignment import layers as aligned_layers
from goaldriven.alignment import scope


def angle(a, b) -> float:
    """Angle in degrees between two arrays seen as vectors (NaN if either is zero)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms == 0:
        return math.nan
    return float(np.degrees(np.arccos(np.clip(a @ b / norms, -1.0, 1.0))))


def _kernel_pairs(layer):
    """[(suffix, W, B in W's shape)] of an aligned layer."""
    if isinstance(layer, aligned_layers.AlignedSeparableConv2D):
        return [
            ("/depthwise", layer.depthwise_kernel, layer.depthwise_backward_kernel),
            ("/pointwise", layer.pointwise_kernel, layer.pointwise_backward_kernel),
        ]
    b = layer.backward_kernel.numpy()
    return [("", layer.kernel, b.T if isinstance(layer, aligned_layers.AlignedDense) else b)]


def weight_angles(model: keras.layers.Layer) -> dict[str, float]:
    """{layer path: angle(W, B^T) in degrees} for every aligned layer."""
    out = {}
    for layer in aligned_layers.aligned_layers(model):
        for suffix, w, b in _kernel_pairs(layer):
            out[layer.path + suffix] = angle(np.asarray(w), np.asarray(b))
    return out


def norm_ratios(model: keras.layers.Layer) -> dict[str, float]:
    """{layer path: ||B||_F / ||W||_F} for every aligned layer."""
    out = {}
    for layer in aligned_layers.aligned_layers(model):
        for suffix, w, b in _kernel_pairs(layer):
            w_norm = float(np.linalg.norm(np.asarray(w)))
            out[layer.path + suffix] = float(np.linalg.norm(np.asarray(b))) / w_norm if w_norm else math.nan
    return out


def make_gradient_angles(model: keras.Model, loss_fn: Callable[[keras.Model, dict], tf.Tensor]):
    """A function batch -> {layer path: angle between the rule's and the true input gradient, degrees}.

    `loss_fn(model, batch)` returns the scalar loss (the loop passes the task loss with training=False, so BN and
    dropout are in inference mode and nothing is updated). Layers called several times (ConvRNN time steps) are
    compared over all their inputs together.
    """

    def gradients(batch, exact: bool):
        with tf.GradientTape() as tape:
            tape.watch([t for t in tf.nest.flatten(batch) if t.dtype.is_floating])  # the first layers' inputs
            with scope.record_layer_inputs() as inputs:
                if exact:
                    with scope.exact_gradients():
                        loss = loss_fn(model, batch)
                else:
                    loss = loss_fn(model, batch)
        paths = sorted(inputs)
        flat = [x for path in paths for x in inputs[path]]
        grads = tape.gradient(loss, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        out, i = {}, 0
        for path in paths:
            n = len(inputs[path])
            out[path] = tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in grads[i : i + n]], 0)
            i += n
        return out

    @tf.function
    def both(batch):
        return gradients(batch, exact=False), gradients(batch, exact=True)

    aligned = {layer.path for layer in aligned_layers.aligned_layers(model)}

    def compute(batch) -> dict[str, float]:
        rule_grads, true_grads = both(batch)
        return {path: angle(rule_grads[path], true_grads[path]) for path in sorted(rule_grads) if path in aligned}

    return compute


def summarize(values: dict[str, float]) -> str:
    """'median X, max Y (over n layers)' of a per-layer dict, ignoring NaNs."""
    finite = [v for v in values.values() if math.isfinite(v)]
    if not finite:
        return "n/a"
    return f"median {np.median(finite):.1f}, max {max(finite):.1f} ({len(finite)} layers)"


def make_logger(
    model: keras.Model,
    loss_fn: Callable[[keras.Model, dict], tf.Tensor],
    batch: dict,
    *,
    workdir: str,
    log: Callable[[str], None] = print,
):
    """Returns step -> None: logs per-layer weight and gradient angles and norm ratios on `batch`, appends them to
    <workdir>/alignment_diagnostics.jsonl and redraws alignment_diagnostics.png.

    loss_fn(model, batch): the scalar loss the gradient angles differentiate (the loop passes the task's loss with
    training=False).
    """
    gradient_angles = make_gradient_angles(model, loss_fn)
    path = os.path.join(workdir, "alignment_diagnostics.jsonl")

    def diagnose(step):
        record = {
            "step": step,
            "weight_angle": weight_angles(model),
            "norm_ratio": norm_ratios(model),
            "gradient_angle": gradient_angles(batch),
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log(
            f"step {step} alignment: angle(B, W^T) {summarize(record['weight_angle'])} deg; "
            f"gradient angle {summarize(record['gradient_angle'])} deg; "
            f"|B|/|W| {summarize(record['norm_ratio'])}"
        )
        plot_history(path, os.path.join(workdir, "alignment_diagnostics.png"))

    return diagnose


def plot_history(jsonl_path: str, png_path: str) -> None:
    """Per-layer weight angle, gradient angle and norm ratio over training (thesis Fig. 5.10), one line per layer."""
    with open(jsonl_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        return
    steps = [r["step"] for r in records]
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    panels = (("weight_angle", "angle(B, W^T) (deg)"), ("gradient_angle", "angle(rule dx, true dx) (deg)"),
              ("norm_ratio", "||B|| / ||W||"))  # fmt: skip
    layers_ = list(records[-1]["weight_angle"])
    cmap = matplotlib.colormaps["viridis"]
    for ax, (key, label) in zip(axes, panels):
        for i, name in enumerate(layers_):
            ax.plot(steps, [r[key].get(name, math.nan) for r in records], color=cmap(i / max(len(layers_) - 1, 1)))
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if key == "norm_ratio":
            ax.set_yscale("log")
    axes[0].set_title(f"{len(layers_)} aligned layers (dark: input side, light: output side)")
    fig.tight_layout()
    atomic_write.save_figure(fig, png_path, dpi=100)
