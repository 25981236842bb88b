"""Finding the face to predict in a sequence of frames, offline.

The detector is MTCNN (Zhang et al. 2016) as packaged by facenet-pytorch 2.6.0, whose wheel carries the
network weights (2 MB, MIT licence): nothing is downloaded at run time. Its metadata pins torch < 2.3 and
numpy < 2, which this project does not meet, so it is installed with `--no-deps` (requirements_nodeps.txt;
the README's set-up command does it); it runs on torch 2.14 and numpy 2 (tested here) and needs `requests`,
which kagglehub brings. Why this detector and not another: README_HSV_PIPELINE.md, "Predicting on your own
videos".

One face per sequence (`FaceTracker`): the largest in the first frame where a face is found; then, in
each frame, the detection nearest to where that face was last seen, if it lies within one box size of it.
Other faces are ignored. A frame where the followed face is not found is a frame without a face; after
`REACQUIRE_SECONDS` without it, the largest face present is taken again.
"""
import importlib.metadata
import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .errors import EmoNetError

logger = logging.getLogger(__name__)

DETECTOR_PACKAGE = "facenet-pytorch"
DETECTOR_NAME = "MTCNN (facenet-pytorch)"
# Frames are detected on a copy whose longer side is at most this: MTCNN's image pyramid grows with the
# image. Measured on 640 x 480 frames (2-core Xeon, fp32): 25.5 ms a frame at 640 and a smallest face of 40,
# 18.7 ms at 480 and 40, 15.1 ms at 480 and 60 (MTCNN's second and third stages set a floor); the astronaut's
# face is found at each. A face under 40 pixels of a 480-pixel copy (under 1/12 of the frame) makes a crop
# EmoNet sees upscaled from a few dozen pixels anyway.
DETECT_MAX_SIDE = 480
# The smallest face searched for, in pixels of that copy (MTCNN's default is 20).
MIN_FACE_SIZE = 40
# A detection below this score is not a face.
MIN_SCORE = 0.9
# The followed face must reappear within this many of its box sizes of where it was last seen.
FOLLOW_DISTANCE = 1.0
REACQUIRE_SECONDS = 1.0


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    score: float

    @property
    def centre(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def detector_version() -> str:
    try:
        return importlib.metadata.version(DETECTOR_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class FaceDetector:
    """MTCNN on `device`: every face of an RGB frame with its score."""

    def __init__(self, device: torch.device):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise EmoNetError(f"the face detector is not installed ({exc}); run the README's set-up command, which "
                              "installs facenet-pytorch from requirements_nodeps.txt with --no-deps") from None
        self.mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE_SIZE, device=device)

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        scale = min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))
        small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            boxes, scores = self.mtcnn.detect(np.ascontiguousarray(small))
        if boxes is None:
            return []
        return [Face(np.asarray(b, dtype=np.float64) / scale, float(s)) for b, s in zip(boxes, scores, strict=True)
                if s is not None and s >= MIN_SCORE]


class FaceTracker:
    """Which detected face a sequence follows (see the module docstring)."""

    def __init__(self, fps: float | None):
        self.reacquire_after = max(1, round(REACQUIRE_SECONDS * (fps or 1.0)))
        self.last: Face | None = None
        self.missed = 0

    def follow(self, faces: list[Face]) -> Face | None:
        chosen = None
        if faces and (self.last is None or self.missed >= self.reacquire_after):
            chosen = max(faces, key=lambda f: f.size)
        elif faces:
            nearest = min(faces, key=lambda f: float(np.linalg.norm(f.centre - self.last.centre)))
            if np.linalg.norm(nearest.centre - self.last.centre) <= FOLLOW_DISTANCE * self.last.size:
                chosen = nearest
        if chosen is None:
            self.missed += 1
        else:
            self.last, self.missed = chosen, 0
        return chosen
