"""The HvM stimulus set (Majaj, Hong et al. 2015; Hong et al. 2016) for the object-centric transfer tasks.

Reference: thesis Section 3.6.8, spec ch3 A5. 5760 greyscale images of 64 objects in 8 categories (Animals, Boats,
Cars, Chairs, Faces, Fruits, Planes, Tables), 90 per object: 10 at variation level V0, 40 at V3, 40 at V6.

File layout read by `load_hvm` (one HDF5): `images` (n, h, w) or (n, h, w, c), uint8 or float pixels, and a group
`image_meta` of (n,) datasets. Two spellings of the meta are accepted (checked against public code that reads them):
  - `ventral_neural_data.hdf5` (the file of the reference code [C], mouse-vision `hvm_dataset.py` /
    `hvm_fitter.py`, and of the Stanford course code that reads it): `category`, `object_name`,
    `variation_level` (b'V0' | b'V3' | b'V6'), `rotation_xy`, `rotation_xz`, `rotation_yz`, `translation_y`,
    `translation_z`, `size` (the 3-D scale);
  - the dldata / Brain-Score `dicarlo.hvm` stimulus-set columns: `category_name`, `object_name`, `variation`
    (0 | 3 | 6), `rxy`, `rxz`, `ryz`, `ty`, `tz`, `s` (the 3-D scale; there `size` is the image size in pixels).
Rotation `rxy` (in the x-y plane) is about the z axis, `rxz` about the y axis (the camera looks along x).

Splits (`hvm_splits`): train = every V0 + V3 image (3200), test = a category-balanced half of the V6 images
(160 per category, 1280), drawn 10 times with a seed. [C] keeps the train indices identical across its 10 splits
(its fitter reuses the cross-validated C when they are), and its categorisation checks assert 400 train and 160
test images per category, which is this scheme.
"""

# n: images, h/w: space, c: channels
import dataclasses
from typing import Sequence

import h5py
import numpy as np

CATEGORIES = ("Animals", "Boats", "Cars", "Chairs", "Faces", "Fruits", "Planes", "Tables")
TRAIN_LEVELS = ("V0", "V3")
TEST_LEVEL = "V6"
# quantity -> accepted meta names, in order of preference
META_FIELDS = {
    "category": ("category", "category_name"),
    "object_name": ("object_name", "obj"),
    "variation": ("variation_level", "variation", "var"),
    "rxy": ("rotation_xy", "rxy"),
    "rxz": ("rotation_xz", "rxz"),
    "ryz": ("rotation_yz", "ryz"),
    "ty": ("translation_y", "ty"),
    "tz": ("translation_z", "tz"),
    "s": ("s", "size"),  # Brain-Score's `size` is pixels; its scale is `s`. ventral_neural_data.hdf5 has only `size`.
}
REQUIRED = ("category", "variation")


class HvMFormatError(ValueError):
    """An HvM file that cannot be read; the message names the problem and the fix."""


@dataclasses.dataclass
class HvMStimuli:
    """The HvM images (as stored; prepare them with images.prepare_images) and their meta, one entry per image."""

    images: np.ndarray  # (n, h, w[, c]) uint8 or float, or an h5py dataset
    category: np.ndarray  # (n,) str
    variation: np.ndarray  # (n,) str: 'V0' | 'V3' | 'V6'
    meta: dict[str, np.ndarray]  # quantity (META_FIELDS keys) -> (n,) values, those present in the file
    path: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def targets(self, names: Sequence[str]) -> np.ndarray:
        """(n, len(names)) float64 of meta quantities (e.g. ('ty', 'tz')); names the missing ones in one line."""
        missing = [name for name in names if name not in self.meta]
        if missing:
            spelled = {name: META_FIELDS[name] for name in missing}
            raise HvMFormatError(
                f"{self.path or 'the HvM meta'} lacks {missing} (image_meta names accepted: {spelled}); add them or "
                "leave out the tasks that need them (--tasks)."
            )
        return np.stack([np.asarray(self.meta[name], np.float64) for name in names], axis=1)


def _text(values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "SO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()])
    return values.astype(str)


def variation_levels(values) -> np.ndarray:
    """Variation labels as 'V0' | 'V3' | 'V6' from b'V3', 'V3', 3, 3.0 or '3'."""
    out = []
    for value in _text(values).tolist():
        value = value.strip()
        number = value[1:] if value[:1] in ("V", "v") else value
        try:
            out.append(f"V{int(float(number))}")
        except ValueError:
            raise HvMFormatError(f"variation label {value!r} is not V0/V3/V6 (or 0/3/6).") from None
    return np.array(out)


def load_hvm(path: str, *, in_memory: bool = False) -> HvMStimuli:
    """Reads an HvM HDF5 file (module docstring). The images stay in the file (an h5py dataset, read as needed)
    unless `in_memory`; raises HvMFormatError naming a missing dataset or field."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise HvMFormatError(f"cannot open {path} as HDF5 ({e}); pass the HvM file (--hvm=.../hvm.h5).") from e
    if "images" not in f or "image_meta" not in f:
        found = sorted(f.keys())
        f.close()
        raise HvMFormatError(f"{path} needs datasets 'images' and group 'image_meta'; it holds {found}.")
    group = f["image_meta"]
    meta = {}
    for quantity, names in META_FIELDS.items():
        name = next((n for n in names if n in group), None)
        if name is not None:
            meta[quantity] = np.asarray(group[name][()])
    missing = [q for q in REQUIRED if q not in meta]
    if missing:
        fields = sorted(group.keys())
        f.close()
        raise HvMFormatError(
            f"{path}: image_meta lacks {[META_FIELDS[q] for q in missing]} (one name of each); it holds {fields}."
        )
    images = f["images"]
    n = int(images.shape[0])
    if len(images.shape) not in (3, 4):
        f.close()
        raise HvMFormatError(f"{path}: images must be (n, h, w) or (n, h, w, c); received {images.shape}.")
    bad = {q: len(v) for q, v in meta.items() if len(v) != n}
    if bad:
        f.close()
        raise HvMFormatError(f"{path}: {n} images but image_meta lengths {bad}.")
    if in_memory:
        images = np.asarray(images[()])
        f.close()
    category = _text(meta.pop("category"))
    variation = variation_levels(meta.pop("variation"))
    for quantity in ("object_name",):
        if quantity in meta:
            meta[quantity] = _text(meta[quantity])
    return HvMStimuli(images=images, category=category, variation=variation, meta=meta, path=path)


def hvm_splits(
    category: np.ndarray,
    variation: np.ndarray,
    *,
    n_splits: int = 10,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_splits` (train, test) index pairs: train = every V0 and V3 image, test = the same number of V6 images from
    each category (`test_fraction` of the smallest category's V6 count), drawn with `seed`; indices sorted."""
    category, variation = np.asarray(category), np.asarray(variation)
    train = np.flatnonzero(np.isin(variation, TRAIN_LEVELS))
    held = np.flatnonzero(variation == TEST_LEVEL)
    if not len(train) or not len(held):
        raise HvMFormatError(
            f"the HvM splits need V0/V3 (train) and V6 (test) images; found levels {sorted(set(variation.tolist()))}."
        )
    names = sorted(set(category[held].tolist()))
    per_category = int(min((category[held] == c).sum() for c in names) * test_fraction)
    if per_category < 1:
        raise HvMFormatError(f"test_fraction={test_fraction} leaves no V6 test image for some category.")
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(n_splits):
        test = np.concatenate([rng.choice(held[category[held] == c], per_category, replace=False) for c in names])
        splits.append((train.copy(), np.sort(test)))
    return splits
