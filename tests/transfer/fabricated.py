"""Fabricated transfer data for the tests: a tiny HvM file whose images carry their meta, and a mock TFDS dtd."""

import contextlib

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from goaldriven.transfer.hvm import CATEGORIES


def hvm_meta(categories: int = 4, objects: int = 2, per_level=(3, 6, 6), seed: int = 0) -> dict[str, np.ndarray]:
    """Meta of `categories` x `objects` objects with per_level (V0, V3, V6) images each; V0 is the canonical view."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(categories):
        for o in range(objects):
            for level, count in zip(("V0", "V3", "V6"), per_level):
                for _ in range(count):
                    spread = 0.0 if level == "V0" else (0.5 if level == "V3" else 1.0)
                    rows.append(
                        (
                            CATEGORIES[c],
                            f"{CATEGORIES[c].lower()}_{o}",
                            level,
                            *(rng.uniform(-90, 90, 3) * spread),
                            *(rng.uniform(-0.4, 0.4, 2) * spread),
                            1.0 + spread * rng.uniform(-0.375, 0.6),
                        )  # fmt: skip
                    )
    names = ("category", "object_name", "variation_level", "rotation_xy", "rotation_xz", "rotation_yz",
             "translation_y", "translation_z", "size")  # fmt: skip
    columns = list(zip(*rows))
    return {name: np.array(values) for name, values in zip(names, columns)}


def hvm_images(meta: dict[str, np.ndarray], size: int = 32, noise: float = 10.0, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8: a square whose centre codes the position, whose side the size and whose intensity
    ramps the two rotations, on a noisy background; the category sets the brightness of both."""
    rng = np.random.default_rng(seed)
    names = sorted(set(meta["category"].tolist()))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((len(meta["category"]), size, size), np.uint8)
    for i in range(len(out)):
        c = names.index(meta["category"][i])
        cy = size / 2 + meta["translation_y"][i] * size
        cx = size / 2 + meta["translation_z"][i] * size
        half = size * 0.18 * meta["size"][i]
        inside = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
        ramp = (xx - cx) / size * meta["rotation_xy"][i] + (yy - cy) / size * meta["rotation_xz"][i]
        image = rng.normal(20 + 25 * c, noise, (size, size)) + inside * (90 + 2.0 * ramp)
        out[i] = np.clip(image, 0, 255).astype(np.uint8)
    return out


def write_hvm(path: str, *, brain_score_names: bool = False, size: int = 32, seed: int = 0, **meta_kwargs) -> str:
    """An HvM HDF5 file (ventral_neural_data.hdf5 names, or the Brain-Score spelling) of fabricated images."""
    meta = hvm_meta(seed=seed, **meta_kwargs)
    images = hvm_images(meta, size=size, seed=seed)
    if brain_score_names:
        rename = {"category": "category_name", "variation_level": "variation", "rotation_xy": "rxy",
                  "rotation_xz": "rxz", "rotation_yz": "ryz", "translation_y": "ty", "translation_z": "tz",
                  "size": "s"}  # fmt: skip
        meta = {rename.get(k, k): v for k, v in meta.items()}
        meta["variation"] = np.array([int(v[1:]) for v in meta["variation"]])
        meta["size"] = np.full(len(images), size)  # Brain-Score's `size` is the image size in pixels
    with h5py.File(path, "w") as f:
        f["images"] = images
        group = f.create_group("image_meta")
        for name, values in meta.items():
            group[name] = values.astype("S") if values.dtype.kind == "U" else values
    return path


@contextlib.contextmanager
def mock_dtd(classes: int = 3, per_split: int = 6, size: int = 20, signal: bool = True, seed: int = 0):
    """TFDS `dtd` mocked: `per_split` images per class in each of train / validation / test, distinct file names
    ('<class>/<split>_<i>.jpg'); with `signal`, the class sets the image brightness."""

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, decoders, read_config, shuffle_files
        rng = np.random.default_rng(seed + len(str(split)))
        labels = np.repeat(np.arange(classes), per_split)
        base = 40 + 60 * labels if signal else np.full(len(labels), 100)
        images = rng.normal(base[:, None, None, None], 12, (len(labels), size, size + 4, 3))
        return tf.data.Dataset.from_tensor_slices({
            "image": np.clip(images, 0, 255).astype(np.uint8),
            "label": labels,
            "file_name": [f"class{c}/{split}_{i}.jpg" for i, c in enumerate(labels)],
        })  # fmt: skip

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        yield
