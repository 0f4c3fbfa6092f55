"""Writes a TF2 object-based checkpoint in the exact key layout of the released neuroailab/mec `ckpt-101` files.

The release was written by `tf.train.Checkpoint(step, optimizer=Adam, net=model)` under TF 2.0 / Keras 2 (the
reference `Trainer`), saved by a `CheckpointManager` (hence `save_counter`). Rebuilding the reference model under
tf-keras 2.21 with the Keras 2 Adam (`optimizer.legacy.Adam`, the TF 2.0 one) and saving it the same way gives the keys
recorded in test_mec.TF_KERAS_KEYS: `net/{encoder,M,dense,decoder}/{kernel,bias}`, `net/RNN/cell/{weight,bias}`, each
variable's Adam slots `<variable>/.OPTIMIZER_SLOT/optimizer/{m,v}`, `optimizer/{beta_1,beta_2,decay,iter,
learning_rate}`, `save_counter` and `step` (each `/.ATTRIBUTES/VARIABLE_VALUE`), and `_CHECKPOINTABLE_OBJECT_GRAPH`.

tf-keras is not a dependency, so plain `tf.Module`s reproduce that object graph; a module with `get_slot_names` and
`get_slot` (the protocol TF's checkpoint code asks an optimizer) makes TF write the slot keys itself. Shards: the
release has two (TF 2.0 wrote one shard per device: the network and its slots on the GPU, the counters on the CPU);
here a sharding callback writes the same split, the counters and the object graph in one shard and the network with
its slots in the other. The importer reads by key, so the split does not matter to it.

Values are a fixed function of (seed, key), so tests recompute them (`value`). At full size (4096 units, 512 cells)
with `adam_slots=True` the file holds 88 M parameters plus 176 M slot values (1.1 GB), like the release.
"""

import os
import sys
import zlib

import numpy as np
import tensorflow as tf

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
SLOT = "/.OPTIMIZER_SLOT/optimizer/{slot}" + SUFFIX


def shapes(units: int, place_cells: int, input_dim: int) -> dict[str, tuple[int, ...]]:
    """{key without suffix: shape} of the release's network (input_dim: 2 velocity [+ 5 cue distances])."""
    n = units
    return {
        "net/encoder/kernel": (place_cells, n),
        "net/encoder/bias": (n,),
        "net/M/kernel": (input_dim, n),
        "net/M/bias": (n,),
        "net/RNN/cell/weight": (2 * n, 2 * n),
        "net/RNN/cell/bias": (2 * n,),
        "net/dense/kernel": (n, n),
        "net/dense/bias": (n,),
        "net/decoder/kernel": (n, place_cells),
        "net/decoder/bias": (place_cells,),
    }


def value(key: str, shape, seed: int = 0) -> np.ndarray:
    """The fabricated value of `key` (without suffix): float32 N(0, 0.1^2), a fixed function of (seed, key)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= np.float32(0.1)  # in place: no float64 copy of the 67 M-value cell kernel
    return values


def _module(**attributes) -> tf.Module:
    module = tf.Module()
    for name, attribute in attributes.items():
        setattr(module, name, attribute)
    return module


class _AdamStandIn(tf.Module):
    """The Keras 2 Adam as a checkpoint sees it: hyperparameter variables and per-variable slots `m` and `v`."""

    def __init__(self, slots: dict):
        super().__init__()
        self.iter = tf.Variable(np.int64(100_000))  # 100 epochs x 1000 steps
        self.beta_1 = tf.Variable(np.float32(0.9))
        self.beta_2 = tf.Variable(np.float32(0.999))
        self.decay = tf.Variable(np.float32(0.0))
        self.learning_rate = tf.Variable(np.float32(1e-4))
        self._slot_of = slots.get  # {(variable.ref(), slot name): slot}.get: a method is not tracked, a dict would be
        self._any_slots = bool(slots)

    def get_slot_names(self):
        return ["m", "v"] if self._any_slots else []

    def get_slot(self, variable, name):
        return self._slot_of((variable.ref(), name)) if isinstance(variable, tf.Variable) else None


class _TwoShards(tf.train.experimental.ShardingCallback):
    """Counters and object graph in shard 0, the network and its slots in shard 1 (the release's two files)."""

    @property
    def description(self):
        return "mec ckpt-101: counters | network"

    def __call__(self, shardable_tensors):
        shards = ({}, {})
        for tensor in shardable_tensors:
            shard = shards[tensor.checkpoint_key.startswith("net/")]
            shard.setdefault(tensor.checkpoint_key, {})[tensor.slice_spec] = tensor.tensor
        return list(shards)


def write(
    prefix: str,
    *,
    units: int,
    place_cells: int = 512,
    input_dim: int = 2,
    seed: int = 0,
    edit=None,
    adam_slots: bool = True,
) -> str:
    """Writes the checkpoint at `prefix` (e.g. .../ckpts/ckpt-101, no `checkpoint` state file); returns the prefix.

    edit: optional function {key: shape} -> {key: shape} (tests rename or reshape entries).
    adam_slots: write the `m`/`v` slot of every network variable (zeros), as the release has.
    """
    layout = shapes(units, place_cells, input_dim)
    if edit is not None:
        layout = edit(layout)
    tree: dict = {}
    variables = []
    for key, shape in layout.items():
        *path, leaf = key.split("/")[1:]
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = tf.Variable(value(key, shape, seed), name=leaf)
        variables.append(node[leaf])

    def build(node):
        return _module(**{k: build(v) if isinstance(v, dict) else v for k, v in node.items()})

    slots = {}
    if adam_slots:
        for variable in variables:
            for name in ("m", "v"):
                slots[(variable.ref(), name)] = tf.Variable(tf.zeros(variable.shape), name=name)
    checkpoint = tf.train.Checkpoint(
        step=tf.Variable(np.int64(100_000)), optimizer=_AdamStandIn(slots), net=build(tree)
    )
    checkpoint.save_counter.assign(101)  # CheckpointManager.save numbers the files by it: ckpt-101
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    options = tf.train.CheckpointOptions(experimental_sharding_callback=_TwoShards())
    return checkpoint.write(prefix, options=options)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fabricate_tf2.py <prefix, e.g. /tmp/fake/ckpts/ckpt-101>  (full size: 4096 units, 512 cells)")
    print(write(sys.argv[1], units=4096))
