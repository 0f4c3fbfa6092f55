"""Recurrent cells as Keras layers, with registries for string lookup (CLI, model names, neural-fit reports).

VECTOR_CELLS: cells of the path-integration networks (thesis Chapter 4). The gated cells other than the UGRNN are the
Keras ones (spec ch3_ch4 Ambiguity 25: Keras defaults, sigmoid gates, `activation=f`; GRU with reset_after=True).

CELLS: the convolutional cells of the ConvRNNs (thesis Chapter 2; spec ch2 section 4), keyed as in the reference
convrnns code. Each takes one time step: `out, new_states = cell(x, states, feedback=None, residual=None)`
(interface in `base.ConvCell`).
"""

import keras

from goaldriven.cells.conv_gru import ConvGRUCell
from goaldriven.cells.conv_intersection_rnn import ConvIntersectionRNNCell
from goaldriven.cells.conv_lstm import ConvLSTMCell
from goaldriven.cells.conv_simple_rnn import ConvSimpleRNNCell
from goaldriven.cells.conv_ugrnn import ConvUGRNNCell
from goaldriven.cells.reciprocal_gated import ReciprocalGatedCell
from goaldriven.cells.time_decay import TimeDecayCell
from goaldriven.cells.vector_ugrnn import VectorUGRNNCell

VECTOR_CELLS = {
    "ugrnn": VectorUGRNNCell,
    "gru": keras.layers.GRUCell,
    "lstm": keras.layers.LSTMCell,
}

CELLS = {
    "timedecay": TimeDecayCell,
    "simplernn": ConvSimpleRNNCell,
    "gru": ConvGRUCell,
    "lstm": ConvLSTMCell,
    "ugrnn": ConvUGRNNCell,
    "intersectionrnn": ConvIntersectionRNNCell,
    "rgc": ReciprocalGatedCell,
}


def get_vector_cell(name: str):
    """Returns the vector cell class registered as `name`."""
    if name not in VECTOR_CELLS:
        raise ValueError(f"unknown vector cell {name!r}; known cells: {', '.join(sorted(VECTOR_CELLS))}.")
    return VECTOR_CELLS[name]


def get_cell(name: str):
    """Returns the convolutional cell class registered as `name`."""
    if name not in CELLS:
        raise ValueError(f"unknown conv cell {name!r}; known cells: {', '.join(sorted(CELLS))}.")
    return CELLS[name]
