"""Who is where in one input, frame by frame: shot cuts on every decoded frame, faces on the analysed ones, and the
tracklet of each face (`people.PeopleTracker`, or `people.LargestFaceFollower` for --faces largest).

Kept apart from the model that predicts (`prediction.py`) so that the identities can be run, tested and measured
alone (tests/test_people.py, benchmarks/bench_people.py). Cuts are measured on every decoded frame, whatever
--sample_fps analyses: a cut between two analysed frames is seen, and two analysed frames far apart in one shot are
not mistaken for one.
"""
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .dlib_models import FaceDescriptor, Landmarks68
from .face_quality import measure
from .faces import Face, FaceDetector
from .media import Frame, Sequence
from .people import DEFAULT_FPS, LargestFaceFollower, PeopleTracker, TrackerConfig
from .shots import MIN_SHOT_FRAMES, ShotDetector
from .timing import StageTimer

# Shot cuts: no two closer than this (PySceneDetect's 15 frames at 25 fps).
MIN_SHOT_SECONDS = MIN_SHOT_FRAMES / DEFAULT_FPS
# Stages this module times (prediction.py adds its own).
STAGES = ("detect", "shots", "people", "landmarks")


def sampling_step(fps: float | None, sample_fps: float | None) -> float:
    """Video frames between two analysed frames: 1 without --sample_fps (or for a sequence without a frame rate)."""
    return 1.0 if not (sample_fps and fps) else fps / sample_fps


def is_analysed(index: int, step: float) -> bool:
    """Whether frame `index` is analysed when one frame in `step` is (the first frame at or after each k * step)."""
    return step == 1.0 or int(np.ceil(index / step)) != int(np.ceil((index + 1) / step))


def chunks(frames: Iterator[Frame], size: int, step: float) -> Iterator[list[Frame]]:
    """The frames in lists holding `size` analysed frames each (with the frames left out between them)."""
    while True:
        chunk, count = [], 0
        for frame in frames:
            chunk.append(frame)
            count += is_analysed(frame.index, step)
            if count == size:
                break
        if not chunk:
            return
        yield chunk


class FaceModels:
    """The models that find and tell faces apart, loaded once for every input: MTCNN, dlib's 68 landmarks and its
    descriptor."""

    def __init__(self, device: torch.device):
        self.detector = FaceDetector(device)
        self.landmarks = Landmarks68()
        self.descriptor = FaceDescriptor()


@dataclass
class AnalysedFrame:
    """An analysed frame's faces and the tracklet of each (None: not followed, --faces largest). `shape(i)` is face i's
    dlib landmark shape, computed at most once (the tracker, the crop and the descriptor share it)."""

    frame: Frame
    shot: int
    faces: list[Face] = field(default_factory=list)
    tracklets: list[int | None] = field(default_factory=list)
    shape: Callable[[int], object] | None = None


class Following:
    """One input's shots and people (see the module docstring); `state`/`restore` resume it inside a video."""

    def __init__(self, models: FaceModels, faces: str, fps: float | None, frame_step: float, timer: StageTimer,
                 config: TrackerConfig | None = None, tracker=None, shots: ShotDetector | None = None):
        self.models, self.timer = models, timer
        self.config = config or TrackerConfig()
        self.tracker = tracker or (PeopleTracker(fps, frame_step, self.config) if faces == "all"
                                   else LargestFaceFollower(fps))
        self.shots = shots or ShotDetector(max(1, round(MIN_SHOT_SECONDS * (fps or DEFAULT_FPS))))

    def hold_frames(self) -> int:
        """Video frames a face's row waits before its person is decided."""
        if isinstance(self.tracker, LargestFaceFollower):
            return 0
        return int(np.ceil(self.tracker.decide_frames()))

    def chunk(self, frames: list[Frame], step: float) -> list[AnalysedFrame]:
        """Every analysed frame of `frames` (decoded frames in order, undecodable ones included; one in `step` is
        analysed) with its faces and their tracklets; the others only move the shot detector on."""
        wanted = [f for f in frames if is_analysed(f.index, step) and f.rgb is not None]
        with self.timer("detect"):
            detected = self.models.detector.detect([f.rgb for f in wanted]) if wanted else []
        faces_of = dict(zip((f.index for f in wanted), detected, strict=True))
        out = []
        for frame in frames:
            if frame.rgb is not None:
                with self.timer("shots"):
                    self.shots.update(frame.rgb)
            if not is_analysed(frame.index, step):
                continue
            if frame.rgb is None:
                out.append(AnalysedFrame(frame, self.shots.shot))
                continue
            out.append(self._follow(frame, faces_of[frame.index]))
        return out

    def finish(self) -> None:
        self.tracker.finish()

    def follow(self, sequence: Sequence, step: float, batch_size: int = 8) -> Iterator[AnalysedFrame]:
        """Every analysed frame of a whole sequence (from its first frame), then `finish`: who is where without a model
        to predict (tests, benchmarks). A face's person is known once `finish` has run."""
        for chunk in chunks(sequence.frames(), batch_size, step):
            yield from self.chunk(chunk, step)
        self.finish()

    def _follow(self, frame: Frame, faces: list[Face]) -> AnalysedFrame:
        shapes: dict[int, object] = {}
        models, timer = self.models, self.timer

        def shape(i: int):
            if i not in shapes:
                with timer("landmarks"):
                    shapes[i] = models.landmarks.shape(frame.rgb, faces[i].box)
            return shapes[i]

        def quality(i: int):
            return measure(frame.rgb, faces[i].box, Landmarks68.points(shape(i)), faces[i].cut_off)

        with timer("people"):
            tracklets = self.tracker.update(frame.index, faces, lambda i: models.descriptor(frame.rgb, shape(i)), quality,
                                            self.shots.shot)
        return AnalysedFrame(frame, self.shots.shot, faces, tracklets, shape)

    # -- resume ---------------------------------------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        people, people_arrays = self.tracker.state()
        shots, shot_arrays = self.shots.state()
        return {"people": people, "shots": shots}, people_arrays | shot_arrays

    @classmethod
    def restore(cls, models: FaceModels, faces: str, timer: StageTimer, numbers: dict, arrays: dict[str, np.ndarray],
                config: TrackerConfig | None = None) -> "Following":
        config = config or TrackerConfig()
        tracker = (PeopleTracker if faces == "all" else LargestFaceFollower).restore(numbers["people"], arrays, config)
        return cls(models, faces, tracker.fps, getattr(tracker, "frame_step", 1.0), timer, config, tracker,
                   ShotDetector.restore(numbers["shots"], arrays))
