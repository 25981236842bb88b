"""Face crops for EmoNet: the landmark-based training crop, or the seed's whole-frame resize.

Coordinates are pixel indices (pixel (x, y) is centred on (x, y)), the convention of the AFEW-VA
landmarks and of OpenCV.
"""
import math

import cv2
import numpy as np

from .constants import CROP_MODES, FACE_CROP_DIVISOR, FACE_CROP_REFERENCE, FLIP_ORDER_68, IMAGE_SIZE, NUM_LANDMARKS


def square_from_box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float]:
    """EmoNet's crop square around a face box: (centre x, centre y, side), centre = the box's centre,
    side = 200 * ((x1 - x0) + (y1 - y0)) / 220."""
    side = FACE_CROP_REFERENCE * ((x1 - x0) + (y1 - y0)) / FACE_CROP_DIVISOR
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, side


def face_box(landmarks: np.ndarray) -> tuple[float, float, float]:
    """EmoNet's crop square from 68 landmarks: `square_from_box` of the landmarks' bounding box."""
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    return square_from_box(x0, y0, x1, y1)


def crop_matrix(cx: float, cy: float, side: float, size: int = IMAGE_SIZE, rotation_deg: float = 0.0) -> np.ndarray:
    """2x3 affine map from output pixel to source pixel for a square of `side` centred at (cx, cy).

    The square's edges (not its outer pixel centres) land on the output's edges; `rotation_deg` turns the
    square about its centre (counter-clockwise in the image as displayed).
    """
    scale = side / size
    theta = math.radians(rotation_deg)
    a = scale * np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    offset = np.array([cx, cy]) + a @ np.full(2, 0.5 - size / 2.0)
    return np.hstack([a, offset[:, None]])


def crop_face(
    image: np.ndarray,
    landmarks: np.ndarray | None,
    mode: str = "landmarks",
    size: int = IMAGE_SIZE,
    scale: float = 1.0,
    rotation_deg: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Crop `image` (H x W x C uint8) to size x size.

    `landmarks` mode: EmoNet's square (see `face_box`), optionally scaled, rotated and shifted (shift in
    fractions of the side; used for augmentation), warped in one bilinear affine step; parts outside the
    frame are black. `resize` mode: the whole frame resized (bilinear), as the seed pipeline did.
    """
    if mode == "resize":
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if mode != "landmarks":
        raise ValueError(f"unknown crop mode {mode!r}; choose one of {', '.join(CROP_MODES)}")
    if landmarks is None or landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks crop needs {NUM_LANDMARKS} x 2 landmarks")
    cx, cy, side = face_box(landmarks)
    side *= scale
    return crop_square(image, cx + shift[0] * side, cy + shift[1] * side, side, size, rotation_deg)


def crop_square(image: np.ndarray, cx: float, cy: float, side: float, size: int = IMAGE_SIZE,
                rotation_deg: float = 0.0) -> np.ndarray:
    """The square of `side` centred at (cx, cy), resized to size x size in one bilinear affine warp (see
    `crop_matrix`); parts outside the frame are black."""
    return cv2.warpAffine(image, crop_matrix(cx, cy, side, size, rotation_deg), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped frame: x -> width - 1 - x, points reordered so that each index
    keeps its meaning (point 36, the outer corner of the eye on the image's left, stays on the left)."""
    mirrored = np.stack([width - 1 - landmarks[:, 0], landmarks[:, 1]], axis=1)
    return mirrored[list(FLIP_ORDER_68)]
