"""Convolutional update-gate RNN (UGRNN) (thesis eq. 2.8; spec ch2 section 4.5; reference `cells.py::ConvUGRNNCell`).

    [g~, c~] = W * [x_t ; s_{t-1}] + b            (one conv -> 2c, gate half first)
    g_t = sigmoid(g~ + forget_bias),  c_t = tanh(c~)      (forget_bias 1.0)
    s_t = g_t o s_{t-1} + (1 - g_t) o c_t,  h_t = s_t

Init: Glorot-uniform kernel, bias 0; kernel and bias decayed with the cell's lambda (A-26). The reference's layer-norm
branch is broken and off in every released config, so it is not offered. Parameters with c_in = c: 9 * 2c * 2c + 2c
= 36c^2 + 2c (spec 11.2).
"""

# b: batch, h/w: space, c: channels (c_in input, c = filters)
import keras
from keras import ops

from goaldriven.cells import base


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvUGRNNCell(base.SingleConvGatedCell):
    """Convolutional UGRNN: one conv over [x; s] gives the update gate and the candidate.

    Args:
      filters: c, the state and output depth.
      kernel_size: square kernel (reference: 3).
      forget_bias: added to the gate pre-activation (reference: 1.0).
      weight_decay: TF1 lambda on kernel and bias (reference JSON: 1e-4).
      init_scale: None (Glorot uniform) or a fan-in VarianceScaling scale.

    Call args:
      inputs: x_t, (b, h, w, c_in).
      states: [s_{t-1}], (b, h, w, c).
      feedback, residual: must be None.
      training: unused.

    Returns:
      (s_t, [s_t]), both (b, h, w, c).

    Reference: Collins, Sohl-Dickstein & Sussillo, ICLR 2017; Nayebi thesis 2022, Chapter 2.
    """

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        self.conv = self.build_conv(2 * self.filters, self.kernel_size, self.input_channels + self.filters, name="conv")

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        self._reject_extra_inputs(feedback, residual)
        (s_prev,) = self._check_states(states)
        gate_pre, cand_pre = ops.split(self.conv(ops.concatenate([inputs, s_prev], axis=-1)), 2, axis=-1)
        gate = ops.sigmoid(gate_pre + self.forget_bias)  # (b, h, w, c)
        s = gate * s_prev + (1.0 - gate) * ops.tanh(cand_pre)
        return s, [s]
