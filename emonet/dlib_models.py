"""The two dlib models `predict.py` uses besides EmoNet and the face detector, both shipped offline.

- `Landmarks68`: dlib's 68-point shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014),
  about 3 ms a face on one core. Its points follow the iBUG 300-W mark-up, the scheme of AFEW-VA's annotated
  landmarks, so EmoNet's crop is taken from them exactly as extraction takes it from the dataset's points.
- `FaceDescriptor`: dlib's ResNet face-recognition network (29 layers, 128-d descriptor, 99.38 % on LFW by its
  author's figure), on a face chip aligned with those 68 points; faces of one person lie within a Euclidean
  distance of about 0.6 on clear faces (dlib's own threshold; `people.TrackerConfig` gives the figures measured here).
  About 70 ms a face on one core: computed only when a person's identity is in question (see `people.py`).

Where they come from: the weights are files of the `face_recognition_models` package (0.3.0, MIT licence, by
Adam Geitgey) on the Python package index, installed by the README's set-up command; nothing is downloaded at
run time. The models themselves are Davis King's (dlib.net): the descriptor network was trained by him on about
3 million faces and released in the public domain (CC0); the 68-point predictor was trained on the iBUG 300-W
data set, whose licence excludes commercial use, as EmoNet's weights do. dlib itself (dlib-bin's prebuilt wheels)
is under the Boost Software License. README_HSV_PIPELINE.md lists every model `predict.py` loads and its licence.
"""
import importlib.util
import logging
from pathlib import Path

import numpy as np

from .constants import NUM_LANDMARKS
from .errors import EmoNetError

logger = logging.getLogger(__name__)

MODELS_PACKAGE = "face_recognition_models"
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DESCRIPTOR_DIM = 128


def _model_file(name: str) -> Path:
    """A model file of the face_recognition_models package, found without importing it (its __init__ needs
    pkg_resources, which recent environments lack)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name if spec else None
    if path is None or not path.is_file():
        raise EmoNetError(f"the dlib model {name} is not installed ({MODELS_PACKAGE} missing); run the README's set-up "
                          "command, which installs dlib-bin and face_recognition_models from requirements_training.txt")
    return path


def _dlib():
    try:
        import dlib
    except ImportError as exc:
        raise EmoNetError(f"dlib is not installed ({exc}); run the README's set-up command (dlib-bin in "
                          "requirements_training.txt)") from None
    return dlib


def _rectangle(dlib, box: np.ndarray):
    """The dlib rectangle its 68-point predictor starts from, for a detector's box (x1, y1, x2, y2).

    The predictor was trained from dlib's own detector, whose boxes are squares around the eyes, nose and mouth;
    MTCNN's are taller (forehead and chin). Measured on the four real faces of ../shared/faces/ and scikit-image's
    astronaut, each also mirrored and at half size (12 faces): starting from MTCNN's box as it is, the 68 points lie
    on average 2.3 % (at most 3.5 %) of the eye-to-eye distance from those the predictor gives from dlib's own box;
    from the square of side (w + h) / 2 around the box's centre, 1.1 % (at most 1.7 %). That square is used.
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = ((box[2] - box[0]) + (box[3] - box[1])) / 4
    return dlib.rectangle(int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


class Landmarks68:
    """68 landmarks (x, y in frame pixels, iBUG order) of the face in a detector's box."""

    def __init__(self):
        self.dlib = _dlib()
        self.predictor = self.dlib.shape_predictor(str(_model_file(LANDMARKS_FILE)))

    def shape(self, rgb: np.ndarray, box: np.ndarray):
        """dlib's full_object_detection (what `FaceDescriptor` takes) for the face in `box` of an RGB uint8 frame."""
        return self.predictor(rgb, _rectangle(self.dlib, box))

    @staticmethod
    def points(shape) -> np.ndarray:
        """68 x 2 float32 points of a full_object_detection."""
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32).reshape(NUM_LANDMARKS, 2)


class FaceDescriptor:
    """dlib's 128-d face descriptor of a face, from the frame and its 68-point shape (`Landmarks68.shape`)."""

    def __init__(self):
        self.dlib = _dlib()
        self.network = self.dlib.face_recognition_model_v1(str(_model_file(DESCRIPTOR_FILE)))

    def __call__(self, rgb: np.ndarray, shape) -> np.ndarray:
        return np.asarray(self.network.compute_face_descriptor(rgb, shape), dtype=np.float32)
