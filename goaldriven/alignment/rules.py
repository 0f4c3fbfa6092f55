"""Learning rules: how backward kernels B are trained (thesis Sections 5.4-5.6, 5.8.2, Table 5.2; spec ch5 2.2, 4).

A rule is a small object that aligned layers (alignment/layers.py) take as `rule=`. It says whether the layer has a
backward kernel, whether B receives W's task update (Kolen-Pollack), and computes the layer's alignment loss R from
stop-gradient copies of the input, W and the bias, so R only trains B:

    Backprop (BP)             no B: the exact gradient (B = W^T at every instant)
    FeedbackAlignment (FA)    R = 0: B stays at its random initialisation
    WeightMirror (WM)         R = amp * P_amp + decay * P_decay, on Gaussian noise inputs
    InformationAlignment (IA) R = amp * P_amp + decay * P_decay + null * P_null, on noise inputs
    SymmetricAlignment (SA)   R = self * P_self + decay * P_decay       (fixed point B = W^T)
    ActivationAlignment (AA)  R = amp * P_amp + sparse * P_sparse        (fixed point B^T x = W x)
    KolenPollack (KP)         B gets W's task update (transposed) + decay * P_decay

Coefficients are named by primitive (amp_weight, decay_weight, ...), never alpha/beta, and multiply the primitives of
alignment/primitives.py (the reference code's convention, no 1/2; see the README's decisions for the thesis'
alpha/beta/gamma). Defaults are the thesis' metaparameters: Table 5.5 for WM and IA (TPE searches), Section 5.9.2 for
SA and AA, the reference code's for KP.

The alignment computation per layer (spec 4.1), with the thesis' flag names:
  1. x, W, bias <- stop_gradient (W too unless update_forward).
  2. input_noise 'normal' | 'uniform' replaces x by noise of std sigma (the real input is discarded).
  3. bi_fwmc / bi_fwl2n: per-example centering / centering + L2 normalisation of the input (both paths).
  4. bi_bwmc: the backward path's input minus its batch mean.
  5. f = x W (+ bias if fo_bias), b = x B^T (+ bias if bo_bias); 6. f, b <- act(f), act(b) if fo_relu / bo_relu
     (act: the layer's activation, ReLU for convs marked alignment_relu).
  7. reconstructions r_f = f B, r_b = b W^T (only computed when the null primitive is used).
  8. fo_fwmc, fo_fwl2n, fo_bwmc on f and r_f; 9. bo_fwmc, bo_fwl2n on b and r_b.
"""

# n: batch
import dataclasses
from typing import Callable

import tensorflow as tf

from goaldriven.alignment import primitives

INPUT_NOISE = (None, "normal", "uniform")
WEIGHTS = ("amp_weight", "decay_weight", "null_weight", "sparse_weight", "self_weight")


def _per_example_center(t):
    axes = list(range(1, t.shape.rank))
    return t - tf.reduce_mean(t, axis=axes, keepdims=True)


def _per_example_l2n(t):
    t = _per_example_center(t)
    axes = list(range(1, t.shape.rank))
    return t * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True), 1e-12))


def _batch_center(t):
    return t - tf.reduce_mean(t, axis=0, keepdims=True)


@dataclasses.dataclass(frozen=True)
class LearningRule:
    """A learning rule: primitive weights, alignment-path options, and whether B is tied to W's update.

    Args:
      amp_weight, decay_weight, null_weight, sparse_weight, self_weight: coefficients of the primitives (0: unused).
      tie_grad: B receives W's task-gradient (transposed): Kolen-Pollack.
      input_noise: None (the layer's real input), "normal" or "uniform" noise of std `sigma` in its place.
      sigma: std of the noise inputs.
      update_forward: let R's gradient reach W as well (the reference code's option; off in every thesis run).
      half: use the thesis' 1/2 on decay, null and sparse (default: the reference code's convention).
      fo_bias ... bi_fwl2n: the alignment-path operations of the TPE searches (module docstring, spec 7.2).
      batch_fraction: R is computed on the first ceil(fraction x n) examples of the batch (noise rules: that many
        noise samples) instead of all n. R is a batch mean, so the estimate stays unbiased and only its variance
        grows; its convolutions shrink in proportion. 1.0 (every thesis run) computes R on the whole batch.
    """

    amp_weight: float = 0.0
    decay_weight: float = 0.0
    null_weight: float = 0.0
    sparse_weight: float = 0.0
    self_weight: float = 0.0
    tie_grad: bool = False
    input_noise: str | None = None
    sigma: float = 1.0
    update_forward: bool = False
    half: bool = False
    fo_bias: bool = False
    bo_bias: bool = False
    fo_relu: bool = False
    bo_relu: bool = False
    fo_bwmc: bool = False
    fo_fwmc: bool = False
    fo_fwl2n: bool = False
    bo_fwmc: bool = False
    bo_fwl2n: bool = False
    bi_bwmc: bool = False
    bi_fwmc: bool = False
    bi_fwl2n: bool = False
    batch_fraction: float = 1.0

    name = "rule"
    uses_backward_kernel = True

    def __post_init__(self):
        for weight in WEIGHTS:
            value = getattr(self, weight)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{type(self).__name__}.{weight} must be a float >= 0. Received: {value!r}")
        if self.input_noise not in INPUT_NOISE:
            raise ValueError(f"input_noise must be one of {INPUT_NOISE}. Received: {self.input_noise!r}")
        if not self.sigma > 0:
            raise ValueError(f"sigma (the noise inputs' std) must be > 0. Received: {self.sigma}")
        if not 0.0 < self.batch_fraction <= 1.0:
            raise ValueError(f"batch_fraction must be in (0, 1] (1: the whole batch). Received: {self.batch_fraction}")

    @property
    def has_alignment_loss(self) -> bool:
        """Whether R depends on B (FA and Backprop have none)."""
        return any(getattr(self, weight) for weight in WEIGHTS)

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, **dataclasses.asdict(self)}

    def alignment_loss(
        self,
        *,
        x: tf.Tensor,
        w: tf.Tensor,
        b: tf.Tensor,
        bias: tf.Tensor | None,
        activation: Callable[[tf.Tensor], tf.Tensor] | None,
        project: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
        reconstruct: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
        forward_output: tf.Tensor | None = None,
        kernel_adjoint: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    ) -> tf.Tensor:
        """The layer's R (float32 scalar), differentiable with respect to `b` only (and `w` if update_forward).

        Args:
          x: the layer input (n, ...).
          w: the forward kernel; b: the backward kernel in w's shape (B^T for dense layers).
          bias: the layer's bias or None; activation: the alignment path's nonlinearity (None: identity).
          project: (input, kernel in w's shape) -> the layer's linear map (x W, or the conv).
          reconstruct: (output, kernel in w's shape) -> the transposed map back to x's shape.
          forward_output: the layer's own x W + bias on the same real input, reused as f when it is the same value.
          kernel_adjoint: (input, output) -> the kernel gradient of <output, project(input, K)> (x^T y, or the conv's
            filter gradient). When b enters R only linearly (amp without sparse, no nonlinearity or standardisation
            on the backward path) amp is computed as -<B, kernel_adjoint(x_b, f)> / n: the same value and gradient
            without computing b (one conv fewer per layer; weight mirror).
        """
        if not self.has_alignment_loss:
            return tf.constant(0.0)
        x = tf.stop_gradient(x)
        subsampled = self.batch_fraction < 1.0
        if subsampled:
            n = tf.cast(tf.shape(x)[0], tf.float32)  # static under XLA and drop_remainder
            x = x[: tf.maximum(1, tf.cast(tf.math.ceil(self.batch_fraction * n), tf.int32))]
        w = w if self.update_forward else tf.stop_gradient(w)
        bias = None if bias is None else tf.stop_gradient(bias)
        dtype = x.dtype
        noise = self.input_noise is not None
        if noise:
            if self.input_noise == "normal":
                x = tf.random.normal(tf.shape(x), stddev=self.sigma, dtype=dtype)
            else:
                limit = self.sigma * 3.0**0.5
                x = tf.random.uniform(tf.shape(x), -limit, limit, dtype=dtype)
        if self.bi_fwl2n:
            x = _per_example_l2n(x)
        elif self.bi_fwmc:
            x = _per_example_center(x)
        x_backward = _batch_center(x) if self.bi_bwmc else x
        linear_amp = (
            kernel_adjoint is not None
            and self.amp_weight
            and not self.sparse_weight
            and not ((self.bo_relu and activation is not None) or self.bo_fwmc or self.bo_fwl2n)
            and not self.update_forward
        )
        need_b = bool(self.amp_weight or self.sparse_weight) and not linear_amp
        need_f = bool(self.amp_weight or self.null_weight)

        f = r_f = b_out = None
        if need_f:
            reuse = (
                forward_output is not None
                and not noise
                and not subsampled
                and not (self.bi_fwl2n or self.bi_fwmc)
                and (bias is None or self.fo_bias)
                and not self.update_forward
            )
            f = tf.stop_gradient(forward_output) if reuse else project(x, w)
            if self.fo_bias and bias is not None and not reuse:
                f = f + bias
            if self.fo_relu and activation is not None:
                f = activation(f)
            if self.null_weight:
                r_f = reconstruct(f, b)
            for flag, fn in (("fo_fwmc", _per_example_center), ("fo_fwl2n", _per_example_l2n)):
                if getattr(self, flag):
                    f = fn(f)
                    r_f = None if r_f is None else fn(r_f)
            if self.fo_bwmc:
                f = _batch_center(f)
                r_f = None if r_f is None else _batch_center(r_f)
        if need_b:
            b_out = project(x_backward, b)
            if self.bo_bias and bias is not None:
                b_out = b_out + bias
            if self.bo_relu and activation is not None:
                b_out = activation(b_out)
            if self.bo_fwl2n:
                b_out = _per_example_l2n(b_out)
            elif self.bo_fwmc:
                b_out = _per_example_center(b_out)

        loss = tf.constant(0.0)
        if self.decay_weight:
            loss += self.decay_weight * primitives.decay(w, b, half=self.half)
        if self.self_weight:
            loss += self.self_weight * primitives.self_alignment(w, b)
        if self.amp_weight and linear_amp:
            # <f, x_b B^T + bias> = <kernel_adjoint(x_b, f), B> + <f, bias>; f and x_b carry no gradient.
            n = tf.cast(tf.shape(f)[0], tf.float32)
            adjoint = tf.cast(kernel_adjoint(x_backward, tf.stop_gradient(f)), tf.float32)
            inner = tf.reduce_sum(adjoint * tf.cast(b, tf.float32))
            if self.bo_bias and bias is not None:
                inner += tf.reduce_sum(tf.cast(f, tf.float32) * tf.cast(bias, tf.float32))
            loss += -self.amp_weight * inner / n
        elif self.amp_weight:
            loss += self.amp_weight * primitives.amp(f, b_out)
        if self.sparse_weight:
            loss += self.sparse_weight * primitives.sparse(None if f is None else f, b_out, half=self.half)
        if self.null_weight:
            loss += self.null_weight * primitives.null(r_f, half=self.half)
        return loss


@dataclasses.dataclass(frozen=True)
class Backprop(LearningRule):
    """Exact backpropagation: no backward kernel (B = W^T at every instant)."""

    name = "backprop"
    uses_backward_kernel = False


@dataclasses.dataclass(frozen=True)
class FeedbackAlignment(LearningRule):
    """Feedback alignment (Lillicrap et al. 2016): fixed random B, R = 0."""

    name = "feedback_alignment"


@dataclasses.dataclass(frozen=True)
class WeightMirror(LearningRule):
    """Weight mirror (Akrout et al. 2019): R = amp + decay on Gaussian noise inputs. Defaults: R_WM^TPE of thesis
    Table 5.5 (sigma 0.6905, decay 0.0283, amp = 15.6607 x decay; bias, ReLU and batch centering on the forward path,
    batch-centred backward input), thesis naming (A-2)."""

    amp_weight: float = 15.6607 * 0.0283
    decay_weight: float = 0.0283
    input_noise: str | None = "normal"
    sigma: float = 0.6905
    fo_bias: bool = True
    fo_relu: bool = True
    fo_bwmc: bool = True
    bi_bwmc: bool = True

    name = "weight_mirror"


@dataclasses.dataclass(frozen=True)
class InformationAlignment(LearningRule):
    """Information alignment (thesis Section 5.4.2): R = amp + decay + null on noise inputs. Defaults: R_IA^TPE of
    thesis Table 5.5 in the thesis' naming (alpha = amp, beta = decay, gamma = null; A-2)."""

    amp_weight: float = 129.1123 * 7.9990
    decay_weight: float = 7.9990
    null_weight: float = 3.1610e-6
    input_noise: str | None = "normal"
    sigma: float = 0.8176
    fo_bias: bool = True
    fo_relu: bool = True
    fo_bwmc: bool = True
    fo_fwmc: bool = True
    bo_bias: bool = True
    bo_fwmc: bool = True
    bo_fwl2n: bool = True

    name = "information_alignment"


@dataclasses.dataclass(frozen=True)
class SymmetricAlignment(LearningRule):
    """Symmetric alignment (non-local): R = self + decay; gradient 2e-3 (B - W^T) at the defaults (Section 5.9.2)."""

    self_weight: float = 2e-3
    decay_weight: float = 1e-3
    fo_bias: bool = True
    bo_bias: bool = True

    name = "symmetric_alignment"


@dataclasses.dataclass(frozen=True)
class ActivationAlignment(LearningRule):
    """Activation alignment (non-local): R = amp + sparse on the real inputs; gradient 2e-3 mean_n x_n (x_n^T B^T -
    x_n^T W) at the defaults (Section 5.9.2)."""

    amp_weight: float = 2e-3
    sparse_weight: float = 1e-3
    fo_bias: bool = True
    bo_bias: bool = True

    name = "activation_alignment"


@dataclasses.dataclass(frozen=True)
class KolenPollack(LearningRule):
    """Kolen-Pollack (as in Akrout et al. 2019): B receives W's task update transposed, plus decay (code default)."""

    decay_weight: float = 1e-3
    tie_grad: bool = True

    name = "kolen_pollack"


RULES = {
    cls.name: cls
    for cls in (
        Backprop, FeedbackAlignment, WeightMirror, InformationAlignment, SymmetricAlignment, ActivationAlignment,
        KolenPollack,
    )
}  # fmt: skip
ABBREVIATIONS = {"bp": "backprop", "fa": "feedback_alignment", "wm": "weight_mirror", "ia": "information_alignment",
                 "sa": "symmetric_alignment", "aa": "activation_alignment", "kp": "kolen_pollack"}  # fmt: skip


def get_rule(rule: "str | LearningRule | None") -> LearningRule:
    """A rule instance from an instance, a name ("symmetric_alignment") or abbreviation ("sa"), or None.

    None is backprop, the same as "bp": it never stands for the rule of an enclosing `scope.learning_rule`.
    """
    if rule is None:
        return Backprop()
    if isinstance(rule, LearningRule):
        return rule
    if isinstance(rule, str):
        name = ABBREVIATIONS.get(rule.lower(), rule.lower())
        if name in RULES:
            return RULES[name]()
    raise ValueError(
        f"unknown learning rule {rule!r}; use one of {sorted(RULES)} (or {sorted(ABBREVIATIONS)}), or a "
        "LearningRule instance."
    )


def from_config(config: dict) -> LearningRule:
    config = dict(config)
    name = config.pop("class_name")
    classes = {cls.__name__: cls for cls in (LearningRule, *RULES.values())}
    if name not in classes:
        raise ValueError(f"unknown learning-rule class {name!r} in a layer config; known: {sorted(classes)}.")
    return classes[name](**config)
