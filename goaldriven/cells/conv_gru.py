"""Convolutional GRU (thesis eq. 2.4; spec ch2 section 4.3; reference `cells.py::ConvGRUCell`).

    [r~, u~] = W_g * [x_t ; s_{t-1}] + b_g                 (one conv -> 2c, reset half first)
    r_t = sigmoid(r~ + forget_bias),  u_t = sigmoid(u~)     (forget_bias 1.0 on the reset gate only)
    c_t = tanh( W_c * [x_t ; r_t o s_{t-1}] + b_c )
    s_t = u_t o s_{t-1} + (1 - u_t) o c_t,  h_t = s_t

Init (reference): Glorot-uniform kernels; the gate bias b_g starts at 1.0 in both halves (so r = sigmoid(2) and
u = sigmoid(1) at init); candidate bias 0. Kernels and biases are decayed with the cell's lambda (A-26).
Parameters with c_in = c: 9 * 2c * 2c + 2c + 9 * 2c * c + c = 54c^2 + 3c (spec 11.2).
"""

# b: batch, h/w: space, c: channels (c_in input, c = filters)
import keras
from keras import ops

from goaldriven.cells import base


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvGRUCell(base.ConvCell):
    """Convolutional GRU with the reference's gate-bias and forget-bias conventions.

    Args:
      filters: c, the state and output depth.
      kernel_size: square kernel of both convs (reference: 3).
      forget_bias: constant added to the reset-gate pre-activation (reference: 1.0).
      gate_bias_init: initial value of the gate conv's bias, both halves (reference: 1.0).
      weight_decay: TF1 lambda on kernels and biases (reference JSON: 1e-4).
      init_scale: None (Glorot uniform) or a fan-in VarianceScaling scale.

    Call args:
      inputs: x_t, (b, h, w, c_in).
      states: [s_{t-1}], (b, h, w, c).
      feedback, residual: must be None.
      training: unused.

    Returns:
      (s_t, [s_t]), both (b, h, w, c).

    Reference: Cho et al. 2014; Nayebi thesis 2022, Chapter 2.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        forget_bias: float = 1.0,
        gate_bias_init: float = 1.0,
        weight_decay: float = 1e-4,
        init_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(filters, weight_decay=weight_decay, init_scale=init_scale, **kwargs)
        base.check_kernel_size("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.forget_bias = float(forget_bias)
        self.gate_bias_init = float(gate_bias_init)

    @property
    def state_channels(self) -> tuple[int, ...]:
        return (self.filters,)

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        joint = self.input_channels + self.filters
        self.gates = self.build_conv(
            2 * self.filters,
            self.kernel_size,
            joint,
            name="gates",
            bias_initializer=keras.initializers.Constant(self.gate_bias_init),
        )
        self.candidate = self.build_conv(self.filters, self.kernel_size, joint, name="candidate")

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        self._reject_extra_inputs(feedback, residual)
        (s_prev,) = self._check_states(states)
        gates = self.gates(ops.concatenate([inputs, s_prev], axis=-1))  # (b, h, w, 2c)
        r_pre, u_pre = ops.split(gates, 2, axis=-1)
        r = ops.sigmoid(r_pre + self.forget_bias)
        u = ops.sigmoid(u_pre)
        c = ops.tanh(self.candidate(ops.concatenate([inputs, r * s_prev], axis=-1)))  # (b, h, w, c)
        s = u * s_prev + (1.0 - u) * c
        return s, [s]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "forget_bias": self.forget_bias,
                "gate_bias_init": self.gate_bias_init,
            }
        )
        return config
