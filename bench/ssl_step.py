"""Self-supervised training steps: SimCLR against PyTorch, LARS against SGD, the MoCo queue and IR bank writes.

Parts (all ResNet-18 v1 at 64 px with the objective's Chapter 3 head, synthetic fixed views outside the timed region,
the loop's own compiled step `tasks.train_step.build_train_loop`, median of --steps steps after 2 warm-up steps):
  simclr  SimCLR (NT-Xent t = 0.1, head 2048-128, SGD momentum 0.9) in float32 and mixed_bfloat16 (with --xla also
          under XLA, which the CPU backend runs 12x slower), against bench/torch_ssl_reference.py (the same model, loss and optimizer in PyTorch, float32 and bf16
          autocast) run in the same invocation. Target: ours >= 1.5x faster than PyTorch in float32.
  lars    the same SimCLR step with LARS (goaldriven.optimizers) against SGD with momentum. Target: <= 1.10x.
  memory  MoCo v2 (queue 65,536 x 128) and instance recognition (bank 1,281,167 x 128, 4096 negatives) steps with and
          without their hook's write, the write alone, and the bank's memory (bytes and RSS growth on creation).
          Target: write < 5% of the step.
Writes bench/results/ssl_step.json.

Usage: python bench/ssl_step.py [--batch 256] [--steps 5] [--parts simclr,lars,memory] [--output ...]
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from goaldriven import atomic_write, optimizers
from goaldriven.models import zoo
from goaldriven.tasks import train_step
from goaldriven.tasks.self_supervised import instance_recognition, moco, simclr

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGENET_TRAIN = 1_281_167


@dataclasses.dataclass(frozen=True)
class FixedViews:
    """An SSL dataset of one fixed random batch, repeated (the data cost is not what is measured)."""

    image_size: int
    views: int
    examples: int = IMAGENET_TRAIN
    pixel_mean: float = 0.0
    pixel_std: float = 1.0

    @property
    def views_per_example(self) -> int:
        return self.views

    def num_train_examples(self) -> int:
        return self.examples

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        del input_context, start_step
        s = self.image_size
        views = tf.random.stateless_normal([global_batch_size, self.views, s, s, 3], [seed, 1])
        index = tf.random.stateless_uniform([global_batch_size], [seed, 2], 0, self.examples, dtype=tf.int64)
        batch = {"views": views, "labels": tf.zeros([global_batch_size], tf.int32), "index": index}
        return tf.data.Dataset.from_tensors(batch).repeat()


def _backbone(size):
    return lambda: zoo.build_model("resnet18_v1", num_classes=1, image_size=size)


def time_task(task, optimizer, *, batch, steps, jit, hooks=None):
    """Median seconds per step of `task` through the loop's compiled step (2 warm-up steps)."""
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    model = task.build_model()
    train, _ = train_step.build_train_loop(
        task, model, optimizer, strategy, hooks=task.hooks() if hooks is None else hooks, jit_compile=jit
    )
    data = iter(task.train_dataset(global_batch_size=batch, input_context=None, start_step=0, seed=0))
    for _ in range(2):
        float(train(data, tf.constant(1))["loss"])
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        float(train(data, tf.constant(1))["loss"])
        times.append(time.perf_counter() - began)
    return float(np.median(times)), times


def _simclr(size, views_data=None):
    return simclr.SimCLRTask(backbone_fn=_backbone(size), feature="pool", dataset=views_data or FixedViews(size, 2))


def part_simclr(args) -> dict:
    out = {}
    for precision in ("float32", "mixed_bfloat16"):
        for jit in (False, True) if args.xla else (False,):
            keras.mixed_precision.set_global_policy(precision)
            median, times = time_task(
                _simclr(args.size), keras.optimizers.SGD(0.1, momentum=0.9), batch=args.batch, steps=args.steps, jit=jit
            )
            out[f"ours_{precision}_{'xla' if jit else 'graph'}"] = {"median_s": median, "times_s": times}
            print(f"simclr ours {precision} jit={jit}: {median:.3f} s/step", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    for bf16 in (False, True):
        # -P: bench/ stays off the child's sys.path (only PyTorch and the reference script are needed there).
        command = [sys.executable, "-P", os.path.join(HERE, "torch_ssl_reference.py"), "--batch", str(args.batch),
                   "--size", str(args.size), "--steps", str(args.steps)] + (["--bf16"] if bf16 else [])  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode:
            out[f"torch_{'bf16' if bf16 else 'float32'}"] = {"error": proc.stderr[-500:]}
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        out[f"torch_{'bf16' if bf16 else 'float32'}"] = result
        print(f"simclr torch bf16={bf16}: {result['step_seconds_median']:.3f} s/step", flush=True)
    ours = min(value["median_s"] for key, value in out.items() if key.startswith("ours_float32"))
    if "step_seconds_median" in out.get("torch_float32", {}):
        out["speedup_float32_vs_torch"] = out["torch_float32"]["step_seconds_median"] / ours
    return out


def part_lars(args) -> dict:
    out = {}
    for name, make in (("sgd_momentum", lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
                       ("lars", lambda: optimizers.LARS(0.1, momentum=0.9, weight_decay=1e-6))):  # fmt: skip
        median, times = time_task(_simclr(args.size), make(), batch=args.batch, steps=args.steps, jit=args.lars_jit)
        out[name] = {"median_s": median, "times_s": times}
        print(f"lars part {name}: {median:.3f} s/step", flush=True)
    out["lars_over_sgd"] = out["lars"]["median_s"] / out["sgd_momentum"]["median_s"]
    out["jit_compile"] = args.lars_jit
    return out


class _NoEnqueue(moco.MomentumEncoder):
    def after_replica_step(self, ctx, phase, substep):
        del ctx, phase, substep


class _NoBankWrite(instance_recognition.MemoryBank):
    def after_replica_step(self, ctx, phase, substep):
        del ctx, phase, substep


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_memory(args) -> dict:
    out = {}
    size, batch = args.size, args.batch
    opt = lambda: keras.optimizers.SGD(0.1, momentum=0.9)  # noqa: E731
    # MoCo: the step with and without the queue write.
    for label, writes in (("with_write", True), ("without_write", False)):
        task = moco.MoCoTask(backbone_fn=_backbone(size), feature="pool", dataset=FixedViews(size, 2), queue_size=65536)
        if not writes:
            task.memory.__class__ = _NoEnqueue
        median, times = time_task(task, opt(), batch=batch, steps=args.steps, jit=False)
        out[f"moco_{label}"] = {"median_s": median, "times_s": times}
        print(f"moco {label}: {median:.3f} s/step", flush=True)
    memory = moco.MomentumEncoder(lambda: None, queue_size=65536)
    memory.queue = tf.Variable(tf.zeros([65536, 128]))
    memory.pointer = tf.Variable(0)
    keys = tf.random.normal([batch, 128])
    enqueue = tf.function(memory.enqueue)
    out["moco_enqueue_alone_s"] = _time_fn(lambda: enqueue(keys))
    # IR: the bank's memory, the step with and without the bank write, the write alone.
    before = _rss_mb()
    bank = instance_recognition.MemoryBank(IMAGENET_TRAIN)
    state = type("State", (), {"seed": 0})
    bank.build(state)
    out["ir_bank_bytes_per_replica"] = int(np.prod(bank.bank.shape)) * 4
    out["ir_bank_rss_growth_mb"] = _rss_mb() - before
    index = tf.random.uniform([batch], 0, IMAGENET_TRAIN, dtype=tf.int64)
    z = tf.math.l2_normalize(tf.random.normal([batch, 128]), axis=1)
    update = tf.function(bank.update)
    out["ir_update_alone_s"] = _time_fn(lambda: update(index, z))
    bank = update = None  # frees the 656 MB bank before the training steps
    for label, writes in (("with_write", True), ("without_write", False)):
        task = instance_recognition.InstanceRecognitionTask(
            backbone_fn=_backbone(size), feature="pool", dataset=FixedViews(size, 1)
        )
        if not writes:
            task.memory.__class__ = _NoBankWrite
        median, times = time_task(task, opt(), batch=batch, steps=args.steps, jit=False)
        out[f"ir_{label}"] = {"median_s": median, "times_s": times}
        print(f"ir {label}: {median:.3f} s/step", flush=True)
    for name in ("moco", "ir"):
        out[f"{name}_write_fraction_of_step"] = (
            out[f"{name}_with_write"]["median_s"] - out[f"{name}_without_write"]["median_s"]
        ) / out[f"{name}_without_write"]["median_s"]
    out["moco_enqueue_alone_fraction"] = out["moco_enqueue_alone_s"] / out["moco_without_write"]["median_s"]
    out["ir_update_alone_fraction"] = out["ir_update_alone_s"] / out["ir_without_write"]["median_s"]
    out["moco_queue_bytes_per_replica"] = 65536 * 128 * 4
    return out


def _time_fn(fn, repeats=20) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images per step (SimCLR: 2x views)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--parts", default="simclr,lars,memory")
    parser.add_argument("--lars_jit", action="store_true", help="time the LARS/SGD comparison under XLA")
    parser.add_argument(
        "--xla", action="store_true", help="also time the SimCLR step under XLA (on this CPU: 32 s/step, 12x slower)"
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results", "ssl_step.json"))
    args = parser.parse_args()
    report = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "tensorflow": tf.__version__,
                    "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()},
        "batch_images": args.batch, "image_size": args.size, "steps": args.steps,
    }  # fmt: skip
    parts = {"simclr": part_simclr, "lars": part_lars, "memory": part_memory}
    if os.path.exists(args.output):  # parts not rerun keep their earlier figures
        with open(args.output) as f:
            report = {**json.load(f), **report}
    for name in args.parts.split(","):
        report[name] = parts[name](args)
    report["loadavg_end"] = os.getloadavg()
    atomic_write.write_json(args.output, report)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1, default=str)[:3000])


if __name__ == "__main__":
    main()
