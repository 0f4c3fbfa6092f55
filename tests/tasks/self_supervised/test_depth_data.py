"""DepthData on files fabricated in tmp_path: the joint crop / resize / flip keeps image and depth aligned, the
stream is a pure function of (seed, step) (resume, replica layout, epochs), and unusable directories fail clearly."""

import os

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks.self_supervised.depth_data import DepthData

H, W = 40, 48  # file size; R = row, G = column, B = 20 * id; depth = 256 row + column + 1 + 10000 id


def _write(directory, n=5, depth_format="png", sizes=None):
    os.makedirs(directory, exist_ok=True)
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    for k in range(n):
        h, w = sizes[k] if sizes else (H, W)
        image = np.stack([rows, cols, np.full_like(rows, 20 * k)], axis=-1).astype(np.uint8)
        depth = (256 * rows + cols + 1 + 10000 * k).astype(np.uint16)[..., None]
        tf.io.write_file(os.path.join(directory, f"v{k}.png"), tf.io.encode_png(image[:h, :w]))
        if depth_format == "png":
            tf.io.write_file(os.path.join(directory, f"v{k}_depth.png"), tf.io.encode_png(depth))
        else:
            np.save(os.path.join(directory, f"v{k}_depth.npy"), depth[..., 0].astype(np.float64))
    return str(directory)


def _batches(data, *, global_batch_size=8, start_step=0, count=1, seed=0, context=None):
    dataset = data.train_dataset(
        global_batch_size=global_batch_size,
        input_context=context or tf.distribute.InputContext(),
        start_step=start_step,
        seed=seed,
    )
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def _pixels(data, batch):
    """The raw RGB values (0..255) behind the normalised images."""
    return (batch["images"] * np.array(data.pixel_std) + np.array(data.pixel_mean)) * 255.0


@pytest.mark.parametrize("depth_format", ["png", "npy"])
def test_joint_crop_resize_and_flip_keep_image_and_depth_aligned(depth_format, tmp_path):
    data = DepthData(_write(tmp_path, depth_format=depth_format), image_size=16, crop_size=32)
    (batch,) = _batches(data)
    assert batch["images"].shape == (8, 16, 16, 3) and batch["depth"].shape == (8, 16, 16, 1)
    assert batch["images"].dtype == batch["depth"].dtype == np.float32
    rgb = _pixels(data, batch)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Resizing averages with weights summing to one, so a depth that is a linear function of the pixel coordinates
    # stays that function of the resized coordinates only if both saw the same window and the same flip.
    np.testing.assert_allclose(batch["depth"][..., 0], 256 * r + g + 1 + 500 * b, atol=0.05)
    np.testing.assert_allclose(b[:, 0, 0] / 20, batch["index"], atol=1e-3)  # the image of the listed file
    # A 32 px window resized to 16 px: away from the borders, neighbouring rows are 2 source rows apart.
    np.testing.assert_allclose(np.diff(r, axis=1)[:, 2:-2], 2.0, atol=1e-3)
    steps = np.sign(np.diff(g, axis=2)[:, 8, 8])  # +1: unflipped, -1: flipped
    assert set(steps) == {-1.0, 1.0}
    tops = np.round(r[:, 8, 8], 3)
    assert len(set(tops)) > 1 and r.min() >= 0 and r.max() <= H - 1 and g.max() <= W - 1


def test_stream_resumes_exactly_and_splits_like_a_global_batch(tmp_path):
    data = DepthData(_write(tmp_path), image_size=16, crop_size=32)
    straight = _batches(data, count=4)
    resumed = _batches(data, start_step=3)[0]
    for key in straight[3]:
        np.testing.assert_array_equal(resumed[key], straight[3][key])
    two_replicas = _batches(data, count=2, context=tf.distribute.InputContext(1, 0, 2))
    second_pipeline = _batches(data, context=tf.distribute.InputContext(2, 1, 2))[0]
    for key in straight[0]:
        np.testing.assert_array_equal(np.concatenate([two_replicas[0][key], two_replicas[1][key]]), straight[0][key])
        np.testing.assert_array_equal(second_pipeline[key], straight[0][key][4:])
    epochs = _batches(data, global_batch_size=5, count=3)  # 5 files: one epoch per step
    orders = [tuple(batch["index"]) for batch in epochs]
    assert all(sorted(order) == list(range(5)) for order in orders) and len(set(orders)) > 1
    other_seed = _batches(data, seed=1)[0]
    assert not np.array_equal(other_seed["images"], straight[0]["images"])


def test_unusable_directories_fail_with_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _ = DepthData(str(tmp_path / "nowhere")).files
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        _ = DepthData(str(empty)).files
    lonely = _write(tmp_path / "lonely", n=2)
    os.remove(os.path.join(lonely, "v1_depth.png"))
    with pytest.raises(ValueError, match=r"1 images in .* have no depth map, e.g. 'v1.png' \(expected v1_depth"):
        _ = DepthData(lonely).files
    orphan = _write(tmp_path / "orphan", n=2)
    os.remove(os.path.join(orphan, "v0.png"))
    with pytest.raises(ValueError, match="1 depth maps .* have no image, e.g. 'v0_depth.png'"):
        _ = DepthData(orphan).files
    mixed = _write(tmp_path / "mixed", n=2)
    os.replace(os.path.join(mixed, "v1_depth.png"), os.path.join(mixed, "unused"))
    np.save(os.path.join(mixed, "v1_depth.npy"), np.zeros((H, W)))
    with pytest.raises(ValueError, match="mixes depth formats"):
        _ = DepthData(mixed).files
    eight_bit = _write(tmp_path / "eight_bit", n=1)
    tf.io.write_file(os.path.join(eight_bit, "v0_depth.png"), tf.io.encode_png(np.zeros((H, W, 1), np.uint8)))
    with pytest.raises(ValueError, match="must be 16-bit; .* is 8-bit"):
        _ = DepthData(eight_bit).files
    cropped = _write(tmp_path / "cropped", n=2, sizes=[(H, W), (30, 40)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="v1_depth.png is 40x48 but its image .*v1.png is 30x40"):
        _batches(DepthData(cropped, image_size=8, crop_size=16), global_batch_size=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="is 40x48, smaller than crop_size 44"):
        _batches(DepthData(_write(tmp_path / "small", n=1), crop_size=44), global_batch_size=1)
