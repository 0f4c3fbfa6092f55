"""Shared benchmark helpers: timing the loop's compiled train step, and running a worker in a fresh process
(used by bench/path_integration.py, convrnn.py and alignment.py)."""

import json
import subprocess
import sys
import time


def run_worker(args: list[str]) -> dict:
    """Runs `python <args>` in a fresh process and returns the last JSON line it prints (its result)."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def time_train_steps(task, model, optimizer, strategy, *, global_batch_size: int, steps: int):
    """Builds the loop's train step for `task`, warms it up, then times `steps` single steps.

    Returns (run_one_step, seconds per step, TensorFlow allocator memory info over the timed steps).
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    from goaldriven.tasks import train_step

    train, _ = train_step.build_train_loop(task, model, optimizer, strategy)
    iterator = iter(
        strategy.distribute_datasets_from_function(
            lambda ctx: task.train_dataset(global_batch_size=global_batch_size, input_context=ctx, start_step=0, seed=0)
        )
    )
    one = tf.constant(1)

    def run_one_step():
        return float(train(iterator, one)["loss"])

    run_one_step()  # trace + warm-up
    tf.config.experimental.reset_memory_stats("CPU:0")
    seconds = []
    for _ in range(steps):
        began = time.perf_counter()
        run_one_step()
        seconds.append(time.perf_counter() - began)
    return run_one_step, seconds, tf.config.experimental.get_memory_info("CPU:0")
