"""Benchmark: the observables recorder's cost per recording relative to one training epoch of the small Chapter 6 grid.

Runs one run of each task of gin/identification/grid_small.gin (KNet4, SGDM, batch 32, 20 epochs) twice in this
process, with the recorder (21 recordings: epochs 0, 1, ..., 20) and without it (`EXTRA_HOOKS = []`), and reports:
  * the time per recording (the recorder's own log line: weights, the validation pass, 24 statistics per layer),
    median over the 20 recordings after the first (the first includes tracing), and the first;
  * one training epoch, from the run without the recorder: (wall time of the run - its evaluation and build) / 20,
    measured as the difference of two runs with 20 and 10 epochs, so start-up, tracing and evaluation cancel;
  * their ratio, and the wall time of the whole run with and without the recorder.

  python -m bench.observables_overhead   (from the repo root; writes bench/results/observables_overhead.json)
"""

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time

from goaldriven import atomic_write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = ("digits__knet4__sgdm__b32__mnone__dnone", "shapes__knet4__sgdm__b32__mnone__dnone")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "observables_overhead.json"))
    args = parser.parse_args()

    import dataclasses  # pylint: disable=g-import-not-at-top

    from absl import flags  # pylint: disable=g-import-not-at-top

    from goaldriven import identify  # pylint: disable=g-import-not-at-top
    from goaldriven.identification import grid  # pylint: disable=g-import-not-at-top

    flags.FLAGS(["bench"])
    launch = identify.in_process_launcher()  # the worker's in-process runner
    report = {"machine": f"{_cpu()}, {os.cpu_count()} cores (shared)", "runs": {}}
    with tempfile.TemporaryDirectory() as root:
        spec = identify.load_grid(["identification/grid_small.gin"], [], root)
        runs = {r.name: r for r in grid.expand(spec)}
        for name in RUNS:
            timings = {}
            for label, extra in (
                ("recorder", ()),
                ("no_recorder", ("EXTRA_HOOKS = []",)),
                ("no_recorder_10_epochs", ("EXTRA_HOOKS = []", "EPOCHS = 10")),
            ):
                run = dataclasses.replace(
                    runs[name], workdir=os.path.join(root, f"{name}_{label}"), bindings=runs[name].bindings + extra
                )
                began = time.perf_counter()
                result = launch(run)
                timings[label] = time.perf_counter() - began
                if result.returncode != 0:
                    raise SystemExit(f"{name} ({label}) failed: {result.stdout[-2000:]}")
                if label == "recorder":
                    seconds = [float(s) for s in re.findall(r"observables epoch \d+ .* in ([0-9.]+) s", result.stdout)]
            epoch = (timings["no_recorder"] - timings["no_recorder_10_epochs"]) / 10
            later = statistics.median(seconds[1:])
            report["runs"][name] = {
                "recordings": len(seconds),
                "first_recording_s": round(seconds[0], 3),
                "recording_s_median": round(later, 3),
                "training_epoch_s": round(epoch, 3),
                "recording_per_epoch": round(later / epoch, 3),
                "run_with_recorder_s": round(timings["recorder"], 1),
                "run_without_recorder_s": round(timings["no_recorder"], 1),
            }
            print(name, json.dumps(report["runs"][name]), flush=True)
    atomic_write.write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
