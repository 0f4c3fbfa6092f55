"""A tiny TEST-ONLY front end with the cochleagram API's shapes ((b, n) -> (b, c, f, 1)): magnitude STFT averaged in
`channels` equal bands, 0.3 power. Stands in for goaldriven/audio/cochleagram.py in the WSN tests (never a cochleagram)."""

import tensorflow as tf


def stft_frontend(waveforms: tf.Tensor, channels: int = 8, frames: int = 10) -> tf.Tensor:
    n = int(waveforms.shape[-1])
    step = n // frames
    spectra = tf.abs(tf.signal.stft(waveforms, frame_length=2 * step, frame_step=step, pad_end=True))[:, :frames]
    bins = int(spectra.shape[-1]) // channels * channels
    bands = tf.reduce_mean(tf.reshape(spectra[..., :bins], [-1, frames, channels, bins // channels]), -1)  # (b, f, c)
    return tf.transpose(bands, [0, 2, 1])[..., None] ** 0.3  # (b, c, f, 1)
