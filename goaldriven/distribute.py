"""tf.distribute strategies by name; the only module that knows about TPUClusterResolver.

Kinds (the --strategy flag of goaldriven-train):
  tpu           TPUStrategy on a Cloud TPU (VM or pod slice); `tpu` is a name, grpc:// address or "local".
  multi_worker  MultiWorkerMirroredStrategy across hosts described by the TF_CONFIG environment variable.
  mirrored      MirroredStrategy over all local GPUs, or over all logical CPU devices when there is no GPU.
  gpu           one GPU (OneDeviceStrategy /gpu:0).
  cpu           one CPU (OneDeviceStrategy /cpu:0).
"""

import json
import os

import tensorflow as tf

KINDS = ("tpu", "multi_worker", "mirrored", "gpu", "cpu")


def get_strategy(kind: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """Builds the strategy named `kind`; raises ValueError naming the fix when it cannot."""
    if kind not in KINDS:
        raise ValueError(f"unknown strategy {kind!r}; use one of {', '.join(KINDS)}.")
    if kind == "tpu":
        if not tpu:
            raise ValueError("--strategy=tpu needs --tpu=<name, grpc://address, or 'local' on a TPU VM>.")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable "
                "(cluster spec and this worker's task index); see the README section on multi-worker runs."
            )
        json.loads(os.environ["TF_CONFIG"])  # Fails early with a JSON error on a malformed value.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "gpu":
        if not tf.config.list_logical_devices("GPU"):
            raise ValueError("--strategy=gpu but TensorFlow sees no GPU; install the gpu extra or use --strategy=cpu.")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that owns the workdir (always true outside multi-worker training)."""
    resolver = getattr(strategy.extended, "_cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return (
        task_type is None
        or task_type == "chief"
        or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
    )


def worker_id(strategy: tf.distribute.Strategy) -> int:
    """This worker's task index under a cluster resolver (0 outside multi-worker training)."""
    resolver = getattr(strategy.extended, "_cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0)
