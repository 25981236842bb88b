"""Colour spaces for EmoNet's input: an RGB uint8 image mapped to three float32 channels in [0, 1].

EmoNet was trained on RGB in [0, 1]; any other space is fed through the same network with its
channels scaled to [0, 1] as documented below, so that a comparison between spaces changes only the
colour representation.
"""
import cv2
import numpy as np

from .constants import COLOR_SPACES

# What EmoNet was trained on, and the space to compare every other against.

# HSV: hue in degrees / HUE_DEGREES, saturation and value in [0, 1] (skimage.color.rgb2hsv's convention).
HUE_DEGREES = 360.0

# hsv_opencv, the seed's conversion: OpenCV's 8-bit HSV stores hue as degrees / 2 in 0..179 and S, V in
# 0..255; the seed divided them by these numbers (so hue 179 maps to 1.0, not 358/360).
OPENCV_HUE_MAX = 179.0
OPENCV_SV_MAX = 255.0

# CIE L*a*b* (D65, 2 degree observer, as skimage.color.rgb2lab): L* in [0, 100] is divided by LAB_L_MAX;
# a* and b* are shifted by LAB_AB_OFFSET and divided by LAB_AB_RANGE, the 8-bit Lab encoding. The sRGB
# gamut then spans about [0.16, 0.89] in a* and [0.08, 0.87] in b*: inside [0, 1], not stretched to it.
LAB_L_MAX = 100.0
LAB_AB_OFFSET = 128.0
LAB_AB_RANGE = 255.0

# YUV (analogue BT.601, as skimage.color.rgb2yuv): Y in [0, 1]; U in [-U_MAX, U_MAX] and V in [-V_MAX, V_MAX]
# are mapped linearly onto [0, 1] (0.5 = no chroma).
YUV_FROM_RGB = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.14714119, -0.28886916, 0.43601035],
        [0.61497538, -0.51496512, -0.10001026],
    ],
    dtype=np.float32,
)
YUV_U_MAX = 0.43601035
YUV_V_MAX = 0.61497538


def convert_colour(rgb: np.ndarray, space: str) -> np.ndarray:
    """Map an RGB uint8 H x W x 3 image to float32 H x W x 3 channels in [0, 1] in `space`.

    - `rgb`: RGB / 255.
    - `hsv`: H = hue in degrees / 360 (0 for grey pixels), S and V in [0, 1]. Computed in float, so hue
      keeps its full resolution and a hue of h degrees is h / 360 everywhere.
    - `hsv_opencv`: the seed's conversion, kept to reproduce its features exactly: OpenCV's uint8 HSV
      (H = round(degrees / 2) in 0..179, S and V rounded to 0..255), then H / 179, S / 255, V / 255. It
      differs from `hsv` in two ways: hue is quantised to 180 levels (2 degrees), and dividing by 179
      instead of 180 stretches it (358 degrees -> 1.0); hues from 359 degrees round to 180 and wrap to 0. S
      is rounded to 8 bits (V of uint8 input is exact). Seen on random pixels: H differs from `hsv` by up to
      0.0083 (about 1 in 600 pixels by about 1, at the wrap), S by up to 0.002, V not at all.
    - `lab`: see LAB_* above.  - `yuv`: see YUV_* above.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 H x W x 3 image, got {rgb.dtype} {rgb.shape}")
    unit = rgb.astype(np.float32) / 255.0
    if space == "rgb":
        return unit
    if space == "hsv":
        hsv = cv2.cvtColor(unit, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360), S, V in [0, 1]
        hsv[..., 0] /= HUE_DEGREES
        return hsv
    if space == "hsv_opencv":
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)  # uint8 input: H in 0..179
        hsv[..., 0] /= OPENCV_HUE_MAX
        hsv[..., 1:] /= OPENCV_SV_MAX
        return hsv
    if space == "lab":
        from skimage.color import rgb2lab  # OpenCV's float Lab differs from CIE by up to 0.3 L* units

        lab = rgb2lab(unit).astype(np.float32)
        lab[..., 0] /= LAB_L_MAX
        lab[..., 1:] = (lab[..., 1:] + LAB_AB_OFFSET) / LAB_AB_RANGE
        return lab
    if space == "yuv":
        yuv = unit @ YUV_FROM_RGB.T
        yuv[..., 1] = yuv[..., 1] / (2 * YUV_U_MAX) + 0.5
        yuv[..., 2] = yuv[..., 2] / (2 * YUV_V_MAX) + 0.5
        return np.clip(yuv, 0.0, 1.0, out=yuv)  # float rounding can step 1e-7 outside
    raise ValueError(f"unknown colour space {space!r}; choose one of {', '.join(COLOR_SPACES)}")
