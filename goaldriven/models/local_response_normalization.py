"""Local response normalisation across channels (Krizhevsky et al. 2012, "ImageNet Classification with Deep
Convolutional Neural Networks", Section 3.3), with the semantics of `tf.nn.local_response_normalization`:

    sqr_sum[b, h, w, c] = sum_{c' = c - r}^{c + r} x[b, h, w, c']^2      (channels outside [0, C) contribute 0)
    y[b, h, w, c]       = x[b, h, w, c] / (bias + alpha * sqr_sum[b, h, w, c]) ** beta

r is `depth_radius`, so the window spans 2r + 1 channels. As in TensorFlow (and unlike Caffe, which divides alpha by
the window size), alpha multiplies the plain sum. The AlexNet of the thesis (spec ch2 5.5) uses r = 5, bias = 1,
alpha = 1e-4, beta = 0.75.

The window sum is 2r + 1 shifted slices of the zero-padded squares rather than a banded matmul: a float32 matmul runs
at bfloat16 precision by default on TPUs, and elementwise adds stay exact. Everything is computed in float32 and the
result is cast to the layer's compute dtype, so the layer is safe under mixed_bfloat16.
"""

# b: batch, h/w: space, c: channels
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="goaldriven")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation (no weights).

    Args:
      depth_radius: r, half-width of the channel window (window = 2r + 1 channels). Non-negative int.
      bias: additive constant k in the denominator (> 0 keeps the denominator positive).
      alpha: scale of the windowed sum of squares (>= 0).
      beta: exponent of the denominator.

    Call args:
      inputs: (b, h, w, c) tensor (channels last).

    Returns:
      (b, h, w, c) tensor of the layer's compute dtype.

    Reference:
      Krizhevsky, Sutskever & Hinton (2012); `tf.nn.local_response_normalization`.
    """

    def __init__(self, depth_radius=5, bias=1.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(depth_radius, int) or isinstance(depth_radius, bool) or depth_radius < 0:
            raise ValueError(f"depth_radius must be a non-negative int (window = 2r + 1). Received: {depth_radius!r}")
        if not bias > 0:
            raise ValueError(f"bias must be > 0 so that the denominator stays positive. Received: {bias!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0. Received: {alpha!r}")
        self.depth_radius = depth_radius
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"LocalResponseNormalization expects (b, h, w, c) inputs with a known channel count. "
                f"Received: {input_shape}"
            )
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")  # (b, h, w, c)
        channels, r = x.shape[-1], self.depth_radius
        squares = ops.pad(ops.square(x), [[0, 0], [0, 0], [0, 0], [r, r]])  # (b, h, w, c + 2r)
        sqr_sum = squares[..., 0:channels]
        for shift in range(1, 2 * r + 1):
            sqr_sum = sqr_sum + squares[..., shift : shift + channels]  # (b, h, w, c)
        outputs = x * ops.power(self.bias + self.alpha * sqr_sum, -self.beta)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"depth_radius": self.depth_radius, "bias": self.bias, "alpha": self.alpha, "beta": self.beta})
        return config
