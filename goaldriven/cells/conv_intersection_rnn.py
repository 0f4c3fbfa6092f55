"""Convolutional IntersectionRNN (thesis eq. 2.9; spec ch2 section 4.6; reference `cells.py::ConvIntersectionRNNCell`).

    [p~, m~, y~, n~] = W * [x_t ; s_{t-1}] + b       (one conv -> 4c, in this order)
    m_t = tanh(m~),  n_t = ReLU(n~),  p_t = sigmoid(p~ + forget_bias),  y_t = sigmoid(y~ + forget_bias)
    s_t = p_t o s_{t-1} + (1 - p_t) o m_t            (passed through time: the state)
    h_t = y_t o x_t + (1 - y_t) o n_t                (passed through depth: the output)

The output mixes in x_t, so the input depth must equal the output depth. Init: Glorot kernel, bias 0; kernel and bias
decayed with the cell's lambda (A-26). Parameters with c_in = c: 9 * 2c * 4c + 4c = 72c^2 + 4c (spec 11.2).
"""

# b: batch, h/w: space, c: channels (input depth = c = filters)
import keras
from keras import ops

from goaldriven.cells import base


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvIntersectionRNNCell(base.SingleConvGatedCell):
    """Convolutional IntersectionRNN: a gated state path and a gated input-to-output (depth) path.

    Args:
      filters: c, the state and output depth; must equal the input depth.
      kernel_size: square kernel (reference: 3).
      forget_bias: added to both gate pre-activations (reference: 1.0).
      weight_decay: TF1 lambda on kernel and bias (reference JSON: 1e-4).
      init_scale: None (Glorot uniform) or a fan-in VarianceScaling scale.

    Call args:
      inputs: x_t, (b, h, w, c).
      states: [s_{t-1}], (b, h, w, c).
      feedback, residual: must be None.
      training: unused.

    Returns:
      (h_t, [s_t]), both (b, h, w, c).

    Reference: Collins, Sohl-Dickstein & Sussillo, ICLR 2017; Nayebi thesis 2022, Chapter 2.
    """

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        if self.input_channels != self.filters:
            raise ValueError(
                f"ConvIntersectionRNNCell {self.name!r} adds its input to its output, so the input depth must equal "
                f"filters={self.filters}; received input shape {tuple(input_shape)}. Change the pre-memory conv depth."
            )
        self.conv = self.build_conv(4 * self.filters, self.kernel_size, 2 * self.filters, name="conv")

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        self._reject_extra_inputs(feedback, residual)
        (s_prev,) = self._check_states(states)
        p_pre, m_pre, y_pre, n_pre = ops.split(self.conv(ops.concatenate([inputs, s_prev], axis=-1)), 4, axis=-1)
        p = ops.sigmoid(p_pre + self.forget_bias)  # (b, h, w, c)
        y = ops.sigmoid(y_pre + self.forget_bias)
        s = p * s_prev + (1.0 - p) * ops.tanh(m_pre)
        h = y * inputs + (1.0 - y) * ops.relu(n_pre)
        return h, [s]
