"""Images with depth maps for the depth-prediction objective, with the joint augmentation of thesis Section 3.6.5.

Reference: spec ch3 A4.3 (PBRNet, Zhang et al. 2017: ~50,000 synthetic indoor images with depth) and Ambiguity 17
(neither the split nor the native image size is described).

Format (one directory per split; the thesis gives no split, so make train/ and val/ directories yourself):

    <dir>/<id>.png | <id>.jpg | <id>.jpeg      the RGB image (8-bit; grey or RGBA are converted to RGB)
    <dir>/<id>_depth.png                        its depth map: 16-bit single-channel PNG (depth = value * depth_scale)
      or <dir>/<id>_depth.npy                   or a float array (h, w) or (h, w, 1) (depth = value * depth_scale)

Every image needs exactly one depth file of the same height and width, and every depth file an image; one depth
format per directory. Both sides must be at least `crop_size`. Only relative depth matters to the objective (each map
is normalised to zero mean and unit std before the loss), so `depth_scale` only sets the unit of the batches.
Converting PBRNet (its download is not available offline): for every rendered view, write (or link) the colour image
as <dir>/<id>.png and its depth image as <dir>/<id>_depth.png, with one id per view (e.g. "<scene>_<camera>");
16-bit depth PNGs can be linked unchanged, other encodings converted with numpy to <id>_depth.npy.

Training stream (every choice stateless: global batch k is a pure function of (seed, k), so resume is exact):
  example i of the stream (i = k * global_batch + j) is file perm_e[i mod N], e = i div N, where perm_e is the
  stateless permutation `index_shuffle` seeded by fold_in(fold_in((seed, 0), 0), e): every epoch visits each example
  once. Augmentation of example i, seeded by a_i = fold_in(fold_in((seed, 0), 1), i) (then fold_in(a_i, 0 / 1 / 2)
  for the crop's top, its left and the flip):
    a crop_size x crop_size window at a uniform offset, the same for image and depth (RandomCrop(224));
    both resized to image_size (bilinear with antialiasing, PIL-like downsampling; depth is interpolated too);
    both flipped left-right with probability 1/2 (one coin);
    image / 255, normalised with the ImageNet mean and std; depth * depth_scale, float32.
  Input pipeline p keeps its slice of each global batch (the layout of runtime.step_indexed_dataset) and decodes only
  its own examples.

Batches: {"images": (b, s, s, 3) float32 normalised, "depth": (b, s, s, 1) float32, "index": (b,) int64 (file
position in sorted id order)}, static shapes.
"""

# b: per-replica batch, g: global batch, s: output side, h/w: file image size
import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf

from goaldriven import runtime
from goaldriven.tasks import image_preprocessing as preprocessing
from goaldriven.tasks import pipeline_math

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIX = "_depth"
_ORDER, _AUGMENT = 0, 1
_LAST_STEP = 2**62


def _png_bit_depth(path: str) -> int:
    with open(path, "rb") as file:
        header = file.read(25)
    if len(header) < 25 or header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file; depth maps are 16-bit PNG or .npy files.")
    return header[24]


def _message(*parts) -> tf.Tensor:
    """One string tensor from strings and int tensors (an in-graph error message)."""
    is_text = lambda p: isinstance(p, str) or (tf.is_tensor(p) and p.dtype == tf.string)  # noqa: E731
    return tf.strings.join([p if is_text(p) else tf.strings.as_string(p) for p in parts])


def _load_npy(path: bytes) -> np.ndarray:
    array = np.load(path.decode())
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"depth map {path.decode()} must be a numeric (h, w) or (h, w, 1) array; got {array.shape}.")
    return array.astype(np.float32)[..., None]


@dataclasses.dataclass(frozen=True)
class DepthData:
    """A directory of images and depth maps (module docstring) for `reconstruction.DepthPredictionTask`.

    Args:
      directory: the split's directory.
      image_size: output side s (spec: 64).
      crop_size: side of the joint random crop (spec: 224).
      flip: joint random left-right flips (spec: yes).
      depth_scale: depth = stored value * depth_scale.
    """

    directory: str
    image_size: int = 64
    crop_size: int = 224
    flip: bool = True
    depth_scale: float = 1.0
    pixel_mean: tuple[float, ...] = preprocessing.IMAGENET_MEAN
    pixel_std: tuple[float, ...] = preprocessing.IMAGENET_STD

    def __post_init__(self):
        for name in ("image_size", "crop_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int (pixels). Received: {getattr(self, name)!r}")
        if not self.depth_scale > 0:
            raise ValueError(f"depth_scale must be > 0. Received: {self.depth_scale!r}")

    @functools.cached_property
    def files(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(image paths, depth paths), pairs in sorted id order; raises naming the first unpaired file."""
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"depth data directory {self.directory} does not exist.")
        images, depths = {}, {}
        for name in os.listdir(self.directory):
            stem, extension = os.path.splitext(name)
            if stem.endswith(DEPTH_SUFFIX) and extension.lower() in (".png", ".npy"):
                depth_id = stem[: -len(DEPTH_SUFFIX)]
                if depth_id in depths:
                    raise ValueError(f"{depth_id!r} has two depth files in {self.directory}; keep one.")
                depths[depth_id] = name
            elif extension.lower() in IMAGE_EXTENSIONS:
                if stem in images:
                    raise ValueError(f"{stem!r} has two image files in {self.directory}; keep one.")
                images[stem] = name
        if not images:
            raise ValueError(f"no images (<id>.png/.jpg) in {self.directory}.")
        for missing, present, what in ((images, depths, "depth map"), (depths, images, "image")):
            lonely = sorted(set(missing) - set(present))
            if lonely:
                raise ValueError(
                    f"{len(lonely)} {'images' if what == 'depth map' else 'depth maps'} in {self.directory} have no "
                    f"{what}, e.g. {missing[lonely[0]]!r} (expected {lonely[0]}"
                    f"{'_depth.png or .npy' if what == 'depth map' else '.png or .jpg'})."
                )
        kinds = {os.path.splitext(name)[1].lower() for name in depths.values()}
        if len(kinds) > 1:
            raise ValueError(f"{self.directory} mixes depth formats {sorted(kinds)}; use one per directory.")
        ids = sorted(images)
        join = lambda names: tuple(os.path.join(self.directory, names[i]) for i in ids)  # noqa: E731
        paths = join(images), join(depths)
        if kinds == {".png"} and _png_bit_depth(paths[1][0]) != 16:
            raise ValueError(f"depth PNGs must be 16-bit; {paths[1][0]} is {_png_bit_depth(paths[1][0])}-bit.")
        return paths

    def num_train_examples(self) -> int:
        return len(self.files[0])

    def example(self, index: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """File `index` augmented with the stateless `seed` (2,): {"images": (s, s, 3), "depth": (s, s, 1)}."""
        images, depths = self.files
        image_path = tf.gather(tf.constant(images), index)
        depth_path = tf.gather(tf.constant(depths), index)
        image = tf.io.decode_image(
            tf.io.read_file(image_path), channels=3, dtype=tf.float32, expand_animations=False
        )  # (h, w, 3) in [0, 1]
        if depths[0].endswith(".npy"):
            depth = tf.numpy_function(_load_npy, [depth_path], tf.float32, stateful=False)
            depth = tf.ensure_shape(depth, [None, None, 1])
        else:
            depth = tf.cast(tf.io.decode_png(tf.io.read_file(depth_path), channels=1, dtype=tf.uint16), tf.float32)
        depth = depth * self.depth_scale  # (h, w, 1)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        dh, dw = tf.shape(depth)[0], tf.shape(depth)[1]
        crop = self.crop_size
        checks = [
            tf.debugging.Assert(
                tf.logical_and(tf.equal(h, dh), tf.equal(w, dw)),
                [
                    _message(
                        "depth map ", depth_path, " is ", dh, "x", dw, " but its image ", image_path, " is ", h, "x", w
                    )
                ],
            ),
            tf.debugging.Assert(
                tf.logical_and(h >= crop, w >= crop),
                [_message("image ", image_path, " is ", h, "x", w, ", smaller than crop_size ", crop)],
            ),
        ]
        with tf.control_dependencies(checks):  # the checks run before anything combines image and depth
            image, depth = tf.identity(image), tf.identity(depth)
            top = tf.random.stateless_uniform([], pipeline_math.fold_seed(seed, 0), 0, h - crop + 1, tf.int32)
            left = tf.random.stateless_uniform([], pipeline_math.fold_seed(seed, 1), 0, w - crop + 1, tf.int32)
        both = tf.concat([image, depth], axis=-1)[top : top + crop, left : left + crop]  # (crop, crop, 4): one window
        both = tf.image.resize(both, [self.image_size, self.image_size], method="bilinear", antialias=True)
        if self.flip:
            coin = tf.random.stateless_uniform([], pipeline_math.fold_seed(seed, 2)) < 0.5
            both = tf.where(coin, tf.reverse(both, axis=[1]), both)
        rgb = preprocessing.normalize(tf.clip_by_value(both[..., :3], 0.0, 1.0), self.pixel_mean, self.pixel_std)
        return {"images": rgb, "depth": both[..., 3:]}

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        context = input_context or tf.distribute.InputContext()
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0. Received: {start_step}")
        n = self.num_train_examples()
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        pipeline_batch = per_replica * (context.num_replicas_in_sync // context.num_input_pipelines)
        offset = context.input_pipeline_id * pipeline_batch
        base = tf.constant([seed, 0], tf.int64)

        def one(t):
            step, j = t // pipeline_batch, t % pipeline_batch
            i = step * global_batch_size + offset + j  # position in the global stream
            epoch, position = i // n, i % n
            order_seed = pipeline_math.fold_seed(pipeline_math.fold_seed(base, _ORDER), epoch)
            index = tf.random.experimental.index_shuffle(position, order_seed, n - 1)
            augment_seed = pipeline_math.fold_seed(pipeline_math.fold_seed(base, _AUGMENT), i)
            return {**self.example(index, augment_seed), "index": index}

        dataset = tf.data.Dataset.range(start_step * pipeline_batch, _LAST_STEP).map(
            one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        return dataset.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def num_examples(directory: str) -> int:
    """Examples (image + depth pairs) in a split directory: what a config's epochs are counted in."""
    return DepthData(directory=directory).num_train_examples()
