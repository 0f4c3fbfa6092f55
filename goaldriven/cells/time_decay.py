"""TimeDecay cell: a leaky integrator with one learned decay per layer (thesis eq. 2.2; spec ch2 section 4.1).

    s_t = x_t + tau * s_{t-1},   h_t = s_t

x_t is the node's pre-memory conv output F(x). tau is one scalar per layer, initialised 0, trainable, unconstrained
and not weight-decayed (reference `cell_utils.py::memory`). With tau frozen at 0 the cell is the identity, which is
how the reference's feedforward nodes (decay 0, frozen) and the FF-equivalence test (spec 11.3 item 5) use it.
"""

# b: batch, h/w: space, c: channels
import keras
from keras import ops

from goaldriven.cells import base


@keras.saving.register_keras_serializable(package="goaldriven")
class TimeDecayCell(base.ConvCell):
    """s_t = x_t + tau * s_{t-1} with a scalar tau; output and state depth equal the input depth.

    Args:
      filters: optional; when given it must equal the input channels (checked at build).
      tau_init: initial tau (reference: 0).
      tau_trainable: False freezes tau (feedforward nodes of the reference).

    Call args:
      inputs: x_t, (b, h, w, c).
      states: [s_{t-1}], (b, h, w, c).
      feedback, residual: must be None.
      training: unused.

    Returns:
      (s_t, [s_t]), both (b, h, w, c).

    Reference: Nayebi et al., "Task-driven convolutional recurrent models of the visual system", NeurIPS 2018.
    """

    def __init__(self, filters: int | None = None, tau_init: float = 0.0, tau_trainable: bool = True, **kwargs):
        super().__init__(filters, weight_decay=0.0, **kwargs)
        self.tau_init = float(tau_init)
        self.tau_trainable = bool(tau_trainable)

    @property
    def output_channels(self) -> int:
        if self.input_channels is not None:
            return self.input_channels
        if self.filters is None:
            raise ValueError(f"TimeDecayCell {self.name!r} keeps its input depth; build it first or pass filters.")
        return self.filters

    @property
    def state_channels(self) -> tuple[int, ...]:
        return (self.output_channels,)

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        if self.filters is not None and self.filters != self.input_channels:
            raise ValueError(
                f"TimeDecayCell {self.name!r} keeps its input depth, so filters must equal the input channels; "
                f"received filters={self.filters} and input shape {tuple(input_shape)}. Pass filters=None."
            )
        self.tau = self.add_weight(
            name="tau",
            shape=(),
            initializer=keras.initializers.Constant(self.tau_init),
            trainable=self.tau_trainable,
        )

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        self._reject_extra_inputs(feedback, residual)
        (s_prev,) = self._check_states(states)
        s = inputs + ops.cast(self.tau, self.compute_dtype) * s_prev  # (b, h, w, c)
        return s, [s]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, h, w, c), [(b, h, w, c)]

    def get_config(self):
        config = super().get_config()
        del config["weight_decay"], config["init_scale"]  # tau is not decayed and has no kernel initializer
        config.update({"tau_init": self.tau_init, "tau_trainable": self.tau_trainable})
        return config
