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
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (tf.errors.OpError, ValueError, RuntimeError) as e:
            first = " ".join(str(e).split())[:160]
            raise ValueError(
                f"no TPU reachable with --tpu={tpu} ({type(e).__name__}: {first}); on a Cloud TPU VM use --tpu=local "
                "with the tpu extra installed, on a pod slice the TPU's name; elsewhere use --strategy=cpu, gpu or "
                "mirrored."
            ) from e
        return tf.distribute.TPUStrategy(resolver)
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable "
                "(cluster spec and this worker's task index); see the README section on multi-worker runs."
            )
        check_tf_config(os.environ["TF_CONFIG"])
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


def check_tf_config(text: str) -> None:
    """Raises ValueError naming the problem when TF_CONFIG is not {"cluster": {...}, "task": {"type", "index"}}."""
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); set it to e.g. {example}.") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not all(isinstance(v, list) for v in cluster.values()):
        raise ValueError(f"TF_CONFIG needs a \"cluster\" mapping job names to address lists; set it to e.g. {example}.")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int):
        raise ValueError(
            f"TF_CONFIG needs a \"task\" with a \"type\" from its cluster ({sorted(cluster)}) and an integer "
            f"\"index\"; set it to e.g. {example}."
        )
    if not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ValueError(
            f"TF_CONFIG task index {task['index']} is outside its cluster's {len(cluster[task['type']])} "
            f"{task['type']} address(es)."
        )


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
