"""Benchmark: full-size path-integrator training step (4096 units, 512 place cells, batch 200, T = 20).

Measures, in one run and on this machine:
  * the machine's matmul throughput (GFLOP/s) in float32 and bfloat16, over the shapes the step uses (peak = best);
  * our training step (the loop's compiled step: data, forward, loss, backward, Adam) for the 2-layer RNN (the
    reference architecture) in float32 and mixed_bfloat16, and optionally the UGRNN (the thesis' best model);
  * the reference PyTorch implementation's step (bench/torch_reference.py), when torch is installed;
  * FLOPs per step counted analytically (matmuls only, multiply-add = 2 FLOPs), the fraction of the matmul roofline
    reached, and peak memory (TensorFlow allocator peak during one step, and process peak RSS).
Every configuration runs in its own subprocess so memory figures and dtype policies do not mix.

The machine is shared and noisy (single measurements vary by +-15%), so the measurements run in interleaved rounds
and every ratio is taken within a round; the JSON keeps every round and reports medians.

Usage: python bench/path_integration.py [--out bench/results/path_integration.json] [--steps 3] [--rounds 3] [--ugrnn]
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import time

import step_timing  # bench/step_timing.py (scripts run from bench/)

from goaldriven import atomic_write

N_UNITS, N_PLACE, BATCH, SEQ = 4096, 512, 200, 20
REFERENCE_FIGURE_S = 2.9  # ../shared/DEPENDENCIES.md: reference PyTorch step on this kind of machine, float32
HERE = os.path.dirname(os.path.abspath(__file__))


def step_flops(kind: str, n: int = N_UNITS, p: int = N_PLACE, b: int = BATCH, t: int = SEQ, d: int = 2) -> float:
    """Matmul FLOPs of one training step (forward + input and weight gradients; no input gradient of the data)."""
    readout = 3 * 2 * t * b * n * p  # forward, dG, dW
    encoder = 2 * 2 * b * p * n  # forward, dE
    if kind == "rnn":
        return 3 * t * 2 * b * n * n + readout + encoder + 2 * 2 * t * b * d * n
    if kind == "ugrnn":
        cell = 3 * t * 2 * b * (2 * n) * (2 * n)  # [x; h] (b, 2n) @ W (2n, 2n) per step
        g_dense = 3 * 2 * t * b * n * n
        return cell + g_dense + readout + encoder + 2 * 2 * t * b * d * n
    raise ValueError(kind)


def matmul_peak(dtype_name: str, reps: int = 5) -> dict:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    dtype = getattr(tf, dtype_name)
    shapes = {
        "square_4096": (4096, 4096, 4096),
        "recurrent_200x4096x4096": (200, 4096, 4096),
        "readout_4000x4096x512": (4000, 4096, 512),
        "weight_grad_4096x4000x4096": (4096, 4000, 4096),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a = tf.cast(tf.random.normal((m, k)), dtype)
        w = tf.cast(tf.random.normal((k, n)), dtype)
        fn = tf.function(lambda a, w: tf.reduce_sum(tf.cast(tf.matmul(a, w), tf.float32)))
        fn(a, w).numpy()
        times = []
        for _ in range(reps):
            began = time.perf_counter()
            fn(a, w).numpy()
            times.append(time.perf_counter() - began)
        out[name] = 2 * m * k * n / min(times) / 1e9
    return {"gflops_by_shape": out, "peak_gflops": max(out.values())}


def ours(kind: str, precision: str, steps: int) -> dict:
    import functools  # pylint: disable=g-import-not-at-top

    import keras
    import tensorflow as tf

    from goaldriven import fused_optimizers
    from goaldriven.models import path_integrators
    from goaldriven.tasks import path_integration

    tf.config.threading.set_inter_op_parallelism_threads(1)  # 2 cores: concurrent matmuls only contend
    keras.mixed_precision.set_global_policy(precision)
    task = path_integration.PathIntegrationTask(
        model_fn=functools.partial(path_integrators.build_path_integrator, kind=kind, units=N_UNITS)
    )
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = task.build_model()
        optimizer = fused_optimizers.Adam(1e-4)  # as gin/tasks/path_integration.gin binds it
        optimizer.build(model.trainable_variables)
    run_one_step, times, memory = step_timing.time_train_steps(
        task, model, optimizer, strategy, global_batch_size=BATCH, steps=steps
    )
    params = sum(int(tf.size(v)) for v in model.trainable_variables)
    profile = step_timing.op_profile(run_one_step)
    return {
        "op_profile": profile,
        "step_seconds": statistics.median(times),
        "step_seconds_all": times,
        "trainable_parameters": params,
        "tf_peak_memory_mb": memory["peak"] / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "path_integration.json"))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ours, reference, matmul peaks)")
    parser.add_argument("--ugrnn", action="store_true", help="also time the full-size UGRNN (about 10 s per step)")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        print(json.dumps(matmul_peak(*rest) if kind == "peak" else ours(kind, rest[0], args.steps)))
        return

    me = os.path.abspath(__file__)
    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch:
        print("torch not installed (pip install -e '.[bench]'): comparing with the 2.9 s figure only", flush=True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "shape": {"units": N_UNITS, "place_cells": N_PLACE, "global_batch_size": BATCH, "sequence_length": SEQ},
        "reference_figure_seconds": REFERENCE_FIGURE_S,
        "method": "interleaved rounds; each round measures the matmul peaks, ours (float32, mixed_bfloat16) and the "
        "reference back to back, so ratios compare like conditions; reported values are medians over rounds",
        "rounds": [],
    }
    for index in range(args.rounds):
        result["rounds"].append(_round(me, args.steps, has_torch))
        _print_round(index, result["rounds"][-1])
    result.update(_summarise(result["rounds"]))
    if args.ugrnn:  # informational: the thesis' best model at full size, one round
        peaks = result["rounds"][-1]["matmul"]
        result["ugrnn"] = {
            precision: _ours_with_roofline(me, "ugrnn", precision, args.steps, peaks) for precision in PRECISIONS
        }
        for precision, run in result["ugrnn"].items():
            _print_run(f"ugrnn {precision}", run)
    atomic_write.write_json(args.out, result)
    print(f"wrote {args.out}")


PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


def _ours_with_roofline(me: str, kind: str, precision: str, steps: int, peaks: dict) -> dict:
    run = step_timing.run_worker([me, "--steps", str(steps), "--worker", kind, precision])
    flops = step_flops(kind)
    roofline = flops / (peaks[PRECISIONS[precision]]["peak_gflops"] * 1e9)
    run.update(
        {
            "gflop_per_step": flops / 1e9,
            "achieved_gflops": flops / run["step_seconds"] / 1e9,
            "roofline_seconds": roofline,
            "step_over_roofline": run["step_seconds"] / roofline,
        }
    )
    return run


def _round(me: str, steps: int, has_torch: bool) -> dict:
    peaks = {dtype: step_timing.run_worker([me, "--worker", "peak", dtype]) for dtype in PRECISIONS.values()}
    out = {"matmul": peaks}
    for precision in PRECISIONS:
        out[f"rnn_{precision}"] = _ours_with_roofline(me, "rnn", precision, steps, peaks)
    if has_torch:
        torch_run = step_timing.run_worker([os.path.join(HERE, "torch_reference.py"), str(steps)])
        torch_run["gflop_per_step"] = (step_flops("rnn") + 2 * SEQ * BATCH * N_UNITS * (N_UNITS + N_PLACE)) / 1e9
        out["reference_torch"] = torch_run
    return out


def _print_run(label: str, run: dict) -> None:
    print(
        f"  ours {label}: {run['step_seconds']:.3f} s/step, {run['achieved_gflops']:.0f} GFLOP/s, "
        f"matmuls {run['op_profile']['matmul_share']:.0%} of op time, "
        f"{run['step_over_roofline']:.2f}x the matmul roofline ({run['roofline_seconds']:.3f} s), "
        f"TF peak memory {run['tf_peak_memory_mb']:.0f} MB, peak RSS {run['peak_rss_mb']:.0f} MB",
        flush=True,
    )


def _print_round(index: int, rnd: dict) -> None:
    print(f"round {index + 1}:", flush=True)
    for dtype, peak in rnd["matmul"].items():
        shapes = ", ".join(f"{k} {v:.0f}" for k, v in peak["gflops_by_shape"].items())
        print(f"  matmul {dtype}: peak {peak['peak_gflops']:.0f} GFLOP/s ({shapes})", flush=True)
    for precision in PRECISIONS:
        _print_run(f"rnn {precision}", rnd[f"rnn_{precision}"])
    if "reference_torch" in rnd:
        print(f"  reference PyTorch (two forward passes): {rnd['reference_torch']['step_seconds']:.3f} s/step")


def _summarise(rounds: list[dict]) -> dict:
    """Medians over rounds of the per-round figures and ratios, and the targets of the issue."""
    med = statistics.median
    summary = {"median": {}, "speedup": {}}
    for precision in PRECISIONS:
        runs = [r[f"rnn_{precision}"] for r in rounds]
        summary["median"][f"rnn_{precision}"] = {
            key: med(run[key] for run in runs)
            for key in ("step_seconds", "achieved_gflops", "step_over_roofline", "tf_peak_memory_mb", "peak_rss_mb")
        }
        speedup = {"vs_reference_figure": REFERENCE_FIGURE_S / summary["median"][f"rnn_{precision}"]["step_seconds"]}
        if all("reference_torch" in r for r in rounds):
            ratios = [r["reference_torch"]["step_seconds"] / r[f"rnn_{precision}"]["step_seconds"] for r in rounds]
            speedup.update({"vs_reference_same_run": med(ratios), "vs_reference_per_round": ratios})
        summary["speedup"][precision] = speedup
    if all("reference_torch" in r for r in rounds):
        summary["median"]["reference_torch_step_seconds"] = med(r["reference_torch"]["step_seconds"] for r in rounds)
    summary["targets"] = {
        "float32_speedup_at_least_1.5x": summary["speedup"]["float32"],
        "mixed_bfloat16_speedup_at_least_3x": summary["speedup"]["mixed_bfloat16"],
        "float32_step_over_roofline_at_most_1.3": summary["median"]["rnn_float32"]["step_over_roofline"],
    }
    for precision, values in summary["speedup"].items():
        shown = {k: v for k, v in values.items() if not isinstance(v, list)}
        print(f"median speed-up {precision}: " + ", ".join(f"{k} {v:.2f}x" for k, v in shown.items()))
    print(f"median float32 step / roofline: {summary['targets']['float32_step_over_roofline_at_most_1.3']:.2f}")
    return summary


if __name__ == "__main__":
    main()
