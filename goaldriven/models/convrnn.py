"""ConvRNNs: a graph of conv nodes unrolled "biologically" in time (thesis Section 2.5.1; spec ch2 sections 1, 6).

Every edge costs one time step (10 ms), feedforward, skip and feedback alike:

    x_t^l = harbor( r_{t-1}^j for j in pred(l) )       (the first node reads frame_t instead)
    h_t^l, S_t^l = node_l( x_t^l, S_{t-1}^l )           (pre-conv, cell, post-memory ops)

At t = 0 every predecessor output is a zero stand-in and every state is zero. With nodes numbered k = 1 (conv1) ...
L (the readout "imnetds"), node k first carries image-driven signal at t = k - 1; the readout at t = L - 1.

The input is a "movie": the image for t < image_off, then a blank frame (constant `blank_value` in normalised input
space; the reference's 0.5 by default, spec A-1) up to `times`. Training and neural presentations differ (e.g. 17
steps with the image off at 12 for training, 26 steps off at 10 for neural data); `call` takes both as overrides.

Decoders (spec 6) act on the readout logits z_t for t in [decoder_start, times): "last" (z_{T-1}), "thresh" (z at
the first step whose max softmax probability reaches `threshold`, else at the most confident step) and "max_conf"
(z at argmax_t max softmax(beta z_t), beta a trainable scalar initialised to 1, spec A-12). `decoder_start` defaults
to L, the reference convention (spec A-3); `start_time` gives both conventions per layer.

`unroll="feedforward"` is the conventional unroll instead: each step is a whole feedforward pass (feedback from
t - 1); with `times=1` it is a plain CNN (the BaseNets "unrolled once").

`remat=k` (True = 1) wraps each segment of k time steps in `tf.recompute_grad`: the backward pass recomputes a
segment's activations from the outputs and states it received, so only those are kept, once per segment (longer
unrolls fit in accelerator memory; a larger k keeps fewer segment inputs but recomputes longer segments).
"""

# b: batch, t: time, h/w: space, c: channels, k: classes
from typing import Sequence

import keras
import tensorflow as tf
from keras import ops
from keras.src.backend.common import variables as variables_lib  # AutocastScope: no public alias in Keras 3

from goaldriven.models import convrnn_nodes

DECODERS = ("last", "thresh", "max_conf")
UNROLLS = ("biological", "feedforward")
READOUT = "imnetds"


@keras.saving.register_keras_serializable(package="goaldriven")
class ConvRNN(keras.Model):
    """A ConvRNN (or a feedforward CNN when no node has a cell) over an image or a movie.

    Args:
      nodes: ConvNodes in feedforward order; node i's feedforward input is node i-1's output (the frame for node 0).
      readout: the "imnetds" Readout, fed by the last node.
      edges: extra (source, target) edges, e.g. long-range feedback ("conv8", "conv5"); every edge costs one step.
      times: default number of time steps.
      image_off: default first blank step (>= times: the image stays on).
      blank_value: the blank frame's constant value in normalised input space.
      decoder: one of DECODERS.
      decoder_start: first readout step the decoders consider (default: the readout's node index L).
      threshold: probability threshold of the "thresh" decoder.
      unroll: "biological" or "feedforward".
      remat: recompute the activations of each segment of `remat` steps (True = 1) in the backward pass; 0/False: off.

    Call args:
      images: (b, h, w, c) image shown with the schedule, or (b, t, h, w, c) movie used as given.
      training: passed to the nodes.
      times, image_off: presentation overrides (e.g. 26 and 10 for neural data).
      feature_layers: names of nodes (or "imnetds") whose outputs to return at every step; "all" for every node.

    Returns:
      {"logits": (b, k) float32 decoded logits, "logits_per_step": (b, times - decoder_start, k) float32,
       "features": {name: (b, t, h, w, c)} (for "imnetds": (b, t, k))}.
    """

    def __init__(
        self,
        nodes: Sequence[convrnn_nodes.ConvNode],
        readout: convrnn_nodes.Readout,
        edges: Sequence[tuple[str, str]] = (),
        times: int = 17,
        image_off: int = 12,
        blank_value: float = 0.5,
        decoder: str = "last",
        decoder_start: int | None = None,
        threshold: float = 0.9,
        unroll: str = "biological",
        remat: bool | int = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.graph_nodes = list(nodes)
        self.readout = readout
        names = [n.name for n in self.graph_nodes]
        if len(set(names)) != len(names) or READOUT in names:
            raise ValueError(f"node names must be unique and not {READOUT!r}; received {names}.")
        self.edges = [tuple(e) for e in edges]
        for src, dst in self.edges:
            if src not in names or dst not in names:
                raise ValueError(f"edge {src}->{dst} names an unknown node; nodes are {names}.")
            if names.index(dst) == 0:
                raise ValueError(f"edge {src}->{dst}: the first node reads only the frame.")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}; received {decoder!r}.")
        if unroll not in UNROLLS:
            raise ValueError(f"unroll must be one of {UNROLLS}; received {unroll!r}.")
        self.times = int(times)
        self.image_off = int(image_off)
        self.blank_value = float(blank_value)
        self.decoder = decoder
        self.num_nodes = len(self.graph_nodes) + 1  # L, counting the readout
        self.decoder_start = self.num_nodes if decoder_start is None else int(decoder_start)
        if unroll == "feedforward" and decoder_start is None:
            self.decoder_start = 0
        self.threshold = float(threshold)
        self.unroll = unroll
        if int(remat) < 0:
            raise ValueError(f"remat is the number of steps per recomputed segment (>= 0); received {remat!r}.")
        self.remat = int(remat)
        # The harbor order: feedforward input first, then the other sources in sorted(name) order (spec 2).
        self.others = {n: sorted(src for src, dst in self.edges if dst == n) for n in names}
        self._check_times(self.times)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.graph_nodes)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.node_names + (READOUT,)

    def _node(self, name: str) -> convrnn_nodes.ConvNode:
        return self.graph_nodes[self.node_names.index(name)]

    def start_time(self, layer: str, convention: str = "reference") -> int:
        """First step whose output of `layer` is image-driven ("arrival": k - 1) or the reference's k (spec A-3)."""
        k = self.feature_names.index(layer) + 1
        if self.unroll == "feedforward":
            return 0
        return {"reference": k, "arrival": k - 1}[convention]

    def _check_times(self, times):
        if times <= self.decoder_start:
            raise ValueError(
                f"times={times} leaves no readout step for the decoder (decoder_start={self.decoder_start}); the "
                f"minimal unroll of this {self.num_nodes}-node graph is {self.decoder_start + 1} steps."
            )

    def build(self, input_shape):
        b, h, w, c = input_shape[0], input_shape[-3], input_shape[-2], input_shape[-1]
        shapes = {}
        for i, node in enumerate(self.graph_nodes):
            ff_shape = (b, h, w, c) if i == 0 else shapes[self.graph_nodes[i - 1].name]
            other_channels = sum(self._node(s).output_channels for s in self.others[node.name])
            node.build(ff_shape, other_channels=other_channels)
            shapes[node.name] = (b, *node.output_size, node.output_channels)
        self.readout.build(shapes[self.graph_nodes[-1].name])
        if self.decoder == "max_conf":
            self.beta = self.add_weight(name="beta", shape=(), initializer="ones")
        self.built = True

    def _frames(self, images, times, image_off):
        images = ops.cast(images, self.compute_dtype)
        if len(images.shape) == 5:
            if int(images.shape[1]) != times:
                raise ValueError(
                    f"the movie has {images.shape[1]} frames but times={times}; pass times={images.shape[1]}."
                )
            return [images[:, t] for t in range(times)]
        blank = ops.full((1, *images.shape[1:]), self.blank_value, dtype=self.compute_dtype)  # shared by the batch
        return [images if t < image_off else blank for t in range(times)]

    def _step(self, frame, outputs, states, training, batch):
        """One time step: every node reads its predecessors' outputs from the previous step (or this step's, for the
        feedforward unroll). Returns (new outputs, new states, readout logits).

        Tensors with a leading dimension of 1 are the same for every example (zero stand-ins, zero states, blank
        frames, and everything computed only from them, e.g. node k before t = k - 1): a node whose inputs and states
        are all shared runs once at batch 1; otherwise its shared inputs are broadcast to the batch. Exact (the
        gradient of a broadcast sums over the batch) and it skips the image-independent part of the unroll.
        """
        new_outputs, new_states = {}, {}
        for i, node in enumerate(self.graph_nodes):
            if i == 0:
                ff = frame
            else:
                prev = self.graph_nodes[i - 1].name
                ff = new_outputs[prev] if self.unroll == "feedforward" else outputs[prev]
            others = [outputs[src] for src in self.others[node.name]]
            ins = [ff, *others, *states[node.name]]
            if not all(_shared(x) for x in ins):
                ins = [_expand(x, batch) for x in ins]
            ff, others, sts = ins[0], ins[1 : 1 + len(others)], ins[1 + len(others) :]
            new_outputs[node.name], new_states[node.name] = node(ff, others, sts, training=training)
        last = self.graph_nodes[-1].name
        logits = self.readout(new_outputs[last] if self.unroll == "feedforward" else outputs[last])
        return new_outputs, new_states, logits

    def _remat_segment(self, frames, outputs, states, training, batch, weights, feature_layers):
        """len(frames) steps under one tf.recompute_grad; returns (outputs, states, [logits_t], {name: [feature_t]})."""
        names = self.node_names
        state_counts = [len(states[n]) for n in names]
        n_frames, n_state = len(frames), len(names) + sum(state_counts)

        def unflatten(flat):
            outs = dict(zip(names, flat[: len(names)]))
            rest, sts = list(flat[len(names) : n_state]), {}
            for n, count in zip(names, state_counts):
                sts[n], rest = rest[:count], rest[count:]
            return outs, sts

        def segment(*flat):
            outs, sts = unflatten(flat[n_frames:])
            logits, feats = [], []
            with self._weights_scope(flat[n_frames + n_state :]):
                for frame in flat[:n_frames]:
                    outs, sts, step_logits = self._step(frame, outs, sts, training, batch)
                    logits.append(_expand(step_logits, batch))
                    feats += [logits[-1] if name == READOUT else _expand(outs[name], batch) for name in feature_layers]
            return [outs[n] for n in names] + [s for n in names for s in sts[n]] + logits + feats

        flat_in = [outputs[n] for n in names] + [s for n in names for s in states[n]]
        flat_out = tf.recompute_grad(segment)(*frames, *flat_in, *weights)
        new_outputs, new_states = unflatten(flat_out)
        logits = list(flat_out[n_state : n_state + n_frames])
        feats = flat_out[n_state + n_frames :]
        k = len(feature_layers)
        features = {name: [feats[i * k + j] for i in range(n_frames)] for j, name in enumerate(feature_layers)}
        return new_outputs, new_states, logits, features

    def _weights_scope(self, weights):
        """Inside, the model's trainable variables read as `weights` (this step's link of the weight chain)."""
        return keras.StatelessScope(state_mapping=list(zip(self.trainable_variables, weights)))

    def _weight_chain_start(self):
        """float32 tensors equal to the trainable variables, read once per call.

        In training, step t reads the weights through the chain w_t = identity(w_{t-1}), so the gradient of each weight
        is summed step by step (each link has two consumers) instead of keeping one gradient copy per time step until
        the end of the backward pass (TensorFlow aggregates all partial gradients of a tensor at once): without the
        chain, T copies of the weight gradients dominate the memory of a long unroll, rematerialised or not.
        """
        with variables_lib.AutocastScope(None):  # the float32 values; reads inside the scope autocast as usual
            return [tf.identity(v.value) for v in self.trainable_variables]

    def call(self, images, training=False, times=None, image_off=None, feature_layers=()):
        times = self.times if times is None else int(times)
        image_off = self.image_off if image_off is None else int(image_off)
        self._check_times(times)
        if feature_layers == "all":
            feature_layers = self.feature_names
        unknown = set(feature_layers) - set(self.feature_names)
        if unknown:
            raise ValueError(f"unknown feature layers {sorted(unknown)}; this model has {self.feature_names}.")
        frames = self._frames(images, times, image_off)
        batch = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        # Zero stand-ins and zero states are the same for every example: batch 1 (see _step).
        outputs = {n.name: convrnn_nodes.zeros_like_output(n, 1, self.compute_dtype) for n in self.graph_nodes}
        states = {n.name: n.initial_state(1) for n in self.graph_nodes}
        per_step_logits, features = [], {name: [] for name in feature_layers}
        weights = self._weight_chain_start() if training else None
        t = 0
        while t < times:
            if weights is not None and self.remat:
                k = min(self.remat, times - t)
                outputs, states, logits, feats = self._remat_segment(
                    frames[t : t + k], outputs, states, training, batch, weights, feature_layers
                )
                per_step_logits += [ops.cast(x, "float32") for x in logits]
                for name in feature_layers:
                    features[name] += feats[name]
                t += k
            else:
                if weights is None:
                    outputs, states, logits = self._step(frames[t], outputs, states, training, batch)
                else:
                    with self._weights_scope(weights):
                        outputs, states, logits = self._step(frames[t], outputs, states, training, batch)
                per_step_logits.append(_expand(ops.cast(logits, "float32"), batch))
                for name in feature_layers:
                    features[name].append(per_step_logits[-1] if name == READOUT else _expand(outputs[name], batch))
                t += 1
            if weights is not None:
                weights = [tf.identity(w) for w in weights]
        window = ops.stack(per_step_logits[self.decoder_start :], axis=1)  # (b, t', k)
        return {
            "logits": self._decode(window),
            "logits_per_step": window,
            "features": {name: ops.stack(values, axis=1) for name, values in features.items()},
        }

    def _decode(self, window):
        if self.decoder == "last":
            return window[:, -1]
        if self.decoder == "thresh":
            confidence = ops.max(ops.softmax(window, axis=-1), axis=-1)  # (b, t')
            crossed = confidence >= self.threshold
            first = ops.argmax(ops.cast(crossed, "int32"), axis=1)  # first True (0 if none)
            chosen = ops.where(ops.any(crossed, axis=1), first, ops.argmax(confidence, axis=1))
        else:
            beta = ops.cast(self.beta, window.dtype)
            confidence = ops.max(ops.softmax(beta * window, axis=-1), axis=-1)
            chosen = ops.argmax(confidence, axis=1)
        return ops.take_along_axis(window, chosen[:, None, None], axis=1)[:, 0]

    def get_config(self):
        config = super().get_config()
        config.update(
            nodes=[keras.saving.serialize_keras_object(n) for n in self.graph_nodes],
            readout=keras.saving.serialize_keras_object(self.readout),
            edges=self.edges,
            times=self.times,
            image_off=self.image_off,
            blank_value=self.blank_value,
            decoder=self.decoder,
            decoder_start=self.decoder_start,
            threshold=self.threshold,
            unroll=self.unroll,
            remat=self.remat,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["nodes"] = [keras.saving.deserialize_keras_object(n) for n in config["nodes"]]
        config["readout"] = keras.saving.deserialize_keras_object(config["readout"])
        config["edges"] = [tuple(e) for e in config["edges"]]
        return cls(**config)


def _shared(x) -> bool:
    """True for a tensor shared by the whole batch (leading dimension 1)."""
    return x.shape[0] == 1


def _expand(x, batch):
    """Broadcasts a shared (leading dimension 1) tensor to the batch; other tensors pass through."""
    if not _shared(x) or (isinstance(batch, int) and batch == 1):
        return x
    return tf.broadcast_to(x, tf.concat([[batch], tf.shape(x)[1:]], axis=0))
