"""Finding the faces in a frame, offline.

The detector is MTCNN (Zhang et al. 2016) as packaged by facenet-pytorch 2.6.0, whose wheel carries the
network weights (2 MB, MIT licence): nothing is downloaded at run time. Its metadata pins torch < 2.3 and
numpy < 2, which this project does not meet, so it is installed with `--no-deps` (requirements_nodeps.txt;
the README's set-up command does it); it runs on torch 2.14 and numpy 2 (tested here) and needs `requests`,
which kagglehub brings. Why this detector and not another: README_HSV_PIPELINE.md, "Predicting on your own
videos". Which face is whose: `people.py`.
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
# A detection below this score is not a face. Real faces score 0.99 and more in the photos and videos tested here;
# the hand on the desk in ../shared/faces/obama.jpg scores 0.926, and at 0.9 became a person of its own.
MIN_SCORE = 0.95


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels, inside the frame
    score: float
    cut_off: bool = False  # the face reaches beyond the frame's edge (only part of it shows)

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
    """MTCNN on `device`: every face of an RGB frame with its score, its box clipped to the frame."""

    def __init__(self, device: torch.device):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise EmoNetError(f"the face detector is not installed ({exc}); run the README's set-up command, which "
                              "installs facenet-pytorch from requirements_nodeps.txt with --no-deps") from None
        self.mtcnn = MTCNN(keep_all=True, min_face_size=MIN_FACE_SIZE, device=device)

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        return self.detect([rgb])[0]

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """The faces of each of `frames` (RGB uint8). Frames of one size go through MTCNN as one batch: 8 frames of
        640 x 480 took 23 ms a frame against 28 ms one at a time (2-core AMD EPYC, benchmarks/bench_predict.py)."""
        if len({f.shape for f in frames}) > 1:
            return [faces for f in frames for faces in self.detect([f])]
        height, width = frames[0].shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        small = [f if scale == 1.0 else cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]
        with torch.inference_mode():
            boxes, scores = self.mtcnn.detect(np.ascontiguousarray(np.stack(small)))
        out = []
        for frame_boxes, frame_scores in zip(boxes, scores, strict=True):
            faces = []
            if frame_boxes is None:  # no face: MTCNN gives no boxes and one empty score
                out.append(faces)
                continue
            for b, s in zip(frame_boxes, frame_scores, strict=True):
                if s is None or s < MIN_SCORE:
                    continue
                box = np.asarray(b, dtype=np.float64) / scale
                inside = np.clip(box, 0, [width, height, width, height])
                faces.append(Face(inside, float(s), cut_off=bool((inside != box).any())))
            out.append(faces)
        return out
