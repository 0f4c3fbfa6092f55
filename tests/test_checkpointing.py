"""Checkpoints hold every model variable, including those of layers kept in Python lists."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import checkpointing
from goaldriven.models import zoo


@pytest.mark.parametrize("rule", [None, "fa"])
def test_checkpoint_restores_every_variable_of_a_resnet(tmp_path, rule):
    def build():
        return zoo.build_model("small_resnet8", num_classes=10, image_size=16, learning_rule=rule)

    model = build()
    model(tf.random.normal((2, 16, 16, 3)), training=True)  # moves the BN moving statistics inside the blocks
    saver = checkpointing.Checkpointer(str(tmp_path), model=model)
    saver.save(1)
    keras.utils.set_random_seed(123)  # a different initialisation
    restored = build()
    loader = checkpointing.Checkpointer(str(tmp_path), model=restored)
    assert loader.restore_latest() is not None
    assert len(restored.variables) == len(model.variables) > 40
    for a, b in zip(model.variables, restored.variables):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_different_architecture_is_refused(tmp_path):
    model = zoo.build_model("small_resnet8", num_classes=10, image_size=16)
    checkpointing.Checkpointer(str(tmp_path), model=model).save(1)
    other = zoo.build_model("small_resnet8", num_classes=7, image_size=16)  # another readout shape
    with pytest.raises(ValueError, match="does not match the model"):
        checkpointing.Checkpointer(str(tmp_path), model=other).restore_latest()
