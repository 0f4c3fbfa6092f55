"""Benchmark: the StreamNet-dual 64 px training step (supervised and SimCLR) against a PyTorch reference.

Reference: thesis Table 3.2 / spec ch3 A3.1 (the model), A4.8 (SimCLR); issue 14 "Numbers to report".

Measures, in one run and on this machine:
  * ours: the loop's compiled step (`tasks.train_step.build_train_loop`) of `zoo.build_model("streamnet_dual",
    image_size=64)` under `ImageClassificationTask` (cross-entropy + top-1/top-5, TF1 L2 5e-4 on the kernels) and
    `SimCLRTask` (the Chapter 3 head 2048-128, NT-Xent t = 0.1, backbone with num_classes=1 as in the SSL configs),
    SGD momentum 0.9 (also for SimCLR: LARS is not what is timed), in float32 and mixed_bfloat16, graph mode and
    jit_compile=True (XLA);
  * the reference: bench/torch_streamnet.py (the same network, head, loss and optimizer written in PyTorch, NCHW,
    float32 and bf16 autocast);
  * the machine's conv peak (bench/conv_peak.py, forward + both gradients of one conv) in float32 and bfloat16;
  * FLOPs per step counted analytically from the layer shapes: forward conv + dense MACs x 2 x 3 (forward, input
    gradient, kernel gradient; the first conv's input gradient, which nobody computes, is counted too), and the
    fraction of the conv peak the step reaches.
Every step sees `--images` images (supervised: that batch; SimCLR: images / 2 pairs, both views in one pass). Data is
one fixed random batch on the device (the input pipeline is not timed).

Method: one long-lived worker process per (framework, precision) builds and warms up (2 steps) all its steps, then the
rounds interleave them: each round measures the conv peaks, then runs `--steps` cycles of one step of every
configuration in turn (round-robin at step granularity), so every configuration sees the same load swings; ratios are taken within a round and the summary reports medians over rounds
("torch_over_ours", from the per-round median steps), the same from the best steps ("torch_over_ours_best") and from
the median process CPU time per step ("torch_over_ours_cpu": less sensitive to other processes, but it counts
threads spinning at barriers).

Run it on a quiet machine: under contention from other processes PyTorch's OpenMP threads (static work split, spin
barriers) slow down 3-6x while TensorFlow's work-stealing pool slows down about 2x, which inflates the ratios; the
script warns when the load average before the run exceeds QUIET_LOAD and records the load of every round.

Usage: python -m bench.streamnet_step [--images 128] [--steps 5] [--rounds 3] [--modes graph,xla]
       [--out bench/results/streamnet_step.json]
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench import conv_peak
from goaldriven import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZE = 64
KINDS = ("supervised", "simclr")
PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}  # ours -> the conv peak's dtype
TARGET_SPEEDUP = 1.5
QUIET_LOAD = 0.5  # 1-minute load average above which the run is flagged as contended


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def forward_macs(kind: str, size: int = SIZE, num_classes: int = 1000) -> dict:
    """Multiply-adds of one image's forward pass, per layer group, from the StreamNet-dual layer shapes."""
    macs = {}
    s = conv_out(size, 11, 4, 2)  # VISp conv: 64 -> 15
    macs["VISp_conv11"] = s * s * 64 * 11 * 11 * 3
    s = conv_out(s, 3, 2, 0)  # pool: 7
    t = conv_out(conv_out(s, 5, 1, 2), 3, 2, 0)  # stream conv5 (7) then pool: 3
    macs["streams_conv5"] = 2 * s * s * 192 * 5 * 5 * 64
    macs["streams_conv3"] = 2 * t * t * 384 * 3 * 3 * 192
    d = conv_out(s, 3, 2, 0)  # skip: 7 -> 3
    macs["deep_skip_conv3s2"] = 2 * d * d * 256 * 3 * 3 * 64
    macs["deep_stream_conv3"] = 2 * 2 * t * t * 256 * 3 * 3 * 384
    width = 2 * 256 * 6 * 6  # 18432
    if kind == "supervised":
        macs["classifier"] = width * num_classes
    else:
        macs["head"] = width * 2048 + 2048 * 128
    return macs


def step_flops(kind: str, images: int) -> float:
    """FLOPs of one training step: forward MACs x 2 (multiply-add) x 3 (forward, input and kernel gradients)."""
    return 2 * 3 * images * sum(forward_macs(kind).values())


# ---------------------------------------------------------------------------------------------------------- workers


def _ours_steps(precision: str, images: int, modes: list[str], inter_op: int = 1) -> dict:
    """{config: run_one_step} for our steps in one precision (built and warmed up)."""
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf

    from goaldriven.models import zoo
    from goaldriven.tasks import image_classification, train_step
    from goaldriven.tasks.self_supervised import simclr

    tf.config.threading.set_inter_op_parallelism_threads(inter_op)  # 1: on 2 cores concurrent convs only contend
    keras.mixed_precision.set_global_policy(precision)
    strategy = tf.distribute.get_strategy()
    steps = {}
    for kind in KINDS:
        for mode in modes:
            keras.utils.set_random_seed(0)
            if kind == "supervised":
                task = image_classification.ImageClassificationTask(
                    model_fn=lambda: zoo.build_model("streamnet_dual", image_size=SIZE), dataset=_FixedImages()
                )
            else:
                task = simclr.SimCLRTask(
                    backbone_fn=lambda: zoo.build_model("streamnet_dual", num_classes=1, image_size=SIZE),
                    feature="pool",
                    dataset=_FixedViews(),
                )
            model = task.build_model()
            optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
            train, _ = train_step.build_train_loop(
                task, model, optimizer, strategy, hooks=task.hooks(), jit_compile=mode == "xla"
            )
            batch = images if kind == "supervised" else images // 2
            data = iter(task.train_dataset(global_batch_size=batch, input_context=None, start_step=0, seed=0))
            one = tf.constant(1)
            steps[f"{kind}_{mode}"] = lambda train=train, data=data, one=one: float(train(data, one)["loss"])
            params = sum(int(tf.size(v)) for v in model.trainable_variables)
            print(f"built {kind} {mode} {precision}: {params} trainable parameters", file=sys.stderr, flush=True)
    return steps


class _FixedImages:
    """Classification data: one fixed random batch of 64 px images, repeated."""

    image_size, num_classes = SIZE, 1000

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        del input_context, start_step
        images = tf.random.stateless_normal([global_batch_size, SIZE, SIZE, 3], [seed, 0])
        labels = tf.random.stateless_uniform([global_batch_size], [seed, 1], maxval=1000, dtype=tf.int32)
        return tf.data.Dataset.from_tensors({"images": images, "labels": labels}).repeat()

    def eval_dataset(self, *, global_batch_size, input_context):
        raise NotImplementedError("the benchmark does not evaluate")

    def num_eval_examples(self):
        return 0


class _FixedViews:
    """SSL data: one fixed random batch of two 64 px views per example, repeated."""

    image_size, pixel_mean, pixel_std = SIZE, 0.0, 1.0

    def num_train_examples(self):
        return 1_281_167

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        del input_context, start_step
        views = tf.random.stateless_normal([global_batch_size, 2, SIZE, SIZE, 3], [seed, 1])
        batch = {
            "views": views,
            "labels": tf.zeros([global_batch_size], tf.int32),
            "index": tf.range(global_batch_size, dtype=tf.int64),
        }
        return tf.data.Dataset.from_tensors(batch).repeat()


def _torch_steps(precision: str, images: int) -> dict:
    import torch  # pylint: disable=g-import-not-at-top

    from bench import torch_streamnet

    torch.set_num_threads(os.cpu_count())
    bf16 = precision == "mixed_bfloat16"
    return {kind: torch_streamnet.make_step(kind, images, SIZE, bf16=bf16)[0] for kind in KINDS}


def worker(framework: str, precision: str, images: int, modes: list[str], inter_op: int) -> None:
    """Builds and warms up the steps, then serves {"config", "steps"} requests on stdin with {"times"} on stdout."""
    if framework == "ours":
        steps = _ours_steps(precision, images, modes, inter_op)
    else:
        steps = _torch_steps(precision, images)
    for step in steps.values():
        for _ in range(2):
            step()
    print(json.dumps({"ready": sorted(steps)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        times, cpu = [], []
        for _ in range(request["steps"]):
            began, began_cpu = time.perf_counter(), time.process_time()
            steps[request["config"]]()
            times.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
        print(json.dumps({"times": times, "cpu": cpu}), flush=True)


class _Worker:
    def __init__(self, framework: str, precision: str, images: int, modes: list[str], inter_op: int):
        command = [sys.executable, "-m", "bench.streamnet_step", "--images", str(images), "--modes", ",".join(modes),
                   "--inter-op-threads", str(inter_op), "--worker", framework, precision]  # fmt: skip
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.configs = self._read()["ready"]

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.proc.args[-2:]} died (exit {self.proc.wait()}); see its stderr")
            if line.startswith("{"):
                return json.loads(line)

    def time(self, config: str, steps: int) -> tuple[list[float], list[float]]:
        """(wall seconds, process CPU seconds) of `steps` steps of `config`."""
        self.proc.stdin.write(json.dumps({"config": config, "steps": steps}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        return answer["times"], answer["cpu"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# ------------------------------------------------------------------------------------------------------------- main


def _round(workers: dict, steps: int, images: int) -> dict:
    peaks = {dtype: conv_peak.run(dtype, reps=3) for dtype in PRECISIONS.values()}
    out = {"conv_peak_gflops": {dtype: peak["peak_gflops"] for dtype, peak in peaks.items()}, "runs": {}}
    out["loadavg_start"] = os.getloadavg()
    configs = [(f, p, config) for (f, p), work in workers.items() for config in work.configs]
    times, cpu = {c: [] for c in configs}, {c: [] for c in configs}
    for _ in range(steps):  # round-robin, one step at a time: every configuration sees the same load swings
        for c in configs:
            time.sleep(0.1)  # lets the previous worker's spinning threads go to sleep
            wall, used = workers[c[:2]].time(c[2], 1)
            times[c] += wall
            cpu[c] += used
    for (framework, precision, config), seconds_all in times.items():
        seconds = statistics.median(seconds_all)
        flops = step_flops(config.split("_")[0], images)
        peak = out["conv_peak_gflops"][PRECISIONS[precision]]
        out["runs"][f"{framework}_{config}_{precision}"] = {
            "step_seconds": seconds,
            "best_step_seconds": min(seconds_all),
            "step_seconds_all": seconds_all,
            "cpu_seconds": statistics.median(cpu[framework, precision, config]),
            "images_per_second": images / seconds,
            "achieved_gflops": flops / seconds / 1e9,
            "fraction_of_conv_peak": flops / seconds / 1e9 / peak,
        }
    for precision in PRECISIONS:
        for kind in KINDS:
            reference = out["runs"].get(f"torch_{kind}_{precision}")
            for mode in ("graph", "xla"):
                ours = out["runs"].get(f"ours_{kind}_{mode}_{precision}")
                if reference and ours:
                    ours["torch_over_ours"] = reference["step_seconds"] / ours["step_seconds"]
                    ours["torch_over_ours_best"] = reference["best_step_seconds"] / ours["best_step_seconds"]
                    ours["torch_over_ours_cpu"] = reference["cpu_seconds"] / ours["cpu_seconds"]
    out["loadavg_end"] = os.getloadavg()
    return out


def _summarise(rounds: list[dict]) -> dict:
    med = statistics.median
    names = rounds[0]["runs"]
    keys = (
        "step_seconds",
        "best_step_seconds",
        "images_per_second",
        "achieved_gflops",
        "fraction_of_conv_peak",
        "cpu_seconds",
        "torch_over_ours",
        "torch_over_ours_best",
        "torch_over_ours_cpu",
    )
    summary = {
        name: {key: med(r["runs"][name][key] for r in rounds) for key in keys if key in rounds[0]["runs"][name]}
        for name in names
    }
    summary["conv_peak_gflops"] = {d: med(r["conv_peak_gflops"][d] for r in rounds) for d in PRECISIONS.values()}
    best = [summary[f"ours_{k}_{m}_float32"]["torch_over_ours"] for k in KINDS for m in ("graph",) if
            f"ours_{k}_{m}_float32" in summary]  # fmt: skip
    summary["float32_graph_target_met"] = bool(best) and min(best) >= TARGET_SPEEDUP
    return summary


def _print_round(index: int, rnd: dict) -> None:
    peaks = ", ".join(f"{d} {v:.0f}" for d, v in rnd["conv_peak_gflops"].items())
    print(f"round {index + 1}: conv peak GFLOP/s {peaks}", flush=True)
    for name, run in rnd["runs"].items():
        ratio = (
            f", torch/ours {run['torch_over_ours']:.2f}x (best steps {run['torch_over_ours_best']:.2f}x, CPU time "
            f"{run['torch_over_ours_cpu']:.2f}x)"
            if "torch_over_ours" in run
            else ""
        )
        print(
            f"  {name}: {1e3 * run['step_seconds']:.0f} ms/step, {run['images_per_second']:.0f} images/s, "
            f"{run['achieved_gflops']:.0f} GFLOP/s = {run['fraction_of_conv_peak']:.0%} of the conv peak{ratio}",
            flush=True,
        )


def _version(package: str) -> str | None:
    """Installed version of `package` (TensorFlow: whichever of its distributions is installed), or None."""
    for name in (package, f"{package}-cpu", f"{package}_cpu") if package == "tensorflow" else (package,):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "streamnet_step.json"))
    parser.add_argument("--images", type=int, default=128, help="images through the network per step (SimCLR: /2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration and round (median)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="graph,xla", help="ours: graph, xla (jit_compile=True) or both")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--inter-op-threads", type=int, default=1, help="ours: TensorFlow inter-op threads")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    modes = args.modes.split(",")
    if args.worker:
        worker(*args.worker, args.images, modes, args.inter_op_threads)
        return
    if args.images % 2:
        raise ValueError(f"--images must be even (SimCLR runs images / 2 pairs). Received: {args.images}")
    precisions = args.precisions.split(",")
    load_before = os.getloadavg()
    if load_before[0] > QUIET_LOAD:
        print(f"warning: load average {load_before[0]:.1f} before the run: other work shares the cores; PyTorch's "
              "OpenMP threads slow down far more than TensorFlow's under contention, which inflates the ratios")  # fmt: skip
    frameworks = ("ours",) if args.no_torch else ("ours", "torch")
    workers = {(f, p): _Worker(f, p, args.images, modes, args.inter_op_threads) for p in precisions for f in frameworks}
    result = {
        "machine": {"platform": platform.platform(), "processor": conv_peak.cpu_model(), "cpus": os.cpu_count()},
        "versions": {name: _version(name) for name in ("tensorflow", "keras", "torch")},
        "inter_op_threads": args.inter_op_threads,
        "loadavg_before": load_before,
        "images_per_step": args.images,
        "image_size": SIZE,
        "steps_per_measurement": args.steps,
        "forward_macs_per_image": {kind: forward_macs(kind) for kind in KINDS},
        "gflop_per_step": {kind: step_flops(kind, args.images) / 1e9 for kind in KINDS},
        "method": "long-lived workers (one per framework and precision), 2 warm-up steps each; every round measures "
        "the conv peaks then each configuration back to back; ratios within a round; summary = medians over rounds",
        "rounds": [],
    }
    try:
        for index in range(args.rounds):
            result["rounds"].append(_round(workers, args.steps, args.images))
            _print_round(index, result["rounds"][-1])
    finally:
        for work in workers.values():
            work.close()
    result["median"] = _summarise(result["rounds"])
    result["loadavg_end"] = os.getloadavg()
    atomic_write.write_json(args.out, result)
    print(json.dumps(result["median"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
