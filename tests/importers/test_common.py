"""The shared weight-assignment check: every kind of mismatch is named, and nothing is assigned unless all match."""

import keras
import numpy as np
import pytest

from goaldriven.importers import common


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc"), keras.layers.Dense(4, name="out")])
    return model, {v.path: v for v in model.variables}


def _release():
    rng = np.random.default_rng(0)
    return {
        "w1": rng.normal(size=(2, 3)),  # stored [out, in], as PyTorch does
        "b1": rng.normal(size=2),
        "w2": rng.normal(size=(4, 2)),
        "b2": rng.normal(size=4),
        "w1/Momentum": np.zeros((2, 3)),
    }


def _plan(paths):
    transpose = dict(convert=np.transpose, note="[O,I] -> [I,O]")
    return {
        paths["fc/kernel"]: common.Source("w1", **transpose),
        paths["fc/bias"]: common.Source("b1"),
        paths["out/kernel"]: common.Source("w2", **transpose),
        paths["out/bias"]: common.Source("b2"),
    }


def _assign(model, plan, release):
    return common.assign_weights(
        model.variables, plan, release, release.__getitem__, origin="release.pt", ignore=lambda k: "Momentum" in k
    )


def test_everything_matches_and_is_assigned_converted():
    model, by_path = _model()
    release = _release()
    report = _assign(model, _plan({p.split("/", 1)[-1]: p for p in by_path}), release)
    np.testing.assert_allclose(by_path[model.layers[0].kernel.path].numpy(), release["w1"].T, rtol=1e-6)
    np.testing.assert_allclose(model.layers[1].bias.numpy(), release["b2"], rtol=1e-6)
    assert (report.assigned, report.parameters, report.ignored) == (4, 6 + 2 + 8 + 4, ("w1/Momentum",))


def test_every_mismatch_is_named_at_once_and_nothing_is_assigned():
    model, by_path = _model()
    paths = {p.split("/", 1)[-1]: p for p in by_path}
    plan = _plan(paths)
    del plan[paths["out/bias"]]  # a goaldriven weight without a source
    release = _release()
    release["w2"] = np.zeros((4, 5))  # reshaped
    release["extra/kernel"] = np.zeros(3)  # unknown to goaldriven
    before = [v.numpy().copy() for v in model.variables]
    with pytest.raises(common.WeightImportError) as info:
        _assign(model, plan, release)
    message = str(info.value)
    assert message.startswith("release.pt does not match the goaldriven model")
    assert f"goaldriven weights with no source in the file: {paths['out/bias']}" in message
    assert "match no goaldriven weight: b2, extra/kernel" in message
    assert f"w2 (4, 5) after [O,I] -> [I,O] -> (5, 4) vs {paths['out/kernel']} (2, 4)" in message
    for old, v in zip(before, model.variables):
        np.testing.assert_array_equal(old, v.numpy())


def test_a_missing_key_is_named_with_its_goaldriven_weight():
    model, by_path = _model()
    paths = {p.split("/", 1)[-1]: p for p in by_path}
    release = _release()
    release["b1_renamed"] = release.pop("b1")
    with pytest.raises(
        common.WeightImportError, match=f"renamed, or another model\\): b1 \\(for {paths['fc/bias']}\\)"
    ):
        _assign(model, _plan(paths), release)


def test_frozen_constants_are_checked_not_dropped():
    common.check_constant("ckpt", "conv1/memory_decay", np.zeros(1), 0.0)
    with pytest.raises(common.WeightImportError, match=r"conv1/memory_decay is \[0.5\] but the goaldriven model fixes"):
        common.check_constant("ckpt", "conv1/memory_decay", np.array([0.5]), 0.0)
