"""Following people through a video: a person id for every detected face, the same id for the same person from
start to end.

`PeopleTracker` (predict.py --faces all):
- Frame to frame, by motion: each followed face's box is predicted forward with its velocity, and the frame's
  detections are assigned to the predictions by a global assignment (the Hungarian algorithm on 1 - IoU,
  scipy's linear_sum_assignment; pairs below MIN_IOU are not linked). A face the detector misses stays followed
  by motion for FOLLOW_SECONDS, so that short misses keep the id.
- By identity (`dlib_models.FaceDescriptor`, 128-d): a face that motion does not link (a new face, a person back
  after leaving the frame, every face after a shot cut) is compared with the people known so far and not already
  in this frame; it takes the id of the nearest within SAME_PERSON_DISTANCE (a global assignment again), else a new
  id. Motion never links a face across a cut (`shots.py`); only identity does.
- Checks: a face linked by motion is described again when its identity is in question: it was missed for a while,
  it overlaps another person's predicted box (two faces crossing), or VERIFY_SECONDS have passed since its last
  description. If it is then nearer to another person (not in this frame) than to its own, and its own is beyond
  SAME_PERSON_DISTANCE, it takes that person's id: a swap at a crossing is undone.
- Never one id on two faces of one frame: every assignment gives each person at most one face.
Ids are 1, 2, 3, ... in order of first appearance. A person first seen less than `hold` frames ago who turns out to be a
known one (a face that came in cut off by the frame's edge, described from half of it) is merged into that person:
`merged` says so, and predict.py, which holds its rows that long, relabels them. Descriptors are computed only in the cases above (about 70 ms
a face on one core), never for every face of every frame. Each person keeps their last GALLERY_SIZE descriptors;
the distance to a person is that to the nearest of them.

What the ids can and cannot do: README_HSV_PIPELINE.md, "Several people".

`LargestFaceFollower` (--faces largest): one face a sequence, for one-person footage, as predict.py always did.
"""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .faces import Face

logger = logging.getLogger(__name__)

# dlib's own threshold for its descriptor. Measured here (benchmarks/bench_people.py) on the faces of
# ../shared/faces/ and scikit-image's astronaut, each as it is, mirrored, at a quarter size, as JPEG of quality 20,
# at half brightness and turned 12 degrees (24 faces): one person's pairs lie at 0.23 (median) to 0.45 (largest),
# two people's at 0.74 (smallest) to 0.84 (median); 0.6 sits in that gap.
SAME_PERSON_DISTANCE = 0.6
GALLERY_SIZE = 8
# Motion links a detection to a followed face when their boxes overlap at least this much.
MIN_IOU = 0.3
# A face overlapping another person's predicted box this much has its identity checked.
CROSSING_IOU = 0.05
FOLLOW_SECONDS = 0.5
VERIFY_SECONDS = 1.0
# A face keeps the id motion gave it unless its descriptor is nearer to another person by this much.
KEEP_MARGIN = 0.1
# Frame rate assumed for a sequence without one (a folder of images: the frames of a video, say).
DEFAULT_FPS = 25.0
# --faces largest: the followed face must reappear within this many of its box sizes of where it was last seen; after
# REACQUIRE_SECONDS without it, the largest face present is taken again.
FOLLOW_DISTANCE = 1.0
REACQUIRE_SECONDS = 1.0
# What a row of a frame without a followed face says.
NO_FACE, NOT_FOLLOWED = "no face", "face not followed"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@dataclass
class Track:
    """A person's motion: where their face was last seen (`box`, at analysed-frame `seen`), its velocity per
    frame, and whether it is still followed by motion."""

    box: np.ndarray
    velocity: np.ndarray
    seen: int
    verified: int  # the frame of the last description
    first: int  # the frame the person was first seen in
    partial: bool = False  # the last description was of a face cut off by the frame's edge
    active: bool = True

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.seen)


@dataclass
class PeopleTracker:
    """See the module docstring. Frame numbers given to `update` are those of the video, whose frame rate `fps`
    (None: DEFAULT_FPS) turns the seconds above into frames; `frame_step`: video frames between analysed frames."""

    fps: float | None
    frame_step: float = 1.0  # video frames between two analysed frames
    tracks: dict[int, Track] = field(default_factory=dict)
    galleries: dict[int, list[np.ndarray]] = field(default_factory=dict)
    next_id: int = 1
    descriptions: int = 0  # descriptors computed (for the run's record)
    hold: float = 0.0  # frames within which a new person can still turn out to be a known one (`merged`)
    merged: dict[int, int] = field(default_factory=dict)  # the last update's: {a new person's id: the known person's}

    def _frames(self, seconds: float) -> float:
        return seconds * (self.fps or DEFAULT_FPS)

    def update(self, frame: int, faces: list[Face], describe: Callable[[int], np.ndarray], cut: bool) -> list[int]:
        """The person id of each of `faces` (detections of video frame `frame`). `describe(i)` gives face i's descriptor
        (computed only when needed); `cut`: a shot starts here."""
        self.merged = {}
        if cut:
            for track in self.tracks.values():
                track.active = False
        cache: dict[int, np.ndarray] = {}

        def descriptor(i: int) -> np.ndarray:
            if i not in cache:
                cache[i] = describe(i)
                self.descriptions += 1
            return cache[i]

        ids: list[int | None] = [None] * len(faces)
        active = [p for p, t in self.tracks.items() if t.active]
        predicted = {p: self.tracks[p].predicted(frame) for p in active}
        if active and faces:
            overlap = np.array([[iou(predicted[p], f.box) for f in faces] for p in active])
            rows, cols = linear_sum_assignment(1.0 - overlap)
            for r, c in zip(rows, cols, strict=True):
                if overlap[r, c] >= MIN_IOU:
                    ids[c] = active[r]
            # Identity checks of the motion links that may be wrong, all together: two faces that crossed may have
            # swapped their ids, which only a joint assignment undoes.
            checked = [c for c, person in enumerate(ids) if person is not None and self._in_question(
                person, faces[c], frame, [predicted[q] for q in active if q != person])]
            if checked:
                self._reassign(ids, checked, [descriptor(c) for c in checked], frame)
        # Faces motion does not link: the nearest known person not in this frame, else a new one.
        loose = [c for c, p in enumerate(ids) if p is None]
        if loose:
            described = {c: descriptor(c) for c in loose}  # a new person starts their gallery with it
            free = [p for p in self.galleries if p not in ids]
            if free:
                distance = np.array([[self._distance(p, described[c]) for p in free] for c in loose])
                rows, cols = linear_sum_assignment(np.minimum(distance, 1e6))
                for r, c in zip(rows, cols, strict=True):
                    if distance[r, c] <= SAME_PERSON_DISTANCE:
                        ids[loose[r]] = free[c]
            for c in loose:
                if ids[c] is None:
                    ids[c] = self.next_id
                    self.galleries[self.next_id] = []
                    self.next_id += 1
        assert len(set(ids)) == len(ids), "one id on two faces"
        for c, person in enumerate(ids):
            self._see(person, faces[c], frame, cache.get(c))
        for person in active:
            if person in self.tracks and person not in ids and frame - self.tracks[person].seen > self._frames(FOLLOW_SECONDS):
                self.tracks[person].active = False
        return ids

    def _distance(self, person: int, descriptor: np.ndarray) -> float:
        gallery = self.galleries.get(person)
        if not gallery:
            return float("inf")
        return float(np.min(np.linalg.norm(np.asarray(gallery) - descriptor, axis=1)))

    def _in_question(self, person: int, face: Face, frame: int, others: list[np.ndarray]) -> bool:
        """Whether a motion link's identity is checked: after a miss, when crossing another person, or when due."""
        track = self.tracks[person]
        return (frame - track.seen > self.frame_step or frame - track.verified >= self._frames(VERIFY_SECONDS)
                or (track.partial and not face.cut_off) or any(iou(box, face.box) >= CROSSING_IOU for box in others))

    def _reassign(self, ids: list[int | None], checked: list[int], descriptors: list[np.ndarray], frame: int) -> None:
        """Give the `checked` faces (linked by motion to ids[c]) the people they are nearest to, among their own and
        those not in this frame, one each; a face keeps its own id unless another is nearer by KEEP_MARGIN and within
        SAME_PERSON_DISTANCE."""
        own = [ids[c] for c in checked]
        candidates = own + [p for p in self.galleries if p not in ids]
        cost = np.array([[self._distance(p, d) - (KEEP_MARGIN if p == mine else 0.0) for p in candidates]
                         for d, mine in zip(descriptors, own, strict=True)])
        rows, cols = linear_sum_assignment(np.minimum(cost, 1e6))
        chosen = dict(zip(rows, cols, strict=True))
        for r, c in enumerate(checked):
            person = candidates[chosen[r]]
            if person != own[r] and cost[r, chosen[r]] > SAME_PERSON_DISTANCE:
                person = own[r]  # not clearly another known person: the motion link stands
            if person != own[r]:
                logger.debug("a face followed as person %d is person %d: corrected", own[r], person)
            ids[c] = person
        if len(set(ids[c] for c in checked)) < len(checked):  # a fallback met another face's new id: keep motion's
            for r, c in enumerate(checked):
                ids[c] = own[r]
        for r, c in enumerate(checked):
            if ids[c] != own[r] and self.tracks[own[r]].first >= frame - self.hold:
                self._merge(own[r], ids[c])

    def _merge(self, new: int, known: int) -> None:
        """A person first seen within the hold is a known one (a face that came in cut off by the frame's edge, say):
        the new id goes, and is given again if no one came after it."""
        del self.tracks[new], self.galleries[new]
        self.merged[new] = known
        if new == self.next_id - 1:
            self.next_id = new
        logger.debug("person %d, new within the hold, is person %d", new, known)

    def _see(self, person: int, face: Face, frame: int, descriptor: np.ndarray | None) -> None:
        box, track = face.box, self.tracks.get(person)
        if track is not None and track.active and frame > track.seen:
            velocity = (box - track.box) / (frame - track.seen)
            track.velocity = 0.5 * track.velocity + 0.5 * velocity
        elif track is not None:  # back after a cut or an absence: motion starts again
            track.velocity = np.zeros(4)
        else:
            track = self.tracks[person] = Track(box.copy(), np.zeros(4), frame, frame, frame)
        track.box, track.seen, track.active = box.copy(), frame, True
        if descriptor is not None:
            track.verified, track.partial = frame, face.cut_off
            gallery = self.galleries.setdefault(person, [])
            gallery.append(descriptor)
            del gallery[:-GALLERY_SIZE]

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-ready numbers, arrays) to resume from (`restore`)."""
        numbers = {"fps": self.fps, "frame_step": self.frame_step, "next_id": self.next_id,
                   "descriptions": self.descriptions, "hold": self.hold,
                   "tracks": {str(p): {"box": t.box.tolist(), "velocity": t.velocity.tolist(), "seen": t.seen,
                                       "verified": t.verified, "first": t.first, "partial": t.partial,
                                       "active": t.active} for p, t in self.tracks.items()},
                   "gallery_sizes": {str(p): len(g) for p, g in self.galleries.items()}}
        arrays = {f"gallery_{p}": np.asarray(g, dtype=np.float32) for p, g in self.galleries.items()}
        return numbers, arrays

    @classmethod
    def restore(cls, numbers: dict, arrays: dict[str, np.ndarray]) -> "PeopleTracker":
        tracks = {int(p): Track(np.array(t["box"]), np.array(t["velocity"]), t["seen"], t["verified"], t["first"],
                                t["partial"], t["active"]) for p, t in numbers["tracks"].items()}
        galleries = {int(p): list(arrays[f"gallery_{p}"]) if n else [] for p, n in numbers["gallery_sizes"].items()}
        return cls(numbers["fps"], numbers["frame_step"], tracks, galleries, numbers["next_id"], numbers["descriptions"],
                   numbers["hold"])


@dataclass
class LargestFaceFollower:
    """One face a sequence (--faces largest): the largest where a face first appears, then in each frame the detection
    nearest to where it was last seen, within one box size of it; after REACQUIRE_SECONDS without it, the largest face
    present again. `follow` returns the face and what the frame's row says (NO_FACE, NOT_FOLLOWED, or "")."""

    fps: float | None  # the video's
    frame_step: float = 1.0  # video frames between analysed frames
    last: np.ndarray | None = None  # the followed face's box
    missed: int = 0

    def follow(self, faces: list[Face]) -> tuple[Face | None, str]:
        reacquire = max(1, round(REACQUIRE_SECONDS * (self.fps or DEFAULT_FPS) / self.frame_step))  # analysed frames
        chosen = None
        if faces and (self.last is None or self.missed >= reacquire):
            chosen = max(faces, key=lambda f: f.size)
        elif faces:
            centre, size = (self.last[:2] + self.last[2:]) / 2, float(max(self.last[2:] - self.last[:2]))
            nearest = min(faces, key=lambda f: float(np.linalg.norm(f.centre - centre)))
            if np.linalg.norm(nearest.centre - centre) <= FOLLOW_DISTANCE * size:
                chosen = nearest
        if chosen is None:
            self.missed += 1
            return None, NOT_FOLLOWED if faces else NO_FACE
        self.last, self.missed = chosen.box.copy(), 0
        return chosen, ""

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return ({"fps": self.fps, "frame_step": self.frame_step, "missed": self.missed},
                {} if self.last is None else {"follower_last": self.last})

    @classmethod
    def restore(cls, numbers: dict, arrays: dict[str, np.ndarray]) -> "LargestFaceFollower":
        return cls(numbers["fps"], numbers["frame_step"], arrays.get("follower_last"), numbers["missed"])

