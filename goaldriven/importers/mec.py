"""The released MEC path integrators of thesis Chapter 4 (neuroailab/mec) as goaldriven Keras 3 path integrators.

The release is one TF2 object-based checkpoint per model, `ckpts/ckpt-101.{data-00000-of-00002,
data-00001-of-00002,index}`, written by `tf.train.Checkpoint(step, optimizer=Adam, net=model)` under TF 2.0 / Keras 2,
with no `checkpoint` state file: pass the prefix `.../ckpts/ckpt-101`. A Keras 3 model cannot restore it (Keras 3
names and tracks variables differently), so the values are read by key (`tf.train.load_checkpoint`):

  net/encoder/{kernel,bias}   [Np, n]     initial state from the place-cell code   -> encoder
  net/M/{kernel,bias}         [d_in, n]   velocity (+ cue) input projection "M"     -> input_dense
  net/RNN/cell/weight         [2n, 2n]    UGRNN W of [a_g, a_c] = W [x; h] + b       -> rnn/kernel (rows :n),
                                                                                       rnn/recurrent_kernel (rows n:)
  net/RNN/cell/bias           [2n]                                                  -> rnn/bias
  net/dense/{kernel,bias}     [n, n]      the MEC layer g                           -> g
  net/decoder/{kernel,bias}   [n, Np]     place-cell logits                         -> readout

(each key ends in `/.ATTRIBUTES/VARIABLE_VALUE`). The UGRNN's columns are (gate, candidate) in both (spec B5.5.3),
so only the rows of the fused kernel are split. Optimizer slots and state, `step`, `save_counter` and the object graph
are ignored; anything else unmatched is an error (common.py). Place-cell centres are not in the checkpoint: they come
from the task's seed, so the readout's targets are goaldriven's, while the MEC layer g (what neural fits read) is the
release's.
"""

import numpy as np

from goaldriven.importers import common
from goaldriven.models import path_integrators

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_FILES = (
    "ckpts/ckpt-101.{{data-00000-of-00002,data-00001-of-00002,index}} of {name}, downloaded by neuroailab/mec "
    "get_checkpoints.sh from the S3 bucket mecmodels; pass the prefix .../ckpts/ckpt-101"
)
RELEASED = {
    "UGRNN_relu": common.Released(
        "UGRNN_relu",
        "mec",
        "experiments/path_integration__ugrnn_relu_place_cells.gin",
        files=_FILES.format(name="UGRNN_relu"),
    ),
    "UGRNN_relu_reward": common.Released(
        "UGRNN_relu_reward",
        "mec",
        "experiments/path_integration__ugrnn_relu_place_cells_reward_eps0.375.gin",
        files=_FILES.format(name="UGRNN_relu_reward"),
    ),
    "CueUGRNN_relu": common.Released(
        "CueUGRNN_relu",
        "mec",
        "experiments/path_integration__ugrnn_relu_place_cells_cues.gin",
        files=_FILES.format(name="CueUGRNN_relu"),
    ),
}
INPUT_DIMS = {"UGRNN_relu": 2, "UGRNN_relu_reward": 2, "CueUGRNN_relu": 7}  # velocity (2) [+ 5 cue distances]


def ignorable(key: str) -> bool:
    """Entries no goaldriven weight needs: the optimizer and its slots, the step, the save counter, the graph."""
    return not key.startswith("net/") or "/.OPTIMIZER_SLOT/" in key


def open_checkpoint(prefix: str):
    """A reader of the TF2 checkpoint prefix; one-line errors naming the fix otherwise."""
    return common.open_tf_checkpoint(
        prefix, "pass the prefix .../ckpts/ckpt-101 (its .index and .data-0000x-of-00002 files, from neuroailab/mec)"
    )


def plan(model) -> dict[str, common.Source]:
    """{goaldriven variable path: Source} for a built UGRNN path integrator."""
    if getattr(model, "kind", None) != "ugrnn":
        raise ValueError(f"the mec releases are UGRNN path integrators; got a {getattr(model, 'kind', type(model))}")
    n = model.units
    cell = {
        "kernel": common.Source("net/RNN/cell/weight" + _SUFFIX, lambda w: w[:n], "rows [:n] (input x)"),
        "recurrent_kernel": common.Source("net/RNN/cell/weight" + _SUFFIX, lambda w: w[n:], "rows [n:] (state h)"),
        "bias": common.Source("net/RNN/cell/bias" + _SUFFIX),
    }
    out = {getattr(model.cell, name).path: source for name, source in cell.items()}
    for layer, key in ((model.encoder, "encoder"), (model.input_dense, "M"), (model.g_dense, "dense"),
                       (model.readout, "decoder")):  # fmt: skip
        out[layer.kernel.path] = common.Source(f"net/{key}/kernel{_SUFFIX}")
        out[layer.bias.path] = common.Source(f"net/{key}/bias{_SUFFIX}")
    return out


def assign(model, path: str, name: str) -> common.ImportReport:
    """Assigns every weight of the built goaldriven UGRNN path integrator `model` from the release `path`."""
    reader = open_checkpoint(path)
    cache: dict[str, np.ndarray] = {}

    def read(key: str) -> np.ndarray:  # the fused cell kernel is read once for its two halves
        if key not in cache:
            cache[key] = reader.get_tensor(key)
        return cache[key]

    keys = reader.get_variable_to_shape_map()
    return common.assign_weights(model.variables, plan(model), keys, read, origin=f"{path} ({name})", ignore=ignorable)


def load_model(path: str, name: str, *, units: int = 4096, place_cells: int = 512, **build_kwargs):
    """`path_integrators.build_path_integrator` (UGRNN-ReLU, the release's input size) with every weight assigned."""
    if name not in INPUT_DIMS:
        raise ValueError(f"unknown mec release {name!r}; one of {', '.join(INPUT_DIMS)}")
    open_checkpoint(path)
    model = path_integrators.build_path_integrator(
        kind="ugrnn",
        activation="relu",
        units=units,
        input_dim=INPUT_DIMS[name],
        init_dim=place_cells,
        output_dim=place_cells,
        **build_kwargs,
    )
    assign(model, path, name)
    return model
