"""The released MEC path integrators of thesis Chapter 4 (neuroailab/mec) as goaldriven Keras 3 path integrators.

The release is one TF2 object-based checkpoint per model, `ckpts/ckpt-101.{data-00000-of-00002,
data-00001-of-00002,index}`, written by `tf.train.Checkpoint(step, optimizer=Adam, net=model)` under TF 2.0 / Keras 2,
with no `checkpoint` state file: pass the prefix `.../ckpts/ckpt-101`. A Keras 3 model cannot restore it (Keras 3
names and tracks variables differently), so the values are read by key (`tf.train.load_checkpoint`). The reference
model (mec/models/model.py) is `s0 = encoder(p0)`, `h = RNN(UGRNNCell)(M(v), initial_state=s0)`,
`g = dense(h)` (ReLU), `logits = decoder(g)`; its attribute names are the keys:

  net/encoder/{kernel,bias}   [Np, n]     initial state from the place-cell code   -> encoder
  net/M/{kernel,bias}         [d_in, n]   velocity (+ cue) input projection "M"     -> input_dense
  net/RNN/cell/weight         [2n, 2n]    UGRNN W of [a_g, a_c] = W [x; h] + b       -> rnn/kernel (rows :n),
                                                                                       rnn/recurrent_kernel (rows n:)
  net/RNN/cell/bias           [2n]                                                  -> rnn/bias
  net/dense/{kernel,bias}     [n, n]      the MEC layer g                           -> g
  net/decoder/{kernel,bias}   [n, Np]     place-cell logits                         -> readout

(each key ends in `/.ATTRIBUTES/VARIABLE_VALUE`; n = 4096, Np = 512). The reference cell multiplies
`concat([x, h]) @ weight` and splits the columns [gate | candidate]; goaldriven's UGRNN keeps the same columns (spec
B5.5.3), so only the rows are split. Variants: UGRNN_relu and UGRNN_relu_reward (the reference `UGRNN` class, trained
on reward-biased trajectories; no reward input) have M [2, n]; CueUGRNN_relu (`CueUGRNN`, M of
concat([velocity, 5 cue distances])) has M [7, n]; the key set is otherwise identical. Besides these ten, the file
holds each one's Adam slots `<key>/.OPTIMIZER_SLOT/optimizer/{m,v}`, `optimizer/{iter,beta_1,beta_2,decay,
learning_rate}`, `step`, `save_counter` and the object graph: all ignored; anything else unmatched is an error
(common.py).

Place-cell centres are not in the checkpoint. The reference draws them with `tf.random.set_seed(0)` in TF
(`place_cells.reference_centres` reproduces that draw); they define both the decoder's targets and the place-cell
code the encoder maps to the initial state, so every import's config.gin binds
`place_cells.PlaceCells.centres = 'reference'`: the imported model then sees the positions it was trained on.
"""

import numpy as np

from goaldriven.importers import common
from goaldriven.models import path_integrators
from goaldriven.tasks import place_cells

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_FILES = (
    "ckpts/ckpt-101.{{data-00000-of-00002,data-00001-of-00002,index}} of {name}, downloaded by neuroailab/mec "
    "get_checkpoints.sh from the S3 bucket mecmodels; pass the prefix .../ckpts/ckpt-101"
)
CENTRES_BINDING = "place_cells.PlaceCells.centres = 'reference'"  # the released models' place-cell centres
RELEASED = {
    "UGRNN_relu": common.Released(
        "UGRNN_relu",
        "mec",
        "experiments/path_integration__ugrnn_relu_place_cells.gin",
        bindings=(CENTRES_BINDING,),
        files=_FILES.format(name="UGRNN_relu"),
    ),
    "UGRNN_relu_reward": common.Released(
        "UGRNN_relu_reward",
        "mec",
        "experiments/path_integration__ugrnn_relu_place_cells_reward_eps0.375.gin",
        bindings=(CENTRES_BINDING,),
        files=_FILES.format(name="UGRNN_relu_reward"),
    ),
    "CueUGRNN_relu": common.Released(
        "CueUGRNN_relu",
        "mec",
        "experiments/path_integration__ugrnn_relu_place_cells_cues.gin",
        bindings=(CENTRES_BINDING,),
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


def release_place_cell_centres(box_width: float = 2.2, box_height: float | None = None, n_cells: int = 512):
    """Place-cell centres (n_cells, 2) of the released models (float64): `place_cells.reference_centres`, which the
    imports select with `place_cells.PlaceCells.centres = 'reference'` in their config.gin."""
    return place_cells.reference_centres(n_cells, box_width, box_height)
