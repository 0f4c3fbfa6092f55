"""The offline self-supervised default over seeds: SimCLR on the digits against the same network untrained.

For each seed: gin/experiments/digits_simclr__small_resnet8.gin trained (600 steps) and untrained (TRAIN_STEPS = 0),
each scored by the kNN monitor (k = 20 on the held-out digits, memory = the training digits) and by a linear probe
(gin/tasks/linear_eval_digits.gin: 400 steps on the frozen representation). Writes bench/results/ssl_digits.json and
prints a Markdown table (mean +- s.d. over seeds, per-seed values, wall time).

Usage: python bench/ssl_digits.py [--seeds 0 1 2] [--workdir /tmp/ssl_digits] [--output bench/results/ssl_digits.json]
"""

import argparse
import json
import os
import platform
import shutil
import time

import numpy as np

import gin
from goaldriven import atomic_write, cli_config, distribute
from goaldriven.tasks import loop

EXPERIMENT = "experiments/digits_simclr__small_resnet8.gin"
PROBE = "tasks/linear_eval_digits.gin"


def _run(files, bindings, workdir, strategy):
    cli_config.parse_gin_config(files, bindings, clear=True)
    try:
        return gin.get_configurable(loop.run)(strategy=strategy, workdir=workdir, log=lambda _: None)
    finally:
        gin.clear_config()


def one_seed(seed: int, root: str, strategy) -> dict:
    result = {}
    for label, steps in (("trained", None), ("untrained", 0)):
        ssl_dir = os.path.join(root, f"seed{seed}_{label}")
        bindings = [f"SEED = {seed}"] + ([] if steps is None else [f"TRAIN_STEPS = {steps}"])
        began = time.perf_counter()
        _run([EXPERIMENT], bindings, ssl_dir, strategy)
        train_seconds = time.perf_counter() - began
        with open(os.path.join(ssl_dir, "knn.json")) as f:
            knn = json.load(f)[-1]
        probe_dir = os.path.join(root, f"seed{seed}_{label}_probe")
        checkpoint = f"'{ssl_dir}'" if steps is None else "None"
        began = time.perf_counter()
        probe = _run([EXPERIMENT, PROBE], [f"SEED = {seed}", f"SSL_WORKDIR = {checkpoint}"], probe_dir, strategy)
        probe_seconds = time.perf_counter() - began
        result[label] = {
            "knn_top1": knn["knn_top1"],
            "knn_step": knn["step"],
            "linear_top1": probe["eval"]["top1"],
            "ssl_seconds": round(train_seconds, 1),
            "probe_seconds": round(probe_seconds, 1),
        }
        print(f"seed {seed} {label}: {result[label]}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="/tmp/goaldriven_ssl_digits")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "ssl_digits.json"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    strategy = distribute.get_strategy("cpu")
    began = time.perf_counter()
    seeds = {seed: one_seed(seed, args.workdir, strategy) for seed in args.seeds}
    summary = {}
    for label in ("trained", "untrained"):
        for metric in ("knn_top1", "linear_top1"):
            values = [seeds[s][label][metric] for s in args.seeds]
            summary[f"{label}_{metric}"] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1))
                                            if len(values) > 1 else 0.0, "per_seed": values}  # fmt: skip
    report = {
        "experiment": EXPERIMENT,
        "probe": PROBE,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "loadavg": os.getloadavg()},
        "seconds_total": round(time.perf_counter() - began, 1),
        "seeds": seeds,
        "summary": summary,
    }
    atomic_write.write_json(args.output, report)
    print("| network | kNN top-1 % (k = 20) | linear probe top-1 % | per seed (kNN; probe) |")
    print("| --- | --- | --- | --- |")
    for label in ("trained", "untrained"):
        knn, lin = summary[f"{label}_knn_top1"], summary[f"{label}_linear_top1"]
        per_seed = "; ".join(f"{100 * k:.2f}, {100 * p:.2f}" for k, p in zip(knn["per_seed"], lin["per_seed"]))
        print(f"| {label} | {100 * knn['mean']:.2f} ± {100 * knn['sd']:.2f} | {100 * lin['mean']:.2f} ± "
              f"{100 * lin['sd']:.2f} | {per_seed} |")  # fmt: skip
    print(f"total {report['seconds_total']:.0f} s; wrote {args.output}")


if __name__ == "__main__":
    main()
