"""Update-gate RNN (UGRNN) on vectors, the cell of the thesis' best MEC model (UGRNN-ReLU-Place Cell, Chapter 4).

Collins, Sohl-Dickstein & Sussillo, "Capacity and trainability in recurrent neural networks", ICLR 2017:
    [a_g, a_c] = x_t @ W_x + h_{t-1} @ W_h + b        (W = [W_x; W_h] is (d + n) x 2n)
    c   = f(a_c)                                      (candidate; f in {relu, tanh, sigmoid, linear})
    u   = sigmoid(a_g + gate_bias)                    (update gate; gate_bias = 1.0 as in the reference code)
    h_t = u * h_{t-1} + (1 - u) * c
W_x and W_h are stored as two weights (`kernel`, `recurrent_kernel`) so that the thesis' L2 penalty can target the
hidden-to-hidden part; both are initialised Glorot-uniform over the joint (d + n, 2n) shape, as a single W would be.

L2 target (spec ch3_ch4 Ambiguity 23): the thesis penalises "path integrator weights" with 1e-4; the published UGRNN
code indexes the cell's bias by mistake. Default: the recurrent kernel (`l2_target="recurrent_kernel"`);
`l2_target="bias"` reproduces the published behaviour.

The cell multiplies by its own kernels (no backward kernel), so it trains with backprop only: a model holding it
cannot be built under another learning rule (alignment/binding.py raises).
"""

# b: batch, d: input features, n: units
import keras
import numpy as np
from keras import ops

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
L2_TARGETS = ("recurrent_kernel", "bias")


@keras.saving.register_keras_serializable(package="goaldriven")
class VectorUGRNNCell(keras.layers.Layer):
    """UGRNN cell for vector inputs, usable with keras.layers.RNN or stepped directly.

    Args:
      units: n, the state size.
      activation: candidate nonlinearity f, one of ACTIVATIONS.
      gate_bias: constant added to the gate pre-activation (reference: 1.0).
      l2: strength of the L2 penalty (thesis: 1e-4); 0 disables it.
      l2_target: "recurrent_kernel" (default) or "bias" (reproduces the published code).

    Call args:
      inputs: (b, d).
      states: [(b, n)].
      training: unused.

    Returns:
      (h_t, [h_t]) with h_t of shape (b, n).

    Reference: Collins et al. 2017; Nayebi et al., NeurIPS 2021 (thesis Chapter 4).
    """

    def __init__(self, units, activation="relu", gate_bias=1.0, l2=0.0, l2_target="recurrent_kernel", **kwargs):
        super().__init__(**kwargs)
        if units <= 0:
            raise ValueError(f"units must be positive; received {units}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
        if l2_target not in L2_TARGETS:
            raise ValueError(f"l2_target must be one of {L2_TARGETS}; received {l2_target!r}.")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0; received {l2}.")
        self.units = units
        self.activation = activation
        self.gate_bias = gate_bias
        self.l2 = l2
        self.l2_target = l2_target
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        limit = float(np.sqrt(6.0 / (input_dim + self.units + 2 * self.units)))  # Glorot over the joint (d + n, 2n) W
        init = keras.initializers.RandomUniform(-limit, limit)
        penalty = keras.regularizers.L2(self.l2) if self.l2 else None
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, 2 * self.units), initializer=init)
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.units, 2 * self.units),
            initializer=init,
            regularizer=penalty if self.l2_target == "recurrent_kernel" else None,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(2 * self.units,),
            initializer="zeros",
            regularizer=penalty if self.l2_target == "bias" else None,
        )

    def call(self, inputs, states, training=False):
        del training
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        pre = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias  # (b, 2n)
        gate_pre, candidate_pre = ops.split(pre, 2, axis=-1)
        candidate = keras.activations.get(self.activation)(candidate_pre)
        update = ops.sigmoid(gate_pre + self.gate_bias)
        h = update * h_prev + (1.0 - update) * candidate
        return h, [h]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], self.units)
        return shape, [shape]  # (h, [h]), as `call` returns

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": self.activation,
                "gate_bias": self.gate_bias,
                "l2": self.l2,
                "l2_target": self.l2_target,
            }
        )
        return config
