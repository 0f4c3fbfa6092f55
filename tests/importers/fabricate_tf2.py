"""Writes a TF2 object-based checkpoint in the key layout of the released neuroailab/mec `ckpt-101` files.

The release was written by `tf.train.Checkpoint(step, optimizer=Adam, net=model)` under TF 2.0 / Keras 2. Its keys
(next_waves.md D2, checked by rebuilding the model under tf-keras): `net/{encoder,M,dense,decoder}/{kernel,bias}` and
`net/RNN/cell/{weight,bias}`, each `/.ATTRIBUTES/VARIABLE_VALUE`, plus `step`, `save_counter` and the optimizer's
entries. tf-keras is not a dependency, so plain `tf.Module`s reproduce that object graph: the `net/...` keys are
identical; the optimizer is a module holding `iter` and, with `adam_slots=True`, one `m` and one `v` array per network
variable under `optimizer/` (the release's Adam slots are keyed `.OPTIMIZER_SLOT/...`; the importer ignores every
optimizer key whatever its name, and the arrays make a full-size file as large as the release's).

Values are a fixed function of (seed, key), so tests recompute them (`value`).
"""

import os
import sys
import zlib

import numpy as np
import tensorflow as tf

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def shapes(units: int, place_cells: int, input_dim: int) -> dict[str, tuple[int, ...]]:
    """{key without suffix: shape} of the release's network."""
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
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return (0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def _module(**variables) -> tf.Module:
    module = tf.Module()
    for name, variable in variables.items():
        setattr(module, name, variable)
    return module


def write(
    prefix: str, *, units: int, place_cells: int = 512, input_dim: int = 2, seed: int = 0, edit=None, adam_slots=False
) -> str:
    """Writes the checkpoint at `prefix` (e.g. .../ckpts/ckpt-101); returns the prefix.

    edit: optional function {key: shape} -> {key: shape} (tests rename or reshape entries).
    """
    layout = shapes(units, place_cells, input_dim)
    if edit is not None:
        layout = edit(layout)
    tree: dict = {}
    for key, shape in layout.items():
        *path, leaf = key.split("/")[1:]
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = tf.Variable(value(key, shape, seed), name=leaf)

    def build(node):
        return _module(**{k: build(v) if isinstance(v, dict) else v for k, v in node.items()})

    slots = {}
    if adam_slots:
        for i, shape in enumerate(layout.values()):
            slots[f"m{i}"] = tf.Variable(np.zeros(shape, np.float32))
            slots[f"v{i}"] = tf.Variable(np.zeros(shape, np.float32))
    optimizer = _module(iter=tf.Variable(np.int64(101)), m=tf.Variable(np.zeros(3, np.float32)), **slots)
    checkpoint = tf.train.Checkpoint(step=tf.Variable(np.int64(101)), optimizer=optimizer, net=build(tree))
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    written = checkpoint.write(prefix)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fabricate_tf2.py <prefix, e.g. /tmp/fake/ckpts/ckpt-101>  (full size: 4096 units, 512 cells)")
    print(write(sys.argv[1], units=4096, adam_slots=True))
