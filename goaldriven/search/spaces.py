"""Search spaces as code: each is a function of an Optuna trial that samples parameters and returns gin bindings.

A trial's bindings go after its experiment's gin files on an ordinary `goaldriven-train` command line, so every point
of a space is a run anyone can repeat. Spaces and the experiments they are written for (`SPACES`):

  rgc        Chapter 2 RGC search (thesis Section 2.5.4, spec ch2 4.9 and 7.6) on imagenet__rgc_intermediate.gin:
             cell connections, affine types and kernel sizes, depth-separable flags, gate nonlinearities,
             offsets/multipliers, cell depth, activations, long-range feedback edges and their entry, per-layer
             cell L2, init scale, learning rate, batch and backbone L2. `RGC_MEDIAN` is the RGC Median point.
  lstm       Chapter 2 LSTM search (spec ch2 7.6) on imagenet__lstm_shallow.gin: per-layer channels, filter size,
             LayerNorm, L2, init scale, biases, peepholes; unroll, image-off, batch, LR, Nesterov, clipping, backbone
             L2. `LSTM_OPT` is the released LSTM Opt point.
  wm, wm_ad, wm_ad_ops, ia
             Chapter 5 TPE searches 1-4 (spec ch5 7.2) on imagenet__resnet18_v1__{weight_mirror,wm_ad,wm_ad_ops,
             information_alignment}.gin, or on a small task (digits__small_resnet8.gin) with schedule="steps".
  toy        two floats and a categorical, for tests and benchmarks (no experiment).

Ranges the thesis does not give (spec ch2 7.6, A-18) are chosen around the released configurations; each function's
docstring lists them. Budgets: the thesis' search budgets (RGC 5 epochs, LSTM 1 epoch at 128 px, Chapter 5 45 epochs)
are bound unless budget=False (e.g. a small stand-in task sets its own steps).
"""

from typing import Any, Callable

import optuna

Space = Callable[..., list[str]]
RGC_NODES = tuple(f"conv{k}" for k in range(4, 11))
LSTM_NODES = ("conv3", "conv4", "conv5")
# Candidate long-range feedback edges: every deeper RGC node into every shallower one (thesis Fig. 2.7b).
FEEDBACK_CANDIDATES = tuple((f"conv{s}", f"conv{t}") for s in range(5, 11) for t in range(4, s))
AFFINES = ("conv", "separable")  # thesis Affine: KxK conv or KxK depth-separable conv (1x1 is K = 1)
IDENTITY_AFFINES = ("identity", "conv", "separable")  # + the identity sum where source and target depths match
ALIGNMENT_FLAGS = ("fo_bias", "fo_relu", "fo_bwmc", "fo_fwmc", "fo_fwl2n", "bo_bias", "bo_relu", "bo_fwmc",
                   "bo_fwl2n", "bi_bwmc", "bi_fwmc", "bi_fwl2n")  # fmt: skip
# Searches 1-2 fix the ops as Akrout et al. (spec ch5 7.2): FO bias, ReLU, BWMC and BI BWMC on, the rest off.
AKROUT_FLAGS = {flag: flag in ("fo_bias", "fo_relu", "fo_bwmc", "bi_bwmc") for flag in ALIGNMENT_FLAGS}
IMPORTS = ["from __gin__ import dynamic_registration", "from goaldriven.alignment import rules"]
# Copies of goaldriven/models/convrnn_zoo.py's released configurations (importing that module loads TensorFlow, which
# a worker does not need; tests/search/test_spaces.py checks that the copies match).
RGC_MEDIAN_FEEDBACK = (("conv8", "conv5"), ("conv9", "conv6"), ("conv10", "conv7"), ("conv7", "conv6"),
                       ("conv10", "conv9"))  # fmt: skip
LSTM_OPT_LAYERS = (
    dict(filters=128, kernel_size=2, peepholes=False, forget_bias=1.3561755203084322, init_scale=0.70088,
         bias_init=1.64277, weight_decay=5.434e-6),
    dict(filters=256, kernel_size=3, peepholes=True, forget_bias=0.977962918535079, init_scale=1.83146,
         bias_init=-1.16602, weight_decay=7.613e-6),
    dict(filters=256, kernel_size=4, peepholes=False, forget_bias=0.9249280259963113, init_scale=0.89376,
         bias_init=-1.34950, weight_decay=3.038e-6),
)  # fmt: skip


def _gin(value: Any) -> str:
    """A Python value as a gin literal (floats at full precision)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_gin(k)}: {_gin(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        inner = ", ".join(_gin(v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else f"[{inner}]"
    return repr(value)


def _affine(trial: optuna.Trial, name: str, choices=AFFINES) -> tuple[int, bool]:
    """(filter size, depth-separable) of one affine family: identity (0), KxK conv or KxK separable, K in 1..7."""
    kind = trial.suggest_categorical(f"{name}_affine", choices)
    if kind == "identity":
        return 0, False
    return trial.suggest_int(f"{name}_kernel", 1, 7), kind == "separable"


# A search trial's budget (1-5 epochs) is shorter than the plateau rule's patience (5 evaluations; gin/schedules/
# plateau.gin, included by the searched models' experiments): no drop could happen, so trials skip its evaluations.
NO_PLATEAU = "PLATEAU_MAX_DROPS = 0"


def rgc_space(trial: optuna.Trial, *, budget: bool = True) -> list[str]:
    """The Chapter 2 RGC space (spec ch2 4.9) for imagenet__rgc_intermediate.gin; one cell configuration shared by
    conv4-conv10 (as RGC Median) with a per-layer cell L2.

    Ranges [D, A-18]: kernels K in 1..7 for the tau, gate, ff (x -> cell) and in_out (x -> out) families, each a conv or
    depth-separable conv (tau and in_out may also be the identity sum); tau/gate nonlinearity sigmoid or tanh; offsets
    in [0.5, 1.5], multipliers in [-1.5, -0.5]; cell depth 32/64/128; connections input_to_cell, input_to_out,
    out_residual, cell_residual, residual_to_{cell,out}_gate, cell_to_out, use_current_cell_for_out; cell/out
    activations ELU, tanh or sigmoid, input activation ELU or linear; each of the 21 deeper -> shallower feedback
    edges among conv4-conv10 on/off, entering at input, cell or out through a 1x1 or 3x3 conv, linear or ELU;
    init scale in [0.25, 2]; per-layer cell L2 and backbone L2 log-uniform in [1e-7, 1e-3]; learning rate
    log-uniform in [1e-3, 1e-1] (for REFERENCE_BATCH_SIZE 64); batch 64/128/256. Budget: 5 epochs at 128 px.
    """
    tau_k, tau_ds = _affine(trial, "tau", IDENTITY_AFFINES)
    gate_k, gate_ds = _affine(trial, "gate")
    ff_k, ff_ds = _affine(trial, "ff")
    io_k, io_ds = _affine(trial, "in_out", IDENTITY_AFFINES)
    cell = dict(
        cell_depth=trial.suggest_categorical("cell_depth", [32, 64, 128]),
        tau_filter_size=tau_k,
        tau_depth_separable=tau_ds,
        tau_nonlinearity=trial.suggest_categorical("tau_nonlinearity", ["sigmoid", "tanh"]),
        tau_offset=trial.suggest_float("tau_offset", 0.5, 1.5),
        tau_multiplier=trial.suggest_float("tau_multiplier", -1.5, -0.5),
        gate_filter_size=gate_k,
        gate_depth_separable=gate_ds,
        gate_nonlinearity=trial.suggest_categorical("gate_nonlinearity", ["sigmoid", "tanh"]),
        gate_offset=trial.suggest_float("gate_offset", 0.5, 1.5),
        gate_multiplier=trial.suggest_float("gate_multiplier", -1.5, -0.5),
        ff_filter_size=ff_k,
        ff_depth_separable=ff_ds,
        in_out_filter_size=io_k,
        in_out_depth_separable=io_ds,
    )
    for flag in ("input_to_cell", "input_to_out", "out_residual", "cell_residual", "residual_to_cell_gate",
                 "residual_to_out_gate", "cell_to_out", "use_current_cell_for_out"):  # fmt: skip
        cell[flag] = trial.suggest_categorical(flag, [False, True])
    for stage in ("cell", "out"):
        cell[f"{stage}_activation"] = trial.suggest_categorical(f"{stage}_activation", ["elu", "tanh", "sigmoid"])
    cell["input_activation"] = trial.suggest_categorical("input_activation", ["elu", "linear"])
    cell["init_scale"] = trial.suggest_float("init_scale", 0.25, 2.0)
    edges = [
        edge for edge in FEEDBACK_CANDIDATES if trial.suggest_categorical(f"fb_{edge[0]}_{edge[1]}", [False, True])
    ]
    if edges:
        cell["feedback_entry"] = trial.suggest_categorical("feedback_entry", ["input", "cell", "out"])
        cell["feedback_filter_size"] = trial.suggest_categorical("feedback_filter_size", [1, 3])
        cell["feedback_activation"] = trial.suggest_categorical("feedback_activation", ["linear", "elu"])
    overrides: dict[str, dict[str, Any]] = {"*": cell}
    for node in RGC_NODES:
        overrides[node] = {"weight_decay": trial.suggest_float(f"{node}_weight_decay", 1e-7, 1e-3, log=True)}
    bindings = [
        f"CELL_OVERRIDES = {_gin(overrides)}",
        f"FEEDBACK_EDGES = {_gin([tuple(e) for e in edges])}",
        f"BASE_LEARNING_RATE = {trial.suggest_float('learning_rate', 1e-3, 1e-1, log=True)!r}",
        "REFERENCE_BATCH_SIZE = 64",
        f"GLOBAL_BATCH_SIZE = {trial.suggest_categorical('batch_size', [64, 128, 256])!r}",
        f"WEIGHT_DECAY = {trial.suggest_float('weight_decay', 1e-7, 1e-3, log=True)!r}",
    ]
    return bindings + (["EPOCHS = 5", "IMAGE_SIZE = 128", NO_PLATEAU] if budget else [])


# RGC Median (spec ch2 4.8, models/convrnn_zoo.py) as a point of `rgc_space`: enqueue it to start a search from it.
RGC_MEDIAN = dict(
    tau_affine="separable", tau_kernel=7, gate_affine="separable", gate_kernel=7, ff_affine="conv", ff_kernel=2,
    in_out_affine="conv", in_out_kernel=3, cell_depth=64, tau_nonlinearity="sigmoid", tau_offset=0.9219348,
    tau_multiplier=-0.9219348, gate_nonlinearity="tanh", gate_offset=0.7006567, gate_multiplier=-0.7006567,
    input_to_cell=True, input_to_out=True, out_residual=True, cell_residual=False, residual_to_cell_gate=False,
    residual_to_out_gate=False, cell_to_out=False, use_current_cell_for_out=False, cell_activation="elu",
    out_activation="elu", input_activation="elu", init_scale=0.6393378,
    **{f"fb_{s}_{t}": (s, t) in RGC_MEDIAN_FEEDBACK for s, t in FEEDBACK_CANDIDATES},
    feedback_entry="out", feedback_filter_size=1, feedback_activation="linear",
    **{f"{node}_weight_decay": 2.033999e-4 for node in RGC_NODES},
    learning_rate=6.736e-3, batch_size=64, weight_decay=1e-4,
)  # fmt: skip


def lstm_space(trial: optuna.Trial, *, budget: bool = True) -> list[str]:
    """The Chapter 2 LSTM space (spec ch2 7.6) for imagenet__lstm_shallow.gin, per layer conv3-conv5 independently:
    channels 64/128/256, filter size 1..4, LayerNorm, cell L2 log-uniform [1e-7, 1e-3], init scale [0.25, 2], constant
    bias init [-2, 2], forget bias [0, 6], peepholes; globally: unroll 12..26 in steps of 2, image-off 8/10/12, batch
    64/128/256, LR log-uniform [1e-3, 1e-1], Nesterov, gradient clip log-uniform [0.3, 3], backbone L2 log-uniform
    [1e-7, 1e-3]. The thesis' backbone He-init scale is not a knob of the zoo's backbone and is not searched. Budget:
    1 epoch at 128 px."""
    overrides = {}
    for node in LSTM_NODES:
        overrides[node] = dict(
            filters=trial.suggest_categorical(f"{node}_filters", [64, 128, 256]),
            kernel_size=trial.suggest_int(f"{node}_kernel_size", 1, 4),
            layer_norm=trial.suggest_categorical(f"{node}_layer_norm", [False, True]),
            weight_decay=trial.suggest_float(f"{node}_weight_decay", 1e-7, 1e-3, log=True),
            init_scale=trial.suggest_float(f"{node}_init_scale", 0.25, 2.0),
            bias_init=trial.suggest_float(f"{node}_bias_init", -2.0, 2.0),
            forget_bias=trial.suggest_float(f"{node}_forget_bias", 0.0, 6.0),
            peepholes=trial.suggest_categorical(f"{node}_peepholes", [False, True]),
        )
    bindings = [
        f"CELL_OVERRIDES = {_gin(overrides)}",
        f"UNROLL_LENGTH = {trial.suggest_int('unroll_length', 12, 26, step=2)!r}",
        f"IMAGE_OFF = {trial.suggest_int('image_off', 8, 12, step=2)!r}",
        f"GLOBAL_BATCH_SIZE = {trial.suggest_categorical('batch_size', [64, 128, 256])!r}",
        "REFERENCE_BATCH_SIZE = 64",
        f"BASE_LEARNING_RATE = {trial.suggest_float('learning_rate', 1e-3, 1e-1, log=True)!r}",
        f"NESTEROV = {trial.suggest_categorical('nesterov', [False, True])!r}",
        f"CLIP_VALUE = {trial.suggest_float('clip_value', 0.3, 3.0, log=True)!r}",
        f"WEIGHT_DECAY = {trial.suggest_float('weight_decay', 1e-7, 1e-3, log=True)!r}",
    ]
    return bindings + (["EPOCHS = 1", "IMAGE_SIZE = 128", NO_PLATEAU] if budget else [])


# LSTM Opt (spec ch2 4.4, imagenet__lstm_shallow.gin) as a point of `lstm_space`.
LSTM_OPT = dict(
    unroll_length=16, image_off=12, batch_size=64, learning_rate=7.5872e-3, nesterov=True, clip_value=0.323746,
    weight_decay=3.4795e-6,
    **{f"{node}_{key}": value for node, layer in zip(LSTM_NODES, LSTM_OPT_LAYERS) for key, value in
       {**layer, "layer_norm": True}.items() if key != "kernel_size"},
    **{f"{node}_kernel_size": layer["kernel_size"] for node, layer in zip(LSTM_NODES, LSTM_OPT_LAYERS)},
)  # fmt: skip


def _alignment_space(
    trial: optuna.Trial, rule: str, *, search: int, schedule: str, budget: bool, batch_sizes, steps_per_epoch: int
) -> list[str]:
    """Thesis searches 1-4 (spec ch5 7.2): the rule's coefficients, then (search >= 2) optimizer metaparameters, then
    (search >= 3) the 12 alignment-path op flags. schedule "imagenet": the training_tpe.gin macros at the thesis
    budget of 45 epochs of the task optimizer; "steps": a small task's loop hook (DELAY_STEPS = de x steps_per_epoch)."""
    sigma = trial.suggest_float("sigma", 1e-10, 1.0)
    ratio = trial.suggest_float("alpha_over_beta", 0.1, 200.0)
    beta = trial.suggest_float("beta", 1e-11, 1e7, log=True)
    coefficients = {"amp_weight": ratio * beta, "decay_weight": beta, "sigma": sigma, "input_noise": "normal"}
    if rule == "InformationAlignment":
        coefficients["null_weight"] = trial.suggest_float("gamma", 1e-11, 1e7, log=True)
    if search >= 3:
        flags = {flag: trial.suggest_categorical(flag, [False, True]) for flag in ALIGNMENT_FLAGS}
    else:
        flags = dict(AKROUT_FLAGS)
    bindings = list(IMPORTS)
    if schedule == "steps":
        bindings.append(f"LEARNING_RULE = @rules.{rule}()")
    bindings += [f"rules.{rule}.{key} = {value!r}" for key, value in {**coefficients, **flags}.items()]
    if search == 1:  # Akrout's fixed training (rules/weight_mirror.gin): de = 2, alternating
        de, alternate = 2, True
    else:
        batch = trial.suggest_categorical("batch_size", list(batch_sizes))
        eta = trial.suggest_float("alignment_learning_rate", 1e-6, 1e-2, log=True)
        de = trial.suggest_int("delay_epochs", 0, 2)
        alternate = trial.suggest_categorical("alternate", [False, True])
        bindings += [f"GLOBAL_BATCH_SIZE = {batch!r}", f"ALIGNMENT_LEARNING_RATE = {eta!r}"]
    bindings.append(f"ALTERNATE = {alternate!r}")
    if schedule == "steps":
        delay = de * steps_per_epoch
        return bindings + [f"DELAY_STEPS = {delay + delay % 2 if alternate else delay}"]
    if schedule != "imagenet":
        raise ValueError(f"schedule must be 'imagenet' or 'steps'; received {schedule!r}.")
    # The task optimizer J gets 45 epochs (budget) or 100: alternating pairs give it (TRAIN_STEPS - DELAY_STEPS) / 2
    # updates, simultaneous steps TRAIN_STEPS - DELAY_STEPS (rules/training_tpe.gin).
    epochs = 45 if budget else 100
    pair_epochs = epochs + de / 2 if alternate else (epochs + de) / 2
    return bindings + [
        f"DELAY_PAIR_EPOCHS = {de / 2!r}",
        f"TRAIN_PAIR_EPOCHS = {pair_epochs!r}",
        f"ALIGNMENT_BOUNDARIES = {_gin((30 + de, 60 + de, 80 + de))}",
        f"ALIGNMENT_WARMUP_EPOCHS = {0 if de else 6}",
    ]


def _alignment(rule: str, search: int) -> Space:
    def space(
        trial: optuna.Trial,
        *,
        schedule: str = "imagenet",
        budget: bool = True,
        batch_sizes=(256, 1024, 2048, 4096),
        steps_per_epoch: int = 0,
    ) -> list[str]:
        return _alignment_space(
            trial, rule, search=search, schedule=schedule, budget=budget, batch_sizes=batch_sizes,
            steps_per_epoch=steps_per_epoch,
        )  # fmt: skip

    space.__doc__ = (
        f"Thesis TPE search {search} (spec ch5 7.2) over rules.{rule}: sigma uniform [1e-10, 1], alpha/beta uniform "
        "[0.1, 200], beta log-uniform [1e-11, 1e7]"
        + (", gamma (null weight) log-uniform [1e-11, 1e7]" if rule == "InformationAlignment" else "")
        + ("; batch size, alignment LR eta log-uniform [1e-6, 1e-2], delay epochs 0-2, alternation" if search >= 2 else
           "; training fixed as Akrout et al. (de = 2, alternating)")
        + ("; the 12 op flags" if search >= 3 else "; op flags fixed as Akrout et al.")
        + ". schedule='imagenet' (45 epochs) or 'steps' (a small task, with steps_per_epoch and batch_sizes)."
    )  # fmt: skip
    return space


def toy_space(trial: optuna.Trial) -> list[str]:
    """A toy space for tests and benchmarks: x, y uniform in [0, 1] and kind in {a, b, c}; see `toy_value`."""
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return [f"TOY_X = {x!r}", f"TOY_Y = {y!r}", f"TOY_KIND = {kind!r}"]


def toy_value(params: dict[str, Any]) -> float:
    """The toy objective (maximised): x dominates (weight 10), y matters a little, kind barely."""
    bonus = {"a": 0.0, "b": 0.01, "c": 0.02}[params["kind"]]
    return -10.0 * (params["x"] - 0.3) ** 2 - 0.1 * (params["y"] - 0.5) ** 2 + bonus


SPACES: dict[str, Space] = {
    "rgc": rgc_space,
    "lstm": lstm_space,
    "wm": _alignment("WeightMirror", 1),
    "wm_ad": _alignment("WeightMirror", 2),
    "wm_ad_ops": _alignment("WeightMirror", 3),
    "ia": _alignment("InformationAlignment", 4),
    "toy": toy_space,
}
# The experiment each space is written for (schedule="imagenet" for the alignment spaces).
EXPERIMENTS = {
    "rgc": "gin/experiments/imagenet__rgc_intermediate.gin",
    "lstm": "gin/experiments/imagenet__lstm_shallow.gin",
    "wm": "gin/experiments/imagenet__resnet18_v1__weight_mirror.gin",
    "wm_ad": "gin/experiments/imagenet__resnet18_v1__wm_ad.gin",
    "wm_ad_ops": "gin/experiments/imagenet__resnet18_v1__wm_ad_ops.gin",
    "ia": "gin/experiments/imagenet__resnet18_v1__information_alignment.gin",
}
POINTS = {"rgc_median": ("rgc", RGC_MEDIAN), "lstm_opt": ("lstm", LSTM_OPT)}


def get_space(name: str) -> Space:
    """The space called `name`; raises ValueError listing the known ones."""
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; known spaces: {', '.join(SPACES)}.")
    return SPACES[name]
