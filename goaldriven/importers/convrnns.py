"""The 20 released ImageNet ConvRNNs of thesis Chapter 2 (neuroailab/convrnns) as goaldriven zoo models.

The release is one TF1 name-based Saver checkpoint per model, `model.ckpt.{data-00000-of-00001,index,meta}`, with no
`checkpoint` state file: pass the prefix `.../model.ckpt`. It is read by name with `tf.train.load_checkpoint` (no TF1
graph is rebuilt) and mapped onto `goaldriven.models.zoo.build_model(name)` by `convrnns_names.plan`, which covers
every goaldriven weight. As the reference loader (`convrnns/utils/loader.py::get_restore_vars`) allows, the file may
also hold `<variable>/Momentum` optimizer slots and `global_step`, which are ignored; any other variable the plan
does not read, any missing one, a shape mismatch or a frozen scalar away from goaldriven's constant is an error that
lists them all (common.py), and nothing is assigned then.

    model = convrnns.load_model("/data/convrnns/rgc_intermediate/model.ckpt", "rgc_intermediate")

`goaldriven-import convrnns --source=.../model.ckpt --name=rgc_intermediate --output=DIR` writes a goaldriven
checkpoint directory (docs/importers/convrnns.md: where to get the files and how to check ImageNet top-1).
"""

import numpy as np

from goaldriven.importers import common, convrnns_names
from goaldriven.models import zoo

NAMES = (
    "timedecay_shallow",
    "simplernn_shallow",
    "gru_shallow",
    "lstm_shallow",
    "intersectionrnn_shallow",
    "ugrnn_shallow",
    "rgc_shallow",
    "timedecay_intermediate",
    "simplernn_intermediate",
    "gru_intermediate",
    "lstm_intermediate",
    "intersectionrnn_intermediate",
    "ugrnn_intermediate",
    "ugrnn_intermediate_t30",
    "ugrnn_intermediate_t30_dthresh",
    "ugrnn_intermediate_t30_tmaxconf",
    "rgc_intermediate",
    "rgc_intermediate_dthresh",
    "rgc_intermediate_tmaxconf",
    "rgc_intermediate_t22_tmaxconf",
)  # the reference README's table (get_checkpoints.sh downloads the same 20)
# ImageNet validation top-1 / top-5 (%) of the released checkpoints, reference README (spec ch2 10.1).
PUBLISHED_TOP1_TOP5 = {
    "timedecay_shallow": (50.06, 72.97),
    "simplernn_shallow": (61.11, 83.15),
    "gru_shallow": (62.16, 84.02),
    "lstm_shallow": (63.43, 84.89),
    "intersectionrnn_shallow": (65.42, 86.02),
    "ugrnn_shallow": (60.82, 83.23),
    "rgc_shallow": (66.97, 87.02),
    "timedecay_intermediate": (67.52, 87.80),
    "simplernn_intermediate": (70.47, 89.48),
    "gru_intermediate": (69.81, 89.25),
    "lstm_intermediate": (69.57, 89.18),
    "intersectionrnn_intermediate": (68.98, 88.67),
    "ugrnn_intermediate": (69.78, 89.21),
    "ugrnn_intermediate_t30": (70.09, 89.29),
    "ugrnn_intermediate_t30_dthresh": (69.30, 88.97),
    "ugrnn_intermediate_t30_tmaxconf": (70.04, 89.29),
    "rgc_intermediate": (73.00, 91.16),
    "rgc_intermediate_dthresh": (71.81, 90.16),
    "rgc_intermediate_tmaxconf": (72.29, 90.52),
    "rgc_intermediate_t22_tmaxconf": (72.98, 90.80),
}
RELEASED = {
    name: common.Released(
        name,
        "convrnns",
        f"experiments/imagenet__{name}.gin",
        files=(
            f"model.ckpt.{{data-00000-of-00001,index,meta}} of {name}, downloaded by neuroailab/convrnns "
            f"get_checkpoints.sh from the S3 bucket convrnnckpts; pass the prefix .../{name}/model.ckpt"
        ),
    )
    for name in NAMES
}


def ignorable(key: str) -> bool:
    """Entries of a released file that no goaldriven weight needs: optimizer slots and the step counter."""
    return key.endswith("/Momentum") or key == "global_step"


def open_checkpoint(checkpoint_prefix: str):
    """A `tf.train.load_checkpoint` reader of a TF1 checkpoint prefix; one-line errors naming the fix otherwise."""
    return common.open_tf_checkpoint(
        checkpoint_prefix,
        "pass the checkpoint prefix, e.g. .../rgc_intermediate/model.ckpt (the files model.ckpt.index and "
        "model.ckpt.data-00000-of-00001 from neuroailab/convrnns get_checkpoints.sh)",
    )


def check_constants(reader, constants: dict[str, tuple[float, float]], origin: str, keys) -> None:
    """Every frozen scalar goaldriven keeps as a constant is in the file and equals it (common.check_constant)."""
    missing = sorted(key for key in constants if key not in keys)
    if missing:
        raise common.WeightImportError(
            f"{origin} does not match the goaldriven model (check the model name and build options): frozen "
            f"variables missing from the file (another model or decoder?): {', '.join(missing)}"
        )
    for key, (expected, atol) in sorted(constants.items()):
        common.check_constant(origin, key, reader.get_tensor(key), expected, atol=atol)


def assign(model, path: str, name: str) -> common.ImportReport:
    """Assigns every weight of the built zoo ConvRNN `model` from the released checkpoint prefix `path`.

    name: the release's model name (RELEASED; used in messages). The frozen scalars are checked first, then every
    weight is matched by name and shape and assigned (common.assign_weights); on any mismatch nothing is assigned.
    Raises FileNotFoundError or common.WeightImportError with the names of every mismatch.
    """
    reader = open_checkpoint(path)
    origin = f"{path} ({name})"
    plan, constants = convrnns_names.plan(model)
    shapes = reader.get_variable_to_shape_map()
    check_constants(reader, constants, origin, shapes)
    keys = [key for key in shapes if key not in constants]

    def read(key: str) -> np.ndarray:
        return reader.get_tensor(key)

    return common.assign_weights(model.variables, plan, keys, read, origin=origin, ignore=ignorable)


def load_model(checkpoint_prefix: str, name: str, *, image_size: int = 224, **build_kwargs):
    """`zoo.build_model(name, image_size=image_size, **build_kwargs)` with every weight from the released checkpoint.

    checkpoint_prefix: `.../<name>/model.ckpt` (the release has no `checkpoint` state file, so the prefix is passed).
    image_size: the released graphs are built at 224; other sizes import where the shapes allow (the shallow readout
      and the LSTM peepholes depend on it, and kernels larger than a feature map are clipped).
    build_kwargs: further zoo options (e.g. decoder_start, unroll_length); options that change shapes fail the import.
    """
    open_checkpoint(checkpoint_prefix)  # fail on a wrong path before the build
    model = zoo.build_model(name, image_size=image_size, **build_kwargs)
    assign(model, checkpoint_prefix, name)
    return model
