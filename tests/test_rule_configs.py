"""The learning-rule configs (gin/rules/) and the thesis Chapter 5 ImageNet experiments built on them.

Every expected number is typed from the spec (ch5 7.3 = thesis Table 5.5, ch5 7.4 = Section 5.9.2, ch5 8 = Tables
5.3 and 5.4), never read from goaldriven/alignment/rules.py. In the thesis' naming (alpha = amp, beta = decay, gamma
= null) the rule weights are

    amp = (alpha / beta) x beta,   decay = beta,   null = gamma          (TPE rules, Table 5.5)
    SA: self 2e-3, decay 1e-3;  AA: amp 2e-3, sparse 1e-3               (Section 5.9.2, code convention, spec A1)

and the step counts follow from 1,281,167 training images: steps per epoch = 1,281,167 / batch; the delay is de
epochs of R-only steps; alternating runs take two loop steps per task update. Training runs use fabricated batches
(tests/test_configs.py's `_smoke_batch`) and 2 loop steps; a small ResNet stands in for the ImageNet ResNets in the
fast runs, the experiments' own models run under --run-slow.
"""

# b: batch, h/w: space, c: channels
import glob
import os
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven.alignment import layers as aligned_layers
from goaldriven.tasks import image_classification, loop
from tests import strategies
from tests.test_configs import REPO, _smoke_batch

IMAGENET_TRAIN = 1_281_167
FLAG_NAMES = (  # the rows of Table 5.5, in order
    "fo_bias", "fo_relu", "fo_bwmc", "fo_fwmc", "fo_fwl2n", "bo_bias", "bo_relu", "bo_fwmc", "bo_fwl2n", "bi_bwmc",
    "bi_fwmc", "bi_fwl2n",
)  # fmt: skip
# Table 5.5: alternating, de, batch, SGDM lr, alignment optimizer, eta, sigma, alpha/beta, beta, gamma, flags (T/F).
TABLE_5_5 = {
    "weight_mirror": (True, 2, 2048, 1.0, "SGD", 1.0, 0.6905, 15.6607, 0.0283, None, "TTTFFFFFFTFF"),
    "wm_ad": (True, 0, 256, 0.125, "Adam", 0.0053, 0.9500, 13.9040, 2.8109e-8, None, "TTTFFFFFFTFF"),
    "wm_ad_ops": (True, 0, 256, 0.125, "Adam", 0.0025, 0.6402, 0.1344, 232.7856, None, "TTTTFFTFTTFF"),
    "information_alignment": (True, 1, 256, 0.125, "Adam", 0.0098, 0.8176, 129.1123, 7.9990, 3.1610e-6, "TTTTFTFTTFFF"),
}
TPE_CLASS = {"information_alignment": "InformationAlignment"}  # the others are WeightMirror
# Section 5.9.2 (SA, AA) and the same recipe for backprop, FA and KP: class, weights, flags that are True.
STANDARD = {
    "backprop": ("Backprop", {}, ()),
    "feedback_alignment": ("FeedbackAlignment", {}, ()),
    "symmetric_alignment": ("SymmetricAlignment", {"self_weight": 2e-3, "decay_weight": 1e-3}, ("fo_bias", "bo_bias")),
    "activation_alignment": (
        "ActivationAlignment",
        {"amp_weight": 2e-3, "sparse_weight": 1e-3},
        ("fo_bias", "bo_bias"),
    ),
    "kolen_pollack": ("KolenPollack", {"decay_weight": 1e-3}, ()),
}
WEIGHTS = ("amp_weight", "decay_weight", "null_weight", "sparse_weight", "self_weight")
# Thesis Table 5.3 (ResNet-18 top-1, top-5) and Table 5.4 (top-1: backprop, SA, AA).
TABLE_5_3 = {"backprop": (70.06, 89.14), "weight_mirror": (64.07, 85.47), "wm_ad": (64.40, 85.53),
             "wm_ad_ops": (63.41, 84.83), "information_alignment": (67.93, 88.09)}  # fmt: skip
TABLE_5_4 = {"resnet18_v1": (70.06, 69.84, 69.98), "resnet50_v1": (76.05, 76.29, 75.75),
             "resnet50_v2": (77.21, 77.18, 76.67), "resnet101_v2": (78.64, 78.74, 78.35),
             "resnet152_v2": (79.31, 79.15, 78.98)}  # fmt: skip
TABLE_5_4_RULES = ("backprop", "symmetric_alignment", "activation_alignment")
EXPECTED_EXPERIMENTS = sorted(
    {f"imagenet__resnet18_v1__{rule}" for rule in (*TABLE_5_3, "feedback_alignment", "kolen_pollack")}
    | {f"imagenet__{model}__{rule}" for model in TABLE_5_4 for rule in TABLE_5_4_RULES}
)
RULE_FILES = sorted([*TABLE_5_5, *STANDARD])
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "gin", "experiments", "imagenet__resnet*__*.gin")))
FAST_TRAINING = ("information_alignment", "symmetric_alignment")  # alternating + delay + Adam; simultaneous


def _parse(files, bindings=()):
    cli_config.parse_gin_config(files, bindings, clear=True, check_bindings=False)  # DELAY_STEPS: TPE rules only


def _alignment_hook():
    """The one loop hook a rule file binds (`loop.run.hooks = [@training.AlignmentTraining()]`), built."""
    (reference,) = gin.query_parameter("loop.run.hooks")
    return reference.scoped_configurable_fn()


def _macro(name):
    value = gin.query_parameter(f"{name}/macro.value")
    return value.scoped_configurable_fn() if isinstance(value, gin.config.ConfigurableReference) else value


def _rule_setup(rule):
    """Rule, AlignmentTraining, its optimizer, task optimizer and task lr of resnet18_v1 under gin/rules/<rule>.gin
    (optimizers are made while the config is live: gin binds their arguments at call time)."""
    _parse(["experiments/imagenet__resnet18_v1.gin", f"rules/{rule}.gin"])
    learning_rule = _macro("LEARNING_RULE")
    alignment = _alignment_hook()
    task_lr = gin.query_parameter("loop.run.learning_rate").scoped_configurable_fn()
    task_opt = gin.query_parameter("loop.run.optimizer").scoped_configurable_fn(learning_rate=0.1)
    return learning_rule, alignment, alignment.optimizer(learning_rate=0.01), task_opt, task_lr


def test_every_thesis_row_has_one_experiment_and_every_rule_a_file():
    assert [os.path.basename(p)[: -len(".gin")] for p in EXPERIMENTS] == EXPECTED_EXPERIMENTS  # 21 runs
    rule_files = {os.path.basename(p)[: -len(".gin")] for p in glob.glob(os.path.join(REPO, "gin", "rules", "*.gin"))}
    assert rule_files == {*RULE_FILES, "training_tpe", "training_standard"}


@pytest.mark.parametrize("rule", sorted(TABLE_5_5))
def test_tpe_rule_has_table_5_5_metaparameters(rule):
    alternate, de, batch, sgdm_lr, opt_name, eta, sigma, ratio, beta, gamma, flags = TABLE_5_5[rule]
    try:
        learning_rule, alignment, align_opt, task_opt, task_lr = _rule_setup(rule)
        batch_macro, train_steps = _macro("GLOBAL_BATCH_SIZE"), _macro("TRAIN_STEPS")
    finally:
        gin.clear_config()
    assert type(learning_rule).__name__ == TPE_CLASS.get(rule, "WeightMirror")
    expected = {"amp_weight": ratio * beta, "decay_weight": beta, "null_weight": gamma or 0.0}
    for weight in WEIGHTS:
        np.testing.assert_allclose(getattr(learning_rule, weight), expected.get(weight, 0.0), rtol=1e-7, err_msg=weight)
    assert learning_rule.input_noise == "normal" and learning_rule.sigma == pytest.approx(sigma, rel=1e-9)
    assert {f: getattr(learning_rule, f) for f in FLAG_NAMES} == {f: v == "T" for f, v in zip(FLAG_NAMES, flags)}
    assert not learning_rule.tie_grad and not learning_rule.update_forward

    # Training side: batch, Nesterov SGDM at the table's lr, x0.1 at 30/60/80 task epochs (the task optimizer's own
    # updates), eta on R with drops shifted by de, R-only delay of de epochs, alternating pairs, 100 task epochs.
    steps_per_epoch = IMAGENET_TRAIN / batch
    assert batch_macro == batch
    assert task_opt.nesterov and task_opt.momentum == pytest.approx(0.9)
    _assert_drops(task_lr, sgdm_lr, [30, 60, 80], steps_per_epoch)
    _assert_drops(alignment.learning_rate, eta, [30 + de, 60 + de, 80 + de], steps_per_epoch)
    assert alignment.alternate is alternate
    assert abs(alignment.delay_steps - de * steps_per_epoch) <= 2 and alignment.delay_steps % 2 == 0
    task_updates = (train_steps - alignment.delay_steps) / 2
    assert train_steps % 2 == 0 and abs(task_updates - 100 * steps_per_epoch) <= 1
    assert type(align_opt).__name__ == opt_name
    if opt_name == "SGD":  # vanilla gradient descent
        assert align_opt.momentum == 0.0 and not align_opt.nesterov
    else:
        assert align_opt.epsilon == 1e-8  # TF1 Adam default (spec 5.1, A3)


@pytest.mark.parametrize("rule", sorted(STANDARD))
def test_section_5_9_2_rule_has_its_metaparameters(rule):
    class_name, weights, true_flags = STANDARD[rule]
    try:
        learning_rule, alignment, align_opt, task_opt, task_lr = _rule_setup(rule)
        batch, train_steps = _macro("GLOBAL_BATCH_SIZE"), _macro("TRAIN_STEPS")
    finally:
        gin.clear_config()
    assert type(learning_rule).__name__ == class_name
    for weight in WEIGHTS:
        np.testing.assert_allclose(getattr(learning_rule, weight), weights.get(weight, 0.0), rtol=1e-12)
    assert {f: getattr(learning_rule, f) for f in FLAG_NAMES} == {f: f in true_flags for f in FLAG_NAMES}
    assert learning_rule.input_noise is None  # SA/AA/KP use the real inputs (spec 4.3)
    assert learning_rule.tie_grad is (rule == "kolen_pollack")
    assert learning_rule.uses_backward_kernel is (rule != "backprop")
    # Batch 256, Nesterov SGDM 0.1, x0.1 at 30/60/80, 90 epochs; Adam 1e-3 on R, simultaneous, no delay.
    assert batch == 256 and train_steps == int(np.ceil(90 * IMAGENET_TRAIN / 256))
    assert task_opt.nesterov and task_opt.momentum == pytest.approx(0.9)
    _assert_drops(task_lr, 0.1, [30, 60, 80], IMAGENET_TRAIN / 256)
    _assert_drops(alignment.learning_rate, 1e-3, [30, 60, 80], IMAGENET_TRAIN / 256)
    assert not alignment.alternate and alignment.delay_steps == 0
    assert isinstance(align_opt, keras.optimizers.Adam) and align_opt.epsilon == 1e-8


def _assert_drops(schedule, base, boundary_epochs, steps_per_epoch):
    """lr = base before the first boundary and x0.1 after each (checked one step either side)."""
    for i, epoch in enumerate(boundary_epochs):
        step = round(epoch * steps_per_epoch)
        np.testing.assert_allclose(float(schedule(step - 1)), base * 0.1**i, rtol=1e-6)
        np.testing.assert_allclose(float(schedule(step + 1)), base * 0.1 ** (i + 1), rtol=1e-6)


def _name_parts(path):
    model, rule = os.path.basename(path)[: -len(".gin")].split("__")[1:]
    return model, rule


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_experiment_header_includes_and_image_size(path):
    model, rule = _name_parts(path)
    text = open(path).read()
    header = [line for line in text.splitlines() if line.startswith("#")]
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert header[0].startswith(f"# {os.path.basename(path)[:-4]}: ") and "goaldriven-train" in text
    assert len(body) <= 20 and f"include 'rules/{rule}.gin'" in body
    expected = [line for line in header if line.startswith("# Expected:")]
    assert len(expected) == 1
    numbers = re.findall(r"(\d+\.\d+)%", expected[0])
    if model == "resnet18_v1" and rule in TABLE_5_3:
        assert numbers == [f"{v:.2f}" for v in TABLE_5_3[rule]]
    elif rule in TABLE_5_4_RULES:
        assert numbers == [f"{TABLE_5_4[model][TABLE_5_4_RULES.index(rule)]:.2f}"]
    else:
        assert numbers == []  # FA and KP: no number in the text
    try:
        _parse([os.path.relpath(path, os.path.join(REPO, "gin"))])
        assert _macro("MODEL") == model
        assert _macro("IMAGE_SIZE") == (299 if model.endswith("_v2") else 224)  # spec 7.1, A9
        assert type(_macro("LEARNING_RULE")).__name__ == (
            STANDARD[rule][0] if rule in STANDARD else TPE_CLASS.get(rule, "WeightMirror")
        )
    finally:
        gin.clear_config()


class _Fabricated:
    """The dataset interface of image_classification: the same fabricated batch (test_configs._smoke_batch)."""

    num_classes = 1000

    def __init__(self, batch):
        self.batch = batch

    def train_dataset(self, *, global_batch_size, input_context=None, start_step=0, seed=0):
        del input_context, start_step, seed
        assert global_batch_size == 2
        return tf.data.Dataset.from_tensors(self.batch).repeat()

    def eval_dataset(self, *, global_batch_size, input_context=None):
        del global_batch_size, input_context
        return tf.data.Dataset.from_tensors({**self.batch, "weight": tf.ones([2])})

    def num_eval_examples(self):
        return 2


def _train_two_steps(path, tmp_path, bindings=(), image_size=32):
    """Two loop steps of the experiment on fabricated batches of `image_size` px; returns (rule name, rule object,
    alignment updates, initial weights by path, trained model)."""
    _, rule = _name_parts(path)
    _parse(
        [os.path.relpath(path, os.path.join(REPO, "gin")), "testing/smoke.gin"],
        [
            "GLOBAL_BATCH_SIZE = 2",
            "TRAIN_STEPS = 2",
            "DELAY_STEPS = 0",
            "WARMUP_EPOCHS = 0",
            "ALIGNMENT_WARMUP_EPOCHS = 0",
            "CHECKPOINT_EVERY = 2",
            f"IMAGE_SIZE = {image_size}",
            *bindings,
        ],
    )
    built = {}

    def model_fn():  # zoo.build_model as the experiment binds it; keeps the model the loop trains
        built["model"] = gin.query_parameter("MODEL_FN/macro.value").scoped_configurable_fn()
        built["initial"] = {w.path: w.numpy() for w in built["model"].weights}
        return built["model"]

    try:
        sized = types.SimpleNamespace(input_spec=types.SimpleNamespace(image_size=image_size))
        task = image_classification.ImageNetTask(model_fn=model_fn, dataset=_Fabricated(_smoke_batch(sized)))
        alternate = _alignment_hook().alternate
        result = gin.get_configurable(loop.run)(
            task=task, strategy=strategies.one_device(), workdir=str(tmp_path), evaluate_at_end=False, log=print
        )
        learning_rule = _macro("LEARNING_RULE")
    finally:
        gin.clear_config()
    assert result["status"] == "finished" and result["step"] == 2 and np.isfinite(result["train"]["loss"])
    return rule, learning_rule, 1 if alternate else 2, built["initial"], built["model"]


def _check_trained(rule, learning_rule, align_updates, before, trained):
    """B moves as the rule says; an Adam step moves a B entry by eta |g| / (|g| + eps) <= eta (about eta)."""
    forward = [w for w in trained.trainable_weights if "backward" not in w.path]
    assert any(not np.array_equal(before[w.path], w.numpy()) for w in forward)  # one task update happened
    kernels = aligned_layers.backward_kernels(trained)
    if rule == "backprop":
        assert kernels == [] and aligned_layers.aligned_layers(trained) == []
        return
    assert kernels and all(layer.rule == learning_rule for layer in aligned_layers.aligned_layers(trained))
    deltas = [np.abs(k.numpy() - before[k.path]) for k in kernels]
    if rule == "feedback_alignment":
        assert all(d.max() == 0.0 for d in deltas)  # fixed random B
        return
    assert all(d.max() > 0.0 for d in deltas)
    eta = {"symmetric_alignment": 1e-3, "activation_alignment": 1e-3, **{r: v[5] for r, v in TABLE_5_5.items()}}
    if rule in eta and rule != "weight_mirror":  # Adam (weight_mirror: vanilla gradient descent)
        largest = max(d.max() for d in deltas)
        rounding = 4 * max(np.spacing(np.abs(before[k.path]).max()) for k in kernels)  # float32 B + dB
        bound = eta[rule] * sum(_adam_step_bound(t) for t in range(1, align_updates + 1))
        assert eta[rule] * 0.5 < largest <= bound + rounding


def _adam_step_bound(t, beta1=0.9, beta2=0.999):
    """max |m_hat / sqrt(v_hat)| at Adam step t over all gradient histories (eps = 0): m_hat = sum_i a_i g_i and
    v_hat = sum_i c_i g_i^2, so by Cauchy-Schwarz the maximum is sqrt(sum_i a_i^2 / c_i) (1 at t = 1, 1.0014 at 2)."""
    a = [(1 - beta1) * beta1 ** (t - i) / (1 - beta1**t) for i in range(1, t + 1)]
    c = [(1 - beta2) * beta2 ** (t - i) / (1 - beta2**t) for i in range(1, t + 1)]
    return float(np.sqrt(sum(ai**2 / ci for ai, ci in zip(a, c))))


@pytest.mark.parametrize("rule", FAST_TRAINING)
def test_rule_trains_two_steps_on_a_small_resnet(rule, tmp_path):
    """The experiment's rule and training recipe on small_resnet8 (the ResNet-18 run is the slow test below)."""
    path = os.path.join(REPO, "gin", "experiments", f"imagenet__resnet18_v1__{rule}.gin")
    _check_trained(*_train_two_steps(path, tmp_path, ["MODEL = 'small_resnet8'"]))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_experiment_trains_two_steps(path, tmp_path):
    # 64 px: a 2 x 2 last map. At 32 px the deep v2 ResNets end on 1 x 1 maps, where batch norm over 2 examples
    # amplifies the gradient about 1e9-fold (the stem kernel's exact gradient: 5e9 at 32 px, 5.4 at 64 px).
    _check_trained(*_train_two_steps(path, tmp_path, image_size=64))


@pytest.mark.parametrize(
    "rule_file, task_warmup, alignment_warmup",
    [("symmetric_alignment", 5, 5), ("wm_ad", 6, 6), ("information_alignment", 6, 0), ("weight_mirror", 6, 0)],
)
def test_warmup_epochs(rule_file, task_warmup, alignment_warmup):
    # Section 5.9.2: 5-epoch warm-up (SA/AA); Section 5.9.1: 6 epochs, and eta warmed up only when de = 0 (spec 5.4).
    gin.clear_config()
    try:
        _parse([f"experiments/imagenet__resnet18_v1__{rule_file}.gin"])
        assert gin.query_parameter("%WARMUP_EPOCHS") == task_warmup
        assert gin.query_parameter("%ALIGNMENT_WARMUP_EPOCHS") == alignment_warmup
    finally:
        gin.clear_config()
