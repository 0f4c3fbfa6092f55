"""LARS (layer-wise adaptive rate scaling) as a Keras 3 optimizer, in the form SimCLR trains with.

For each variable w with gradient g, learning rate lr (the schedule's value at this step), momentum m, weight decay
wd, trust coefficient eta, epsilon eps and velocity v (zero before the first step):

  g      <- g + wd * w                           if w is decayed
  trust   = eta * ||w|| / (||g|| + eps)          if w is adapted and ||w|| > 0 and ||g|| > 0
          = 1                                    otherwise (w excluded from adaptation, or a zero norm)
  v      <- m * v + lr * trust * g
  w      <- w - v                                (nesterov: w <- w - (m * v + lr * trust * g), with the new v)

||.|| is the L2 norm of the whole variable (one rate per kernel, i.e. per layer), and ||g|| is the norm of the
decayed gradient. The learning rate multiplies the gradient inside the velocity ("classic momentum" in SimCLR's
code), so a new rate scales new contributions only. Decay and the trust ratio are LARS' own: Keras' decoupled
weight decay of the base Optimizer never runs.

Which variables are decayed and adapted is decided once, when the optimizer is built, and kept as one boolean per
variable: by default variables of rank <= 1 (biases, normalisation scales and offsets, scalars) are excluded from
both, as SimCLR excludes batch-norm parameters and biases (SimCLR matches them by name; here the rank decides, or a
callable the user passes).

SimCLR recipe (thesis Chapter 3): batch 4096, lr 0.3 x batch / 256 = 4.8, momentum 0.9, weight decay 1e-6,
eta 0.001, 10 warm-up epochs then cosine decay (`tasks/schedules.simclr_schedule`).

References:
  You, Gitman, Ginsburg (2017). Large Batch Training of Convolutional Networks. arXiv:1708.03888.
  Chen, Kornblith, Norouzi, Hinton (2020). A Simple Framework for Contrastive Learning of Visual Representations.
    ICML. Appendix B.1 (LARS, decay folded into the gradient before the trust ratio, BN and biases excluded).
"""

from typing import Callable

import keras
from keras import ops

VariablePredicate = Callable[[keras.Variable], bool]


def has_rank_at_most_one(variable) -> bool:
    """The default exclusion rule: biases, normalisation scales/offsets and scalars (rank <= 1)."""
    return len(variable.shape) <= 1


@keras.saving.register_keras_serializable(package="goaldriven")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise adaptive rate scaling with momentum (SimCLR's LARS; update equations in the module docstring).

    Args:
      learning_rate: float, or a `keras.optimizers.schedules.LearningRateSchedule` of the iteration.
      momentum: m in [0, 1].
      weight_decay: wd >= 0, added to the gradient as wd * w (the gradient of wd * ||w||^2 / 2) before the trust
        ratio; not Keras' decoupled decay. Give the model no L2 regularizer on top (it would decay twice).
      eta: trust coefficient (> 0).
      nesterov: w <- w - (m * v + lr * trust * g) instead of w <- w - v.
      epsilon: added to ||g|| in the trust ratio (>= 0; 0 in SimCLR).
      exclude_from_adaptation: callable variable -> bool, True for variables that keep trust = 1; None: rank <= 1.
      exclude_from_decay: callable variable -> bool, True for variables without weight decay; None: rank <= 1.
        `exclude_from_weight_decay(var_list, var_names)` (Keras' method) excludes further variables from decay.
      name: optimizer name.
      **kwargs: the base Optimizer's arguments (clipnorm, global_clipnorm, use_ema, loss_scale_factor, ...).

    The exclusion callables are called once per variable in `build`; their answers are frozen there and
    `excluded_variables()` reports them.

    Reference:
      You et al. 2017 (arXiv:1708.03888); Chen et al. 2020 (SimCLR), Appendix B.1.
    """

    def __init__(
        self,
        learning_rate,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        eta: float = 0.001,
        nesterov: bool = False,
        epsilon: float = 0.0,
        exclude_from_adaptation: VariablePredicate | None = None,
        exclude_from_decay: VariablePredicate | None = None,
        name: str = "lars",
        **kwargs,
    ):
        # LARS keeps wd under the public name `weight_decay` (get_config, gin), so the base class' decoupled decay
        # (w -= lr * wd * w, read from self.weight_decay) is switched off by overriding its hook below.
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (SimCLR: 0.9). Received: {momentum}")
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (0 disables it; SimCLR: 1e-6). Received: {weight_decay}")
        if not eta > 0:
            raise ValueError(f"eta (the trust coefficient) must be > 0 (SimCLR: 0.001). Received: {eta}")
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0 (SimCLR: 0). Received: {epsilon}")
        for arg, rule in (
            ("exclude_from_adaptation", exclude_from_adaptation),
            ("exclude_from_decay", exclude_from_decay),
        ):
            if rule is not None and not callable(rule):
                raise ValueError(f"{arg} must be a callable variable -> bool, or None (rank <= 1). Received: {rule!r}")
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.eta = float(eta)
        self.nesterov = bool(nesterov)
        self.epsilon = float(epsilon)
        self.exclude_from_adaptation = exclude_from_adaptation
        self.exclude_from_decay = exclude_from_decay
        self._keras_decay_exclusions = (frozenset(), ())  # (variable keys, name substrings)

    def _apply_weight_decay(self, variables):
        """The base class' decoupled weight decay: off (LARS folds wd * w into the gradient in update_step)."""
        del variables

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras' method: also exclude `var_list`, and variables whose path (e.g. "dense/bias") contains one of
        `var_names`, from weight decay (not from adaptation). Call it before `build`."""
        if self.built:
            raise ValueError("exclude_from_weight_decay() must be called before the optimizer is built.")
        keys = frozenset(self._var_key(v) for v in var_list or ())
        self._keras_decay_exclusions = (keys, tuple(var_names or ()))

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.momentums = [self.add_variable_from_reference(v, name="momentum") for v in var_list]
        adaptation_rule = self.exclude_from_adaptation or has_rank_at_most_one
        decay_rule = self.exclude_from_decay or has_rank_at_most_one
        keys, names = self._keras_decay_exclusions
        # Frozen here: update_step reads these by variable index, with no name matching in the step.
        self._adapted = tuple(not bool(adaptation_rule(v)) for v in var_list)
        self._decayed = tuple(
            not (bool(decay_rule(v)) or self._var_key(v) in keys or any(n in _path(v) for n in names)) for v in var_list
        )
        self._variable_paths = tuple(_path(v) for v in var_list)

    def excluded_variables(self) -> dict[str, tuple[str, ...]]:
        """Paths of the variables excluded from weight decay ("decay") and from the trust ratio ("adaptation")."""
        if not self.built:
            raise ValueError("The optimizer is not built yet; call optimizer.build(variables) first.")
        paths = self._variable_paths
        return {
            "decay": tuple(p for p, decayed in zip(paths, self._decayed) if not decayed),
            "adaptation": tuple(p for p, adapted in zip(paths, self._adapted) if not adapted),
        }

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        learning_rate = ops.cast(learning_rate, dtype)
        if self._decayed[index] and self.weight_decay:
            gradient = ops.add(gradient, ops.multiply(ops.cast(self.weight_decay, dtype), variable))
        if self._adapted[index]:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            both_positive = ops.logical_and(ops.greater(w_norm, 0), ops.greater(g_norm, 0))
            safe_g_norm = ops.where(both_positive, ops.add(g_norm, ops.cast(self.epsilon, dtype)), 1)
            trust = ops.where(
                both_positive, ops.divide(ops.multiply(ops.cast(self.eta, dtype), w_norm), safe_g_norm), 1
            )
            learning_rate = ops.multiply(learning_rate, trust)
        scaled_gradient = ops.multiply(learning_rate, gradient)
        velocity = self.momentums[index]
        momentum = ops.cast(self.momentum, dtype)
        self.assign(velocity, ops.add(ops.multiply(momentum, velocity), scaled_gradient))
        if self.nesterov:
            self.assign_sub(variable, ops.add(ops.multiply(momentum, velocity), scaled_gradient))
        else:
            self.assign_sub(variable, velocity)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "eta": self.eta,
                "nesterov": self.nesterov,
                "epsilon": self.epsilon,
                "exclude_from_adaptation": _serialize_rule(self.exclude_from_adaptation),
                "exclude_from_decay": _serialize_rule(self.exclude_from_decay),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("exclude_from_adaptation", "exclude_from_decay"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


def _path(variable) -> str:
    """A Keras variable's path ("dense/kernel"); a bare tf.Variable's name."""
    return getattr(variable, "path", variable.name)


def _serialize_rule(rule):
    """None, or the Keras serialization of an exclusion callable (a registered function serializes by name)."""
    return None if rule is None else keras.saving.serialize_keras_object(rule)
