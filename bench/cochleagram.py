"""Cochleagram throughput: the TensorFlow front end against the NumPy/SciPy float64 reference, in the same run.

Usage: python bench/cochleagram.py [out.json]   (default bench/results/cochleagram.json)

Default settings (2 s at 20 kHz, 203 x 400). TF: batches of 16 white-noise clips, float32, plain tf.function and
jit_compile, in the exact mode (default) and the approximate baseband mode envelope_oversample=4. Reference
(tests/audio/numpy_cochleagram.py): one clip at a time with the filterbank built once (pycochleagram rebuilds it per
call; not counting that favours the reference). The issue's target: TF clips/s >= 20x the reference's.
"""

import os
import sys

# Run as a script, bench/ would be sys.path[0] (a script named like a standard module would shadow it).
sys.path[:1] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import tensorflow as tf  # noqa: E402

from goaldriven import atomic_write  # noqa: E402
from goaldriven.audio import cochleagram as coch  # noqa: E402
from tests.audio import numpy_cochleagram as ref  # noqa: E402

BATCH, TF_REPEATS, REF_CLIPS = 16, 2, 3
SR, ENV_SR, N_SAMPLES = 20000, 200, 40000


def _cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def _reference_clip(signal, filts):
    envs = ref.envelopes(signal, filts)
    return np.maximum(ref.downsample(envs, SR, ENV_SR), 0.0) ** 0.3


def main(out_path):
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((BATCH, N_SAMPLES)).astype(np.float32)
    filts, _ = ref.erb_filters(N_SAMPLES, SR, 50, 20, 8000, 4)
    began = time.perf_counter()
    expected = [_reference_clip(clips[i].astype(np.float64), filts) for i in range(REF_CLIPS)]
    ref_rate = REF_CLIPS / (time.perf_counter() - began)
    rows = [dict(implementation="numpy/scipy float64 reference, 1 clip at a time", clips_per_s=ref_rate, ratio=1.0)]
    x = tf.constant(clips)
    for oversample in (None, 4):
        for jit in (False, True):
            fn = tf.function(lambda w, ov=oversample: coch.cochleagram(w, envelope_oversample=ov), jit_compile=jit)
            out = fn(x).numpy()  # trace, compile, warm up
            began = time.perf_counter()
            for _ in range(TF_REPEATS):
                fn(x).numpy()
            rate = BATCH * TF_REPEATS / (time.perf_counter() - began)
            err = max(np.abs(out[i, :, :, 0] - expected[i]).max() for i in range(REF_CLIPS))
            mode = "exact" if oversample is None else f"envelope_oversample={oversample}"
            rows.append(
                dict(
                    implementation=f"tf {mode}, batch {BATCH}, jit_compile={jit}",
                    clips_per_s=rate,
                    ratio=rate / ref_rate,
                    max_abs_err_compressed=float(err),
                    max_rel_err_compressed=float(err / max(e.max() for e in expected)),
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    result = dict(
        cpu=_cpu_model(),
        cores=os.cpu_count(),
        python=platform.python_version(),
        tensorflow=tf.__version__,
        numpy=np.__version__,
        scipy=scipy.__version__,
        settings="2 s, 20 kHz -> 203 x 400 (clipped_point3)",
        target_ratio=20.0,
        rows=rows,
    )
    print(f"{'implementation':62s} {'clips/s':>8s} {'x ref':>7s} {'max|err|':>9s}")
    for row in rows:
        err = row.get("max_abs_err_compressed")
        print(
            f"{row['implementation']:62s} {row['clips_per_s']:8.2f} {row['ratio']:7.1f} "
            f"{'' if err is None else f'{err:9.1e}'}"
        )
    atomic_write.write_json(out_path, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results", "cochleagram.json"))
