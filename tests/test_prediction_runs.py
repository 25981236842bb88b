"""predict.py's runs: rows, people.csv and report of every person; --faces largest among several faces; a killed run
resumed to the same bytes; a rerun that keeps what the folder finished; Ctrl-C and bad input said as they are; a bug
shown as a bug."""
import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

import predict
from conftest import ROOT, trained_temporal_head
from emonet import heads as heads_module
from emonet import prediction as prediction_module
from emonet.cli import run
from emonet.faces import FaceDetector
from emonet.heads import HeadPredictor
from emonet.media import discover
from emonet.prediction import Predictor
from emonet.prediction_state import InputCheckpoint
from emonet.testing import shared_face_crops, write_face_video, write_people_video

FACES_DIR = ROOT.parent / "shared" / "faces"
needs_faces = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"needs the real photos of {FACES_DIR} (absent here)")
CUT = 180  # write_people_video's cut


def _argv(*argv):
    return predict.get_args_parser().parse_args([*map(str, argv), "--no_progress", "--device", "cpu"])


def _predict(*argv):
    return predict.main(_argv(*argv))


def _write_image(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


# -- every person of a video ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def people_run(released_checkpoint, tmp_path_factory):
    if not FACES_DIR.is_dir():
        pytest.skip(f"needs the real photos of {FACES_DIR}")
    folder = tmp_path_factory.mktemp("people_run")
    path = folder / "people.mp4"
    write_people_video(path, FACES_DIR)
    out = folder / "predictions"
    assert _predict("--inputs", path, "--pretrained_path", released_checkpoint, "--output_dir", out, "--sample_fps", "5",
                    "--render") == 0
    return out, path


@needs_faces
def test_predictions_have_a_row_per_person_and_frame(people_run):
    out, path = people_run
    rows = pd.read_csv(out / "predictions.csv", dtype={"person": "Int64"})
    assert list(rows["frame"].unique()) == list(range(0, 250, 5))  # --sample_fps 5 of 25: every fifth frame
    np.testing.assert_allclose(rows["time_s"], rows["frame"] / 25.0)  # time stays true
    assert not rows.duplicated(["frame", "person"]).any() and set(rows["person"].dropna()) == {1, 2}
    assert (rows["x1"].dropna() >= 0).all() and (rows["x2"].dropna() <= 640).all()  # boxes inside the frame
    assert rows["shot"].max() == 1 and (rows.loc[rows["frame"] >= CUT, "shot"] == 1).all()
    # A described face says how far it lies from its person's earlier faces; the others leave it empty.
    described = rows["identity_distance"].dropna()
    assert 0 < len(described) < len(rows) and (described < 0.6).all()
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["options"] == {"faces": "all", "sample_fps": 5.0}
    entry = summary["inputs"][0]
    assert entry["analysed_frames"] == 50 and entry["frames"] == 250 and entry["complete"]


@needs_faces
def test_people_csv_is_recomputed_from_predictions_csv(people_run):
    out, _ = people_run
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
        # How the id was made: both people come back after a cut (Biden also after leaving the frame).
        assert p["shots"] == 2 and p["tracklets"] >= 2 and 0 < p["weakest_link"] < 0.5
        assert pd.isna(p["nearest_person"])  # the two were on screen together: one cannot be a split of the other


@needs_faces
def test_thumbnails_plot_video_and_report_name_each_person(people_run):
    out, path = people_run
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


@needs_faces
def test_the_followed_face_is_kept_when_the_detector_lists_it_second(released_checkpoint, tmp_path):
    left, right = shared_face_crops(FACES_DIR)
    video = tmp_path / "two.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (480, 240))
    for i in range(6):  # the left face, the larger at first, shrinks; the right one grows past it
        frame = np.full((240, 480, 3), 70, np.uint8)
        a, b = 180 - 16 * i, 100 + 16 * i
        frame[20:20 + a, 10:10 + a] = cv2.resize(left, (a, a))
        frame[20:20 + b, 470 - b:470] = cv2.resize(right, (b, b))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    detector = FaceDetector(torch.device("cpu"))
    listed_second = [f.index for f in discover([str(video)])[0].open().frames()
                     if (faces := detector(f.rgb)) and len(faces) == 2 and faces[1].box[0] < 240]
    assert listed_second  # the case that crashed: the followed face is not the detector's first
    assert _predict("--inputs", video, "--pretrained_path", released_checkpoint, "--faces", "largest", "--crop", "box",
                    "--output_dir", tmp_path / "out") == 0
    rows = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(rows["frame"]) == list(range(6)) and (rows["person"] == 1).all() and (rows["x2"] < 240).all()


# -- resume, rerun, Ctrl-C -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def temporal_head(released_checkpoint, tmp_path_factory):
    return trained_temporal_head(tmp_path_factory.mktemp("resume_head"), released_checkpoint, "box")


def test_a_killed_video_resumes_to_the_same_bytes(temporal_head, released_checkpoint, tmp_path, monkeypatch):
    faces = shared_face_crops(FACES_DIR) if FACES_DIR.is_dir() else None
    video = write_face_video(tmp_path / "two.mp4", 14, 2, size=(560, 320), fps=10, face_size=100, faces=faces)  # rescaled to detect
    monkeypatch.setattr(heads_module, "STREAM_BLOCK", 4)  # blocks finish during the video, before and after the kill
    monkeypatch.setattr(prediction_module, "CHECKPOINT_FRAMES", 2)
    argv = ["--inputs", video, "--pretrained_path", released_checkpoint, "--model_path", temporal_head, "--batch_size", "2"]
    assert _predict(*argv, "--output_dir", tmp_path / "whole") == 0
    saves = {"n": 0}
    save = InputCheckpoint.save

    def killed_after_the_fourth_checkpoint(self, *args):
        save(self, *args)
        saves["n"] += 1
        if saves["n"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(InputCheckpoint, "save", killed_after_the_fourth_checkpoint)
    with pytest.raises(KeyboardInterrupt, match="continues two.mp4 from frame 8"):
        _predict(*argv, "--output_dir", tmp_path / "resumed")
    name = discover([str(video)])[0].name
    parts_dir = tmp_path / "resumed" / "inputs" / f"{name}.parts"
    checkpoint = json.loads((parts_dir / "state.json").read_text())
    with np.load(parts_dir / checkpoint["arrays"]) as held:
        assert held["row_box_set"].any()  # rows with boxes were held at the kill: they must come back exact
    monkeypatch.setattr(InputCheckpoint, "save", save)
    assert _predict(*argv, "--output_dir", tmp_path / "resumed") == 0
    for file in ("predictions.csv", "people.csv", f"inputs/{name}.csv"):
        assert (tmp_path / "resumed" / file).read_bytes() == (tmp_path / "whole" / file).read_bytes(), file
    assert not (tmp_path / "resumed" / "inputs" / f"{name}.parts").exists()


def test_a_rerun_with_fewer_inputs_keeps_the_others(released_checkpoint, tmp_path, caplog):
    one = _write_image(tmp_path / "one.jpg", data.astronaut())
    two = _write_image(tmp_path / "two.jpg", data.astronaut()[:, ::-1])
    out = tmp_path / "out"
    common = ["--pretrained_path", released_checkpoint, "--crop", "box", "--output_dir", out]
    assert _predict("--inputs", one, two, *common) == 0
    before = {f: (out / f).read_bytes() for f in ("predictions.csv", "people.csv")}
    caplog.set_level(logging.INFO)
    assert _predict("--inputs", one, *common) == 0
    said = caplog.text
    assert "also holds 1 input finished earlier that this command does not name (two.jpg)" in said
    assert {f: (out / f).read_bytes() for f in before} == before  # every combined output still has both
    assert [e["input"] for e in json.loads((out / "predictions.json").read_text())["inputs"]] == [str(one), str(two)]
    report = (out / "report.html").read_text()
    assert "two.jpg" in report and "image, 1 frame (1 analysed), 1 person, 1 shot" in report  # no "1 people", "1 frames"
    caplog.clear()
    assert _predict("--inputs", one, *common, "--overwrite") == 0
    assert "--overwrite: removed the results of 1 input" in caplog.text
    assert set(pd.read_csv(out / "predictions.csv")["source"]) == {str(one)}
    assert not list(out.glob("two-*")) and not list((out / "inputs").glob("two-*"))


def test_ctrl_c_says_what_is_finished_and_where_the_rerun_starts(released_checkpoint, tmp_path, monkeypatch):
    for name in ("one.jpg", "two.jpg"):
        _write_image(tmp_path / name, data.astronaut())
    original = Predictor.run
    calls = {"n": 0}

    def second_is_interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Predictor, "run", second_is_interrupted)
    argv = ["--inputs", tmp_path / "one.jpg", tmp_path / "two.jpg", "--pretrained_path", released_checkpoint, "--crop",
            "box", "--output_dir", tmp_path / "out"]
    with pytest.raises(KeyboardInterrupt) as stopped:
        _predict(*argv)
    # Nothing of two.jpg was checkpointed: the message says it starts again, not that it continues.
    assert str(stopped.value).startswith("predictions.csv and predictions.json in")
    assert "hold the 1 input finished" in str(stopped.value) and "starts two.jpg again" in str(stopped.value)
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [e["input"] for e in summary["inputs"]] == [str(tmp_path / "one.jpg")]
    assert len(pd.read_csv(tmp_path / "out" / "predictions.csv")) == 1
    calls["n"] = 1  # the first input is interrupted now: nothing is finished
    with pytest.raises(KeyboardInterrupt, match="no input had finished, so there is no predictions.csv yet"):
        _predict("--inputs", tmp_path / "one.jpg", "--pretrained_path", released_checkpoint, "--crop", "box",
                 "--output_dir", tmp_path / "fresh")


# -- errors ---------------------------------------------------------------------------------------------------------------
def test_a_bug_in_the_head_is_raised_with_its_traceback_not_reported_as_bad_input(temporal_head, released_checkpoint,
                                                                                  tmp_path, monkeypatch):
    image = _write_image(tmp_path / "face.jpg", data.astronaut())

    def broken(*args, **kwargs):
        raise ValueError("a deliberate bug")

    monkeypatch.setattr(HeadPredictor, "predict", broken)
    with pytest.raises(ValueError, match="a deliberate bug"):  # cli.run lets it through: Python prints its traceback
        run(predict.main, _argv("--inputs", image, "--pretrained_path", released_checkpoint, "--model_path",
                                temporal_head, "--output_dir", tmp_path / "out"))


def test_an_unreadable_image_and_a_truncated_video_say_so(released_checkpoint, tmp_path, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    _write_image(folder / "a.jpg", data.astronaut())
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
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert _predict(*argv) == 0
    skipped = [r.getMessage() for r in caplog.records if "cut.avi: skipped" in r.getMessage()]
    assert skipped and "decoding stopped after" in skipped[0]  # the rerun does not call it finished without saying so


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
    assert "moov atom" not in result.stderr and "Traceback" not in result.stderr, result.stderr
