"""How fit a detected face is to say who someone is: its size, sharpness, contrast and how frontal it is.

dlib's descriptor separates people on clear faces and stops doing so on the faces footage is full of: small,
blurred, dark, turned or cut off by the frame's edge (`benchmarks/bench_people.py` measures both). Links between
tracklets (`people.py`) therefore rest only on faces that pass every gate of `QualityGates`; the others are still
followed by motion, never re-identified from.
"""
from dataclasses import dataclass

import cv2
import numpy as np

# The face is measured on a grey copy of its box this many pixels square, so that sharpness compares across sizes.
PROBE_SIZE = 64
# iBUG 68-point indices: the two eyes and the tip of the nose.
LEFT_EYE, RIGHT_EYE, NOSE_TIP = slice(36, 42), slice(42, 48), 30


@dataclass(frozen=True)
class QualityGates:
    """The gates a face must pass to be "clear". Measured with benchmarks/bench_people.py on the 12 faces of
    ../shared/faces/ (README_HSV_PIPELINE.md, "Several people"): clear faces measure sharpness 0.11 to 0.70 and contrast
    28 to 62, the same faces blurred (Gaussian, sigma 1.2 px at 60 px) 0.02 to 0.08 and darkened to 30 % 9 to 19; the
    frontal ratio of those portraits runs from 0.22 (obama2.jpg, turned about 30 degrees) to 0.76, a profile's
    beyond 0.1 or 0.9."""

    min_size: float = 60.0  # the box's longer side, in frame pixels
    min_sharpness: float = 0.09  # variance of the Laplacian over the variance of the grey levels
    min_contrast: float = 22.0  # standard deviation of the grey levels (0-255)
    frontal: tuple[float, float] = (0.2, 0.8)  # the nose tip between the eyes, 0 (at the left eye) to 1 (the right)


@dataclass(frozen=True)
class FaceQuality:
    size: float
    sharpness: float
    contrast: float
    frontal: float  # 0.5: nose tip midway between the eyes
    cut_off: bool

    def clear(self, gates: QualityGates) -> bool:
        return (not self.cut_off and self.size >= gates.min_size and self.sharpness >= gates.min_sharpness
                and self.contrast >= gates.min_contrast and gates.frontal[0] <= self.frontal <= gates.frontal[1])


def measure(rgb: np.ndarray, box: np.ndarray, points: np.ndarray, cut_off: bool) -> FaceQuality:
    """The quality of the face in `box` (x1, y1, x2, y2) of an RGB uint8 frame, with its 68 landmarks `points`."""
    h, w = rgb.shape[:2]
    x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    size = float(max(box[2] - box[0], box[3] - box[1]))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return FaceQuality(size, 0.0, 0.0, 0.5, cut_off)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    probe = cv2.resize(grey, (PROBE_SIZE, PROBE_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    variance = float(probe.var())
    sharpness = float(cv2.Laplacian(probe, cv2.CV_32F).var()) / variance if variance > 0 else 0.0
    left, right = points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)
    span = float(right[0] - left[0])
    frontal = float((points[NOSE_TIP, 0] - left[0]) / span) if span > 0 else 0.0
    return FaceQuality(size, sharpness, float(np.sqrt(variance)), frontal, cut_off)
