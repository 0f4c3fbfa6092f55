"""Input sizes of the feedforward models: an int side (square images) or an (h, w) pair, e.g. the 203 x 400
cochleagrams of the Word-Speaker-Noise task (thesis Chapter 6; spec ch5 6.5), with `channels` (1 for cochleagrams).
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
