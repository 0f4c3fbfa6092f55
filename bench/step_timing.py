"""Shared benchmark helpers: timing the loop's compiled train step, running a worker in a fresh process, and a
per-op-type profile of one step (used by bench/path_integration.py, convrnn.py and alignment.py)."""

import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
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


_CONTAINER_OPS = ("While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall", "StatefulPartitionedCall")
# op kind -> substrings of TensorFlow op types (oneDNN's _Mkl*/_Fused* variants included), first match wins
OP_KINDS = (
    ("conv_input_gradient", ("Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput")),
    ("conv_kernel_gradient", ("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter")),
    ("conv_forward", ("Conv2D", "DepthwiseConv2dNative")),
    ("matmul", ("MatMul", "Einsum")),
    ("optimizer_update", ("ResourceApply", "AssignAddVariableOp", "AssignSubVariableOp", "AssignVariableOp")),
)


def op_kind(op_type: str) -> str:
    """The kind of an op type (OP_KINDS), or "other" (element-wise, reductions, BN, copies, ...)."""
    return next((kind for kind, parts in OP_KINDS if any(part in op_type for part in parts)), "other")


def op_profile(step, top: int = 8) -> dict:
    """Runs one step under the TensorFlow profiler and returns where its op time goes: seconds per op type (the
    `top` largest), per kind (op_kind), the total, and the matmul share (matmuls and einsums of the total)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="gd_profile_")
    tf.profiler.experimental.start(logdir)
    step()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[-1], "rb") as f:
        space.ParseFromString(f.read())
    per_op = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # Op events are "<node name>:<op type>"; executor events ("ExecutorState::Process") are not ops.
                op_type = name.rsplit(":", 1)[1] if ":" in name and "::" not in name else None
                if op_type and op_type not in _CONTAINER_OPS:  # containers would count their inner ops twice
                    per_op[op_type] += event.duration_ps / 1e12
    total = sum(per_op.values())
    kinds = collections.Counter()
    for op_type, seconds in per_op.items():
        kinds[op_kind(op_type)] += seconds
    return {
        "op_seconds": total,
        "matmul_seconds": kinds["matmul"],
        "matmul_share": kinds["matmul"] / total if total else 0.0,
        "kind_seconds": dict(kinds),
        "top_ops": dict(per_op.most_common(top)),
    }
