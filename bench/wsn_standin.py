"""The generated Word-Speaker-Noise STAND-IN learns: held-out-speaker top-1 before and after a short training run.

Runs gin/experiments/wsn_standin__small_resnet8.gin (goaldriven/audio/wsn_standin.py: 10 synthetic words + null,
8 training speakers, 4 held-out test speakers, white/pink/babble noise at 0/5/10/20 dB, 1 s at 8 kHz; 2,200 training
and 440 test clips written as WSN TFRecords and read back by the real reader) with `goaldriven.tasks.loop.run`,
evaluating the untrained model (evaluate_at_start) and the trained one on every test clip. Chance is 1/11.

Front end: goaldriven/audio/cochleagram.py with the experiment's settings (39 x 50 x 1 cochleagrams).

  nice -n 10 python -m bench.wsn_standin --out bench/results/wsn_standin.json   (from the repo root)
"""

import argparse
import json
import os
import platform
import tempfile
import time

from goaldriven import atomic_write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = "experiments/wsn_standin__small_resnet8.gin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "wsn_standin.json"))
    parser.add_argument("--train_steps", type=int, default=400)
    parser.add_argument("--cache_dir", default=None, help="stand-in data folder (default: a temporary folder)")
    args = parser.parse_args()

    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    import gin  # pylint: disable=g-import-not-at-top
    from goaldriven import cli_config  # pylint: disable=g-import-not-at-top
    from goaldriven.tasks import loop  # pylint: disable=g-import-not-at-top

    frontend, bindings = "goaldriven.audio.cochleagram (the experiment's settings)", []
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache_dir or os.path.join(scratch, "data")
        bindings += [f"TRAIN_STEPS = {args.train_steps}", f"wsn_standin.WSNStandInData.cache_dir = '{cache}'"]
        cli_config.parse_gin_config([EXPERIMENT], bindings, clear=True)
        task = cli_config.configured_task()
        began = time.perf_counter()
        task.waveforms.prepare()
        generate_s = time.perf_counter() - began
        workdir = os.path.join(scratch, "run")
        began, cpu = time.perf_counter(), time.process_time()
        result = gin.get_configurable(loop.run)(
            task=task,
            strategy=tf.distribute.OneDeviceStrategy("/cpu:0"),
            workdir=workdir,
            evaluate_at_start=True,
            log=lambda line: print(line, flush=True),
        )
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        with open(os.path.join(workdir, "eval", "step_0", "eval_metrics.json")) as f:
            before = json.load(f)
        settings = task.waveforms.settings
        report = {
            "experiment": EXPERIMENT,
            "frontend": frontend,
            "input_shape": list(task.input_shape()),
            "standin": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
            "held_out": "test speakers (other speakers from the same distribution) and fresh noise",
            "num_classes": task.num_classes,
            "chance_top1": 1.0 / task.num_classes,
            "train_examples": settings.num_examples("train"),
            "test_examples": result["eval"]["examples"],
            "train_steps": result["step"],
            "global_batch_size": gin.query_parameter("GLOBAL_BATCH_SIZE/macro.value"),
            "top1_before": before["top1"],
            "top1_after": result["eval"]["top1"],
            "top5_before": before["top5"],
            "top5_after": result["eval"]["top5"],
            "generate_seconds": round(generate_s, 1),
            "train_eval_wall_seconds": round(wall, 1),
            "train_eval_cpu_seconds": round(cpu, 1),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        }
    atomic_write.write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
