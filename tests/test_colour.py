"""Colour conversion against scikit-image, on random images and edge cases."""
import numpy as np
import pytest
from skimage import color

from emonet.constants import COLOR_SPACES
from emonet.colour import LAB_AB_OFFSET, LAB_AB_RANGE, LAB_L_MAX, YUV_U_MAX, YUV_V_MAX, convert_colour

RNG = np.random.default_rng(0)
RANDOM = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
GREYS = np.repeat(np.arange(0, 256, 15, dtype=np.uint8)[None, :, None], 3, axis=2)
PURE = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255],
                  [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
IMAGES = {"random": RANDOM, "greys": GREYS, "pure": PURE}


def _hue_distance(a, b):
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1.0 - d)  # hue is circular: 0.999 and 0.0 are neighbours


@pytest.mark.parametrize("name", IMAGES)
def test_hsv_matches_skimage(name):
    image = IMAGES[name]
    ours, ref = convert_colour(image, "hsv"), color.rgb2hsv(image)
    assert ours.dtype == np.float32
    assert _hue_distance(ours[..., 0], ref[..., 0]).max() < 1e-5
    assert np.abs(ours[..., 1:] - ref[..., 1:]).max() < 1e-5


def test_hsv_edge_values():
    grey = convert_colour(GREYS, "hsv")
    assert np.all(grey[..., 0] == 0) and np.all(grey[..., 1] == 0)
    assert np.allclose(grey[..., 2], GREYS[..., 0] / 255.0)
    pure = convert_colour(PURE, "hsv")[0]
    # red, green, blue, yellow, cyan, magenta at 0, 120, 240, 60, 180, 300 degrees
    assert np.allclose(pure[:6, 0], np.array([0, 120, 240, 60, 180, 300]) / 360.0, atol=1e-6)
    # Full hue resolution: 1-degree steps stay distinct (OpenCV's uint8 HSV would merge them in pairs).
    ramp = np.stack([np.full(60, 255), np.arange(60) * 4, np.zeros(60)], axis=1)[None].astype(np.uint8)
    assert len(np.unique(convert_colour(ramp, "hsv")[..., 0])) == 60


@pytest.mark.parametrize("name", IMAGES)
def test_lab_matches_skimage_with_documented_scaling(name):
    image = IMAGES[name]
    ref = color.rgb2lab(image)
    expected = np.concatenate([ref[..., :1] / LAB_L_MAX, (ref[..., 1:] + LAB_AB_OFFSET) / LAB_AB_RANGE], axis=-1)
    assert np.abs(convert_colour(image, "lab") - expected).max() < 1e-5


@pytest.mark.parametrize("name", IMAGES)
def test_yuv_matches_skimage_with_documented_scaling(name):
    image = IMAGES[name]
    ref = color.rgb2yuv(image)
    expected = np.stack([ref[..., 0], ref[..., 1] / (2 * YUV_U_MAX) + 0.5, ref[..., 2] / (2 * YUV_V_MAX) + 0.5], -1)
    assert np.abs(convert_colour(image, "yuv") - expected).max() < 1e-5
    grey = convert_colour(GREYS, "yuv")
    assert np.allclose(grey[..., 1:], 0.5, atol=1e-6)  # no chroma


@pytest.mark.parametrize("space", COLOR_SPACES)
def test_all_spaces_in_unit_range(space):
    everything = np.stack(np.meshgrid(*[np.arange(0, 256, 17)] * 3), -1).reshape(1, -1, 3).astype(np.uint8)
    out = convert_colour(everything, space)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0


def test_rgb_and_bad_input():
    assert np.array_equal(convert_colour(RANDOM, "rgb"), RANDOM.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="unknown colour space 'xyz'"):
        convert_colour(RANDOM, "xyz")
    with pytest.raises(ValueError, match="uint8"):
        convert_colour(RANDOM.astype(np.float32), "hsv")
