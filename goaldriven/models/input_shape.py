"""Input sizes of the feedforward models: an int side (square images) or an (h, w) pair, e.g. the 203 x 400
cochleagrams of the Word-Speaker-Noise task (thesis Chapter 6; spec ch5 6.5), with `channels` (1 for cochleagrams);
and the readout arguments the feedforward classifiers share (`check_readout`).
"""


def image_hw(image_size) -> tuple[int, int]:
    """(h, w) from an int side or an (h, w) pair of positive ints."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"image_size must be a positive int or an (h, w) pair of them. Received: {image_size!r}")
    return size


def check_channels(channels) -> int:
    """`channels` if it is a positive int (3 for RGB, 1 for cochleagrams), else ValueError."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(
            f"channels must be a positive int (3 for RGB images, 1 for cochleagrams). Received: {channels!r}"
        )
    return channels


def check_readout(num_classes, weight_decay, dropout) -> None:
    """ValueError unless num_classes is a positive int, weight_decay (the TF1 lambda) >= 0 and dropout in [0, 1)."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int. Received: {num_classes!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0 (it is the TF1 lambda; 0 disables). Received: {weight_decay}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout is a drop rate (1 - keep_prob) and must be in [0, 1). Received: {dropout}")
