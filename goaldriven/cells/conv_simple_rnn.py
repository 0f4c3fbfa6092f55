"""Convolutional SimpleRNN with optional whole-tensor layer norm (thesis eq. 2.3; spec ch2 section 4.2).

    a_t = W_s * s_{t-1} + b_s,   i_t = W_i * x_t + b_i
    s_t = ELU( LN(i_t + a_t) ),  h_t = s_t          (LN only when layer_norm=True)

Two separate 3x3 convs with their own biases (reference `cells.py::ConvNormBasicCell`); kernels Glorot uniform, biases
0, kernel and bias decayed with the cell's lambda (A-26). LN normalises over (h, w, c) jointly with per-channel
gamma (init 1) and beta (init 0) (spec 0.2, A-25); it is on in the shallow model and off in the intermediate one.
"""

# b: batch, h/w: space, c: channels (c_in input, c_out = filters)
import keras

from goaldriven.cells import base


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvSimpleRNNCell(base.ConvCell):
    """s_t = act(LN(W_i * x_t + b_i + W_s * s_{t-1} + b_s)).

    Args:
      filters: c_out, the state and output depth.
      kernel_size: square kernel of both convs (reference: 3).
      layer_norm: apply HWCLayerNorm before the activation.
      activation: the nonlinearity (reference: "elu").
      weight_decay: TF1 lambda on both kernels and both biases (reference JSON: 1e-4).
      init_scale: None (Glorot uniform) or a fan-in VarianceScaling scale.

    Call args:
      inputs: x_t, (b, h, w, c_in).
      states: [s_{t-1}], (b, h, w, c_out).
      feedback, residual: must be None.
      training: unused.

    Returns:
      (s_t, [s_t]), both (b, h, w, c_out).

    Reference: Nayebi et al. 2018 (NeurIPS); Nayebi thesis 2022, Chapter 2.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        layer_norm: bool = False,
        activation: str = "elu",
        weight_decay: float = 1e-4,
        init_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(filters, weight_decay=weight_decay, init_scale=init_scale, **kwargs)
        base.check_kernel_size("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.layer_norm = bool(layer_norm)
        self.activation = activation
        self._activation = keras.activations.get(activation)

    @property
    def state_channels(self) -> tuple[int, ...]:
        return (self.filters,)

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        self.input_conv = self.build_conv(self.filters, self.kernel_size, self.input_channels, name="input_conv")
        self.state_conv = self.build_conv(self.filters, self.kernel_size, self.filters, name="state_conv")
        self.norm = None
        if self.layer_norm:
            self.norm = base.HWCLayerNorm(name="layer_norm", dtype=self.dtype_policy)
            self.norm.build((None, *self.map_size, self.filters))

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        self._reject_extra_inputs(feedback, residual)
        (s_prev,) = self._check_states(states)
        pre = self.input_conv(inputs) + self.state_conv(s_prev)  # (b, h, w, c_out)
        if self.norm is not None:
            pre = self.norm(pre)
        s = self._activation(pre)
        return s, [s]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "layer_norm": self.layer_norm,
                "activation": self.activation,
            }
        )
        return config
