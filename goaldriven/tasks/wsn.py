"""Word-Speaker-Noise (WSN) word recognition as a `Task`: cochleagrams of noisy speech -> 794-way softmax.

Reference: thesis Section 6.3.8 (spec ch5 6.5, 11.2 "WSN"): the six ImageNet architectures (ResNet-18/34 v1/v2,
AlexNet, AlexNet-LRN) fed 203 x 400 x 1 cochleagrams of 2 s clips at 20 kHz, 793 words + null = 794 outputs, the
ImageNet recipe's learning rates and L2. The loss and metrics are those of image classification
(`image_classification.ImageClassificationTask`: softmax cross-entropy, top-1 / top-5, full-split evaluation).

Pipeline: the data (`audio.wsn_data.WSNData`, or the stand-in `audio.wsn_standin.WSNStandInData`) gives waveform
batches {"waveforms": (b, n), "labels"[, "weight"]}; `CochleagramData` applies the front end to each batch in the input
pipeline, so the model, the loss, the evaluation and the observables recorder all see ordinary image batches
{"images": (b, c, f, 1), "labels"[, "weight"]} (c cochlear channels, f frames). The front end is
`audio.cochleagram.Cochleagram(**cochleagram_kwargs)` unless a `frontend` callable is given (tests).

Models: any feedforward zoo model built for the cochleagram's shape (h, w, 1) instead of the zoo's square RGB input,
`models.zoo_shaped.build_model(name, input_shape=(203, 400, 1), num_classes=794)`.
"""

# b: batch, n: samples, c: cochlear channels, f: frames, k: classes
import dataclasses
from typing import Any, Callable

import keras
import tensorflow as tf

from goaldriven.audio import cochleagram
from goaldriven.tasks import image_classification

NUM_CLASSES = 794  # 793 words + null (audio.wsn_data.NUM_CLASSES)
# The front end's defaults (audio.cochleagram.Cochleagram) are the thesis' settings (spec ch5 6.5, audionet_model.py):
# 2 s at 20 kHz -> (203, 400, 1).


def make_frontend(**cochleagram_kwargs: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    """The cochleagram layer of goaldriven/audio/cochleagram.py: (b, n) float32 -> (b, c, f, 1) float32."""
    return cochleagram.Cochleagram(**cochleagram_kwargs)


@dataclasses.dataclass(frozen=True)
class CochleagramData:
    """Waveform data with the front end applied to every batch in the input pipeline (module docstring).

    Args:
      waveforms: the waveform data (`WSNData`, `WSNStandInData`, or any object with the same methods).
      frontend: (b, n) float32 -> (b, c, f, 1) float32.
    """

    waveforms: Any
    frontend: Callable[[tf.Tensor], tf.Tensor]

    @property
    def num_classes(self) -> int:
        return self.waveforms.num_classes

    def num_eval_examples(self) -> int:
        return self.waveforms.num_eval_examples()

    def _images(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        def convert(batch):
            batch = dict(batch)
            images = self.frontend(batch.pop("waveforms"))  # (b, c, f, 1)
            return {"images": tf.cast(images, tf.float32), **batch}

        return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return self._images(
            self.waveforms.train_dataset(
                global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
            )
        )

    def eval_dataset(self, *, global_batch_size, input_context):
        return self._images(
            self.waveforms.eval_dataset(global_batch_size=global_batch_size, input_context=input_context)
        )


def cochleagram_data(waveforms: Any, cochleagram_kwargs: dict | None = None) -> CochleagramData:
    """`waveforms` with the front end applied (the thesis' settings by default): the WSN validation data of hooks that
    read cochleagrams themselves (the observables recorder), built as WSNTask builds its own."""
    return CochleagramData(waveforms, make_frontend(**(cochleagram_kwargs or {})))


class WSNTask(image_classification.ImageClassificationTask):
    """WSN word recognition (module docstring).

    Args:
      model_fn: returns a built keras.Model for (None, c, f, 1) cochleagrams (`models.zoo_shaped.build_model` in gin).
      dataset: waveform data (`audio.wsn_data.WSNData(data_dir)` for the corpus, `WSNStandInData()` for the
        stand-in); its `num_classes` must match the model.
      frontend: (b, n) -> (b, c, f, 1) callable (default: `make_frontend(**cochleagram_kwargs)`).
      cochleagram_kwargs: front-end settings (default: `Cochleagram`'s, which are the thesis').
      eval_batch_size, loss_over, label_smoothing: as in `ImageClassificationTask`.
    """

    name = "wsn"

    def __init__(
        self,
        *,
        model_fn: Callable[[], keras.Model],
        dataset: Any,
        frontend: Callable[[tf.Tensor], tf.Tensor] | None = None,
        cochleagram_kwargs: dict | None = None,
        eval_batch_size: int = 256,
        loss_over: str = "decoded",
        label_smoothing: float = 0.0,
    ):
        if dataset is None:
            raise ValueError(
                "WSNTask needs its data: WSNData(data_dir) (gin: DATA_DIR) or WSNStandInData() for the stand-in."
            )
        if frontend is None:
            frontend = make_frontend(**(cochleagram_kwargs or {}))
        elif cochleagram_kwargs is not None:
            raise ValueError("give either frontend or cochleagram_kwargs, not both.")
        self.frontend = frontend
        self.waveforms = dataset
        super().__init__(
            model_fn=model_fn,
            dataset=CochleagramData(dataset, frontend),
            eval_batch_size=eval_batch_size,
            loss_over=loss_over,
            label_smoothing=label_smoothing,
        )

    @property
    def input_spec(self):
        """None: the inputs are cochleagrams, not images (base.Task)."""
        return None

    def input_shape(self) -> tuple[int, int, int]:
        """(c, f, 1) of the front end's output for this dataset's clips."""
        samples = int(self.waveforms.num_samples)
        return tuple(int(s) for s in self.frontend(tf.zeros([1, samples])).shape[1:])

    def example_batch(self, batch_size: int = 2) -> dict[str, tf.Tensor]:
        """A fabricated training batch {"images": (b, c, f, 1), "labels": (b,)} (config smoke tests)."""
        samples = int(self.waveforms.num_samples)
        waveforms = 0.05 * tf.random.stateless_normal([batch_size, samples], [0, 1])
        labels = tf.range(batch_size, dtype=tf.int32) % self.num_classes
        return {"images": tf.cast(self.frontend(waveforms), tf.float32), "labels": labels}
