"""Benchmark: the machine's peak convolution throughput in TensorFlow (GFLOP/s), float32 and bfloat16.

The roofline of bench/streamnet_step.py. Each shape is timed as one training conv: forward, input gradient and kernel
gradient of a stride-1 "SAME" conv (3 x forward FLOPs; multiply-add = 2 FLOPs), compiled with tf.function (graph
mode: TensorFlow's oneDNN kernels; XLA's CPU convolutions are slower here, see README "Benchmarks"), best of `reps`
after a warm-up. Shapes: large 3x3 convs (the usual peak) and the StreamNet's own largest layers at batch 128
(conv 5x5 64 -> 192 on 7x7, conv 3x3 384 -> 256 on 3x3). Peak = the best shape. Every dtype runs in its own process.

With --torch, the same convs are timed in PyTorch too (NCHW; bf16 via autocast): both frameworks call oneDNN, so this
shows how far a framework-level speed-up of a conv-bound step can go.

Usage: python -m bench.conv_peak [--out bench/results/conv_peak.json] [--reps 5] [--torch]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from goaldriven import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# name: (batch, height = width, kernel, in channels, out channels)
SHAPES = {
    "conv3x3_56x56_64->64_b32": (32, 56, 3, 64, 64),
    "conv3x3_28x28_128->128_b64": (64, 28, 3, 128, 128),
    "conv3x3_14x14_256->256_b64": (64, 14, 3, 256, 256),
    "streamnet_conv5x5_7x7_64->192_b128": (128, 7, 5, 64, 192),
    "streamnet_conv3x3_3x3_384->256_b128": (128, 3, 3, 384, 256),
}


def measure(dtype_name: str, reps: int = 5, shapes: dict = None) -> dict:
    """GFLOP/s of each shape's forward + both gradients in `dtype_name` (float32 or bfloat16), and the best."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    tf.config.threading.set_inter_op_parallelism_threads(1)  # the benchmark steps use the same setting
    dtype = getattr(tf, dtype_name)
    out = {}
    for name, (b, h, k, cin, cout) in (shapes or SHAPES).items():
        x = tf.cast(tf.random.normal([b, h, h, cin]), dtype)
        w = tf.Variable(tf.cast(tf.random.normal([k, k, cin, cout]) * 0.05, dtype))

        @tf.function
        def conv_step(x, w=w):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, "SAME"), tf.float32))
            gx, gw = tape.gradient(loss, [x, w])
            return tf.reduce_sum(tf.cast(gx, tf.float32)) + tf.reduce_sum(tf.cast(gw, tf.float32))

        float(conv_step(x))
        times = []
        for _ in range(reps):
            began = time.perf_counter()
            float(conv_step(x))
            times.append(time.perf_counter() - began)
        out[name] = 3 * 2 * b * h * h * k * k * cin * cout / min(times) / 1e9
    return {"gflops_by_shape": out, "peak_gflops": max(out.values())}


def measure_torch(dtype_name: str, reps: int = 5, shapes: dict = None) -> dict:
    """The same convs in PyTorch (NCHW, bf16 through autocast), for a kernel-by-kernel comparison."""
    import torch  # pylint: disable=g-import-not-at-top

    torch.set_num_threads(os.cpu_count())
    bf16 = dtype_name == "bfloat16"
    out = {}
    for name, (b, h, k, cin, cout) in (shapes or SHAPES).items():
        x = torch.randn(b, cin, h, h, requires_grad=True)
        conv = torch.nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)

        def conv_step(x=x, conv=conv):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = conv(x).float().sum()
            loss.backward()

        conv_step()
        times = []
        for _ in range(reps):
            began = time.perf_counter()
            conv_step()
            times.append(time.perf_counter() - began)
        out[name] = 3 * 2 * b * h * h * k * k * cin * cout / min(times) / 1e9
    return {"gflops_by_shape": out, "peak_gflops": max(out.values())}


def run(dtype_name: str, reps: int = 5, framework: str = "tf") -> dict:
    """`measure` in a fresh process (run from the repository root)."""
    command = [sys.executable, "-m", "bench.conv_peak", "--reps", str(reps), "--worker", framework, dtype_name]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"conv peak ({dtype_name}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "conv_peak.json"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="also time the same convs in PyTorch")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, dtype = args.worker
        print(json.dumps((measure if framework == "tf" else measure_torch)(dtype, args.reps)))
        return
    result = {
        "machine": {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count()},
        "method": "forward + input gradient + kernel gradient of one conv (3 x 2 x MACs), tf.function, best of reps",
    }
    for dtype in ("float32", "bfloat16"):
        result[dtype] = run(dtype, args.reps)
        shapes = ", ".join(f"{k} {v:.0f}" for k, v in result[dtype]["gflops_by_shape"].items())
        print(f"{dtype}: peak {result[dtype]['peak_gflops']:.0f} GFLOP/s ({shapes})", flush=True)
        if args.torch:
            result[f"torch_{dtype}"] = run(dtype, args.reps, "torch")
            shapes = ", ".join(f"{k} {v:.0f}" for k, v in result[f"torch_{dtype}"]["gflops_by_shape"].items())
            print(f"  PyTorch {dtype}: {shapes}", flush=True)
    result["loadavg_end"] = os.getloadavg()
    atomic_write.write_json(args.out, result)
    print(f"wrote {args.out}")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
