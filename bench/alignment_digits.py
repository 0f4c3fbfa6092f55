"""Small-scale thesis Table 5.4 (and the local rules of Table 5.3) on the digits: top-1 of every learning rule.

Trains `small_resnet8` (goaldriven/models/small_resnets.py) on scikit-learn's embedded digits
(goaldriven/tasks/digits.py) under backprop, feedback alignment, weight mirror, information alignment in both
namings of Table 5.5 (spec A2), symmetric alignment, activation alignment and Kolen-Pollack, over several seeds, with
the experiment file gin/experiments/digits__small_resnet8.gin and `goaldriven.tasks.loop.run`. Every rule gets the
same task training (the experiment file: Nesterov SGD 0.9, warm-up + cosine, same steps) and the same alignment
optimizer (Adam 1e-3, simultaneous, no delay: thesis Section 5.9.2); each rule keeps its thesis coefficients
(goaldriven/alignment/rules.py defaults). Nothing is tuned per rule.

Per run it records the test top-1 (every held-out image once), the median over layers of the final weight angle
angle(B, W^T) (alignment/diagnostics.weight_angles; 0 degrees = backprop), the median norm ratio ||B|| / ||W|| and the
wall and CPU time of loop.run (compile + train + evaluation). Runs go to subprocesses (one TF runtime each, `--jobs` at a time,
the cores split between them). Writes --out (JSON) and the same name with .md (the table).

  python bench/alignment_digits.py --seeds 0 1 2 --out bench/results/alignment_digits.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = os.path.join(REPO, "gin", "experiments", "digits__small_resnet8.gin")
_IA_CODE = [  # gin scopes imports per file: the bindings import `rules` themselves
    "from __gin__ import dynamic_registration",
    "from goaldriven.alignment import rules",
    "LEARNING_RULE = @rules.InformationAlignment()",
    "rules.InformationAlignment.amp_weight = 1032.769",
    "rules.InformationAlignment.null_weight = 7.999",
    "rules.InformationAlignment.decay_weight = 3.161e-6",
]
# name -> (table label, gin bindings)
RULES = {
    "bp": ("Backprop", ["LEARNING_RULE = 'bp'"]),
    "fa": ("Feedback alignment", ["LEARNING_RULE = 'fa'"]),
    "wm": ("Weight mirror (WM^TPE)", ["LEARNING_RULE = 'wm'"]),
    "ia_thesis": ("Information alignment (IA^TPE, thesis naming)", ["LEARNING_RULE = 'ia'"]),
    "ia_code": ("Information alignment (IA^TPE, code naming)", _IA_CODE),
    "sa": ("Symmetric alignment", ["LEARNING_RULE = 'sa'"]),
    "aa": ("Activation alignment", ["LEARNING_RULE = 'aa'"]),
    "kp": ("Kolen-Pollack", ["LEARNING_RULE = 'kp'"]),
}


def run_one(rule: str, seed: int, steps: int | None, threads: int, extra: list[str]) -> dict:
    """Trains one (rule, seed) in this process and returns its figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)

    import gin
    from goaldriven import cli_config
    from goaldriven.alignment import diagnostics
    from goaldriven.tasks import loop

    bindings = RULES[rule][1] + [f"SEED = {seed}"] + ([f"TRAIN_STEPS = {steps}"] if steps else []) + extra
    cli_config.parse_gin_config([EXPERIMENT], bindings, clear=True)
    task = cli_config.configured_task()
    built = []
    build_model = task.build_model
    task.build_model = lambda: built.append(build_model()) or built[-1]  # keep the model for its final angles
    with tempfile.TemporaryDirectory() as workdir:
        began, began_cpu = time.perf_counter(), time.process_time()
        result = gin.get_configurable(loop.run)(
            task=task, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"), workdir=workdir, log=lambda line: None
        )
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    angles = diagnostics.weight_angles(built[0])
    ratios = diagnostics.norm_ratios(built[0])
    return {
        "rule": rule,
        "seed": seed,
        "top1": result["eval"]["top1"],
        "eval_loss": result["eval"]["eval_loss"],
        "train_loss": result["train"]["loss"],
        "train_top1": result["train"]["top1"],
        "steps": result["step"],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "median_weight_angle": float(np.median(list(angles.values()))) if angles else None,
        "median_norm_ratio": float(np.median(list(ratios.values()))) if ratios else None,
        "weight_angles": angles,
    }


def _child(rule, seed, steps, threads, extra) -> dict:
    """run_one in a fresh Python process (each run gets its own TF runtime and gin state)."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--one",
        rule,
        "--seeds",
        str(seed),
        "--threads",
        str(threads),
    ]
    command += (["--steps", str(steps)] if steps else []) + [f"--gin_bindings={b}" for b in extra]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        return {"rule": rule, "seed": seed, "error": (out.stderr or out.stdout)[-2000:]}
    return json.loads(lines[-1])


def _fmt(value, spec="{:.1f}"):
    return "n/a" if value is None else spec.format(value)


def summarize(runs: list[dict], rules: list[str]) -> list[dict]:
    rows = []
    for rule in rules:
        mine = [r for r in runs if r["rule"] == rule and "error" not in r]
        top1 = [100 * r["top1"] for r in mine]
        angles = [r["median_weight_angle"] for r in mine if r["median_weight_angle"] is not None]
        ratios = [r["median_norm_ratio"] for r in mine if r["median_norm_ratio"] is not None]
        rows.append(
            {
                "rule": rule,
                "label": RULES[rule][0],
                "seeds": [r["seed"] for r in mine],
                "top1": top1,
                "top1_mean": statistics.mean(top1) if top1 else None,
                "top1_sd": statistics.stdev(top1) if len(top1) > 1 else None,
                "median_weight_angle": statistics.mean(angles) if angles else None,
                "median_norm_ratio": statistics.mean(ratios) if ratios else None,
                "seconds_mean": statistics.mean(r["seconds"] for r in mine) if mine else None,
                "cpu_seconds_mean": statistics.mean(r["cpu_seconds"] for r in mine) if mine else None,
                "failed": [r["seed"] for r in runs if r["rule"] == rule and "error" in r],
            }
        )
    return rows


NOTES = """\
Setup (the experiment file's defaults): 16 px digits, 1,347 training / 450 test images (stratified, split seed 0),
random shifts of up to 1 px, batch 64, 500 steps (about 24 epochs), Nesterov SGD 0.9 at 0.05 with a 50-step linear
warm-up then cosine decay, L2 1e-4 on forward kernels; backward kernels: Adam 1e-3 on R, simultaneous with J, no delay
(the same for every rule). Rule coefficients: goaldriven/alignment/rules.py defaults (thesis Table 5.5 for WM/IA,
Section 5.9.2 for SA/AA, reference code for KP); "code naming" is IA with amp 1032.769, null 7.999, decay 3.161e-6.
Angle and norm ratio: median over the model's 10 aligned layers at the end of training, averaged over seeds
(backprop has no B). Times: loop.run only (compile, training, evaluation; not process start-up), wall and process CPU
seconds; with --jobs runs sharing the cores the wall time depends on the neighbouring run and on other load
(load average at start/end: {load})."""


def markdown(rows: list[dict], header: str, load: str = "n/a") -> str:
    lines = [
        header,
        "",
        "| rule | top-1 % (mean ± s.d.) | per seed | median angle(B, Wᵀ) ° | median ‖B‖/‖W‖ | train time / run "
        "(wall, CPU) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        mean = _fmt(row["top1_mean"], "{:.2f}") + (" ± " + _fmt(row["top1_sd"], "{:.2f}") if row["top1_sd"] else "")
        per_seed = ", ".join(f"{v:.2f}" for v in row["top1"]) + (f" (failed: {row['failed']})" if row["failed"] else "")
        lines.append(
            f"| {row['label']} | {mean} | {per_seed} | {_fmt(row['median_weight_angle'])} | "
            f"{_fmt(row['median_norm_ratio'], '{:.3g}')} | {_fmt(row['seconds_mean'], '{:.0f} s')}, "
            f"{_fmt(row['cpu_seconds_mean'], '{:.0f} s')} |"
        )
    return "\n".join(lines) + "\n\n" + NOTES.format(load=load) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="TRAIN_STEPS (default: the experiment file's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=None, help="TF threads per run (default: cores / jobs)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra bindings for every run")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "alignment_digits.json"))
    parser.add_argument("--one", choices=list(RULES), help=argparse.SUPPRESS)  # internal: one run, JSON to stdout
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    if args.one:
        print(json.dumps(run_one(args.one, args.seeds[0], args.steps, threads, args.gin_bindings)))
        return
    jobs = [(rule, seed) for seed in args.seeds for rule in args.rules]
    load_start = os.getloadavg()[0]
    began = time.perf_counter()
    with futures.ThreadPoolExecutor(args.jobs) as pool:
        pending = {pool.submit(_child, r, s, args.steps, threads, args.gin_bindings): (r, s) for r, s in jobs}
        runs = []
        for done in futures.as_completed(pending):
            run = done.result()
            runs.append(run)
            status = "FAILED" if "error" in run else f"top-1 {100 * run['top1']:.2f}%, {run['seconds']:.0f} s"
            print(f"[{time.perf_counter() - began:5.0f} s] {run['rule']} seed {run['seed']}: {status}", flush=True)
    runs.sort(key=lambda r: (args.rules.index(r["rule"]), r["seed"]))
    rows = summarize(runs, args.rules)
    command = "python bench/alignment_digits.py " + " ".join(
        [f"--rules {' '.join(args.rules)}", f"--seeds {' '.join(map(str, args.seeds))}", f"--jobs {args.jobs}"]
        + ([f"--steps {args.steps}"] if args.steps else [])
        + [f"--gin_bindings='{b}'" for b in args.gin_bindings]
    )
    total = time.perf_counter() - began
    load = f"{load_start:.1f} / {os.getloadavg()[0]:.1f}"
    header = (
        f"Digits, small_resnet8 (gin/experiments/digits__small_resnet8.gin), top-1 on the 450 held-out images; "
        f"{len(args.seeds)} seeds; whole sweep {total / 60:.1f} min on {os.cpu_count()} cores ({args.jobs} runs at a "
        f"time).\n\n`{command}`"
    )
    report = {
        "command": command,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "total_seconds": total,
        "load_average_start_end": load,
        "rows": rows,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(rows, header, load)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
