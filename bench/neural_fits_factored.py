"""Benchmark: fit and score the spatially factored readout at thesis scale (thesis §2.5.6; spec ch2 §8.4-8.5).

Usage: python bench/neural_fits_factored.py [--stimuli 256] [--epochs 2] [--precision mixed_bfloat16] [--no-jit]
Default size: 256 units x 20 time bins x 5120 stimuli, 14x14x256 feature maps, 75/25 train/test split.

Features: the full (5120, 20, 14, 14, 256) float32 tensor would take 20 GB, so only two base maps base1, base2
(n, 14, 14, 256) are kept (2 GB) and bin t's features are built on the fly as
    f[i, t] = a_t * base1[i] + b_t * base2[i],   a_t = cos(phi_t), b_t = sin(phi_t), phi_t = linspace(0, pi/2, t)
when the readout reads a batch (`BinMixture`, an array-like with .shape and x[i:j] slicing; the readout streams it
batch by batch, reading the next batch in a background thread while the compiled step runs).
Targets: a planted factored readout (Gaussian spatial bump x random channel weights per unit) plus Gaussian noise.
The readout is linear, so r[i, :, t] = a_t R(base1)[i] + b_t R(base2)[i]: two contractions instead of one per bin.
Timed: fit (a fixed number of epochs, no validation split) and scoring (predict the held-out stimuli, per-unit
Pearson per bin; the predict step's compilation is timed apart). Flops: 4 * b * t * h * w * c * u per train step
(forward GEMM + weight-gradient GEMM), 2 * n * t * h * w * c * u per prediction. "steady" = the last epoch. Baseline in the same run, precision and compile mode: a dense matmul
(b * t * h * w, c) x (c, u), the same size as one forward contraction of a batch; ratio = achieved / matmul GFLOP/s.
With lr 1e-4 two epochs are a timing run, not a converged fit (see FactoredReadout's docstring for the schedule).
"""

import argparse
import os
import resource
import time

import keras
import numpy as np
import tensorflow as tf

from goaldriven import atomic_write
from goaldriven.neural_fits.mappings.factored_readout import FactoredReadout
from goaldriven.neural_fits.metrics.correlation import pearson

# n: stimuli, t: time bins, h/w: space, c: channels, u: units, b: batch

HERE = os.path.dirname(os.path.abspath(__file__))


class BinMixture:
    """Array-like (n, t, h, w, c) whose rows are a_t * base1[i] + b_t * base2[i], built when sliced."""

    def __init__(self, base1: np.ndarray, base2: np.ndarray, a: np.ndarray, b: np.ndarray):
        self.base1, self.base2 = base1, base2
        self.a, self.b = a.reshape(1, -1, 1, 1, 1).astype(np.float32), b.reshape(1, -1, 1, 1, 1).astype(np.float32)
        self.shape = (base1.shape[0], a.size) + base1.shape[1:]

    def __getitem__(self, rows):
        if not isinstance(rows, slice):
            raise TypeError("BinMixture supports x[i:j] slicing only.")
        out = self.a * self.base1[rows][:, None]  # (m, t, h, w, c)
        out += self.b * self.base2[rows][:, None]
        return out


def _planted_response(base: np.ndarray, spatial: np.ndarray, channel: np.ndarray, chunk: int = 256) -> np.ndarray:
    """sum_{x,y,k} spatial[u, x, y] channel[u, k] base[i, x, y, k] -> (n, u), in chunks of stimuli."""
    n, h, w, c = base.shape
    out = []
    for i in range(0, n, chunk):
        z = base[i : i + chunk].reshape(-1, c) @ channel.T  # (m*h*w, u)
        out.append(np.einsum("msu,us->mu", z.reshape(-1, h * w, z.shape[-1]), spatial.reshape(spatial.shape[0], -1)))
    return np.concatenate(out)


def _matmul_gflops(rows: int, c: int, u: int, dtype: str, jit: bool, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of a dense (rows, c) x (c, u) matmul in `dtype`."""
    rng = np.random.default_rng(1)
    a = tf.cast(tf.constant(rng.standard_normal((rows, c), np.float32)), dtype)
    w = tf.cast(tf.constant(rng.standard_normal((c, u), np.float32)), dtype)
    matmul = tf.function(lambda a, w: tf.matmul(a, w), jit_compile=jit)
    matmul(a, w).numpy()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, w).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * rows * c * u / best / 1e9


def run(args) -> dict:
    keras.mixed_precision.set_global_policy(args.precision)
    rng = np.random.default_rng(args.seed)
    n, t, s, c, u = args.stimuli, args.bins, args.size, args.channels, args.units
    start = time.perf_counter()
    base1 = rng.standard_normal((n, s, s, c), np.float32)
    base2 = rng.standard_normal((n, s, s, c), np.float32)
    phi = np.linspace(0.0, np.pi / 2, t)
    x = BinMixture(base1, base2, np.cos(phi), np.sin(phi))
    yy, xx = np.mgrid[:s, :s]
    centres = rng.uniform(2, s - 3, (u, 2))
    spatial = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 8.0).astype(np.float32)
    channel = (rng.standard_normal((u, c)) / np.sqrt(c)).astype(np.float32)
    r1, r2 = _planted_response(base1, spatial, channel), _planted_response(base2, spatial, channel)  # (n, u)
    signal = r1[:, :, None] * np.cos(phi) + r2[:, :, None] * np.sin(phi)  # (n, u, t)
    signal /= signal.std(axis=0, keepdims=True)
    y = (signal + args.noise * rng.standard_normal(signal.shape)).astype(np.float32)
    setup_seconds = time.perf_counter() - start

    # The stimuli are i.i.d. draws, so the last 25% serve as the held-out set (views, no copy of the base maps).
    n_test = n // 4
    train_rows, test_rows = np.arange(n - n_test), np.arange(n - n_test, n)
    x_train = BinMixture(base1[: n - n_test], base2[: n - n_test], np.cos(phi), np.sin(phi))
    x_test = BinMixture(base1[n - n_test :], base2[n - n_test :], np.cos(phi), np.sin(phi))
    del x
    readout = FactoredReadout(
        learning_rate=args.learning_rate,
        global_batch_size=args.batch,
        epochs=args.epochs,
        validation_fraction=0.0,
        contraction=args.contraction,
        seed=args.seed,
        jit_compile=args.jit,
        verbose=True,
    )
    start = time.perf_counter()
    readout.fit(x_train, y[train_rows])
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    readout.predict(BinMixture(x_test.base1[:1], x_test.base2[:1], np.cos(phi), np.sin(phi)))  # compiles the step
    predict_compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pred = readout.predict(x_test)  # (n_test, u, t)
    predict_seconds = time.perf_counter() - start
    r = pearson(pred, y[test_rows])  # (u, t)
    score_seconds = time.perf_counter() - start
    ceiling = pearson(signal[test_rows], y[test_rows])

    hwcu = s * s * c * u
    steps = len(train_rows) // args.batch
    train_flops_per_epoch = 4.0 * steps * args.batch * t * hwcu
    steady = readout.history["seconds"][-1]  # last epoch: no compilation
    compute_dtype = keras.mixed_precision.global_policy().compute_dtype
    peak = _matmul_gflops(args.batch * t * s * s, c, u, compute_dtype, args.jit)
    result = {
        "stimuli": n,
        "train_stimuli": len(train_rows),
        "test_stimuli": n_test,
        "units": u,
        "bins": t,
        "feature_map": [s, s, c],
        "epochs": args.epochs,
        "global_batch_size": args.batch,
        "learning_rate": args.learning_rate,
        "precision": args.precision,
        "jit_compile": args.jit,
        "contraction": args.contraction,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "feature_pipeline": "two base maps, bin t = a_t*base1 + b_t*base2 built per batch (BinMixture)",
        "setup_seconds": round(setup_seconds, 2),
        "fit_seconds": round(fit_seconds, 2),
        "epoch_seconds": [round(v, 2) for v in readout.history["seconds"]],
        "train_loss": [round(v, 4) for v in readout.history["loss"]],
        "fit_plus_score_seconds": round(fit_seconds + predict_compile_seconds + score_seconds, 2),
        "predict_compile_seconds": round(predict_compile_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
        "score_seconds": round(score_seconds, 2),
        "train_stimuli_bins_per_s": round(args.epochs * steps * args.batch * t / fit_seconds, 1),
        "train_stimuli_bins_per_s_steady": round(steps * args.batch * t / steady, 1),
        "predict_stimuli_bins_per_s": round(n_test * t / predict_seconds, 1),
        "train_gflops_per_s": round(args.epochs * train_flops_per_epoch / fit_seconds / 1e9, 2),
        "train_gflops_per_s_steady": round(train_flops_per_epoch / steady / 1e9, 2),
        "predict_gflops_per_s": round(2.0 * n_test * t * hwcu / predict_seconds / 1e9, 2),
        "matmul_gflops_per_s": round(peak, 2),
        "ratio_train_steady_to_matmul": round(train_flops_per_epoch / steady / 1e9 / peak, 3),
        "ratio_predict_to_matmul": round(2.0 * n_test * t * hwcu / predict_seconds / 1e9 / peak, 3),
        "median_test_pearson": round(float(np.median(r)), 4),
        "median_ceiling_pearson": round(float(np.median(ceiling)), 4),
        "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    keras.mixed_precision.set_global_policy("float32")
    atomic_write.write_json(args.out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "neural_fits_factored.json"))
    parser.add_argument("--stimuli", type=int, default=5120, help="use 256 for a small run")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--size", type=int, default=14, help="feature map height = width")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64, help="global batch size (thesis 64)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--noise", type=float, default=0.5, help="noise std relative to the unit-variance signal")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--contraction", default="auto", choices=["auto", "channels_first", "full_kernel"])
    parser.add_argument("--no-jit", dest="jit", action="store_false", help="run the steps without XLA")
    parser.add_argument("--seed", type=int, default=0)
    result = run(parser.parse_args())
    print({k: v for k, v in result.items() if k not in ("epoch_seconds", "train_loss")})


if __name__ == "__main__":
    main()
