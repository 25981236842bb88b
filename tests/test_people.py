"""predict.py --faces all (issue 22): every person with one id through crossings, exits and cuts, on real faces;
the per-person outputs; streaming and resume inside a video; and predict.py's words (issue 21, item 7)."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import predict
from conftest import ROOT, trained_temporal_head
from emonet import heads as heads_module
from emonet import prediction as prediction_module
from emonet.dlib_models import FaceDescriptor, Landmarks68
from emonet.faces import Face, FaceDetector
from emonet.heads import FeatureHead, HeadPredictor, SequenceStream, TemporalHead
from emonet.media import discover
from emonet.people import SAME_PERSON_DISTANCE, PeopleTracker
from emonet.shots import ShotDetector
from emonet.testing import shared_face_crops, write_face_video, write_people_video

FACES_DIR = ROOT.parent / "shared" / "faces"
needs_faces = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"needs the real photos of {FACES_DIR} (absent here)")
CUT = 180  # write_people_video's cut


def _predict(*argv):
    return predict.main(predict.get_args_parser().parse_args([*map(str, argv), "--no_progress", "--device", "cpu"]))


@pytest.fixture(scope="module")
def people_video(tmp_path_factory):
    if not FACES_DIR.is_dir():
        pytest.skip(f"needs the real photos of {FACES_DIR}")
    folder = tmp_path_factory.mktemp("people")
    truth = write_people_video(folder / "people.mp4", FACES_DIR)
    return folder / "people.mp4", truth


def _score(ids_by_frame: list[list[tuple[int, np.ndarray]]], truth) -> tuple[float, dict, int]:
    """(share of face-frames whose id is their person's, {name: id}, face-frames scored): each real person's id is the
    one most of their face-frames got, and no id may stand for two people."""
    labelled = []
    for faces, seen in zip(ids_by_frame, truth, strict=True):
        for person, box in faces:
            centre = (box[:2] + box[2:]) / 2
            names = [a.name for a in seen if a.visible >= 0.5 and a.face[0] <= centre[0] <= a.face[2]
                     and a.face[1] <= centre[1] <= a.face[3]]
            if names:
                labelled.append((person, names[-1]))
    votes = pd.DataFrame(labelled, columns=["person", "name"]).value_counts()
    owner = {}
    for (person, name), _ in votes.items():  # largest first: each name takes its most frequent id, each id once
        if name not in owner and person not in owner.values():
            owner[name] = person
    right = sum(owner.get(name) == person for person, name in labelled)
    return right / len(labelled), owner, len(labelled)


@needs_faces
def test_ids_hold_through_a_crossing_an_exit_and_a_cut(people_video):
    path, truth = people_video
    detector, landmarks, descriptor = FaceDetector(torch.device("cpu")), Landmarks68(), FaceDescriptor()
    sequence = discover([str(path)])[0].open()
    tracker, shots = PeopleTracker(sequence.fps, hold=25), ShotDetector()
    ids_by_frame, cuts = [], []
    for frame in sequence.frames():
        faces = detector(frame.rgb)
        cut = shots.update(frame.rgb)
        cuts += [frame.index] if cut else []
        ids = tracker.update(frame.index, faces, lambda i, rgb=frame.rgb, faces=faces: descriptor(
            rgb, landmarks.shape(rgb, faces[i].box)), cut)
        assert len(set(ids)) == len(ids), f"frame {frame.index}: one id on two faces"
        ids_by_frame.append([(p, f.box) for p, f in zip(ids, faces, strict=True)])
    share, owner, scored = _score(ids_by_frame, truth)
    assert share >= 0.95 and scored > 400, (share, owner, scored)
    assert sorted(owner) == ["biden", "obama"] and len({p for faces in ids_by_frame for p, _ in faces}) == 2
    assert cuts == [CUT]  # the cut, and nothing else: the crossing and the walks are no cut
    assert tracker.descriptions < scored / 5  # descriptors only when an identity is in question


def test_a_new_face_that_is_a_known_person_is_merged_and_crossings_are_undone():
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=128).astype(np.float32) for _ in range(2))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)  # about 1.4 apart: two people

    def box(x):
        return np.array([x, 100.0, x + 80, 180.0])

    tracker = PeopleTracker(25.0, hold=25)
    seen = {}
    # A and B walk towards each other and cross; their descriptors say who is who.
    for frame in range(40):
        xa, xb = 20 + 8 * frame, 340 - 8 * frame
        faces = [Face(box(xa), 0.99), Face(box(xb), 0.99)]
        ids = tracker.update(frame, faces, lambda i: a if i == 0 else b, cut=False)
        seen[frame] = ids
    assert all(ids == [1, 2] for ids in seen.values())  # A stays 1 and B 2, crossing included
    # B leaves; a face comes in cut off by the edge, described far from everyone: a new id, for now ...
    for frame in range(40, 60):
        tracker.update(frame, [Face(box(20 + 8 * 40), 0.99)], lambda i: a, cut=False)
    half = (b + rng.normal(size=128).astype(np.float32)) / 2
    ids = tracker.update(60, [Face(box(0), 0.99, cut_off=True), Face(box(340), 0.99)],
                         lambda i: half if i == 0 else a, cut=False)
    assert ids[0] == 3 and np.linalg.norm(half - b) > SAME_PERSON_DISTANCE
    # ... and once wholly in view it is B: merged, and its id given back.
    ids = tracker.update(61, [Face(box(8), 0.99), Face(box(340), 0.99)], lambda i: b if i == 0 else a, cut=False)
    assert ids == [2, 1] and tracker.merged == {3: 2} and tracker.next_id == 3
    # State round trip: a restored tracker gives the same ids from here on.
    numbers, arrays = tracker.state()
    restored = PeopleTracker.restore(json.loads(json.dumps(numbers)), arrays)
    for t in (tracker, restored):
        assert t.update(62, [Face(box(340), 0.99), Face(box(16), 0.99)], lambda i: a if i == 0 else b, cut=True) == [1, 2]


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


# -- predict.py on the people video ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def people_run(people_video, released_checkpoint, tmp_path_factory):
    path, truth = people_video
    out = tmp_path_factory.mktemp("people_run") / "predictions"
    assert _predict("--inputs", path, "--pretrained_path", released_checkpoint, "--output_dir", out, "--sample_fps", "5",
                    "--render") == 0
    return out, path, truth


@needs_faces
def test_predictions_have_a_row_per_person_and_frame(people_run):
    out, path, truth = people_run
    rows = pd.read_csv(out / "predictions.csv", dtype={"person": "Int64"})
    assert list(rows["frame"].unique()) == list(range(0, 250, 5))  # --sample_fps 5 of 25: every fifth frame
    np.testing.assert_allclose(rows["time_s"], rows["frame"] / 25.0)  # time stays true
    assert not rows.duplicated(["frame", "person"]).any() and set(rows["person"].dropna()) == {1, 2}
    assert (rows["x1"].dropna() >= 0).all() and (rows["x2"].dropna() <= 640).all()  # boxes inside the frame
    assert rows["shot"].max() == 1 and (rows.loc[rows["frame"] >= CUT, "shot"] == 1).all()
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["options"] == {"faces": "all", "sample_fps": 5.0}
    entry = summary["inputs"][0]
    assert entry["analysed_frames"] == 50 and entry["frames"] == 250 and entry["complete"]


@needs_faces
def test_people_csv_is_recomputed_from_predictions_csv(people_run):
    out, _, _ = people_run
    rows = pd.read_csv(out / "predictions.csv", dtype={"person": "Int64"})
    people = pd.read_csv(out / "people.csv")
    assert list(people["person"]) == [1, 2]
    for _, p in people.iterrows():
        own = rows[rows["person"] == p["person"]]
        assert p["frames"] == len(own) and p["seconds"] == pytest.approx(len(own) / 5)
        assert p["first_s"] == own["time_s"].min() and p["last_s"] == own["time_s"].max()
        for d in ("valence", "arousal"):
            assert p[f"{d}_mean"] == pytest.approx(own[d].mean()) and p[f"{d}_median"] == pytest.approx(own[d].median())
            assert p[f"{d}_sd"] == pytest.approx(own[d].std()) and p[f"{d}_max"] == own[d].max()
        v, a = own["valence"] >= 0, own["arousal"] >= 0
        assert p["share_vneg_apos"] == pytest.approx((~v & a).mean())
        assert sum(p[c] for c in people if c.startswith("share_")) == pytest.approx(1.0)
        assert p["mean_p_happy"] == pytest.approx(own["p_happy"].mean())


@needs_faces
def test_thumbnails_plot_video_and_report_name_each_person(people_run):
    out, path, _ = people_run
    entry = json.loads((out / "predictions.json").read_text())["inputs"][0]
    thumbnails = [p["thumbnail"] for p in entry["people"]]
    assert thumbnails == [f"{entry['name']}_person1.jpg", f"{entry['name']}_person2.jpg"]
    assert all(cv2.imread(str(out / t)).shape == (128, 128, 3) for t in thumbnails)
    report = (out / "report.html").read_text()
    for reference in [*thumbnails, entry["outputs"]["png"], entry["outputs"]["webm"], entry["outputs"]["mp4"]]:
        assert f'"{reference}"' in report and (out / reference).is_file()
    capture = cv2.VideoCapture(str(out / entry["outputs"]["mp4"]))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 250  # every frame rendered, the analysed ones' annotations held in between


# -- resume inside a video ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def temporal_head(released_checkpoint, tmp_path_factory):
    return trained_temporal_head(tmp_path_factory.mktemp("resume_head"), released_checkpoint, "box")


def test_an_interrupted_video_continues_to_the_uninterrupted_outputs(temporal_head, released_checkpoint, tmp_path,
                                                                      monkeypatch):
    faces = shared_face_crops(FACES_DIR) if FACES_DIR.is_dir() else None
    video = write_face_video(tmp_path / "two.mp4", 14, 2, size=(320, 240), fps=10, face_size=90, faces=faces)
    monkeypatch.setattr(heads_module, "STREAM_BLOCK", 4)  # blocks finish during the video, before and after the stop
    argv = ["--inputs", video, "--pretrained_path", released_checkpoint, "--model_path", temporal_head, "--batch_size", "2"]
    monkeypatch.setattr(prediction_module, "CHECKPOINT_FRAMES", 2)
    assert _predict(*argv, "--output_dir", tmp_path / "whole") == 0
    calls = {"n": 0}
    chunk = prediction_module.Predictor._chunk

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return chunk(self, *args)

    monkeypatch.setattr(prediction_module.Predictor, "_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _predict(*argv, "--output_dir", tmp_path / "resumed")
    name = discover([str(video)])[0].name
    parts = tmp_path / "resumed" / "inputs" / f"{name}.parts"
    assert json.loads((parts / "state.json").read_text())["next_frame"] == 8  # 4 chunks of 2 frames
    monkeypatch.setattr(prediction_module.Predictor, "_chunk", chunk)
    assert _predict(*argv, "--output_dir", tmp_path / "resumed") == 0
    whole = (tmp_path / "whole" / "inputs" / f"{name}.csv").read_bytes()
    assert (tmp_path / "resumed" / "inputs" / f"{name}.csv").read_bytes() == whole  # bit for bit
    assert not parts.exists()
    people = [json.loads((tmp_path / d / "inputs" / f"{name}.json").read_text())["people"] for d in ("whole", "resumed")]
    assert people[0] == people[1]


# -- what predict.py says (issue 21, item 7) ----------------------------------------------------------------------------
def test_an_unreadable_image_and_a_truncated_video_say_so(released_checkpoint, tmp_path, capsys):
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    (folder / "b.jpg").write_bytes(b"not an image")
    video = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), 8 * i % 255, np.uint8))
    writer.release()
    data_bytes = video.read_bytes()
    video.write_bytes(data_bytes[: len(data_bytes) * 2 // 3])  # a copy broken off
    argv = ["--inputs", folder, video, "--pretrained_path", released_checkpoint, "--crop", "box", "--output_dir",
            tmp_path / "out"]
    assert _predict(*argv) == 0
    rows = pd.read_csv(tmp_path / "out" / "predictions.csv")
    photos = rows[rows["source"] == str(folder)]
    assert list(photos["status"]) == ["face", "unreadable"] and list(photos["file"]) == ["a.jpg", "b.jpg"]
    entry = next(e for e in json.loads((tmp_path / "out" / "predictions.json").read_text())["inputs"]
                 if e["kind"] == "video")
    assert not entry["complete"] and entry["warnings"][0].startswith("decoding stopped after")
    assert entry["frames"] < 30
    capsys.readouterr()
    assert _predict(*argv) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if "cut.avi: skipped" in line]
    assert skipped and "decoding stopped after" in skipped[0]  # the rerun does not call it finished without saying so


def test_ctrl_c_keeps_the_finished_inputs_in_the_summary(released_checkpoint, tmp_path, monkeypatch):
    from skimage import data

    for name in ("one.jpg", "two.jpg"):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    run = prediction_module.Predictor.run
    calls = {"n": 0}

    def second_is_interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return run(self, *args)

    monkeypatch.setattr(prediction_module.Predictor, "run", second_is_interrupted)
    with pytest.raises(KeyboardInterrupt):
        _predict("--inputs", tmp_path / "one.jpg", tmp_path / "two.jpg", "--pretrained_path", released_checkpoint,
                 "--crop", "box", "--output_dir", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [e["input"] for e in summary["inputs"]] == [str(tmp_path / "one.jpg")]
    assert len(pd.read_csv(tmp_path / "out" / "predictions.csv")) == 1


def test_a_missing_model_is_named_before_emonet_loads(tmp_path):
    with pytest.raises(Exception, match=r"--model_path .*nowhere\.pth: file not found"):
        _predict("--inputs", tmp_path, "--pretrained_path", tmp_path / "no_emonet.pth", "--model_path",
                 tmp_path / "nowhere.pth")


def test_sample_fps_is_refused_for_images(released_checkpoint, tmp_path):
    with pytest.raises(Exception, match=r"--sample_fps applies to videos; .* is a folder of images"):
        _predict("--inputs", tmp_path, "--pretrained_path", released_checkpoint, "--sample_fps", "2")


def test_ffmpeg_says_nothing_before_the_message_naming_the_file(released_checkpoint, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    result = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--inputs", str(broken),
                             "--pretrained_path", str(released_checkpoint), "--output_dir", str(tmp_path / "out"),
                             "--no_progress", "--device", "cpu"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1 and "cannot open the video" in result.stderr
    assert "moov atom" not in result.stderr, result.stderr
