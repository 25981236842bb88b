"""EmoNet as the face-alignment network it is built on: 68 landmarks from its heatmaps.

`predict.py` gives a model trained with the landmark crop the same crop on new footage: a first square
around the detector's box (`crop.square_from_box`), EmoNet on it (RGB, as its alignment part was trained),
the 68 points decoded from the heatmaps here, then EmoNet's crop from those points (`crop.face_box`).

Decoding, as for FAN (Bulat & Tzimiropoulos 2017): each heatmap's maximum, moved a quarter of a heatmap
pixel towards the larger of its two neighbours along x and along y, then mapped to the crop (a heatmap
pixel covers 4 x 4 crop pixels: the centre of heatmap pixel i is crop pixel 4 i + 1.5) and through the
crop's affine map back to the frame.
"""
import numpy as np

from .constants import HEATMAP_SIZE, IMAGE_SIZE
from .crop import crop_matrix

SUBPIXEL_SHIFT = 0.25


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """Sub-pixel peaks (x, y) in heatmap pixels of K x H x W heatmaps: K x 2."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1).argmax(axis=1)
    ys, xs = np.divmod(flat, w)
    peaks = np.stack([xs, ys], axis=1).astype(np.float64)
    for i in range(k):
        x, y = xs[i], ys[i]
        if 0 < x < w - 1:
            peaks[i, 0] += SUBPIXEL_SHIFT * np.sign(heatmaps[i, y, x + 1] - heatmaps[i, y, x - 1])
        if 0 < y < h - 1:
            peaks[i, 1] += SUBPIXEL_SHIFT * np.sign(heatmaps[i, y + 1, x] - heatmaps[i, y - 1, x])
    return peaks


def landmarks_in_frame(heatmaps: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """The 68 landmarks (x, y) in frame pixels from EmoNet's heatmaps of the crop of `side` centred at (cx, cy)."""
    stride = IMAGE_SIZE / HEATMAP_SIZE
    crop_points = heatmap_peaks(heatmaps) * stride + (stride - 1) / 2
    matrix = crop_matrix(cx, cy, side)
    return crop_points @ matrix[:, :2].T + matrix[:, 2]
