"""Following people through a video: a person id for every detected face, never one id for two people.

`PeopleTracker` (--faces all) works in two layers, as trackers of edited footage do:
- tracklets, within a shot, by motion (`motion`, `matching`): never across a cut; crossing faces may swap tracklets
  on their descriptors;
- people, by identity evidence: a new tracklet joins a known person only if their clear faces (`face_quality`) lie
  within `link_distance`, every other candidate at least `link_margin` further, and the two were never on screen
  together; otherwise, after `decide_seconds`, it is a new person. When in doubt, a new id: a split person is visible
  and fixable (people.csv names each person's nearest other); two people merged in one id corrupt every statistic
  silently.

The caller holds rows `decide_seconds` and asks `person_of(tracklet)` when it writes them. Every threshold, with how it
was measured, is in `TrackerConfig`; what ids can and cannot do: the guide, "Several people".
`LargestFaceFollower` (--faces largest): the largest face of each frame, one sequence."""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .dlib_models import DESCRIPTOR_DIM
from .face_quality import FaceQuality, QualityGates
from .faces import Face
from .gallery import Gallery
from .matching import assign, iou_matrix
from .motion import BoxMotion

logger = logging.getLogger(__name__)

# Frame rate assumed for a sequence without one (a folder of images: the frames of a video, say).
DEFAULT_FPS = 25.0
# What a row of a frame without a followed face says.
NO_FACE, NOT_FOLLOWED = "no face", "face not followed"


@dataclass(frozen=True)
class TrackerConfig:
    """Every threshold of `PeopleTracker`. The distances are dlib descriptor distances, measured with
    benchmarks/bench_people.py on the real faces of ../shared/faces/ (six people: two in three photos, two in two),
    each at 100, 60, 45 and 30 pixels, blurred, darkened, turned and cut in half (README_HSV_PIPELINE.md, "Several
    people", has the figures): between clear faces (`quality`), one person's two photos lie at most 0.51 apart and two
    people at least 0.62; between degraded faces the two overlap (one person's pairs reach 0.81, two people's come down
    to 0.36), so only clear faces link."""

    # Motion (within a shot): a detection continues a tracklet whose predicted box it overlaps this much; then, among
    # the detections and tracklets left over, one whose predicted centre lies within `max_jump` box sizes (and whose
    # size is within `max_size_ratio`): a face that moved far between two sampled frames before its velocity was known.
    min_iou: float = 0.3
    max_jump: float = 0.75
    max_size_ratio: float = 1.5
    follow_seconds: float = 0.5  # a tracklet survives a detector's misses this long
    velocity_smoothing: float = 0.5
    # Crossings: faces that overlap another tracklet's predicted box this much are described, and the tracklets swap
    # when that lowers their summed distance by `swap_margin`, each new pair within `swap_distance` (dlib's own 0.6:
    # the same shot's light and camera).
    crossing_iou: float = 0.05
    swap_distance: float = 0.6
    swap_margin: float = 0.1
    # Links between tracklets (across cuts and gaps): the nearest clear faces within `link_distance`, the next
    # candidate known to be someone else `link_margin` further. 0.5: below every distance between two people's clear
    # faces measured (0.62) with a margin of 0.12, above 97 % of one person's clear pairs.
    link_distance: float = 0.5
    link_margin: float = 0.08
    # How long a new tracklet waits for a clear face before it becomes a new person, and in how many analysed frames at
    # least (with --sample_fps 2, a second holds two): predict.py holds its rows until then.
    decide_seconds: float = 1.0
    decide_looks: int = 4
    # Descriptions (about 70 ms a face on one core): an open tracklet's clear face at most this often, then, once
    # decided, one clear face a person this often for their gallery.
    describe_seconds: float = 0.2
    verify_seconds: float = 1.0
    # Clear descriptors kept per tracklet while open, and per person.
    tracklet_gallery: int = 6
    person_gallery: int = 24
    quality: QualityGates = field(default_factory=QualityGates)


@dataclass
class Tracklet:
    """One face followed by motion within one shot."""

    id: int
    shot: int
    first: int
    left: float  # x of its first box: people who appear together are numbered left to right
    motion: BoxMotion
    own: Gallery  # descriptors of any quality (crossings)
    clear: Gallery  # descriptors of clear faces (links)
    checked: int  # frame its quality was last looked at
    active: bool = True
    person: int | None = None  # None while open
    link: float | None = None  # the distance that joined it to a known person
    pending: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, descriptor) described while open

    @property
    def last(self) -> int:
        return self.motion.seen


@dataclass
class Person:
    id: int
    gallery: Gallery  # clear faces
    spans: dict[int, tuple[int, int]]  # tracklet -> (first, last) frame
    shots: set[int]
    links: list[float] = field(default_factory=list)  # distances of the links that joined later tracklets

    @property
    def last(self) -> int:
        return max(end for _, end in self.spans.values())

    def met(self, other: "Person") -> bool:
        """Whether the two were ever on screen together (then they are two people)."""
        return any(a0 <= b1 and b0 <= a1 for a0, a1 in self.spans.values() for b0, b1 in other.spans.values())


# Lazily computed evidence about face i of a frame: its descriptor and its quality (each costs time).
Describe = Callable[[int], np.ndarray]
Quality = Callable[[int], FaceQuality]


@dataclass
class PeopleTracker:
    """See the module docstring. Frame numbers are the video's, whose rate `fps` (None: DEFAULT_FPS) turns the
    config's seconds into frames."""

    fps: float | None
    frame_step: float = 1.0  # video frames between two analysed frames
    config: TrackerConfig = field(default_factory=TrackerConfig)
    tracklets: dict[int, Tracklet] = field(default_factory=dict)  # open or active ones
    decided: dict[int, int] = field(default_factory=dict)  # tracklet -> person, kept for rows not yet written
    people: dict[int, Person] = field(default_factory=dict)
    shot: int = 0
    next_tracklet: int = 1
    descriptions: int = 0
    distances: dict[tuple[int, int], float] = field(default_factory=dict)  # (tracklet, frame) -> identity distance

    def frames(self, seconds: float) -> float:
        return seconds * (self.fps or DEFAULT_FPS)

    def decide_frames(self) -> float:
        """Video frames a new tracklet stays open (see TrackerConfig.decide_seconds)."""
        return max(self.frames(self.config.decide_seconds), self.config.decide_looks * self.frame_step)

    # -- per frame ------------------------------------------------------------------------------------------------------
    def update(self, frame: int, faces: list[Face], describe: Describe, quality: Quality, shot: int) -> list[int]:
        """The tracklet of each of `faces` (detections of video frame `frame`, in shot `shot`)."""
        cache: dict[int, np.ndarray] = {}

        def descriptor(i: int) -> np.ndarray:
            if i not in cache:
                cache[i] = describe(i)
                self.descriptions += 1
            return cache[i]

        if shot != self.shot:  # a cut: motion never links across it
            for tracklet in self.tracklets.values():
                tracklet.active = False
            self.shot = shot
        active = [t for t in self.tracklets.values() if t.active]
        matched: dict[int, Tracklet] = {}
        if active and faces:
            predicted = np.array([t.motion.predicted(frame) for t in active])
            overlap = iou_matrix(predicted, np.array([f.box for f in faces]))
            for r, c in assign(1.0 - overlap, 1.0 - self.config.min_iou):
                matched[c] = active[r]
            self._jumps(faces, predicted, active, matched)
            self._undo_swaps(frame, matched, active, overlap, descriptor)
        for c, face in enumerate(faces):
            if c not in matched:
                matched[c] = self._start(face, frame, descriptor(c))
        for c, tracklet in matched.items():
            tracklet.motion.update(faces[c].box, frame)
            if tracklet.person is not None:
                self.people[tracklet.person].spans[tracklet.id] = (tracklet.first, frame)
            self._describe_if_due(tracklet, c, frame, descriptor, quality, cache)
        self._decide(frame)
        for tracklet in list(self.tracklets.values()):
            if tracklet.active and frame - tracklet.last > self.frames(self.config.follow_seconds):
                tracklet.active = False
            if not tracklet.active and tracklet.person is not None:
                del self.tracklets[tracklet.id]  # ended and decided: nothing more can happen to it
        return [matched[c].id for c in range(len(faces))]

    def person_of(self, tracklet: int) -> int | None:
        """The person of a tracklet, None while it is open."""
        return self.decided.get(tracklet)

    def finish(self) -> None:
        """The input has ended: every open tracklet is decided now."""
        self._decide(None)

    def take_distance(self, tracklet: int, frame: int) -> float | None:
        """A described face's distance to its person's gallery as it stood before the face (None where the face was not
        described or the person had no clear face yet), once its tracklet is decided; forgotten once taken."""
        return self.distances.pop((tracklet, frame), None)

    def _note(self, tracklet: int, frame: int, distance: float) -> None:
        if np.isfinite(distance):
            self.distances[tracklet, frame] = distance

    # -- tracklets ------------------------------------------------------------------------------------------------------
    def _start(self, face: Face, frame: int, descriptor: np.ndarray) -> Tracklet:
        cfg = self.config
        tracklet = Tracklet(self.next_tracklet, self.shot, frame, float(face.box[0]),
                            BoxMotion.start(face.box, frame, cfg.velocity_smoothing),
                            Gallery(cfg.tracklet_gallery), Gallery(cfg.tracklet_gallery), frame - 1)
        tracklet.own.add(descriptor)
        tracklet.pending.append((frame, descriptor))
        self.tracklets[tracklet.id] = tracklet
        self.next_tracklet += 1
        return tracklet

    def _jumps(self, faces: list[Face], predicted: np.ndarray, active: list[Tracklet], matched: dict[int, Tracklet]) -> None:
        """The second matching pass: leftover detections and tracklets by the distance of their centres, in box sizes."""
        cfg = self.config
        rows = [r for r, t in enumerate(active) if t not in matched.values()]
        cols = [c for c in range(len(faces)) if c not in matched]
        if not rows or not cols:
            return
        cost = np.full((len(rows), len(cols)), np.inf)
        for i, r in enumerate(rows):
            box = predicted[r]
            size = float(max(box[2] - box[0], box[3] - box[1]))
            for j, c in enumerate(cols):
                ratio = faces[c].size / size if size > 0 else np.inf
                if 1 / cfg.max_size_ratio <= ratio <= cfg.max_size_ratio:
                    cost[i, j] = float(np.linalg.norm(faces[c].centre - (box[:2] + box[2:]) / 2)) / size
        for i, j in assign(cost, cfg.max_jump):
            matched[cols[j]] = active[rows[i]]

    def _undo_swaps(self, frame: int, matched: dict[int, Tracklet], active: list[Tracklet], overlap: np.ndarray,
                    descriptor: Callable[[int], np.ndarray]) -> None:
        """Where followed faces cross, give the crossing faces the crossing tracklets their descriptors fit best, when
        that beats motion's choice clearly (see TrackerConfig)."""
        cfg = self.config
        rows = {t.id: r for r, t in enumerate(active)}
        crossing = [c for c, t in matched.items()
                    if any(overlap[r, c] >= cfg.crossing_iou for r in range(len(active)) if r != rows[t.id])]
        if not crossing:
            return
        candidates = [t for r, t in enumerate(active) if any(overlap[r, c] >= cfg.crossing_iou for c in crossing)]
        cost = np.array([[t.own.distance(descriptor(c)) for t in candidates] for c in crossing])
        now = {c: candidates.index(matched[c]) for c in crossing}
        best = dict(assign(cost, cfg.swap_distance))
        if any(c not in best for c in range(len(crossing))):
            return  # a face fits no crossing tracklet clearly: motion's choice stands
        before = sum(cost[k, now[c]] for k, c in enumerate(crossing))
        after = sum(cost[k, best[k]] for k in range(len(crossing)))
        if after + cfg.swap_margin <= before:
            for k, c in enumerate(crossing):
                if candidates[best[k]] is not matched[c]:
                    logger.debug("frame %d: a face followed as tracklet %d is tracklet %d (a crossing)", frame,
                                 matched[c].id, candidates[best[k]].id)
                matched[c] = candidates[best[k]]
        for k, c in enumerate(crossing):
            if cost[k, candidates.index(matched[c])] <= cfg.swap_distance:
                matched[c].own.add(descriptor(c))

    def _describe_if_due(self, tracklet: Tracklet, c: int, frame: int, descriptor, quality: Quality,
                         cache: dict[int, np.ndarray]) -> None:
        """Look at a face's quality, and describe it if clear: an open tracklet's every describe_seconds, a decided
        one's every verify_seconds (a face already described this frame is looked at for free)."""
        cfg = self.config
        is_open = tracklet.person is None
        due = cfg.describe_seconds if is_open else cfg.verify_seconds
        if (frame - tracklet.checked < self.frames(due) and c not in cache) or (
                is_open and len(tracklet.clear) >= cfg.tracklet_gallery):
            return
        tracklet.checked = frame
        if not quality(c).clear(cfg.quality):
            return
        d = descriptor(c)
        if is_open:
            tracklet.clear.add(d)
            if frame != tracklet.first:
                tracklet.pending.append((frame, d))
        else:
            person = self.people[tracklet.person]
            self._note(tracklet.id, frame, person.gallery.distance(d))
            person.gallery.add(d)

    # -- people -----------------------------------------------------------------------------------------------------------
    def _decide(self, frame: int | None) -> None:
        """Link the open tracklets that clear evidence joins to a known person; make those whose window has passed (all
        of them when `frame` is None) new people."""
        open_ = sorted((t for t in self.tracklets.values() if t.person is None),
                       key=lambda t: (t.first, t.left))
        due = [t for t in open_ if frame is None or frame - t.first >= self.decide_frames()]
        self._link([t for t in open_ if len(t.clear)])
        for tracklet in due:
            if tracklet.person is None:
                self._new_person(tracklet)  # a later open tracklet may be this person: links are tried again
                self._link([t for t in open_ if t.person is None and len(t.clear)])

    def _link(self, tracklets: list[Tracklet]) -> None:
        cfg = self.config
        people = [p for p in self.people.values() if len(p.gallery)]
        if not tracklets or not people:
            return
        cost = np.array([[p.gallery.distance(t.clear) if p.last < t.first else np.inf for p in people]
                         for t in tracklets])
        for r, c in assign(cost, cfg.link_distance):
            tracklet, person = tracklets[r], people[c]
            rivals = [cost[r, k] for k, other in enumerate(people) if k != c and self._others(person, other)]
            rivals += [cost[k, c] for k, t in enumerate(tracklets) if k != r and t.first <= tracklet.last
                       and tracklet.first <= t.last]  # on screen together: someone else
            if any(d < cost[r, c] + cfg.link_margin for d in rivals):
                logger.debug("tracklet %d: person %d at %.3f, but another within the margin: not linked", tracklet.id,
                             person.id, cost[r, c])
                continue
            self._join(tracklet, person, float(cost[r, c]))

    def _others(self, a: Person, b: Person) -> bool:
        """Whether two people are known to be two: seen together, or their clear faces beyond the link distance."""
        return a.met(b) or a.gallery.distance(b.gallery) > self.config.link_distance

    def _join(self, tracklet: Tracklet, person: Person, distance: float) -> None:
        for frame, d in tracklet.pending:
            self._note(tracklet.id, frame, person.gallery.distance(d))
        tracklet.person, tracklet.link, tracklet.pending = person.id, distance, []
        person.gallery.extend(tracklet.clear)
        person.spans[tracklet.id] = (tracklet.first, tracklet.last)
        person.shots.add(tracklet.shot)
        person.links.append(distance)
        self.decided[tracklet.id] = person.id
        logger.debug("tracklet %d joins person %d (distance %.3f)", tracklet.id, person.id, distance)

    def _new_person(self, tracklet: Tracklet) -> None:
        person = Person(len(self.people) + 1, Gallery(self.config.person_gallery),
                        {tracklet.id: (tracklet.first, tracklet.last)}, {tracklet.shot})
        seen = Gallery(self.config.person_gallery)
        for frame, d in tracklet.pending:  # each face's distance to the ones described before it
            self._note(tracklet.id, frame, seen.distance(d))
            seen.add(d)
        person.gallery.extend(tracklet.clear)
        self.people[person.id] = person
        tracklet.person, tracklet.pending = person.id, []
        self.decided[tracklet.id] = person.id

    # -- what people.csv says of each person --------------------------------------------------------------------------
    def summary(self) -> dict[int, dict]:
        """Per person: tracklets and shots joined, the weakest link that joined them (None for one tracklet), and the
        nearest other person with their distance (a person split in two shows here)."""
        out = {}
        for p in self.people.values():
            nearest = min(((p.gallery.distance(q.gallery), q.id) for q in self.people.values() if q.id != p.id
                           and not p.met(q)), default=(np.inf, None))
            out[p.id] = {"tracklets": len(p.spans), "shots": len(p.shots),
                         "weakest_link": max(p.links) if p.links else None,
                         "nearest_person": nearest[1] if np.isfinite(nearest[0]) else None,
                         "nearest_person_distance": float(nearest[0]) if np.isfinite(nearest[0]) else None}
        return out

    # -- resume -----------------------------------------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-ready numbers, arrays) to resume from (`restore`); floats survive JSON exactly."""
        arrays = {}
        tracklets = {}
        for t in self.tracklets.values():
            tracklets[str(t.id)] = {"shot": t.shot, "first": t.first, "left": t.left, "motion": t.motion.state(),
                                    "checked": t.checked,
                                    "active": t.active, "person": t.person, "link": t.link,
                                    "pending": [f for f, _ in t.pending]}
            arrays[f"tracklet_{t.id}_own"], arrays[f"tracklet_{t.id}_clear"] = t.own.array(), t.clear.array()
            arrays[f"tracklet_{t.id}_pending"] = np.asarray([d for _, d in t.pending], np.float32).reshape(len(t.pending), DESCRIPTOR_DIM)
        people = {}
        for p in self.people.values():
            people[str(p.id)] = {"spans": {str(k): v for k, v in p.spans.items()}, "shots": sorted(p.shots),
                                 "links": p.links}
            arrays[f"person_{p.id}_gallery"] = p.gallery.array()
        numbers = {"fps": self.fps, "frame_step": self.frame_step, "shot": self.shot, "next_tracklet": self.next_tracklet,
                   "descriptions": self.descriptions, "tracklets": tracklets, "people": people,
                   "decided": {str(k): v for k, v in self.decided.items()},
                   "distances": [[t, f, d] for (t, f), d in self.distances.items()]}
        return numbers, arrays

    @classmethod
    def restore(cls, numbers: dict, arrays: dict[str, np.ndarray], config: TrackerConfig) -> "PeopleTracker":
        def gallery(key: str, capacity: int) -> Gallery:
            return Gallery(capacity, list(arrays[key]))

        tracklets = {}
        for key, t in numbers["tracklets"].items():
            pending = arrays[f"tracklet_{key}_pending"]
            tracklets[int(key)] = Tracklet(int(key), t["shot"], t["first"], t["left"], BoxMotion.restore(t["motion"]),
                                           gallery(f"tracklet_{key}_own", config.tracklet_gallery),
                                           gallery(f"tracklet_{key}_clear", config.tracklet_gallery), t["checked"],
                                           t["active"], t["person"], t["link"],
                                           [(f, d) for f, d in zip(t["pending"], pending, strict=True)])
        people = {int(key): Person(int(key), gallery(f"person_{key}_gallery", config.person_gallery),
                                   {int(k): tuple(v) for k, v in p["spans"].items()}, set(p["shots"]), list(p["links"]))
                  for key, p in numbers["people"].items()}
        return cls(numbers["fps"], numbers["frame_step"], config, tracklets, {int(k): v for k, v in numbers["decided"].items()}, people,
                   numbers["shot"], numbers["next_tracklet"], numbers["descriptions"],
                   {(t, f): d for t, f, d in numbers["distances"]})


# -- one face a sequence ----------------------------------------------------------------------------------------------
# --faces largest: the followed face must reappear within this many of its box sizes of where it was last seen; after
# REACQUIRE_SECONDS without it, the largest face present is taken again.
FOLLOW_DISTANCE = 1.0
REACQUIRE_SECONDS = 1.0
# The one "tracklet" and person of --faces largest.
THE_FACE = 1


@dataclass
class LargestFaceFollower:
    """One face a sequence (--faces largest): the largest where a face first appears, then in each frame the detection
    nearest to where it was last seen, within one box size of it; after REACQUIRE_SECONDS without it, the largest face
    present again. The same interface as `PeopleTracker`: every followed face is tracklet and person 1."""

    fps: float | None
    last: np.ndarray | None = None  # the followed face's box
    last_frame: int | None = None
    descriptions: int = 0

    def update(self, frame: int, faces: list[Face], describe: Describe, quality: Quality, shot: int) -> list[int | None]:
        """THE_FACE for the followed face, None for the others."""
        reacquire = REACQUIRE_SECONDS * (self.fps or DEFAULT_FPS)
        chosen = None
        if faces and (self.last is None or frame - self.last_frame >= reacquire):
            chosen = max(range(len(faces)), key=lambda i: faces[i].size)
        elif faces:
            centre, size = (self.last[:2] + self.last[2:]) / 2, float(max(self.last[2:] - self.last[:2]))
            distance = [float(np.linalg.norm(f.centre - centre)) for f in faces]
            nearest = int(np.argmin(distance))
            if distance[nearest] <= FOLLOW_DISTANCE * size:
                chosen = nearest
        if chosen is not None:
            self.last, self.last_frame = faces[chosen].box.astype(np.float64).copy(), frame
        return [THE_FACE if i == chosen else None for i in range(len(faces))]

    def person_of(self, tracklet: int) -> int:
        return THE_FACE

    def finish(self) -> None:
        pass

    def summary(self) -> dict[int, dict]:
        return {THE_FACE: {"tracklets": None, "shots": None, "weakest_link": None, "nearest_person": None,
                           "nearest_person_distance": None}}

    def take_distance(self, tracklet: int, frame: int) -> None:
        return None

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return ({"fps": self.fps, "last": None if self.last is None else self.last.tolist(), "last_frame": self.last_frame,
                 "descriptions": 0}, {})

    @classmethod
    def restore(cls, numbers: dict, arrays: dict[str, np.ndarray], config: TrackerConfig) -> "LargestFaceFollower":
        last = numbers["last"]
        return cls(numbers["fps"], None if last is None else np.array(last, dtype=np.float64), numbers["last_frame"])
