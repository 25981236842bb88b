"""Following people: tracklets by motion within a shot, people linked only on clear evidence, shot cuts on every
decoded frame; on real faces (../shared/faces/) in a crossing video and a film of six shots, at several sampling
rates."""
import collections
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from emonet import heads as heads_module
from emonet.face_quality import FaceQuality, QualityGates
from emonet.faces import Face
from emonet.following import FaceModels, Following, sampling_step
from emonet.heads import FeatureHead, HeadPredictor, SequenceStream, TemporalHead
from emonet.matching import assign, iou_matrix
from emonet.media import discover
from emonet.people import PeopleTracker, TrackerConfig
from emonet.shots import ShotDetector
from emonet.testing import FILM_SHOTS, write_film_video, write_people_video
from emonet.timing import StageTimer

FACES_DIR = ROOT.parent / "shared" / "faces"
needs_faces = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"needs the real photos of {FACES_DIR} (absent here)")
CUT = 180  # write_people_video's cut
CLEAR = FaceQuality(size=120.0, sharpness=0.3, contrast=45.0, frontal=0.5, cut_off=False)
BLURRED = FaceQuality(size=120.0, sharpness=0.03, contrast=45.0, frontal=0.5, cut_off=False)


# -- pieces ---------------------------------------------------------------------------------------------------------------
def test_the_iou_matrix_and_the_assignment_are_those_of_their_definitions():
    a = np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5.0, 0, 15, 10], [100, 100, 110, 110], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0, 1], [0, 0, 0]])
    # The assignment of least total cost, each row and column once, pairs above the limit dropped.
    cost = np.array([[0.1, 0.2], [0.15, 0.9], [np.inf, 0.3]])
    assert assign(cost, 0.5) == [(0, 1), (1, 0)]
    assert assign(cost, 0.18) == [(1, 0)]


def test_quality_gates_pass_only_clear_faces():
    gates = QualityGates()
    assert CLEAR.clear(gates)
    for other in (BLURRED, FaceQuality(40.0, 0.3, 45.0, 0.5, False), FaceQuality(120.0, 0.3, 10.0, 0.5, False),
                  FaceQuality(120.0, 0.3, 45.0, 0.05, False), FaceQuality(120.0, 0.3, 45.0, 0.5, True)):
        assert not other.clear(gates), other


# -- the tracker on synthetic descriptors ---------------------------------------------------------------------------------
def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def _near(v: np.ndarray, distance: float, seed: int) -> np.ndarray:
    """A descriptor `distance` away from `v`."""
    u = _unit(seed) - v * float(_unit(seed) @ v)
    return (v + distance * u / np.linalg.norm(u)).astype(np.float32)


def _box(x: float) -> np.ndarray:
    return np.array([x, 100.0, x + 80, 180.0])


class Scene:
    """Frames fed to a tracker: each face a (box x, descriptor, quality)."""

    def __init__(self, fps: float = 25.0):
        self.tracker, self.frame, self.shot = PeopleTracker(fps), 0, 0

    def show(self, faces: list[tuple[float, np.ndarray, FaceQuality]], frames: int = 1, cut: bool = False) -> list[int]:
        self.shot += cut
        for _ in range(frames):
            tracklets = self.tracker.update(self.frame, [Face(_box(x), 0.99) for x, _, _ in faces],
                                            lambda i: faces[i][1], lambda i: faces[i][2], self.shot)
            self.frame += 1
        return tracklets

    def people(self, tracklets: list[int]) -> list[int | None]:
        return [self.tracker.person_of(t) for t in tracklets]


def test_a_clear_face_after_a_cut_joins_its_person_and_an_unclear_one_never_does():
    a = _unit(1)
    scene = Scene()
    first = scene.show([(100, a, CLEAR)], frames=30)
    assert scene.people(first) == [1]
    # A cut: the same person, clear, 0.3 from the gallery: joined at once.
    again = scene.show([(400, _near(a, 0.3, 2), CLEAR)], cut=True)
    assert scene.people(again) == [1] and again != first  # another tracklet, the same person
    scene.show([(400, _near(a, 0.3, 2), CLEAR)], frames=30)
    # Another cut: as near, but blurred: not evidence; a new person once the window has passed.
    blurred = scene.show([(250, _near(a, 0.3, 3), BLURRED)], cut=True)
    assert scene.people(blurred) == [None]
    scene.show([(250, _near(a, 0.3, 3), BLURRED)], frames=30)
    assert scene.people(blurred) == [2]
    assert scene.tracker.summary()[1]["tracklets"] == 2 and scene.tracker.summary()[1]["weakest_link"] == pytest.approx(0.3, abs=1e-5)


def test_no_link_without_a_margin_over_another_person_or_to_someone_on_screen():
    b = _unit(4)
    c = _near(b, 0.75, 5)  # two people as far apart as real faces of two people are (0.62 and more)
    scene = Scene()
    scene.show([(100, b, CLEAR), (400, c, CLEAR)], frames=30)  # two people seen together: known to be two
    # A newcomer after a cut, within the link distance of both and nearly as near to each: a new person.
    between = (b + 0.36 * (c - b) / np.linalg.norm(c - b)).astype(np.float32)
    d_b, d_c = np.linalg.norm(between - b), np.linalg.norm(between - c)
    assert d_c < TrackerConfig().link_distance and d_c - d_b < TrackerConfig().link_margin
    newcomer = scene.show([(250, between, CLEAR)], cut=True)
    scene.show([(250, between, CLEAR)], frames=30)
    assert scene.people(newcomer) == [3]
    # A face near person 3 while person 3 is on screen is someone else (cannot-link), however near.
    both = scene.show([(250, between, CLEAR), (450, _near(between, 0.1, 7), CLEAR)], frames=30)
    assert scene.people(both) == [3, 4]


def test_crossing_faces_whose_motion_swapped_get_their_tracklets_back():
    a, b = _unit(8), _unit(9)
    scene = Scene()
    seen = []
    for frame in range(40):  # A walks right and B left; they cross; their descriptors say who is who
        xa, xb = 20 + 8 * frame, 340 - 8 * frame
        seen.append(scene.show([(xa, a, CLEAR), (xb, b, CLEAR)]))
    assert all(t == seen[0] for t in seen) and scene.people(seen[0]) == [1, 2]


def test_the_tracker_resumes_to_the_same_ids():
    a, b = _unit(10), _unit(11)
    scene = Scene()
    scene.show([(100, a, CLEAR), (400, b, CLEAR)], frames=10)  # still open: not decided yet
    numbers, arrays = scene.tracker.state()
    restored = PeopleTracker.restore(json.loads(json.dumps(numbers)), arrays, TrackerConfig())
    twin = Scene()
    twin.tracker, twin.frame = restored, scene.frame
    for s in (scene, twin):
        s.show([(100, a, CLEAR), (400, b, CLEAR)], frames=30)
        s.show([(300, _near(b, 0.2, 12), CLEAR)], cut=True, frames=30)
    assert scene.tracker.state()[0] == twin.tracker.state()[0]


# -- real faces ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face_models():
    return FaceModels(torch.device("cpu"))


def _follow(face_models, path, sample_fps):
    """(analysed frames, the Following) of a video, every person decided."""
    sequence = discover([str(path)])[0].open()
    following = Following(face_models, "all", sequence.fps, sampling_step(sequence.fps, sample_fps),
                          StageTimer(("detect", "shots", "people", "landmarks")))
    return list(following.follow(sequence, sampling_step(sequence.fps, sample_fps))), following


def _people_of(frames, following, truth) -> list[tuple[int, int, str]]:
    """(frame, person, name) of every face whose box centre lies on a person at least half in view."""
    out = []
    for seen in frames:
        for face, tracklet in zip(seen.faces, seen.tracklets, strict=True):
            centre = face.centre
            names = [a.name for a in truth[seen.frame.index] if a.visible >= 0.5 and a.face[0] <= centre[0] <= a.face[2]
                     and a.face[1] <= centre[1] <= a.face[3]]
            if names:
                out.append((seen.frame.index, following.tracker.person_of(tracklet), names[-1]))
    return out


@pytest.fixture(scope="module")
def people_video(tmp_path_factory):
    if not FACES_DIR.is_dir():
        pytest.skip(f"needs the real photos of {FACES_DIR}")
    folder = tmp_path_factory.mktemp("people")
    return folder / "people.mp4", write_people_video(folder / "people.mp4", FACES_DIR)


@needs_faces
@pytest.mark.parametrize("sample_fps", [None, 5])
def test_ids_hold_through_a_crossing_an_exit_and_a_cut(people_video, face_models, sample_fps):
    path, truth = people_video
    frames, following = _follow(face_models, path, sample_fps)
    labelled = _people_of(frames, following, truth)
    names_of = collections.defaultdict(set)
    for _, person, name in labelled:
        names_of[person].add(name)
    assert {p: sorted(n) for p, n in names_of.items()} == {1: ["obama"], 2: ["biden"]}  # one id each, never shared
    assert len(labelled) > 400 / (5 if sample_fps else 1) * 0.9
    cuts = [b.frame.index for a, b in zip(frames, frames[1:], strict=False) if b.shot != a.shot]
    assert cuts == [CUT]  # the cut, and nothing else: the crossing and the walks are no cut
    assert following.tracker.descriptions < len(labelled) / (5 if sample_fps is None else 1)


# The film's shots (testing.FILM_SHOTS) and how many ids each person gets: a face that is blurred, dark, turned or cut
# off in a shot is never linked across a cut, so its person gets an id of its own there (Obama in shot 0, Alex, Biden,
# Rose and Miranda in the audience); Obama's clear faces are one person across three shots and two photos taken on
# different days (his close-ups of one photo in shots 1 and 4, his other photo in the audience of shot 3).
FILM_IDS = {"obama": 2, "alex_lacamoire": 2, "biden": 2, "rose_leslie": 2, "kit_harington": 1, "lin_manuel_miranda": 2}


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    if not FACES_DIR.is_dir():
        pytest.skip(f"needs the real photos of {FACES_DIR}")
    path = tmp_path_factory.mktemp("film") / "film.mp4"
    return path, write_film_video(path, FACES_DIR)


@needs_faces
@pytest.mark.parametrize("sample_fps", [None, 2, 5])
def test_no_id_of_a_film_is_ever_shared_by_two_people(film, face_models, sample_fps):
    path, truth = film
    frames, following = _follow(face_models, path, sample_fps)
    labelled = _people_of(frames, following, truth)
    names_of, ids_of = collections.defaultdict(set), collections.defaultdict(set)
    starts = np.cumsum([0, *(s.frames for s in FILM_SHOTS)])
    by_shot = collections.defaultdict(set)
    for frame, person, name in labelled:
        names_of[person].add(name)
        ids_of[name].add(person)
        by_shot[name, int(np.searchsorted(starts, frame, side="right")) - 1].add(person)
    shared = {p: sorted(n) for p, n in names_of.items() if len(n) > 1}
    assert not shared, f"ids shared by two people: {shared}"
    assert {n: len(p) for n, p in ids_of.items()} == FILM_IDS
    assert by_shot["obama", 1] == by_shot["obama", 3] == by_shot["obama", 4] and len(by_shot["obama", 1]) == 1
    # Cuts are measured on every decoded frame: each analysed frame is in its true shot, at any rate.
    assert all(seen.shot == int(np.searchsorted(starts, seen.frame.index, side="right")) - 1 for seen in frames)
    # people.csv's audit: a linked person says how many tracklets and shots, and the weakest link.
    summary = following.tracker.summary()
    obama = next(iter(by_shot["obama", 1]))
    assert summary[obama]["shots"] == 3 and summary[obama]["weakest_link"] < TrackerConfig().link_distance


def test_a_cut_is_found_and_a_restored_detector_finds_the_same():
    from skimage import data

    scenes = [cv2.resize(data.coffee(), (320, 240)), cv2.resize(data.rocket(), (320, 240))]
    frames = [np.roll(scenes[i >= 20], 2 * i, axis=1) for i in range(40)]
    detector = ShotDetector(min_frames=5)
    cuts = [i for i, f in enumerate(frames) if detector.update(f)]
    assert cuts == [20]
    half = ShotDetector(min_frames=5)
    for f in frames[:12]:
        half.update(f)
    numbers, arrays = half.state()
    again = ShotDetector.restore(numbers, arrays)
    assert [i + 12 for i, f in enumerate(frames[12:]) if again.update(f)] == [20] and again.shot == 1


@pytest.mark.parametrize("kind", ["smooth", "temporal"])
def test_a_stream_of_frames_gives_the_whole_sequences_predictions(kind):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    frames = sorted(rng.choice(1500, 500, replace=False).tolist())  # with gaps
    features = rng.standard_normal((500, 256)).astype(np.float32)
    predictor = HeadPredictor(kind, (TemporalHead() if kind == "temporal" else FeatureHead()).eval(),
                              4.0 if kind == "smooth" else None)
    whole = predictor.predict(features, [{"clip": "s", "frame": str(f)} for f in frames], torch.device("cpu"))
    stream, got = SequenceStream(predictor), {}
    for f, x in zip(frames, features, strict=True):
        stream.push(f, x)
        got |= {frame: value for frame, value, _ in stream.ready(f + 1)}
        assert len(stream.frames) <= heads_module.STREAM_BLOCK + 2 * predictor.context  # bounded memory
    got |= {frame: value for frame, value, _ in stream.ready(None)}
    np.testing.assert_allclose(np.array([got[f] for f in frames]), whole, atol=1e-4)
