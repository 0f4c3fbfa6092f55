"""Writes TF1 name-based checkpoints in the layout of the released neuroailab/convrnns `model.ckpt` files.

No released file is available to the tests, so they fabricate one from the variable names and shapes of the 20
reference graphs (`convrnns_manifest.json`, enumerated by building each TF1 graph at 224 px): a
`tf.compat.v1.train.Saver` checkpoint of `tf.compat.v1.get_variable`s with those names, random values, a
`<variable>/Momentum` slot for every trainable variable (the reference trained with MomentumOptimizer) and an int64
`global_step`, without a `checkpoint` state file (as released).

Memory: variables are created with zero-fill initializers (no constants in the graph) and each value is fed through
its variable's initializer, one array at a time, so a full-size lstm_intermediate (85 M parameters) needs about its
variables plus their slots. Values are a deterministic function of (seed, name): `value(...)` recomputes what was
written without keeping it.

    python tests/importers/fabricate_tf1.py lstm_intermediate /tmp/fake/model.ckpt   # full size, for benchmarks
"""

import json
import os
import sys
import zlib

import numpy as np
import tensorflow as tf

MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convrnns_manifest.json")
FROZEN = {"memory_decay": 0.0, "softmax_beta": 1.0, "decoder_threshold": 0.9}  # the reference's constant initializers
CLASSES = 1000


def manifest(path: str = MANIFEST) -> dict[str, list[tuple[str, tuple[int, ...], bool]]]:
    """{model name: [(variable name, shape, trainable)]} of the 20 released graphs at 224 px."""
    with open(path, encoding="utf-8") as f:
        models = json.load(f)["models"]
    return {
        name: [(key, tuple(shape), bool(trainable)) for key, shape, trainable in entries]
        for name, entries in models.items()
    }


def narrowed(entries, divisor: int):
    """The entries of a graph whose every channel count is divided by `divisor` (zoo width_multiplier 1/divisor).

    Channel axes: the last of a bias / LN vector / peephole [H, W, C]; both of a conv kernel [k, k, in, out] except
    the image's 3 input channels and a depthwise kernel's 1; the input of the readout fc [512, 1000]. Scalars [1]
    and the 1000 classes stay.
    """

    def div(c):
        if c % divisor:
            raise ValueError(f"{c} channels are not divisible by {divisor}")
        return c // divisor

    out = []
    for key, shape, trainable in entries:
        s = list(shape)
        if len(s) == 1 and s != [1] and s[0] != CLASSES:
            s = [div(s[0])]
        elif len(s) == 2:
            s = [div(s[0]), s[1]]
        elif len(s) == 3:
            s = [s[0], s[1], div(s[2])]
        elif len(s) == 4:
            s = [s[0], s[1], s[2] if s[2] == 3 else div(s[2]), s[3] if s[3] in (1, CLASSES) else div(s[3])]
        out.append((key, tuple(s), trainable))
    return out


def value(key: str, shape, trainable: bool, seed: int = 0) -> np.ndarray:
    """The value `write` stores for `key` (float32): frozen scalars at the reference's constants, the rest random."""
    leaf = key.rsplit("/", 1)[-1]
    if not trainable and leaf in FROZEN:
        return np.full(shape, FROZEN[leaf], np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    if leaf in FROZEN:  # trainable memory_decay (TimeDecay tau) or max-confidence beta (U[0, 1) in the reference)
        return rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return (0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def write(prefix: str, entries, *, seed: int = 0, momentum: bool = True, values: dict | None = None) -> str:
    """Writes `entries` [(name, shape, trainable)] as a TF1 Saver checkpoint at `prefix`; returns the prefix.

    momentum: add a zero `<name>/Momentum` slot per trainable variable. values: {name: array} replacing `value(...)`.
    """
    values = values or {}
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with tf.Graph().as_default():
        created, slots = [], []
        zeros = tf.compat.v1.zeros_initializer()
        for key, shape, trainable in entries:
            variable = tf.compat.v1.get_variable(
                key, shape=shape, dtype=tf.float32, initializer=zeros, trainable=trainable
            )
            created.append((variable, key, shape, trainable))
            if momentum and trainable:
                slots.append(
                    tf.compat.v1.get_variable(f"{key}/Momentum", shape=shape, initializer=zeros, trainable=False)
                )
        step = tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.variables_initializer([*slots, step]))
            for variable, key, shape, trainable in created:
                given = values.get(key)
                array = value(key, shape, trainable, seed) if given is None else np.asarray(given, np.float32)
                variable.load(array, session)  # fed through the initializer: no constant in the graph
                del array
            session.run(step.assign(123456))
            saver.save(session, prefix, write_state=False)
    return prefix


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: fabricate_tf1.py <model name> <prefix, e.g. /tmp/fake/model.ckpt>")
    print(write(sys.argv[2], manifest()[sys.argv[1]]))
