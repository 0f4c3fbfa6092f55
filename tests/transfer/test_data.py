"""The transfer data: HvM reader (both meta spellings), category-balanced splits, DTD through a mock TFDS, 64 px."""

import os

import h5py
import numpy as np
import pytest

from goaldriven.transfer import dtd, hvm, images
from tests.transfer import fabricated


@pytest.mark.parametrize("brain_score_names", [False, True])
def test_both_meta_spellings_read_the_same(tmp_path, brain_score_names):
    path = fabricated.write_hvm(str(tmp_path / "hvm.h5"), brain_score_names=brain_score_names)
    stimuli = hvm.load_hvm(path)
    reference = fabricated.hvm_meta()
    assert len(stimuli) == 4 * 2 * 15
    assert stimuli.category.tolist() == reference["category"].tolist()
    assert sorted(set(stimuli.variation.tolist())) == ["V0", "V3", "V6"]
    np.testing.assert_allclose(stimuli.targets(("ty", "tz"))[:, 0], reference["translation_y"])
    np.testing.assert_allclose(stimuli.targets(("s",))[:, 0], reference["size"])  # never Brain-Score's pixel size
    np.testing.assert_allclose(stimuli.targets(("rxy", "rxz"))[:, 1], reference["rotation_xz"])


def test_a_file_without_the_meta_is_refused_in_one_line(tmp_path):
    path = str(tmp_path / "bad.h5")
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((4, 8, 8), np.uint8)
        f.create_group("image_meta")["object_name"] = np.array([b"a"] * 4)
    with pytest.raises(hvm.HvMFormatError, match="image_meta lacks"):
        hvm.load_hvm(path)
    with pytest.raises(hvm.HvMFormatError, match="needs datasets 'images'"):
        with h5py.File(path, "w") as f:
            f["pixels"] = np.zeros(3)
        hvm.load_hvm(path)


def test_splits_train_on_v0_v3_and_test_on_a_category_balanced_half_of_v6():
    meta = fabricated.hvm_meta(categories=3, objects=2, per_level=(2, 4, 8))
    category, variation = meta["category"], hvm.variation_levels(meta["variation_level"])
    splits = hvm.hvm_splits(category, variation, n_splits=10, seed=3)
    assert len(splits) == 10
    for train, test in splits:
        np.testing.assert_array_equal(train, np.flatnonzero(variation != "V6"))  # every V0 + V3 image, each split
        assert set(variation[test]) == {"V6"}
        counts = np.unique(category[test], return_counts=True)[1]
        assert counts.tolist() == [8, 8, 8]  # half of each category's 16 V6 images
    assert len({tuple(test) for _, test in splits}) > 1  # the draws differ
    again = hvm.hvm_splits(category, variation, n_splits=10, seed=3)
    assert all((a[1] == b[1]).all() for a, b in zip(splits, again))  # and are seeded


def test_variation_labels_are_normalised():
    assert hvm.variation_levels([b"V0", "V3", 6, 3.0, "6"]).tolist() == ["V0", "V3", "V6", "V3", "V6"]
    with pytest.raises(hvm.HvMFormatError):
        hvm.variation_levels(["high"])


def test_images_are_centre_cropped_and_resized_to_64_rgb():
    image = np.zeros((256, 256), np.uint8)
    image[16:240, 16:240] = 200  # exactly the 224 px centre crop
    out = images.prepare_images(np.stack([image, image]))
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8
    assert out.min() == 200  # the crop removed the whole dark border
    whole = images.prepare_images(image[None], crop_fraction=1.0)
    assert whole.min() < 50  # without the crop the border stays
    floats = images.prepare_image(np.full((30, 40, 3), 0.5, np.float32))
    assert floats.shape == (64, 64, 3) and abs(int(floats.mean()) - 128) <= 1


def test_dtd_reads_every_tfds_split_and_takes_fold_1_from_them(tmp_path):
    with fabricated.mock_dtd(classes=3, per_split=4):
        data = dtd.load_dtd(str(tmp_path), n_folds=3, log=lambda line: None)
    assert data.images.shape == (36, 64, 64, 3)
    train, test = data.splits[0]
    assert len(train) == 24 and len(test) == 12
    assert all(name.split("/")[1].startswith("test") for name in data.file_names[test])
    assert data.split_source == "official fold 1 + random"
    for train, test in data.splits[1:]:  # fallback folds: category balanced, 1/3 test
        assert np.unique(data.labels[test], return_counts=True)[1].tolist() == [4, 4, 4]
        assert not set(train) & set(test)


def test_dtd_folds_2_to_10_come_from_the_official_label_files(tmp_path):
    labels_dir = tmp_path / "downloads" / "extracted" / "dtd" / "labels"
    os.makedirs(labels_dir)
    with fabricated.mock_dtd(classes=2, per_split=3):
        names = dtd.load_dtd(str(tmp_path), n_folds=1, log=lambda line: None).file_names
        for fold in (2, 3):
            order = np.roll(names, 6 * fold)
            for part, chunk in zip(("train", "val", "test"), np.split(order, 3)):
                (labels_dir / f"{part}{fold}.txt").write_text("\n".join(chunk) + "\n")
        data = dtd.load_dtd(str(tmp_path), n_folds=3, log=lambda line: None)  # labels found under downloads/
    assert data.split_source == "official"
    order = np.roll(names, 12)
    np.testing.assert_array_equal(np.sort(data.file_names[data.splits[1][1]]), np.sort(np.split(order, 3)[2]))


def test_dtd_without_tfds_data_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds.load\\('dtd'"):
        dtd.load_dtd(str(tmp_path / "empty"), n_folds=1, log=lambda line: None)
