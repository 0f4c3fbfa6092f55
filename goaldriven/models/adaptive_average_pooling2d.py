"""Adaptive average pooling with PyTorch's index arithmetic (torch.nn.AdaptiveAvgPool2d), channels last.

Reference: spec ch3 A3.1 and C.3 (the StreamNet and AlexNet readouts pool to 6 x 6 at 64 px, which up-samples a
3 x 3 or 1 x 1 map by replication) and A4.2 (the sparse autoencoder pools its 6 x 6 code back to the encoder size).

For an input side H and an output side n, output row i averages input rows [start_i, end_i) with

    start_i = floor(i * H / n),   end_i = ceil((i + 1) * H / n)

(the same along the width). Windows may overlap (H not a multiple of n) and repeat one input row (n > H). The layer
computes y = P_h x P_w^T with constant row-stochastic matrices P (n, H), so it is exact, XLA-friendly and runs in the
input's dtype (bfloat16 under mixed precision). Input spatial sizes must be static; one layer serves every size.
"""

# b: batch, h/w: input space, i/j: output space, c: channels
import keras
import numpy as np
from keras import ops


def adaptive_pooling_matrix(input_size: int, output_size: int) -> np.ndarray:
    """The (output_size, input_size) float32 matrix whose row i averages PyTorch's window i (module docstring)."""
    if input_size < 1 or output_size < 1:
        raise ValueError(f"sizes must be >= 1. Received: input_size={input_size}, output_size={output_size}")
    matrix = np.zeros((output_size, input_size), np.float32)
    for i in range(output_size):
        start = (i * input_size) // output_size
        end = -((-(i + 1) * input_size) // output_size)  # ceil((i + 1) * H / n)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@keras.saving.register_keras_serializable(package="goaldriven")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Adaptive average pooling to a fixed spatial size, PyTorch semantics (module docstring).

    Args:
      output_size: int n (n x n output) or (n_h, n_w).

    Call args:
      inputs: (b, h, w, c) with static h and w.

    Returns:
      (b, n_h, n_w, c) in the input's dtype.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        if len(size) != 2 or any(not isinstance(n, int) or n < 1 for n in size):
            raise ValueError(f"output_size must be a positive int or a pair of them. Received: {output_size!r}")
        self.output_size = size
        self._cache = {}

    def build(self, input_shape):
        self._matrices(input_shape)

    def _matrices(self, shape):
        """The (rows (i, h), cols (j, w)) matrices of a (b, h, w, c) input; a model built at one size may be called
        at another (the CIFAR-10 StreamNets, trained at 64 x 64, are shown 64 x 81 scenes)."""
        if len(shape) != 4 or shape[1] is None or shape[2] is None:
            raise ValueError(
                f"AdaptiveAveragePooling2D needs (b, h, w, c) inputs with static h and w. Received: {shape}"
            )
        key = (int(shape[1]), int(shape[2]))
        if key not in self._cache:
            self._cache[key] = (
                adaptive_pooling_matrix(key[0], self.output_size[0]),  # (i, h)
                adaptive_pooling_matrix(key[1], self.output_size[1]),  # (j, w)
            )
        return self._cache[key]

    def call(self, inputs):
        (h, w), (n_h, n_w) = inputs.shape[1:3], self.output_size
        if n_h % h == 0 and n_w % w == 0:  # every window is one input pixel: replication (8x faster than einsums)
            return ops.repeat(ops.repeat(inputs, n_h // h, axis=1), n_w // w, axis=2)
        rows, cols = self._matrices(tuple(inputs.shape))
        rows = ops.convert_to_tensor(rows, dtype=inputs.dtype)
        cols = ops.convert_to_tensor(cols, dtype=inputs.dtype)
        x = ops.einsum("ih,bhwc->biwc", rows, inputs)  # (b, i, w, c)
        return ops.einsum("jw,biwc->bijc", cols, x)  # (b, i, j, c)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": self.output_size})
        return config
