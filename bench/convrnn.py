"""Benchmark: ConvRNN training throughput against the machine's conv/matmul peak, and rematerialisation memory.

Measures, in one run and on this machine:
  * the machine's conv and matmul throughput (GFLOP/s, forward + both backward passes of a 3x3 conv over several map
    sizes, and square matmuls) in float32 and bfloat16; peak = the best shape;
  * training images/s of `rgc_shallow` and `rgc_intermediate` at 64 and 128 px (full width, 1000 classes, their
    training unrolls of 16 / 17 steps), float32 and mixed_bfloat16, and of the matching feedforward BaseNet unrolled
    once (`basenet6`, `basenet11`): the loop's compiled train step (SGD momentum, L2, data on device);
  * FLOPs per step counted from the traced forward graph (every Conv2D, depthwise conv, MatMul and einsum,
    multiply-add = 2 FLOPs) times 3 (forward, input gradient, weight gradient), and the fraction of the measured
    peak the step reaches;
  * peak memory of one `rgc_intermediate` training step (TensorFlow allocator peak, and process RSS) for 17 and 26
    unroll steps, without rematerialisation and with recomputed segments of 1 and 2 steps.
Every configuration runs in its own subprocess so memory figures and dtype policies do not mix. XLA is off: on CPU
TensorFlow's oneDNN kernels are faster than XLA's (bfloat16 convs run at about half speed under XLA here).

`--parts profile` profiles one rgc_intermediate mixed_bfloat16 step per size and batch (`--profile-batches`) and
prints where its op time goes (convolutions by pass, matmuls, optimizer, the rest; the largest op types).

Usage: python bench/convrnn.py [--out bench/results/convrnn.json] [--steps 3] [--batch 8] [--quick]
       [--parts throughput memory profile] [--profile-batches 8 32]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import time

import step_timing  # bench/step_timing.py (scripts run from bench/)

from goaldriven import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
PAIRS = {"rgc_shallow": "basenet6", "rgc_intermediate": "basenet11"}


def peak(dtype_name: str, reps: int = 5) -> dict:
    """Best GFLOP/s of 3x3 convs (forward + input and weight gradients) and of square matmuls in `dtype_name`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    dtype = getattr(tf, dtype_name)
    out = {}
    for h, c, b in ((56, 64, 16), (28, 128, 16), (14, 256, 16), (7, 512, 16)):
        x = tf.cast(tf.random.normal([b, h, h, c]), dtype)
        w = tf.Variable(tf.cast(tf.random.normal([3, 3, c, c]) * 0.05, dtype))

        @tf.function
        def conv_step(x, w=w):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, w, 1, "SAME"), tf.float32))
            gx, gw = tape.gradient(loss, [x, w])
            return tf.reduce_sum(tf.cast(gx, tf.float32)) + tf.reduce_sum(tf.cast(gw, tf.float32))

        out[f"conv3x3_{h}x{h}x{c}_b{b}"] = 3 * 2 * b * h * h * 9 * c * c / _best(lambda: conv_step(x), reps) / 1e9
    for n in (1024, 2048):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        mm = tf.function(lambda a: tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32)))
        out[f"matmul_{n}"] = 2 * n**3 / _best(lambda: mm(a), reps) / 1e9
    return {"gflops_by_shape": out, "peak_gflops": max(out.values())}


def _best(fn, reps: int) -> float:
    float(fn())
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        float(fn())
        times.append(time.perf_counter() - began)
    return min(times)


def forward_flops(model, images) -> float:
    """Conv/matmul FLOPs of one forward pass, read from the traced graph's static shapes."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf

    graph = tf.function(lambda x: model(x, training=True)["logits"]).get_concrete_function(images).graph
    total = 0.0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kh, kw, cin, _ = op.inputs[1].shape
            total += 2 * np.prod(op.outputs[0].shape) * kh * kw * cin
        elif op.type == "DepthwiseConv2dNative":
            kh, kw, _, _ = op.inputs[1].shape
            total += 2 * np.prod(op.outputs[0].shape) * kh * kw
        elif op.type in ("MatMul", "BatchMatMulV2"):
            a = op.inputs[0].shape
            k = a[-1] if not op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-2]
            total += 2 * np.prod(op.outputs[0].shape) * k
        elif op.type == "Einsum":
            # bilinear resizes: "Hh,bhwc,Ww->bHWc" costs about 2 * (b h W c) * w + 2 * (b H W c) * h
            total += 2 * np.prod(op.outputs[0].shape) * max(int(s.shape[-1]) for s in op.inputs)
    return float(total)


class _SyntheticImages:
    """A Task with fixed random images and labels (the benchmark times the model step, not the input pipeline)."""

    name = "synthetic_imagenet"
    metric_names = ()

    def __init__(self, model_fn, image_size: int, num_classes: int = 1000):
        self.model_fn, self.image_size, self.num_classes = model_fn, image_size, num_classes

    def build_model(self):
        return self.model_fn()

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        del input_context, start_step
        images = tf.random.stateless_normal([global_batch_size, self.image_size, self.image_size, 3], [seed, 0])
        labels = tf.random.stateless_uniform([global_batch_size], [seed, 1], maxval=self.num_classes, dtype=tf.int32)
        return tf.data.Dataset.from_tensors({"image": images, "label": labels}).repeat()

    def compute_loss(self, model, batch, *, training):
        import keras  # pylint: disable=g-import-not-at-top
        import tensorflow as tf

        logits = model(batch["image"], training=training)["logits"]
        loss = keras.losses.sparse_categorical_crossentropy(batch["label"], logits, from_logits=True)
        return tf.reduce_mean(loss), {}


def step(
    name: str, image_size: int, precision: str, batch: int, steps: int, times: int, remat: int, profile: bool = False
) -> dict:
    """Times the loop's train step of one model; returns seconds, images/s, FLOPs and peak memory (and, with
    `profile`, where one step's op time goes: step_timing.op_profile)."""
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf

    from goaldriven import fused_optimizers
    from goaldriven.models import convrnn_zoo

    tf.config.threading.set_inter_op_parallelism_threads(1)  # 2 cores: concurrent convs only contend
    keras.mixed_precision.set_global_policy(precision)
    length = "full" if times <= 0 else times
    task = _SyntheticImages(
        lambda: convrnn_zoo.build_convrnn(name, image_size=image_size, unroll_length=length, remat=remat), image_size
    )
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = task.build_model()
        optimizer = fused_optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(model.trainable_variables)
    run_one_step, seconds, memory = step_timing.time_train_steps(
        task, model, optimizer, strategy, global_batch_size=batch, steps=steps
    )
    images = tf.zeros([batch, image_size, image_size, 3])
    flops = 3 * forward_flops(model, images)
    median = statistics.median(seconds)
    extra = {"op_profile": step_timing.op_profile(run_one_step, top=12)} if profile else {}
    return {
        **extra,
        "model": name,
        "image_size": image_size,
        "precision": precision,
        "global_batch_size": batch,
        "times": model.times,
        "remat": remat,
        "trainable_parameters": sum(int(tf.size(v)) for v in model.trainable_variables),
        "step_seconds": median,
        "step_seconds_all": seconds,
        "images_per_second": batch / median,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / median / 1e9,
        "tf_peak_memory_mb": memory["peak"] / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "convrnn.json"))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (median reported)")
    parser.add_argument("--batch", type=int, default=8, help="global batch of the throughput runs")
    parser.add_argument("--memory-batch", type=int, default=4, help="global batch of the memory runs (128 px)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--quick", action="store_true", help="64 px only, 1 timed step (a smoke run)")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["throughput", "memory", "profile"],
        default=["throughput", "memory"],
        help="what to measure; a part not measured keeps its figures from an existing --out file",
    )
    parser.add_argument(
        "--profile-batches", type=int, nargs="+", default=[8, 32], help="global batches of the profile part"
    )
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "peak":
            print(json.dumps(peak(rest[0])))
        else:
            name, size, precision, batch, times, remat, profile = rest
            out = step(name, int(size), precision, int(batch), args.steps, int(times), int(remat), profile == "1")
            print(json.dumps(out))
        return
    if args.quick:
        args.sizes, args.steps = [64], 1
    me = os.path.abspath(__file__)

    def run(name, size, precision, batch, times=0, remat=0, profile=False):
        out = step_timing.run_worker(
            [me, "--steps", str(args.steps), "--worker", "step", name, str(size), precision, str(batch), str(times),
             str(int(remat)), str(int(profile))]
        )  # fmt: skip
        print(
            f"{name:18s} {size:4d}px {precision:15s} T={out['times']:2d} remat={remat} b={batch}: "
            f"{out['step_seconds']:.2f} s/step, {out['images_per_second']:.2f} img/s, "
            f"{out['achieved_gflops']:.0f} GFLOP/s, TF peak {out['tf_peak_memory_mb']:.0f} MB",
            flush=True,
        )
        return out

    result = {"peaks": {}, "throughput": [], "memory": [], "profile": []}
    if os.path.exists(args.out) and set(args.parts) != {"throughput", "memory", "profile"}:
        with open(args.out) as f:
            result = json.load(f)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}
    if "throughput" in args.parts:
        result["throughput"] = []
        for precision, dtype in PRECISIONS.items():
            result["peaks"][precision] = step_timing.run_worker([me, "--worker", "peak", dtype])
            print(f"peak {precision}: {result['peaks'][precision]['peak_gflops']:.0f} GFLOP/s", flush=True)
        for size in args.sizes:
            for precision in PRECISIONS:
                for rnn, ff in PAIRS.items():
                    r, f = run(rnn, size, precision, args.batch), run(ff, size, precision, args.batch)
                    peak_gflops = result["peaks"][precision]["peak_gflops"]
                    for entry in (r, f):
                        entry["fraction_of_peak"] = entry["achieved_gflops"] / peak_gflops
                    r["images_per_second_vs_basenet"] = r["images_per_second"] / f["images_per_second"]
                    result["throughput"] += [r, f]
        best = [
            t["fraction_of_peak"]
            for t in result["throughput"]
            if t["model"] == "rgc_intermediate" and t["precision"] == "mixed_bfloat16"
        ]
        result["rgc_intermediate_bf16_fraction_of_peak"] = max(best)
        print(f"rgc_intermediate mixed_bfloat16 reaches {max(best):.0%} of the bfloat16 peak (target 40%)")
    if "memory" in args.parts:
        result["memory"] = []
        for times in (17, 26):
            for remat in (0, 1, 2):  # 0: off; k: recompute segments of k steps
                result["memory"].append(run("rgc_intermediate", 128, "float32", args.memory_batch, times, remat))
        mem = {(m["times"], m["remat"]): m["tf_peak_memory_mb"] for m in result["memory"]}
        best = min(mem[(26, 1)], mem[(26, 2)])
        result["remat_target_met"] = best <= mem[(17, 0)]
        print(
            f"26 steps + remat {mem[(26, 1)]:.0f} MB (segments of 2: {mem[(26, 2)]:.0f} MB) vs 17 steps without "
            f"{mem[(17, 0)]:.0f} MB (target met: {result['remat_target_met']})"
        )
    if "profile" in args.parts:
        result["profile"] = [
            _profile_row(run("rgc_intermediate", size, "mixed_bfloat16", batch, profile=True), result["peaks"])
            for size in args.sizes
            for batch in args.profile_batches
        ]
    atomic_write.write_json(args.out, result)
    print(f"wrote {args.out}")


def _profile_row(out: dict, peaks: dict) -> dict:
    """Prints where a profiled step's op time goes (share of op time by kind, the top op types) and its fraction
    of the bfloat16 peak; returns the entry with that fraction."""
    prof, peak_gflops = out["op_profile"], peaks.get("mixed_bfloat16", {}).get("peak_gflops")
    if peak_gflops:
        out["fraction_of_peak"] = out["achieved_gflops"] / peak_gflops
    total = prof["op_seconds"]
    kinds = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(prof["kind_seconds"].items(), key=lambda kv: -kv[1]))
    print(f"  op time {total:.2f} s of a {out['step_seconds']:.2f} s step: {kinds}", flush=True)
    print("  top ops: " + ", ".join(f"{k} {v:.2f} s" for k, v in prof["top_ops"].items()), flush=True)
    return out


if __name__ == "__main__":
    main()
