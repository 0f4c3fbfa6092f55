"""Convolutional LSTM with optional layer norm and peepholes (thesis eqs. 2.5-2.7; spec ch2 section 4.4).

    [i, j, f, o] = W * [x_t ; h_{t-1}] + b                   (one conv -> 4c, split in the order i, j, f, o)
    i, j, f, o   = LN_i(i), LN_j(j), LN_f(f), LN_o(o)         (layer_norm only)
    s_t = s_{t-1} o sigmoid(f + forget_bias [+ V_f o s_{t-1}]) + sigmoid(i [+ V_i o s_{t-1}]) o tanh(j)
    s_t = LN_s(s_t)                                           (layer_norm only)
    h_t = tanh(s_t) o sigmoid(o [+ V_o o s_{t-1}])            (all peepholes read the previous state s_{t-1})

Peephole weights V are full (h, w, c) tensors initialised with the kernel initializer (reference
`cells.py::ConvLSTMCell`). LN is HWCLayerNorm (per-channel gamma/beta, 2c parameters each; 5 of them = 10c). The
shallow "LSTM Opt" cells (spec 4.4 table) set kernel_size, layer_norm, peepholes, forget_bias, init_scale
(VarianceScaling), bias_init (constant) and weight_decay per layer.

Weight decay: the conv kernel and bias (the reference's `_conv_linear`; A-26). Decision (spec silent): LN gamma/beta
and the peepholes are not decayed.

Learning rules (thesis Chapter 5): the gate conv comes from the alignment factories; the peepholes are elementwise
weights which, like a norm's gamma, keep exact gradients under every rule (no matrix is transported), so the cell
declares `honours_learning_rules = True` (alignment/binding.py).
"""

# b: batch, h/w: space, c: channels (c_in input, c = filters)
import keras
from keras import ops

from goaldriven.cells import base

GATES = ("i", "j", "f", "o")


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvLSTMCell(base.ConvCell):
    """Convolutional LSTM; state [s, h]. Honours learning rules (module docstring).

    Args:
      filters: c, the depth of s and h.
      kernel_size: square kernel of the gate conv (LSTM Opt: 2, 3, 4; intermediate: 3).
      layer_norm: layer-normalise the four pre-activations and the new cell state.
      peepholes: add V_i, V_f, V_o (each (h, w, c)) times s_{t-1} to the i, f, o pre-activations.
      forget_bias: added to the forget pre-activation (reference: 1.0).
      bias_init: constant initial value of the conv bias (reference: 0).
      weight_decay: TF1 lambda on the conv kernel and bias (reference JSON: 1e-4).
      init_scale: None (Glorot uniform) or a fan-in VarianceScaling scale; also initialises the peepholes.

    Call args:
      inputs: x_t, (b, h, w, c_in).
      states: [s_{t-1}, h_{t-1}], each (b, h, w, c).
      feedback, residual: must be None.
      training: unused.

    Returns:
      (h_t, [s_t, h_t]), each (b, h, w, c).

    Reference: Hochreiter & Schmidhuber 1997; Ba et al. 2016 (layer norm); Nayebi thesis 2022, Chapter 2.
    """

    honours_learning_rules = True  # peepholes are elementwise; the gate conv is made by the alignment factories

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        layer_norm: bool = False,
        peepholes: bool = False,
        forget_bias: float = 1.0,
        bias_init: float = 0.0,
        weight_decay: float = 1e-4,
        init_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(filters, weight_decay=weight_decay, init_scale=init_scale, **kwargs)
        base.check_kernel_size("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.layer_norm = bool(layer_norm)
        self.peepholes = bool(peepholes)
        self.forget_bias = float(forget_bias)
        self.bias_init = float(bias_init)

    @property
    def state_channels(self) -> tuple[int, ...]:
        return (self.filters, self.filters)

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        c = self.filters
        self.gates = self.build_conv(
            4 * c,
            self.kernel_size,
            self.input_channels + c,
            name="gates",
            bias_initializer=keras.initializers.Constant(self.bias_init),
        )
        self.norms = {}
        if self.layer_norm:
            for key in (*GATES, "state"):
                norm = base.HWCLayerNorm(name=f"layer_norm_{key}", dtype=self.dtype_policy)
                norm.build((None, *self.map_size, c))
                self.norms[key] = norm
        self.peephole_weights = {}
        if self.peepholes:
            for key in ("i", "f", "o"):
                self.peephole_weights[key] = self.add_weight(
                    name=f"peephole_{key}",
                    shape=(*self.map_size, c),
                    initializer=base.kernel_initializer(self.init_scale),
                )

    def _peep(self, key, s_prev):
        if not self.peepholes:
            return 0.0
        return self.peephole_weights[key] * s_prev  # (h, w, c) broadcast over b

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        self._reject_extra_inputs(feedback, residual)
        s_prev, h_prev = self._check_states(states)
        pre = self.gates(ops.concatenate([inputs, h_prev], axis=-1))  # (b, h, w, 4c)
        parts = dict(zip(GATES, ops.split(pre, 4, axis=-1)))
        if self.layer_norm:
            parts = {key: self.norms[key](value) for key, value in parts.items()}
        forget = ops.sigmoid(parts["f"] + self.forget_bias + self._peep("f", s_prev))
        write = ops.sigmoid(parts["i"] + self._peep("i", s_prev))
        s = s_prev * forget + write * ops.tanh(parts["j"])  # (b, h, w, c)
        if self.layer_norm:
            s = self.norms["state"](s)
        h = ops.tanh(s) * ops.sigmoid(parts["o"] + self._peep("o", s_prev))
        return h, [s, h]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "layer_norm": self.layer_norm,
                "peepholes": self.peepholes,
                "forget_bias": self.forget_bias,
                "bias_init": self.bias_init,
            }
        )
        return config
