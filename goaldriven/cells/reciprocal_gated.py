"""Reciprocal Gated Circuit (RGC): a propagated memory s and an output h that gate each other (thesis section 2.3.1,
eqs. 2.10-2.11, search space of section 2.5.4; spec ch2 sections 2, 4.7-4.9; reference `cells.py::ReciprocalGateCell`
and `median_rgcell.py::ReciprocalGateCell`).

Thesis form (two-state reciprocal gating):
    h_t = ELU( (1 - sigmoid(W_sh * s_{t-1})) o x_t + (1 - sigmoid(W_hh * h_{t-1})) o h_{t-1} )
    s_t = ELU( (1 - sigmoid(W_hs * h_{t-1})) o x_t + (1 - sigmoid(W_ss * s_{t-1})) o s_{t-1} )

General step implemented here (reference code form; every A(.) below is a sum of affine maps chosen by the
connection flags, see `rgc_connections.py`):
    x     = act_in( x_t [+ act_fb(A_fb(fb))  if feedback_entry = "input"] )
    c^    = A(x) [+ A(res)] [+ act_fb(A_fb(fb))  if entry = "cell"]                     (-> cell_depth)
    tau_c = f_tau( A(s_{t-1}) [+ A(res)] ),   g_c = f_g( A(h_{t-1}) [+ A(res)] )
    s_t   = act_cell( (o_tau + k_tau tau_c) o s_{t-1} + (o_g + k_g g_c) o c^ )
    o^    = A(x) or x  [+ A(s_{t-1}) if cell_to_out] [+ P res if out_residual] [+ act_fb(A_fb(fb)) if entry = "out"]
    tau_o = f_tau( A(h_{t-1}) [+ A(res)] ),   g_o = f_g( [A(s_{t-1}) unless cell_to_out] [+ A(res)] )
    h_t   = act_out( (o_tau + k_tau tau_o) o h_{t-1} + (o_g + k_g g_o) o o^ )
With use_current_cell_for_out (thesis edge s_t -> h_t, not in the released code) the out stage reads s_t.
State = [s, h], cell part first. Presets: `ReciprocalGatedCell.shallow` (released rgc_shallow: 3x3 convs without
biases, A-24, plus a gate term from the raw input) and `ReciprocalGatedCell.median` (RGC Median, spec 4.8).
"""

# b: batch, h/w: space, c: channels (c_in input, c = filters, d = cell_depth, c_res residual, c_fb feedback)
import inspect

import keras
from keras import ops

from goaldriven.cells import base
from goaldriven.cells import rgc_connections as rc


@keras.saving.register_keras_serializable(package="goaldriven")
class ReciprocalGatedCell(base.ConvCell):
    """The general RGC; defaults give thesis eqs. 2.10-2.11 with a conv from x into the cell (the shallow release
    without its residual gate).

    Args:
      filters: c, depth of h (the output). cell_depth: d, depth of s (None = filters).
      residual_channels / feedback_channels: depths of the `residual` / `feedback` call inputs (None = absent).
      {tau,gate,ff,in_out,feedback}_filter_size: square kernel of that family's convs (clipped to the map); 0 = the
        identity sum. tau: s->tau_c, h->tau_o, residual->taus. gate: h->g_c, s->g_o, s->o^ (cell_to_out),
        residual->gates. ff: x->c^, residual->c^. in_out: x->o^. feedback: fb -> its entry.
      {tau,gate,ff,in_out,feedback}_depth_separable: depthwise + pointwise (depth multiplier 1) instead of a conv.
      tau_nonlinearity, gate_nonlinearity: f_tau, f_g. tau_offset/tau_multiplier, gate_offset/gate_multiplier: o, k.
      input_to_cell: conv x into c^. input_to_out: conv x into o^ (False: o^ = x, needs c_in = c).
      cell_residual: conv of the raw input into c^. out_residual: add the raw input to o^ (identity, or a 1x1
        bias-free, Glorot, undecayed projection when c_res != c).
      residual_to_{cell,out}_{tau,gate}: add a conv of the raw input to that gate's pre-activation.
      cell_to_out: s_{t-1} enters o^ additively instead of gating h (g_o loses its s term).
      use_current_cell_for_out: the out stage reads s_t instead of s_{t-1} (thesis extension).
      feedback_entry: "input", "cell" or "out". feedback_activation: act_fb.
      input_activation, cell_activation, out_activation: act_in, act_cell, act_out ("linear"/"identity" = none).
      use_bias: bool for every conv, or a dict connection name -> bool (unlisted: no bias). bias_init: constant.
      weight_decay: TF1 lambda on every kernel except the residual projection; biases are never decayed (A-26).
      init_scale: None (Glorot uniform) or a fan-in truncated-normal VarianceScaling scale.

    Call args:
      inputs: x_t, (b, h, w, c_in). states: [s_{t-1} (b, h, w, d), h_{t-1} (b, h, w, c)].
      feedback: (b, h, w, c_fb) when feedback_channels is set, else None.
      residual: (b, h, w, c_res) when residual_channels is set, else None.
      training: unused.

    Returns:
      (h_t, [s_t, h_t]).

    Reference: Nayebi*, Bear*, Kubilius* et al., NeurIPS 2018; Nayebi*, Sagastuy-Brena* et al., Neural Computation
    2022 ("Recurrent connections in the primate ventral visual stream mediate a tradeoff ...").
    """

    def __init__(
        self,
        filters: int,
        cell_depth: int | None = None,
        residual_channels: int | None = None,
        feedback_channels: int | None = None,
        tau_filter_size: int = 3,
        tau_depth_separable: bool = False,
        tau_nonlinearity: str = "sigmoid",
        tau_offset: float = 1.0,
        tau_multiplier: float = -1.0,
        gate_filter_size: int = 3,
        gate_depth_separable: bool = False,
        gate_nonlinearity: str = "sigmoid",
        gate_offset: float = 1.0,
        gate_multiplier: float = -1.0,
        ff_filter_size: int = 3,
        ff_depth_separable: bool = False,
        in_out_filter_size: int = 3,
        in_out_depth_separable: bool = False,
        input_to_cell: bool = True,
        input_to_out: bool = False,
        cell_residual: bool = False,
        out_residual: bool = False,
        residual_to_cell_tau: bool = False,
        residual_to_cell_gate: bool = False,
        residual_to_out_tau: bool = False,
        residual_to_out_gate: bool = False,
        cell_to_out: bool = False,
        use_current_cell_for_out: bool = False,
        feedback_entry: str = "out",
        feedback_filter_size: int = 1,
        feedback_depth_separable: bool = False,
        feedback_activation: str = "linear",
        input_activation: str = "linear",
        cell_activation: str = "elu",
        out_activation: str = "elu",
        use_bias: bool | dict = False,
        bias_init: float = 0.0,
        weight_decay: float = 1e-4,
        init_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(filters, weight_decay=weight_decay, init_scale=init_scale, **kwargs)
        self.cell_depth = filters if cell_depth is None else cell_depth
        self.residual_channels = residual_channels
        self.feedback_channels = feedback_channels
        self.tau_filter_size = tau_filter_size
        self.tau_depth_separable = bool(tau_depth_separable)
        self.tau_nonlinearity = tau_nonlinearity
        self.tau_offset = float(tau_offset)
        self.tau_multiplier = float(tau_multiplier)
        self.gate_filter_size = gate_filter_size
        self.gate_depth_separable = bool(gate_depth_separable)
        self.gate_nonlinearity = gate_nonlinearity
        self.gate_offset = float(gate_offset)
        self.gate_multiplier = float(gate_multiplier)
        self.ff_filter_size = ff_filter_size
        self.ff_depth_separable = bool(ff_depth_separable)
        self.in_out_filter_size = in_out_filter_size
        self.in_out_depth_separable = bool(in_out_depth_separable)
        self.input_to_cell = bool(input_to_cell)
        self.input_to_out = bool(input_to_out)
        self.cell_residual = bool(cell_residual)
        self.out_residual = bool(out_residual)
        self.residual_to_cell_tau = bool(residual_to_cell_tau)
        self.residual_to_cell_gate = bool(residual_to_cell_gate)
        self.residual_to_out_tau = bool(residual_to_out_tau)
        self.residual_to_out_gate = bool(residual_to_out_gate)
        self.cell_to_out = bool(cell_to_out)
        self.use_current_cell_for_out = bool(use_current_cell_for_out)
        self.feedback_entry = feedback_entry
        self.feedback_filter_size = feedback_filter_size
        self.feedback_depth_separable = bool(feedback_depth_separable)
        self.feedback_activation = feedback_activation
        self.input_activation = input_activation
        self.cell_activation = cell_activation
        self.out_activation = out_activation
        self.use_bias = dict(use_bias) if isinstance(use_bias, dict) else use_bias
        self.bias_init = float(bias_init)
        rc.validate(self)
        self._f_tau = rc.get_activation(tau_nonlinearity)
        self._f_gate = rc.get_activation(gate_nonlinearity)
        self._act = {
            key: rc.get_activation(getattr(self, f"{key}_activation")) for key in ("feedback", "input", "cell", "out")
        }

    @classmethod
    def shallow(cls, filters: int, residual_channels: int, weight_decay: float = 1e-4, **overrides):
        """The released `rgc_shallow` cell (spec 4.7): cell_depth = filters, 3x3 convs without biases (A-24),
        (1 - sigmoid) gates, a conv of x into the cell, o^ = x and a gate term from the raw input."""
        kwargs = {**rc.SHALLOW, "residual_channels": residual_channels, "weight_decay": weight_decay, **overrides}
        return cls(filters, **kwargs)

    @classmethod
    def median(cls, filters: int, residual_channels: int, feedback_channels: int | None = None, **overrides):
        """RGC Median (spec 4.8): cell_depth 64, depth-separable 7x7 tau (sigmoid) and gate (tanh) convs, 2x2 x->cell
        and 3x3 x->out convs, out_residual, feedback as a 1x1 conv + bias added at "out", ELU everywhere,
        VarianceScaling(0.6393378) kernels, zero biases (A-23), weight decay 2.033999e-4 on kernels only."""
        kwargs = {**rc.MEDIAN, "residual_channels": residual_channels, "feedback_channels": feedback_channels}
        return cls(filters, **{**kwargs, **overrides})

    @property
    def state_channels(self) -> tuple[int, ...]:
        return (self.cell_depth, self.filters)

    def build(self, input_shape):
        self._record_input_shape(input_shape)
        self.connections = rc.connections(self)
        self.affines = {}
        for conn in self.connections:
            layer = rc.build_affine(self, conn)
            if layer is not None:
                self.affines[conn.name] = layer

    def _extra_input(self, arg, value, channels):
        if channels is None:
            if value is not None:
                raise ValueError(
                    f"ReciprocalGatedCell {self.name!r} was built without {arg}_channels but received a `{arg}` of "
                    f"shape {value.shape}; declare {arg}_channels in the constructor."
                )
            return None
        if value is None:
            raise ValueError(
                f"ReciprocalGatedCell {self.name!r} declares {arg}_channels={channels} but received {arg}=None; pass "
                f"zeros of shape (b, h, w, {channels}) when there is nothing to send (e.g. at t = 0)."
            )
        if value.shape[-1] != channels or tuple(value.shape[1:3]) != self.map_size:
            raise ValueError(
                f"ReciprocalGatedCell {self.name!r}: `{arg}` must be (b, {self.map_size[0]}, {self.map_size[1]}, "
                f"{channels}) ({arg}_channels and the input's map); received shape {value.shape}."
            )
        return value

    def _sum(self, target, sources):
        """Sum of the affine maps into `target`; a zero scalar when no connection feeds it."""
        total = None
        for conn in self.connections:
            if conn.target != target:
                continue
            y = sources[conn.source]
            if conn.name in self.affines:
                y = self.affines[conn.name](y)
            if conn.source == "feedback":
                y = self._act["feedback"](y)
            total = y if total is None else total + y
        return ops.zeros((), dtype=self.compute_dtype) if total is None else total

    def _mix(self, tau_pre, gate_pre, prev, drive, activation):
        tau = self.tau_offset + self.tau_multiplier * self._f_tau(tau_pre)
        gate = self.gate_offset + self.gate_multiplier * self._f_gate(gate_pre)
        return activation(tau * prev + gate * drive)

    def call(self, inputs, states, feedback=None, residual=None, training=False):
        del training
        s_prev, h_prev = self._check_states(states)  # (b, h, w, d), (b, h, w, c)
        sources = {
            "feedback": self._extra_input("feedback", feedback, self.feedback_channels),
            "residual": self._extra_input("residual", residual, self.residual_channels),
            "cell": s_prev,
            "out": h_prev,
        }
        x = self._act["input"](inputs + self._sum("input", sources))  # (b, h, w, c_in)
        sources["input"] = x
        s = self._mix(
            self._sum("cell_tau", sources),
            self._sum("cell_gate", sources),
            s_prev,
            self._sum("cell_input", sources),
            self._act["cell"],
        )  # (b, h, w, d)
        if self.use_current_cell_for_out:
            sources["cell"] = s
        h = self._mix(
            self._sum("out_tau", sources),
            self._sum("out_gate", sources),
            h_prev,
            self._sum("out_input", sources),
            self._act["out"],
        )  # (b, h, w, c)
        return h, [s, h]

    def get_config(self):
        config = super().get_config()
        params = inspect.signature(ReciprocalGatedCell.__init__).parameters  # every argument is a same-named attribute
        config.update({name: getattr(self, name) for name in params if name not in ("self", "kwargs")})
        return config
