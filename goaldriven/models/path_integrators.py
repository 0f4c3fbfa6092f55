"""Path-integrating recurrent networks of thesis Chapter 4 (Section 4.10.4, spec ch3_ch4 B5.5).

kind="rnn": the 2-layer RNN of Cueva & Wei / Sorscher et al. (thesis Eq. 4.15), no biases anywhere:
    g_0 = p_0 @ E (initial place-cell code, not passed through f);  g_t = f(g_{t-1} @ J + v_t @ M);  y_t = g_t @ W
  The MEC layer is g.
kind in {"srnn", "gru", "lstm", "ugrnn"}: the 3-layer networks (Banino et al. style):
    v -> Dense(n) "M" -> recurrent cell (n units, candidate nonlinearity f) -> Dense(n, f) = g -> Dense(outputs)
  Initial states are linear maps (with bias) of the initial place-cell code (two for the LSTM: h_0 and c_0).
  The MEC layer is g; "rnn" (the cell output) is also returned.
The thesis uses n = 4096 everywhere; the L2 penalty (1e-4) goes on the recurrent kernel (see cells/vector_ugrnn.py
for the published UGRNN code's bias penalty, reproduced with l2_target="bias").

Knockouts (thesis Section 4.11): `unit_mask` (n,) of 0/1 silences g units: for kind="rnn" (g is recurrent) their
outgoing recurrent and readout weights are masked, which equals setting their outputs to 0 at every step.

Learning rules: the dense layers come from the alignment factories, but every recurrence multiplies by its own kernels
(fast_rnn.SimpleRNNSequence, cells.VectorUGRNNCell, Keras GRUCell/LSTMCell), which have no backward kernel; so
`build_path_integrator(learning_rule=...)` trains with backprop (None, "bp") and raises, naming the recurrent layer,
under any other rule (alignment/binding.py).
"""

# b: batch, t: time, d: input features, n: units, p: outputs (place cells or 2)
import keras
import tensorflow as tf

from goaldriven import cells
from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import fast_rnn

KINDS = ("rnn", "srnn", "gru", "lstm", "ugrnn")
ACTIVATIONS = fast_rnn.ACTIVATIONS


@keras.saving.register_keras_serializable(package="goaldriven")
class PathIntegrator(keras.Model):
    """A path integrator: (velocity inputs, initial code) -> per-step output logits and named features.

    Args:
      kind: one of KINDS.
      activation: f, one of ACTIVATIONS.
      units: n (thesis: 4096).
      output_dim: 512 place cells (place-cell loss) or 2 (position loss).
      l2: L2 strength on the recurrent kernel (thesis: 1e-4).
      l2_target: "recurrent_kernel" or "bias" (UGRNN only; reproduces the published code).

    Call args:
      inputs: {"inputs": (b, t, d), "init_code": (b, c)}.
      training: unused (no dropout).
      unit_mask: optional (n,) 0/1 mask over g units (knockouts).

    Returns:
      {"logits": (b, t, p) float32, "features": {"g": (b, t, n)} (+ "rnn" for 3-layer networks)}.
    """

    def __init__(
        self,
        kind="ugrnn",
        activation="relu",
        units=4096,
        output_dim=512,
        l2=1e-4,
        l2_target="recurrent_kernel",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; received {kind!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
        if l2_target != "recurrent_kernel" and kind != "ugrnn":
            raise ValueError(
                f"l2_target={l2_target!r} only exists to reproduce the published UGRNN; use "
                f"'recurrent_kernel' with kind={kind!r}."
            )
        self.kind, self.activation, self.units = kind, activation, units
        self.output_dim, self.l2, self.l2_target = output_dim, l2, l2_target
        penalty = keras.regularizers.L2(l2) if l2 else None
        if kind == "rnn":
            self.encoder = aligned_layers.dense(units, use_bias=False, name="encoder")
            self.recurrence = fast_rnn.SimpleRNNSequence(
                units,
                activation,
                use_bias=False,
                recurrent_initializer="glorot_uniform",
                recurrent_regularizer=penalty,
                name="rnn",
            )
            self.readout = aligned_layers.dense(output_dim, use_bias=False, name="readout")
            return
        self.input_dense = aligned_layers.dense(units, name="input_dense")
        self.encoder = aligned_layers.dense(units, name="encoder")
        if kind == "lstm":
            self.cell_encoder = aligned_layers.dense(units, name="cell_encoder")
        if kind == "srnn":
            self.recurrence = fast_rnn.SimpleRNNSequence(units, activation, recurrent_regularizer=penalty, name="rnn")
        elif kind == "ugrnn":
            self.cell = cells.VectorUGRNNCell(units, activation, l2=l2, l2_target=l2_target, name="rnn")
        else:
            keras_activation = "linear" if activation == "linear" else activation
            self.cell = cells.get_vector_cell(kind)(
                units, activation=keras_activation, recurrent_regularizer=penalty, name="rnn"
            )
        self.g_dense = aligned_layers.dense(units, activation=activation, name="g")
        self.readout = aligned_layers.dense(output_dim, name="readout")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature layers the model returns (the MEC layer is "g")."""
        return ("g",) if self.kind == "rnn" else ("rnn", "g")

    def call(self, inputs, training=False, unit_mask=None):
        del training
        x, code = inputs["inputs"], inputs["init_code"]  # (b, t, d), (b, c)
        if self.kind == "rnn":
            return self._call_two_layer(x, code, unit_mask)
        m = self.input_dense(x)  # (b, t, n)
        h = self.encoder(code)  # (b, n)
        if self.kind == "srnn":
            rnn = self.recurrence(m, h)
        elif self.kind == "ugrnn":
            rnn = self._ugrnn(m, h)
        else:
            states = [h, self.cell_encoder(code)] if self.kind == "lstm" else [h]
            outputs = []
            for t in range(x.shape[1]):
                out, states = self.cell(m[:, t], states)
                states = list(states) if isinstance(states, (list, tuple)) else [states]
                outputs.append(out)
            rnn = tf.stack(outputs, axis=1)  # (b, t, n)
        g = self.g_dense(rnn)
        if unit_mask is not None:
            g = g * tf.cast(unit_mask, g.dtype)
        logits = tf.cast(self.readout(g), tf.float32)
        return {"logits": logits, "features": {"rnn": rnn, "g": g}}

    def _ugrnn(self, m, h0):
        """The UGRNN cell's recurrence over all steps with the hand-written BPTT (fast_rnn.ugrnn_sequence); the cell
        keeps its weights (names, L2 penalty), this runs them: (b, t, n) inputs -> (b, t, n) states."""
        cell, dtype = self.cell, self.compute_dtype
        if not cell.built:
            cell.build(m.shape[-1:])
        kernel, recurrent, bias = (
            tf.cast(tf.convert_to_tensor(w), dtype) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)
        )
        drive = tf.einsum("btd,dk->tbk", tf.cast(m, dtype), kernel) + bias  # (t, b, 2n): all steps in one matmul
        states = fast_rnn.ugrnn_sequence(tf.cast(h0, dtype), drive, recurrent, cell.activation, cell.gate_bias)
        return tf.transpose(states, (1, 0, 2))

    def _call_two_layer(self, x, code, unit_mask):
        g = self.recurrence(x, self.encoder(code), unit_mask=unit_mask)  # silenced units reach neither J nor W
        return {"logits": tf.cast(self.readout(g), tf.float32), "features": {"g": g}}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kind": self.kind,
                "activation": self.activation,
                "units": self.units,
                "output_dim": self.output_dim,
                "l2": self.l2,
                "l2_target": self.l2_target,
            }
        )
        return config


@binding.builds_under_rule
def build_path_integrator(
    *,
    input_dim: int,
    init_dim: int,
    output_dim: int,
    kind: str = "ugrnn",
    activation: str = "relu",
    units: int = 4096,
    l2: float = 1e-4,
    l2_target: str = "recurrent_kernel",
    learning_rule=None,
) -> PathIntegrator:
    """Builds a PathIntegrator with all weights created (the task supplies the data-dependent sizes).

    `learning_rule`: None or "bp" (backprop); any other rule raises (module docstring).
    """
    model = PathIntegrator(
        kind=kind,
        activation=activation,
        units=units,
        output_dim=output_dim,
        l2=l2,
        l2_target=l2_target,
        name=f"{kind}_{activation}",
    )
    model({"inputs": tf.zeros((1, 1, input_dim)), "init_code": tf.zeros((1, init_dim))})
    return model
