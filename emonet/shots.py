"""Shot cuts in a video, so that following people by motion never links two faces across a cut.

The measure is PySceneDetect's content detector's (Castellano, `ContentDetector`, default settings): the mean
absolute difference between two consecutive frames of hue, saturation and value (OpenCV's 8-bit HSV), averaged
over the three channels; a cut where it reaches 27, and no two cuts closer than 15 frames (at 25 fps: 0.6 s).
It is computed here on a copy 160 pixels wide (a 640 x 480 frame: 0.2 ms instead of 4 ms), on every decoded frame
(consecutive frames, whatever --sample_fps analyses: frames far apart in one shot differ as much as a cut), and its
state is two numbers and one small image, which a prediction run saves with its other state to resume inside a video.
`benchmarks/bench_people.py` checks it against PySceneDetect 0.7.2's ContentDetector (default settings, full
frames) on the test video of ../shared/faces/ photos (one cut, at frame 180): both find that cut and no other.
That is one cut, not a study of film footage, which this machine has none of. PySceneDetect is not a requirement:
its detector's state lives in private attributes that a resumed run would have to reach into, and its package
requires opencv-python (the GUI build), which would sit beside the headless build this project installs.
"""
from dataclasses import dataclass

import cv2
import numpy as np

# PySceneDetect ContentDetector's defaults.
CUT_THRESHOLD = 27.0
MIN_SHOT_FRAMES = 15
# Width of the copy the difference is measured on.
SHOT_WIDTH = 160


def content_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute HSV difference of two small HSV uint8 images, averaged over the channels (0 to 255)."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def small_hsv(rgb: np.ndarray) -> np.ndarray:
    """The frame as OpenCV 8-bit HSV, SHOT_WIDTH pixels wide."""
    scale = SHOT_WIDTH / rgb.shape[1]
    small = cv2.resize(rgb, (SHOT_WIDTH, max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2HSV)


@dataclass
class ShotDetector:
    """Feed it every decoded frame in order (`following.py` does, whatever --sample_fps analyses): `update` says whether
    a new shot starts at this frame. `shot` counts the cuts so far (the first shot is 0)."""

    min_frames: int = MIN_SHOT_FRAMES
    shot: int = 0
    since_cut: int = 0
    previous: np.ndarray | None = None

    def update(self, rgb: np.ndarray) -> bool:
        hsv = small_hsv(rgb)
        cut = (self.previous is not None and self.previous.shape == hsv.shape and self.since_cut >= self.min_frames
               and content_change(hsv, self.previous) >= CUT_THRESHOLD)
        if self.previous is not None and self.previous.shape != hsv.shape:
            cut = True  # another frame size (images of a folder): another picture
        self.previous = hsv
        self.since_cut = 0 if cut else self.since_cut + 1
        self.shot += cut
        return cut

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-ready numbers, arrays) to resume from (`restore`)."""
        arrays = {} if self.previous is None else {"shot_previous": self.previous}
        return {"shot": self.shot, "since_cut": self.since_cut, "min_frames": self.min_frames}, arrays

    @classmethod
    def restore(cls, numbers: dict, arrays: dict[str, np.ndarray]) -> "ShotDetector":
        return cls(numbers["min_frames"], numbers["shot"], numbers["since_cut"], arrays.get("shot_previous"))
