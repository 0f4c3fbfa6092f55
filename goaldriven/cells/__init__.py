"""Recurrent cells as Keras layers, with registries for string lookup (CLI, model names, neural-fit reports).

VECTOR_CELLS: cells of the path-integration networks (thesis Chapter 4). The gated cells other than the UGRNN are the
Keras ones (spec ch3_ch4 Ambiguity 25: Keras defaults, sigmoid gates, `activation=f`; GRU with reset_after=True).
The convolutional cells of Chapter 2 land with the ConvRNN issue.
"""

import keras

from goaldriven.cells.vector_ugrnn import VectorUGRNNCell

VECTOR_CELLS = {
    "ugrnn": VectorUGRNNCell,
    "gru": keras.layers.GRUCell,
    "lstm": keras.layers.LSTMCell,
}


def get_vector_cell(name: str):
    """Returns the vector cell class registered as `name`."""
    if name not in VECTOR_CELLS:
        raise ValueError(f"unknown vector cell {name!r}; known cells: {', '.join(sorted(VECTOR_CELLS))}.")
    return VECTOR_CELLS[name]
