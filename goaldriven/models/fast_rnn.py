"""A simple RNN and a UGRNN over a whole sequence with hand-written backward passes (BPTT), and a Keras layer.

    h_t = f(h_{t-1} @ U + x_t @ W + b),  t = 1..T,  f in {relu, tanh, sigmoid, linear}

This is the recurrence of the 2-layer path integrator (Sorscher et al. 2019/2023; thesis Eq. 4.15, no bias) and of the
3-layer "SRNN". Autodiff of the unrolled loop is correct but leaves speed on the table at 4096 units; the custom
gradient (1) takes the input projection x @ W for all steps in one matmul, (2) runs the backward recurrence
dh_{t-1} = (dh_t * f'(h_t)) @ U^T with an explicitly transposed U and (3) forms dU = H_prev^T @ dPre as a single
(n x T*b) @ (T*b x n) matmul instead of T small ones. f' is computed from the stored outputs, so only the states are kept.
`ugrnn_sequence` does the same for the UGRNN (the thesis' best MEC model), keeping its gates and candidates.

`materialized_transpose` exists because TensorFlow's Grappler folds a Transpose feeding a MatMul into the MatMul's
transpose flag, and on CPU (oneDNN) the transposed-operand kernels of these shapes run at ~60% of the plain ones
(measured: 112 vs 180 GFLOP/s for (200, 4096) @ (4096, 4096)^T). A 3-D transpose is not folded. Under XLA (TPU) the
extra transposes become layout choices and cost nothing.

`SimpleRNNSequence` owns its kernels and multiplies by them itself, so it trains with backprop only: a model holding
it cannot be built under another learning rule (alignment/binding.py raises).
"""

# b: batch, t: time, d: input features, n: units
import keras
import tensorflow as tf

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


def _activate(x, activation):
    if activation == "relu":
        return tf.nn.relu(x)
    if activation == "tanh":
        return tf.tanh(x)
    if activation == "sigmoid":
        return tf.sigmoid(x)
    return x


def _backprop_activation(grad, output, activation):
    """grad * f'(pre) expressed through the output h = f(pre)."""
    if activation == "relu":
        return tf.where(output > 0, grad, tf.zeros_like(grad))
    if activation == "tanh":
        return grad * (1 - output * output)
    if activation == "sigmoid":
        return grad * output * (1 - output)
    return grad


def _checked_steps(drive: tf.Tensor, activation: str, name: str) -> int:
    """The static number of time steps of a (t, ...) drive, after checking the activation."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
    if drive.shape[0] is None:
        raise ValueError(f"{name} needs a static number of time steps (use fixed-length sequences).")
    return drive.shape[0]


def materialized_transpose(x: tf.Tensor) -> tf.Tensor:
    """Transpose of a 2-D tensor that Grappler cannot fold into a consuming MatMul (see module docstring)."""
    rows, cols = tf.shape(x)[0], tf.shape(x)[1]
    return tf.reshape(tf.transpose(x[:, :, None], (1, 0, 2)), tf.stack([cols, rows]))


def simple_rnn_sequence(
    h0: tf.Tensor, drive: tf.Tensor, recurrent_kernel: tf.Tensor, activation: str = "relu"
) -> tf.Tensor:
    """Runs h_t = f(h_{t-1} @ U + drive_t) for every t with the custom BPTT gradient.

    Args:
      h0: (b, n) initial state.
      drive: (t, b, n) time-major input drive (x_t @ W + b); t must be static.
      recurrent_kernel: (n, n) U.
      activation: one of ACTIVATIONS.

    Returns:
      (t, b, n) states h_1..h_T.
    """
    steps = _checked_steps(drive, activation, "simple_rnn_sequence")

    @tf.custom_gradient
    def sequence(h0, drive, kernel):
        states, h = [], h0
        for t in range(steps):
            h = _activate(tf.matmul(h, kernel) + drive[t], activation)
            states.append(h)
        outputs = tf.stack(states, axis=0)  # (t, b, n)

        def grad(d_outputs):
            kernel_t = materialized_transpose(kernel)
            d_h = tf.zeros_like(h0)
            d_pre = [None] * steps
            for t in reversed(range(steps)):
                d_pre[t] = _backprop_activation(d_outputs[t] + d_h, states[t], activation)  # (b, n)
                d_h = tf.matmul(d_pre[t], kernel_t)
            d_pre = tf.stack(d_pre, axis=0)  # (t, b, n)
            width = tf.shape(h0)[-1]
            previous = tf.reshape(tf.concat([h0[None], outputs[:-1]], axis=0), tf.stack([-1, width]))  # (t*b, n)
            d_kernel = tf.matmul(materialized_transpose(previous), tf.reshape(d_pre, tf.stack([-1, width])))
            return d_h, d_pre, d_kernel

        return outputs, grad

    return sequence(h0, drive, recurrent_kernel)


def ugrnn_sequence(
    h0: tf.Tensor, drive: tf.Tensor, recurrent_kernel: tf.Tensor, activation: str = "relu", gate_bias: float = 1.0
) -> tf.Tensor:
    """Runs the UGRNN (cells/vector_ugrnn.py) over every t with a custom BPTT gradient, as simple_rnn_sequence:

        [a_g, a_c] = drive_t + h_{t-1} @ U;  u = sigmoid(a_g + gate_bias);  c = f(a_c);  h_t = u h_{t-1} + (1 - u) c
    backward, from the stored u and c:
        du = dh (h_{t-1} - c);  dc = dh (1 - u);  d[a_g, a_c] = [du u (1 - u), dc f'];  dh_{t-1} = dh u + d[a] @ U^T
    and dU = H_prev^T @ dA as one (n x t*b) @ (t*b x 2n) matmul.

    Args:
      h0: (b, n) initial state.
      drive: (t, b, 2n) time-major input drive (x_t @ W + bias, gate half first); t must be static.
      recurrent_kernel: (n, 2n) U.
      activation: the candidate's f, one of ACTIVATIONS.
      gate_bias: constant added to the gate pre-activation.

    Returns:
      (t, b, n) states h_1..h_T.
    """
    steps = _checked_steps(drive, activation, "ugrnn_sequence")

    @tf.custom_gradient
    def sequence(h0, drive, kernel):
        states, gates, candidates, h = [], [], [], h0
        for t in range(steps):
            gate_pre, candidate_pre = tf.split(tf.matmul(h, kernel) + drive[t], 2, axis=-1)  # (b, n) each
            u = tf.sigmoid(gate_pre + tf.cast(gate_bias, gate_pre.dtype))
            c = _activate(candidate_pre, activation)
            h = u * h + (1 - u) * c
            states.append(h)
            gates.append(u)
            candidates.append(c)
        outputs = tf.stack(states, axis=0)  # (t, b, n)

        def grad(d_outputs):
            kernel_t = materialized_transpose(kernel)  # (2n, n)
            d_h = tf.zeros_like(h0)
            d_pre = [None] * steps
            for t in reversed(range(steps)):
                u, c = gates[t], candidates[t]
                previous = states[t - 1] if t else h0
                d_state = d_outputs[t] + d_h  # (b, n)
                d_gate = d_state * (previous - c) * u * (1 - u)
                d_candidate = _backprop_activation(d_state * (1 - u), c, activation)
                d_pre[t] = tf.concat([d_gate, d_candidate], axis=-1)  # (b, 2n)
                d_h = d_state * u + tf.matmul(d_pre[t], kernel_t)
            d_pre = tf.stack(d_pre, axis=0)  # (t, b, 2n)
            width = tf.shape(h0)[-1]
            previous = tf.reshape(tf.concat([h0[None], outputs[:-1]], axis=0), tf.stack([-1, width]))  # (t*b, n)
            d_kernel = tf.matmul(materialized_transpose(previous), tf.reshape(d_pre, tf.stack([-1, 2 * width])))
            return d_h, d_pre, d_kernel

        return outputs, grad

    return sequence(h0, drive, recurrent_kernel)


@keras.saving.register_keras_serializable(package="goaldriven")
class SimpleRNNSequence(keras.layers.Layer):
    """Keras layer running `simple_rnn_sequence` over (b, t, d) inputs from a given initial state.

    Args:
      units: n.
      activation: f, one of ACTIVATIONS.
      use_bias: add a bias b (the 2-layer path integrator has none).
      kernel_initializer, recurrent_initializer: initialisers of W (d, n) and U (n, n).
      recurrent_regularizer: penalty on U (thesis: L2 1e-4).

    Call args:
      inputs: (b, t, d).
      initial_state: (b, n).
      unit_mask: optional (n,) 0/1 mask; masked units are silenced (their outputs are 0 and reach no other unit).

    Returns:
      (b, t, n) states.
    """

    def __init__(
        self,
        units,
        activation="relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        recurrent_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units <= 0:
            raise ValueError(f"units must be positive; received {units}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
        self.units = units
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)

    def build(self, inputs_shape, initial_state_shape=None):
        del initial_state_shape
        self.kernel = self.add_weight(
            name="kernel", shape=(inputs_shape[-1], self.units), initializer=self.kernel_initializer
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.units, self.units),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def call(self, inputs, initial_state, unit_mask=None):
        dtype = self.compute_dtype
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), dtype)
        recurrent = tf.cast(tf.convert_to_tensor(self.recurrent_kernel), dtype)
        drive = tf.einsum("btd,dn->tbn", tf.cast(inputs, dtype), kernel)  # (t, b, n): all steps in one matmul
        if self.use_bias:
            drive += tf.cast(tf.convert_to_tensor(self.bias), dtype)
        h0 = tf.cast(initial_state, dtype)
        if unit_mask is not None:  # Zero the silenced units' outgoing weights and initial state: same as h * mask.
            mask = tf.cast(unit_mask, dtype)
            recurrent, h0 = recurrent * mask[:, None], h0 * mask
        states = tf.transpose(simple_rnn_sequence(h0, drive, recurrent, self.activation), (1, 0, 2))  # (b, t, n)
        return states if unit_mask is None else states * mask

    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        return (inputs_shape[0], inputs_shape[1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            }
        )
        return config
