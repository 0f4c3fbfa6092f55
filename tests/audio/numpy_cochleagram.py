"""Independent NumPy/SciPy float64 cochleagram: the reference the TensorFlow front end is tested and timed against.

Written the reference libraries' way, one clip and one filter at a time, sharing no code with
`goaldriven.audio.cochleagram`:
- filters: pycochleagram `erbfilter.make_erb_cos_filters_nx` (half-cosine filters on the Glasberg & Moore ERB-number
  scale, `sample_factor * (n + 1) - 1` bandpass filters, squared responses summing to one, divided by
  sqrt(sample_factor)); the `sample_factor` low-pass and high-pass edge filters are not built (tfcochleagram's
  `erb_filter_kwargs={'no_lowpass': True, 'no_highpass': True}`).
- subbands: real subband = irfft(rfft(x) * filter) (np.fft), analytic signal with scipy.signal.hilbert; the envelope
  is half its magnitude, because tfcochleagram's rFFT path appends zeros to the filtered rFFT instead of doubling the
  positive frequencies (for bandpass filters that vanish at DC and Nyquist this is exactly |hilbert| / 2).
- downsampling: tfcochleagram `make_downsample_filt_tensor` (Kaiser(1001, beta 5) windowed sinc with times
  arange(-W/2, W//2)), applied as TensorFlow's conv2d with stride sr/env_sr and "SAME" zero padding, written here as
  scipy.signal.correlate over the explicitly padded envelope; then max(., 0).
- compression "clipped_point3": max(x, 0) ** 0.3.
"""

import numpy as np
import scipy.signal


def freq2erb(freq_hz):
    return 9.265 * np.log(1.0 + np.asarray(freq_hz, dtype=np.float64) / (24.7 * 9.265))


def erb2freq(n_erb):
    return 24.7 * 9.265 * (np.exp(np.asarray(n_erb, dtype=np.float64) / 9.265) - 1.0)


def erb_filters(signal_length, sr, n, low_lim, hi_lim, sample_factor):
    """Bandpass half-cosine ERB filters on the rFFT grid: (filters (n_filters, n_freqs), centre frequencies Hz)."""
    if signal_length % 2 == 0:
        n_freqs, max_freq = signal_length // 2, sr / 2
    else:
        n_freqs, max_freq = (signal_length - 1) // 2, sr * (signal_length - 1) / 2 / signal_length
    freqs = np.linspace(0, max_freq, n_freqs + 1)
    n_filters = sample_factor * (n + 1) - 1
    cutoffs, spacing = np.linspace(freq2erb(low_lim), freq2erb(hi_lim), n_filters + 2, retstep=True)
    centers = cutoffs[1:-1]
    freqs_erb = freq2erb(freqs)
    filts = np.zeros((n_filters, n_freqs + 1))
    for i in range(n_filters):
        lo, hi = centers[i] - sample_factor * spacing, centers[i] + sample_factor * spacing
        inside = (freqs_erb > lo) & (freqs_erb < hi)
        filts[i, inside] = np.cos((freqs_erb[inside] - (lo + hi) / 2) / (hi - lo) * np.pi)
    return filts / np.sqrt(sample_factor), erb2freq(centers)


def downsample_kernel(sr, env_sr, window_size=1001):
    factor = sr // env_sr
    times = np.arange(-window_size / 2, int(window_size / 2))
    return np.kaiser(window_size, 5.0) * np.sinc(times / factor) / factor


def envelopes(signal, filts):
    """Full-rate subband envelopes (n_filters, signal_length) of one clip."""
    length = signal.shape[0]
    spectrum = np.fft.rfft(signal)
    out = np.zeros((filts.shape[0], length))
    for i in range(filts.shape[0]):
        subband = np.fft.irfft(spectrum * filts[i], n=length)
        out[i] = 0.5 * np.abs(scipy.signal.hilbert(subband))
    return out


def downsample(envs, sr, env_sr, window_size=1001):
    """tfcochleagram's strided "SAME" convolution with the windowed sinc, then rectification."""
    stride = sr // env_sr
    length = envs.shape[-1]
    n_out = -(-length // stride)
    pad = max((n_out - 1) * stride + window_size - length, 0)
    padded = np.pad(envs, ((0, 0), (pad // 2, pad - pad // 2)))
    kernel = downsample_kernel(sr, env_sr, window_size)
    out = np.stack([scipy.signal.correlate(row, kernel, mode="valid")[::stride] for row in padded])
    return np.maximum(out[:, :n_out], 0.0)


def cochleagram(
    signal, sr=20000, env_sr=200, low_lim=20, hi_lim=8000, n=50, sample_factor=4, compression="clipped_point3"
):
    """One clip (signal_length,) -> cochleagram (n_filters, signal_length * env_sr / sr), float64."""
    signal = np.asarray(signal, dtype=np.float64)
    filts, _ = erb_filters(signal.shape[0], sr, n, low_lim, hi_lim, sample_factor)
    coch = downsample(envelopes(signal, filts), sr, env_sr)
    if compression == "clipped_point3":
        return np.maximum(coch, 0.0) ** 0.3
    if compression == "none":
        return coch
    raise ValueError(f"unknown compression {compression!r}")
