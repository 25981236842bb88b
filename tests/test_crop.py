"""Face crops: EmoNet's landmark square, off-frame boxes, the seed's resize, and the 68-point flip."""
import cv2
import numpy as np
import pytest

from emonet.constants import FLIP_ORDER_68, IMAGE_SIZE
from emonet.crop import crop_face, face_box, flip_landmarks
from emonet.testing import landmark_template

RNG = np.random.default_rng(3)
FRAME = RNG.integers(1, 256, (576, 720, 3), dtype=np.uint8)  # no black pixel inside the frame


def _landmarks_for_square(cx, cy, side):
    """Landmarks whose EmoNet crop square is (cx, cy, side): a box of width = height = side * 220 / 400."""
    half = side * 220 / 400 / 2
    template = landmark_template()
    template = (template - template.min(0)) / (template.max(0) - template.min(0))  # exact unit box
    return template * 2 * half + [cx - half, cy - half]


def test_face_box_formula():
    lm = np.full((68, 2), [150.0, 120.0])
    lm[0], lm[1] = [100, 50], [300, 150]
    assert face_box(lm) == pytest.approx((200.0, 100.0, 200 * (200 + 100) / 220))


def test_known_box_gives_exact_crop():
    # A 256-pixel square is a pure translation: the crop must equal the frame's pixels 172..427 x 100..355.
    lm = _landmarks_for_square(cx=299.5, cy=227.5, side=IMAGE_SIZE)
    crop = crop_face(FRAME, lm)
    assert crop.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert np.array_equal(crop, FRAME[100:356, 172:428])


def test_larger_box_is_scaled_down():
    lm = _landmarks_for_square(cx=359.5, cy=287.5, side=512)
    expected = cv2.resize(FRAME[32:544, 104:616], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    assert np.abs(crop_face(FRAME, lm).astype(int) - expected).max() <= 1


def test_off_frame_box_gives_black_border_not_error():
    # Centre near the top-left corner, landmarks partly negative: left/top half black, the rest the frame.
    lm = _landmarks_for_square(cx=-0.5, cy=-0.5, side=IMAGE_SIZE)
    assert lm.min() < 0
    crop = crop_face(FRAME, lm)
    assert np.all(crop[:128] == 0) and np.all(crop[:, :128] == 0)
    assert np.array_equal(crop[128:, 128:], FRAME[:128, :128])
    # Entirely outside: all black.
    assert np.all(crop_face(FRAME, lm - 2000) == 0)


def test_resize_mode_is_whole_frame():
    expected = cv2.resize(FRAME, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(crop_face(FRAME, None, mode="resize"), expected)
    with pytest.raises(ValueError, match="unknown crop mode"):
        crop_face(FRAME, None, mode="centre")


def test_flip_order_is_an_involution_that_swaps_sides():
    order = np.asarray(FLIP_ORDER_68)
    assert sorted(order) == list(range(68)) and np.array_equal(order[order], np.arange(68))
    lm = landmark_template() * 200 + [100, 80]
    flipped = flip_landmarks(lm, width=720)
    # The template is mirror-symmetric: after flipping the frame and reordering, each point is again on
    # its own side, in the same place relative to the face.
    assert np.allclose(flipped - flipped.mean(0), lm - lm.mean(0), atol=1e-9)
    assert flipped[36, 0] < flipped[45, 0] and flipped[0, 0] < flipped[16, 0] and flipped[48, 0] < flipped[54, 0]
    assert np.allclose(flip_landmarks(flipped, width=720), lm)


def test_flipped_frame_and_landmarks_give_mirrored_crop():
    lm = _landmarks_for_square(cx=299.5, cy=227.5, side=IMAGE_SIZE)
    mirrored = crop_face(FRAME[:, ::-1], flip_landmarks(lm, FRAME.shape[1]))
    assert np.array_equal(mirrored, crop_face(FRAME, lm)[:, ::-1])
