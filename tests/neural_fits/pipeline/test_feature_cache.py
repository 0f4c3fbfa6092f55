"""The feature cache: reused only for the same checkpoint content, model config, input, schedule, dtype and stimuli;
anything else is extracted again beside it with a note (never overwritten); damaged files never end in a traceback."""

import os
import shutil

import h5py
import numpy as np
import pytest

from goaldriven import checkpointing
from goaldriven.models import zoo
from goaldriven.neural_fits.pipeline import extraction
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform

STIMULI = np.random.default_rng(0).uniform(size=(10, 8, 8, 1)).astype(np.float32)
BASE = dict(transform=StimulusTransform(8, 0.5, 0.25), layers=["stem", "pool"], global_batch_size=4)


def _model(seed=0, **options):
    model = zoo.build_model("small_resnet8", num_classes=4, image_size=8, **options)
    model(np.zeros((1, 8, 8, 3), np.float32), training=False)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.1 for w in model.get_weights()])
    return model


def _save(model, workdir) -> str:
    """Saves `model` as training would, at step 0 of `workdir` (replacing what was there); returns the prefix."""
    shutil.rmtree(workdir, ignore_errors=True)
    checkpointing.Checkpointer(str(workdir), model=model).save(0)
    return checkpointing.resolve_checkpoint(str(workdir))


def _extract(model, path, lines=None, stimuli=STIMULI, **changes):
    kwargs = {**BASE, **changes}
    log = lines.append if lines is not None else (lambda _: None)
    return extraction.extract_features(model, stimuli, out_path=str(path), on_mismatch="extract", log=log, **kwargs)


def _stored(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f["features"][name][...] for name in f["features"]}


CHANGES = {  # what differs from the first extraction -> how the note names it
    "retrained checkpoint, same path": ("checkpoint (step or file contents)", {}),
    "build option (weight_decay)": ("model (architecture or build options)", {}),
    "image size": ("image size or pixel normalisation", {"transform": StimulusTransform(16, 0.5, 0.25)}),
    "pixel normalisation": ("image size or pixel normalisation", {"transform": StimulusTransform(8, 0.4, 0.25)}),
    "presentation schedule": ("presentation schedule", {"presentation": Presentation(times=12, image_on=4)}),
    "feature dtype": ("feature dtype", {"dtype": "float16"}),
    "stimulus pixels, same ids": ("stimuli (ids or pixels)", {"stimuli": STIMULI[::-1].copy()}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_another_key_is_extracted_beside_the_cache_and_never_overwrites_it(change, tmp_path):
    part, kwargs = CHANGES[change]
    path = tmp_path / "fit" / "features.h5"
    prefix = _save(_model(seed=0), tmp_path / "train")
    model = _model(seed=0)
    checkpointing.restore_model(model, prefix)
    _extract(model, path, checkpoint=prefix).close()
    first = _stored(path)
    if change == "retrained checkpoint, same path":
        prefix = _save(_model(seed=1), tmp_path / "train")  # the same prefix string, other weights
        assert prefix == checkpointing.resolve_checkpoint(str(tmp_path / "train"))
        checkpointing.restore_model(model, prefix)
    elif change.startswith("build option"):
        model = _model(seed=0, weight_decay=1e-3)  # the same weights; another option of the build
    lines = []
    store = _extract(model, path, lines, checkpoint=prefix, **kwargs)
    assert store.path != str(path) and os.path.dirname(store.path) == str(path.parent)
    notes = [line for line in lines if line.startswith(f"features: {path} holds features of another {part}")]
    assert len(notes) == 1 and notes[0].endswith(f"extracting into {store.path} (it is kept)"), lines
    assert any(line.startswith("features: 10/10 stimuli") for line in lines)  # extracted, not reused
    expected = {"stem": (10, 1, 16, 16, 16)} if change == "image size" else {}
    assert store["stem"].shape == expected.get("stem", first["stem"].shape)
    store.close()
    for name, values in _stored(path).items():  # the first cache is untouched ...
        np.testing.assert_array_equal(values, first[name])
    if change == "retrained checkpoint, same path":  # ... and the new features are the new weights'
        direct = model(BASE["transform"](STIMULI), training=False)["features"]["pool"].numpy()
        np.testing.assert_allclose(_stored(store.path)["pool"][:, 0], direct, rtol=1e-5, atol=1e-5)
        assert not np.allclose(first["pool"][:, 0], direct, atol=1e-3)
    # Both keys now have their cache: each is reused, nothing is extracted again.
    for again_kwargs, where in ((kwargs, store.path), ({}, str(path))):
        if change == "retrained checkpoint, same path" and where == str(path):
            continue  # the first weights are gone from the checkpoint path
        if change.startswith("build option") and where == str(path):
            model = _model(seed=0)
            checkpointing.restore_model(model, prefix)
        lines = []
        _extract(model, path, lines, checkpoint=prefix, **again_kwargs).close()
        assert lines == [f"features: reusing {where}"], lines


def test_a_copy_of_the_checkpoint_elsewhere_reuses_the_cache(tmp_path):
    model = _model(seed=0)
    prefix = _save(model, tmp_path / "train")
    path = tmp_path / "fit" / "features.h5"
    _extract(model, path, checkpoint=prefix).close()
    shutil.copytree(tmp_path / "train", tmp_path / "copy")
    lines = []
    _extract(model, path, lines, checkpoint=checkpointing.resolve_checkpoint(str(tmp_path / "copy"))).close()
    assert lines == [f"features: reusing {path}"]


def test_a_truncated_cache_is_moved_aside_and_extracted_again(tmp_path):
    model = _model(seed=0)
    path = tmp_path / "features.h5"
    _extract(model, path).close()
    written = _stored(path)
    with open(path, "r+b") as raw:
        raw.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match=r"features\.h5 cannot be read as a feature file .*truncated or damaged") as e:
        FeatureStore.open(str(path))
    assert "\n" not in str(e.value)
    lines = []
    store = _extract(model, path, lines)
    assert (
        f"note: {path} cannot be read (truncated or damaged); moved it to {path}.damaged and extracting again" in lines
    )
    assert store.path == str(path) and os.path.exists(f"{path}.damaged")
    store.close()
    for name, values in _stored(path).items():
        np.testing.assert_array_equal(values, written[name])


class _Interrupted:
    """Pixels whose second batch read raises (an extraction killed midway)."""

    def __init__(self, array):
        self.array, self.reads, self.shape, self.dtype = array, 0, array.shape, array.dtype

    def __getitem__(self, index):
        if isinstance(index, slice) and index.stop - (index.start or 0) == 4:
            self.reads += 1
            if self.reads == 2:
                raise KeyboardInterrupt("simulated interruption")
        return self.array[index]


def test_a_truncated_partial_file_is_started_over_with_a_note(tmp_path):
    model = _model(seed=0)
    path = tmp_path / "features.h5"
    with pytest.raises(KeyboardInterrupt):
        _extract(model, path, stimuli=_Interrupted(STIMULI))
    partial = f"{path}.partial"
    with open(partial, "r+b") as raw:
        raw.truncate(os.path.getsize(partial) // 3)
    lines = []
    store = _extract(model, path, lines)
    assert any(line.startswith(f"note: {partial} cannot be read (") and "starting it over" in line for line in lines)
    direct = model(BASE["transform"](STIMULI), training=False)["features"]["pool"].numpy()
    np.testing.assert_allclose(store["pool"][:, 0], direct, rtol=1e-5, atol=1e-5)
    store.close()
