"""The mouse-vision models of thesis Chapter 3 (neuroailab/mouse-vision `.pt` files) as goaldriven Keras models.

A release is one `torch.save` dict, read without PyTorch and without running code the file names
(`torch_files.py`). The trainers save:

    instance recognition  model_state_dict, embedding_func (nn.Linear(d, 128)), memory_bank, optimizer, epoch,
                          results, curr_best_acc
    SimCLR                model_state_dict, neck_state_dict (fc0 -> bn0 -> ReLU -> fc1 -> bn1, fc without bias),
                          optimizer, epoch, results, curr_best_loss
    supervised            model_state_dict (with the classifier), optimizer, epoch, results, ...

Keys may start with `module.` (DistributedDataParallel), which is stripped. A bare state dict is taken as
`model_state_dict`. Name tables (reference `parallel_stream_mousenet.py`, `alexnet.py`):

    StreamNet  model_layers.<source>_<target>.<i>.*   (goaldriven edge <source>_to_<target>, source "input" = image);
               i counts the reference's nn.Sequential: conv i, its BN i + 1, ReLU i + 2, a max pool 1, so
               input_VISp 0/1, VISp_<stream> 0/1 and 4/5, VISp_VISpor|VISam 0/1, <stream>_VISpor|VISam 0/1;
               classifier.2 (the readout after Flatten, Dropout; supervised only)
    AlexNet-BN features.{0,4,8,11,14} conv, features.{1,5,9,12,15} BN, classifier.{1,5} Linear, classifier.{2,6} BN1d,
               classifier.8 (supervised only)

Conversions: conv weight [O, I, kh, kw] -> kernel [kh, kw, I, O]; Linear weight [O, I] -> kernel [I, O]; a Linear
that reads the flattened adaptive pool (StreamNet readout, IR embedding and SimCLR fc0 of StreamNets, AlexNet fc6)
has its input rows permuted from PyTorch's (C, H, W) order to Keras' (H, W, C); BN weight, bias, running_mean,
running_var -> gamma, beta, moving_mean, moving_variance, and every goaldriven BN must have PyTorch's epsilon 1e-5
(checked). `num_batches_tracked` is ignored; the memory bank, optimizer and training records are not weights and are
ignored (listed in the report). The self-supervised releases have no classifier (`drop_final_fc=True`): the
backbone's unused readout (`num_classes` 1 in the SSL experiments; no gradient reaches it) is set to zero.

    model = mouse_vision.load_model("/data/dual_stream_ir.pt", "dual_stream_ir")
"""

import dataclasses
import os
from typing import Callable

import numpy as np

from goaldriven.importers import common, torch_files
from goaldriven.models import encoder_plans, heads, mouse_baselines, streamnet, zoo
from goaldriven.tasks.self_supervised import simclr

BN_EPSILON = 1e-5
_BUCKET = "neuroailab/mouse-vision get_checkpoints.sh (S3 bucket mouse-vision-ckpts)"
_PUBLIC = {"alexnet_bn_ir", "dual_stream_ir", "six_stream_simclr"}  # also shi_mousenet(_vispor5)_ir: not built
NOT_SUPPORTED = {
    name: "the Shi et al. MouseNet is not a goaldriven model yet, so its release cannot be imported"
    for name in ("shi_mousenet_ir", "shi_mousenet_vispor5_ir")
}
_ARCHS = {"single_stream": "streamnet_single", "dual_stream": "streamnet_dual", "six_stream": "streamnet_six"}
_OBJECTIVES = {"ir": "instance_recognition", "simclr": "simclr", "supervised": "imagenet64"}


@dataclasses.dataclass(frozen=True)
class Variant:
    zoo_name: str  # goaldriven.models.zoo name of the backbone
    objective: str  # "ir", "simclr" or "supervised"


VARIANTS = {f"{arch}_{objective}": Variant(zoo_name, objective) for arch, zoo_name in _ARCHS.items()
            for objective in _OBJECTIVES}  # fmt: skip
VARIANTS["alexnet_bn_ir"] = Variant("alexnet_bn", "ir")


def _released(name: str, variant: Variant) -> common.Released:
    files = (
        f"{name}.pt, downloaded by {_BUCKET}"
        if name in _PUBLIC
        else f"not released: a {name}.pt of your own from the mouse-vision trainers"
    )
    experiment = f"experiments/{_OBJECTIVES[variant.objective]}__{variant.zoo_name}.gin"
    return common.Released(name, "mouse_vision", experiment, files=files)


RELEASED = {name: _released(name, variant) for name, variant in VARIANTS.items()}
SECTIONS = {"ir": ("model_state_dict", "embedding_func"), "simclr": ("model_state_dict", "neck_state_dict"),
            "supervised": ("model_state_dict",)}  # fmt: skip


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch conv weight [O, I, kh, kw] -> Keras kernel [kh, kw, I, O]."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def dense_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Linear weight [O, I] -> Keras kernel [I, O]."""
    return np.ascontiguousarray(w.T)


def flattened_dense_kernel(h: int, w: int, c: int) -> Callable[[np.ndarray], np.ndarray]:
    """Linear weight [O, C*H*W] reading a (C, H, W)-flattened map -> Keras kernel [H*W*C, O] for (H, W, C) order."""

    def convert(weight: np.ndarray) -> np.ndarray:
        if weight.ndim != 2 or weight.shape[1] != h * w * c:
            return weight  # the shape check reports it
        out = weight.reshape(weight.shape[0], c, h, w).transpose(2, 3, 1, 0)
        return np.ascontiguousarray(out.reshape(h * w * c, weight.shape[0]))

    return convert


def _bn(plan: dict, layer, prefix: str, origin: str) -> None:
    if abs(layer.epsilon - BN_EPSILON) > 1e-12:
        raise common.WeightImportError(
            f"{origin}: goaldriven layer {layer.path} has BN epsilon {layer.epsilon}, the release was trained with "
            f"PyTorch's {BN_EPSILON}; build the model with epsilon {BN_EPSILON}"
        )
    for variable, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                          ("moving_variance", "running_var")):  # fmt: skip
        plan[getattr(layer, variable).path] = common.Source(f"{prefix}.{key}")


def _linear(plan: dict, layer, prefix: str, convert=dense_kernel, note="[O, I] -> [I, O]", sep=".") -> None:
    plan[layer.kernel.path] = common.Source(f"{prefix}{sep}weight", convert, note)
    if layer.use_bias:
        plan[layer.bias.path] = common.Source(f"{prefix}{sep}bias")


def _conv(plan: dict, layer, prefix: str) -> None:
    plan[layer.kernel.path] = common.Source(f"{prefix}.weight", conv_kernel, "OIHW -> HWIO")
    if layer.use_bias:
        plan[layer.bias.path] = common.Source(f"{prefix}.bias")


def _zero(plan: dict, layer) -> None:
    for variable in layer.weights:
        plan[variable.path] = common.Source(None, note="not in the release (drop_final_fc): zero")


def streamnet_plan(model, origin: str, *, readout: bool) -> dict[str, common.Source]:
    """{variable path: Source} of a goaldriven StreamNet from `model_state_dict/...` keys."""
    plan: dict[str, common.Source] = {}
    encoder = model.encoder
    for i, edge in enumerate(encoder.plan.edges):
        source = "input" if edge.source == encoder_plans.INPUT else edge.source
        prefix = f"model_state_dict/model_layers.{source}_{edge.target}"
        index = 0  # position in the reference's nn.Sequential
        for j, op in enumerate(edge.ops):
            if isinstance(op, encoder_plans.Conv):
                _conv(plan, encoder.convs[i][j], f"{prefix}.{index}")
                if encoder.norms[i][j] is not None:
                    _bn(plan, encoder.norms[i][j], f"{prefix}.{index + 1}", origin)
                index += 3 if encoder.norms[i][j] is not None else 2
            else:
                index += 1
    if readout:
        pool = model.readout_size
        order = flattened_dense_kernel(pool, pool, 256 * len(model.plan.outputs))
        _linear(plan, model.readout, "model_state_dict/classifier.2", order, "(C, H, W) rows -> (H, W, C), transposed")
    else:
        _zero(plan, model.readout)
    return plan


def alexnet_bn_plan(model, origin: str, *, readout: bool) -> dict[str, common.Source]:
    """{variable path: Source} of goaldriven's AlexNet-BN (`mouse_baselines.TorchvisionAlexNet`, batch_norm=True)."""
    if not model.batch_norm:
        raise ValueError("the mouse-vision AlexNet release is AlexNet-BN; build zoo 'alexnet_bn'")
    plan: dict[str, common.Source] = {}
    for conv, norm, index in zip(model.convs, model.norms, (0, 4, 8, 11, 14)):
        _conv(plan, conv, f"model_state_dict/features.{index}")
        _bn(plan, norm, f"model_state_dict/features.{index + 1}", origin)
    order = flattened_dense_kernel(*model.avgpool.output_size, 256)
    _linear(plan, model.fc6, "model_state_dict/classifier.1", order, "(C, H, W) rows -> (H, W, C), transposed")
    _bn(plan, model.fc_norms[0], "model_state_dict/classifier.2", origin)
    _linear(plan, model.fc7, "model_state_dict/classifier.5")
    _bn(plan, model.fc_norms[1], "model_state_dict/classifier.6", origin)
    if readout:
        _linear(plan, model.fc8, "model_state_dict/classifier.8")
    else:
        _zero(plan, model.fc8)
    return plan


def plan(model, name: str, origin: str = "") -> dict[str, common.Source]:
    """{variable path: Source} for the goaldriven model of release `name` (a SelfSupervisedModel for IR / SimCLR,
    the backbone itself for supervised releases)."""
    variant = VARIANTS[name]
    supervised = variant.objective == "supervised"
    if supervised == isinstance(model, heads.SelfSupervisedModel):
        raise ValueError(f"{name} needs a {'plain' if supervised else 'self-supervised'} model; got {type(model)}")
    backbone = model if supervised else model.backbone
    if isinstance(backbone, streamnet.StreamNet):
        out = streamnet_plan(backbone, origin, readout=supervised)
        pooled = backbone.readout_size, backbone.readout_size, 256 * len(backbone.plan.outputs)
    elif isinstance(backbone, mouse_baselines.TorchvisionAlexNet):
        out = alexnet_bn_plan(backbone, origin, readout=supervised)
        pooled = None
    else:
        raise ValueError(f"no mouse-vision name table for a {type(backbone).__name__} backbone")
    if supervised:
        return out
    reads_pool = pooled is not None and model.feature == "pool"
    first = flattened_dense_kernel(*pooled) if reads_pool else dense_kernel
    first_note = "(C, H, W) rows -> (H, W, C), transposed" if reads_pool else "[O, I] -> [I, O]"
    if variant.objective == "ir":
        (head,) = model.heads.values()
        _linear(out, head.denses[0], "embedding_func", first, first_note, sep="/")
    else:
        head = model.heads["projection"]
        for i, (dense, norm) in enumerate(zip(head.denses, head.norms)):
            _linear(out, dense, f"neck_state_dict/fc{i}", first if i == 0 else dense_kernel, first_note)
            if norm is not None:
                _bn(out, norm, f"neck_state_dict/bn{i}", origin)
    return out


def _strip(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def read_release(path: str, name: str) -> tuple[dict[str, object], list[str]]:
    """({"<section>/<key>": tensor} of the sections release `name` needs, other top-level entries)."""
    top = torch_files.load(path)
    if not isinstance(top, dict):
        raise common.WeightImportError(f"{path} holds a {type(top).__name__}, not a checkpoint dict")
    if "model_state_dict" not in top:
        if top and all(torch_files.is_tensor(v) for v in top.values()):
            top = {"model_state_dict": top}  # a bare state dict
        else:
            raise common.WeightImportError(
                f"{path} has no model_state_dict (it holds {', '.join(map(str, top))}); pass a mouse-vision "
                "checkpoint saved by its trainers"
            )
    tensors: dict[str, object] = {}
    for section in SECTIONS[VARIANTS[name].objective]:
        if section not in top:
            raise common.WeightImportError(
                f"{path} has no {section} (it holds {', '.join(map(str, top))}): it is not a "
                f"{VARIANTS[name].objective} checkpoint; check --name ({name})"
            )
        for key, value in top[section].items():
            if torch_files.is_tensor(value):
                tensors[f"{section}/{_strip(key)}"] = value
    others = [f"{key}" for key in top if key not in SECTIONS[VARIANTS[name].objective]]
    return tensors, others


def ignorable(key: str) -> bool:
    """num_batches_tracked and the checkpoint's non-weight entries (memory bank, optimizer, results, epoch)."""
    return key.endswith("num_batches_tracked") or "/" not in key


def assign(model, path: str, name: str) -> common.ImportReport:
    """Assigns every weight of the built goaldriven model of release `name` from the `.pt` file `path`."""
    if name not in VARIANTS:
        raise ValueError(f"unknown mouse-vision release {name!r}; one of {', '.join(VARIANTS)}")
    origin = f"{path} ({name})"
    tensors, others = read_release(path, name)
    weights = [v for v in model.variables if "seed_generator" not in v.path]  # dropout RNG states are not weights
    keys = [*tensors, *others]
    return common.assign_weights(
        weights, plan(model, name, origin), keys, lambda key: torch_files.as_array(tensors[key]), origin=origin,
        ignore=ignorable,
    )  # fmt: skip


def build_model(name: str, *, image_size: int = 64):
    """The goaldriven model of release `name` as its experiment builds it (without gin): the backbone, wrapped with
    the objective's head for IR (linear 128) and SimCLR (the Chapter 3 projection)."""
    variant = VARIANTS[name]
    if variant.objective == "supervised":
        return zoo.build_model(variant.zoo_name, num_classes=1000, image_size=image_size)
    backbone = zoo.build_model(variant.zoo_name, num_classes=1, image_size=image_size)
    feature = "fc7" if variant.zoo_name == "alexnet_bn" else "pool"
    specs = (
        {"embedding": heads.HeadSpec((), 128)}
        if variant.objective == "ir"
        else {"projection": simclr.chapter3_head(2048, 128)}
    )
    return heads.build_self_supervised_model(backbone, feature, specs, image_size=image_size)


def load_model(path: str, name: str, *, image_size: int = 64):
    """`build_model(name)` with every weight assigned from the release `path` (a `.pt` file)."""
    if name in NOT_SUPPORTED:
        raise ValueError(f"{name}: {NOT_SUPPORTED[name]}")
    if name not in VARIANTS:
        raise ValueError(f"unknown mouse-vision release {name!r}; one of {', '.join(VARIANTS)}")
    if not os.path.isfile(path):
        torch_files.load(path)  # the one-line error for a folder or a missing file
    model = build_model(name, image_size=image_size)
    assign(model, path, name)
    return model
