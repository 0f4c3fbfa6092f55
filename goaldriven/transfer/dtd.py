"""The Describable Textures Dataset (DTD; Cimpoi et al. 2014) for the texture transfer task, read through TFDS.

Reference: thesis Section 3.6.8, spec ch3 A5: 5640 images, 47 categories, 120 per category; the benchmark's 10
splits, each 3760 train (+ validation) / 1880 test, LinearSVC, accuracy averaged over the splits. [C] reads the
official label files (labels/train{k}.txt, val{k}.txt, test{k}.txt) and fits on train + val, tests on test.

TFDS `dtd` (3.0.1, tensorflow_datasets/image_classification/dtd.py, checked) has no configs for the folds: its
train / validation / test splits are those of fold 1 only (1880 each), and every example carries its `file_name`
('banded/banded_0002.jpg'). `load_dtd` therefore reads all three TFDS splits (every image once: the folds only
re-partition them) and takes the folds from:
  - fold 1: TFDS's own splits (train + validation -> train, test -> test);
  - folds 2..10: the official label files, from `labels_dir` or found in the TFDS download folder
    (<data_dir>/downloads/**/dtd/labels/, which `tfds.load('dtd')` leaves there) by their file names;
  - otherwise (no label files): seeded category-balanced random splits with the official proportions (1/3 test),
    recorded as such (`DTDImages.split_source`).
Nothing is downloaded: TFDS is asked with download=False (prepare it once with `tfds.load('dtd', data_dir=...)`).
"""

# n: images, s: the prepared image size
import dataclasses
import glob
import os
from typing import Callable

import numpy as np

from goaldriven.transfer.images import CROP_FRACTION, IMAGE_SIZE, prepare_image

N_FOLDS = 10
TFDS_SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class DTDImages:
    """Prepared DTD images and their folds."""

    images: np.ndarray  # (n, s, s, 3) uint8
    labels: np.ndarray  # (n,) int
    file_names: np.ndarray  # (n,) str
    splits: list[tuple[np.ndarray, np.ndarray]]  # per fold: (train + val indices, test indices)
    split_source: str  # "official" | "official fold 1 + random" | "random"
    num_classes: int = 47


def find_labels_dir(data_dir: str | None) -> str | None:
    """The official labels folder (with train2.txt ...) in the TFDS download folder under `data_dir`, if any."""
    if not data_dir:
        return None
    hits = glob.glob(os.path.join(data_dir, "downloads", "**", "labels", "test2.txt"), recursive=True)
    return os.path.dirname(sorted(hits)[0]) if hits else None


def read_fold(labels_dir: str, fold: int, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(train + val, test) indices of official fold `fold` from its label files, via the file-name `index`."""
    parts = {}
    for name in ("train", "val", "test"):
        path = os.path.join(labels_dir, f"{name}{fold}.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no {path}; pass the DTD labels folder (dtd/labels/ of the official archive).")
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"{path} names {len(unknown)} images TFDS's dtd lacks (first: {unknown[0]!r}).")
        parts[name] = np.array([index[n] for n in names], np.int64)
    return np.sort(np.concatenate([parts["train"], parts["val"]])), np.sort(parts["test"])


def random_fold(labels: np.ndarray, seed: int, test_fraction: float = 1 / 3) -> tuple[np.ndarray, np.ndarray]:
    """A category-balanced random (train, test) split: round(test_fraction x count) test images per category."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        k = int(round(len(members) * test_fraction))
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_dtd(
    data_dir: str | None = None,
    *,
    labels_dir: str | None = None,
    n_folds: int = N_FOLDS,
    size: int = IMAGE_SIZE,
    crop_fraction: float = CROP_FRACTION,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> DTDImages:
    """DTD from TFDS (never downloaded), every image prepared to (size, size, 3) uint8, with `n_folds` folds
    (module docstring). Raises FileNotFoundError naming the fix when TFDS has not prepared `dtd` in `data_dir`."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  Only the texture task needs TFDS.

    if not 1 <= n_folds <= N_FOLDS:
        raise ValueError(f"n_folds must be in 1..{N_FOLDS}. Received: {n_folds}")
    try:
        datasets = tfds.load("dtd", split=list(TFDS_SPLITS), data_dir=data_dir, download=False, shuffle_files=False)
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as e:
        where = data_dir or "the default TFDS folder"
        raise FileNotFoundError(
            f"TFDS dataset 'dtd' is not prepared in {where} ({' '.join(str(e).split())[:200]}); prepare it once with "
            f"tfds.load('dtd', data_dir={data_dir!r}) or pass --dtd_data_dir."
        ) from e
    images, labels, names, origin = [], [], [], []
    for split, dataset in zip(TFDS_SPLITS, datasets):
        for example in dataset.as_numpy_iterator():
            images.append(prepare_image(example["image"], size, crop_fraction))
            labels.append(int(example["label"]))
            name = example["file_name"]
            names.append(name.decode() if isinstance(name, bytes) else str(name))
            origin.append(split)
        log(f"dtd: read {split} ({sum(o == split for o in origin)} images)")
    labels_arr, origin_arr = np.array(labels, np.int64), np.array(origin)
    fold1 = (np.flatnonzero(origin_arr != "test"), np.flatnonzero(origin_arr == "test"))
    splits, source = [fold1], "official"
    if n_folds > 1:
        labels_dir = labels_dir or find_labels_dir(data_dir)
        if labels_dir:
            index = {name: i for i, name in enumerate(names)}
            splits += [read_fold(labels_dir, fold, index) for fold in range(2, n_folds + 1)]
            log(f"dtd: folds 2..{n_folds} from the official label files in {labels_dir}")
        else:
            splits += [random_fold(labels_arr, seed + fold) for fold in range(2, n_folds + 1)]
            source = "official fold 1 + random"
            log(
                f"dtd: no official label files found (pass labels_dir / --dtd_labels_dir=<dtd/labels>); folds 2..{n_folds}"
                " are seeded category-balanced random splits (1/3 test)"
            )
    info = getattr(getattr(datasets, "info", None), "features", None)
    num_classes = int(info["label"].num_classes) if info is not None else max(47, int(labels_arr.max()) + 1)
    return DTDImages(
        images=np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        labels=labels_arr,
        file_names=np.array(names),
        splits=splits,
        split_source=source,
        num_classes=num_classes,
    )
