"""Weight decay as the TF1 reference code writes it: `tf.contrib.layers.l2_regularizer(lam)` adds
lam * sum(w^2) / 2 to the loss, which is Keras `L2(lam / 2)` (Keras' L2(l) adds l * sum(w^2)). Every model and cell
of the library states its `weight_decay` as this TF1 lambda (thesis Section 2.5.1; spec ch2 0.2).
"""

import keras


def tf1_l2(weight_decay: float) -> keras.regularizers.L2 | None:
    """Keras regularizer equal to TF1 l2_regularizer(weight_decay) (lam * sum(w^2) / 2), or None when 0."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0 (a TF1 lambda; 0 disables it). Received: {weight_decay}")
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
