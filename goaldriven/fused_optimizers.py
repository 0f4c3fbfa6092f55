"""Keras' SGD and Adam with fused update kernels: the same update, one TensorFlow training op per variable.

`keras.optimizers.SGD` and `Adam` update each variable with 4-8 separate element-wise ops, each a pass over the
variable and a temporary as large. On CPUs that memory traffic is a measurable part of a step, and it grows with the
variables a step updates: a learning rule's backward kernels double a network's kernels (bench/alignment.py). These
subclasses keep Keras' arguments, slot variables (so checkpoints are interchangeable both ways), schedules,
clipping, EMA and loss scaling, and replace the per-variable update with TensorFlow's fused training ops, which
compute the same equations in one pass (also under XLA and in a tf.distribute update):

    SGD, momentum m > 0   ResourceApplyKerasMomentum    v <- m v - lr g;  w <- w + v   (nesterov: w <- w + m v - lr g)
    SGD, m = 0            ResourceApplyGradientDescent  w <- w - lr g
    Adam                  ResourceApplyAdam             m1 <- m1 + (g - m1)(1 - b1);  m2 <- m2 + (g^2 - m2)(1 - b2);
                                                        w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) m1 / (sqrt(m2) + eps)

SGD's results equal Keras' to float32 rounding. Adam's equal the equations above to float32 rounding; Keras' own
differ from them by about 1e-5 relative (it forms 1 - b2 in double but b2^t in float32, and 1 - 0.999f =
0.00099998713). Keras' own update runs where the fused ops do not apply: amsgrad, and sparse (IndexedSlices) gradients. The gin task and rule files
bind these classes (`@fused_optimizers.SGD`); `@keras.optimizers.SGD` in a user's file still works, unfused.
"""

import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras variable, or of the per-device component a tf.distribute update passes."""
    return variable.handle if hasattr(variable, "handle") else variable.value.handle


@keras.saving.register_keras_serializable(package="goaldriven")
class SGD(keras.optimizers.SGD):
    """keras.optimizers.SGD (same arguments and slots) with a fused update per variable (module docstring)."""

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        if self.momentum == 0:
            return tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=lr, delta=gradient)
        accum = self.momentums[self._get_variable_index(variable)]
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(accum), lr=lr, grad=gradient,
            momentum=tf.cast(self.momentum, dtype), use_nesterov=bool(self.nesterov),
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="goaldriven")
class Adam(keras.optimizers.Adam):
    """keras.optimizers.Adam (same arguments and slots) with a fused update per variable (module docstring)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        )  # fmt: skip
