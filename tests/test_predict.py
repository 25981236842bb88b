"""predict.py: own videos, images and folders, offline face detection, the model's own crop and
colour space, outputs, bad input and resume."""
import json
import logging

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

import extract_features_all
import predict
from conftest import clip_labels, manifest_as_list, trained_temporal_head
from emonet.crop import square_from_box
from emonet.errors import EmoNetError
from emonet.faces import MIN_SCORE, Face, FaceDetector
from emonet.io import sha256_file
from emonet.people import THE_FACE, LargestFaceFollower
from emonet.prediction import landmark_square
from emonet.prediction_outputs import PANEL_WIDTH
from emonet.training import CHECKPOINT_FORMAT
from emonet.testing import (deterministic_state_dict, landmark_template, write_afew_va_tree, write_face_video)

FACE_FRAMES, EMPTY_FRAMES, FPS = 6, 3, 10.0


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("footage")
    write_face_video(folder / "walk.mp4", FACE_FRAMES, EMPTY_FRAMES, fps=FPS)
    stills = folder / "stills"
    stills.mkdir()
    for i, image in enumerate((data.astronaut(), data.coffee(), data.astronaut()[:, ::-1])):
        cv2.imwrite(str(stills / f"{2 - i:02d}_still.jpg"), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    return folder


def _predict(*argv):
    return predict.main(predict.get_args_parser().parse_args([*map(str, argv), "--no_progress", "--device", "cpu"]))


@pytest.fixture(scope="module")
def zero_shot(footage, released_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero_shot") / "predictions"
    status = _predict("--inputs", footage / "walk.mp4", footage / "stills", footage / "broken.mp4",
                      "--pretrained_path", released_checkpoint, "--output_dir", out, "--render")
    return out, status


def test_the_detector_finds_the_astronaut_and_no_face_in_the_coffee():
    detector = FaceDetector(torch.device("cpu"))
    faces = detector(data.astronaut())
    assert len(faces) == 1 and faces[0].score > 0.99
    x1, y1, x2, y2 = faces[0].box
    assert 160 < x1 < 200 and 45 < y1 < 80 and 250 < x2 < 290 and 150 < y2 < 195  # her face, not the flag or the helmet
    assert detector(data.coffee()) == []


def test_one_face_is_followed_even_when_it_is_not_the_first_detection():
    big, small = Face(np.array([0.0, 0, 100, 100]), 0.99), Face(np.array([300.0, 0, 340, 40]), 0.99)
    follower = LargestFaceFollower(fps=10)

    def follow(frame, faces):
        return follower.update(frame, faces, describe=None, quality=None, shot=0)

    assert follow(0, [small, big]) == [None, THE_FACE]
    moved = Face(np.array([30.0, 10, 130, 110]), 0.99)
    assert follow(1, [small, moved]) == [None, THE_FACE]  # the nearest to where it was, not the other face
    assert follow(2, [small]) == [None]  # the followed face is gone: the other is not taken at once
    for frame in range(3, 11):
        assert follow(frame, []) == []
    assert follow(11, [small]) == [THE_FACE]  # a second after it was last seen: the largest face present


def test_a_face_reaching_past_the_edge_is_clipped_and_said_to_be_cut_off():
    frame = np.zeros((512, 512, 3), np.uint8)
    frame[:, :400] = data.astronaut()[:, 112:]  # her face now starts about 70 pixels from the left edge
    frame = np.ascontiguousarray(np.roll(frame, -140, axis=1))
    faces = FaceDetector(torch.device("cpu"))(frame)
    # The roll leaves part of her face on each side; the detector's box reaches past one edge and is clipped there.
    assert len(faces) == 1 and faces[0].cut_off and (faces[0].box[0] == 0 or faces[0].box[2] == frame.shape[1])
    assert (faces[0].box >= 0).all() and faces[0].box[[0, 2]].max() <= frame.shape[1]


def test_a_video_is_predicted_frame_by_frame(zero_shot, footage):
    out, status = zero_shot
    rows = pd.read_csv(out / "predictions.csv")
    video = rows[rows["source"] == str(footage / "walk.mp4")]
    assert list(video["frame"]) == list(range(FACE_FRAMES + EMPTY_FRAMES))
    assert np.allclose(video["time_s"], np.arange(FACE_FRAMES + EMPTY_FRAMES) / FPS)
    assert list(video["status"]) == ["face"] * FACE_FRAMES + ["no face"] * EMPTY_FRAMES
    assert video["person"].iloc[:FACE_FRAMES].eq(1).all() and video["person"].iloc[FACE_FRAMES:].isna().all()
    with_face, without = video[video["status"] == "face"], video[video["status"] == "no face"]
    assert without[["score", "x1", "valence", "arousal", "p_happy"]].isna().all().all()  # empty where no face
    assert with_face[["valence", "arousal", "p_neutral"]].notna().all().all()
    probabilities = with_face[[c for c in rows.columns if c.startswith("p_")]]
    assert probabilities.shape[1] == 8 and np.allclose(probabilities.sum(axis=1), 1.0)
    # The box is on the face, which moves from left to right (write_face_video: 110 pixels, centred vertically).
    centres = (with_face["x1"] + with_face["x2"]) / 2
    assert centres.is_monotonic_increasing and centres.iloc[0] < 110 and centres.iloc[-1] > 210
    assert ((with_face["y1"] + with_face["y2"]) / 2).between(90, 150).all()


def test_the_summary_names_model_detector_and_every_input(zero_shot, footage, released_checkpoint):
    out, status = zero_shot
    assert status == 1  # the broken video
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["model"] == "zero_shot" and summary["color_space"] == "rgb" and summary["crop"] == "landmarks"
    assert summary["pretrained_sha256"] == sha256_file(released_checkpoint)
    assert summary["detector"] == {"name": "MTCNN (facenet-pytorch)", "version": "2.6.0", "min_score": MIN_SCORE}
    entries = {e["input"]: e for e in summary["inputs"]}
    walk = entries[str(footage / "walk.mp4")]
    assert walk["frames"] == FACE_FRAMES + EMPTY_FRAMES and walk["faces"] == FACE_FRAMES and walk["fps"] == FPS
    assert [p["person"] for p in walk["people"]] == [1] and walk["people"][0]["frames"] == FACE_FRAMES
    broken = entries[str(footage / "broken.mp4")]
    assert "broken.mp4: cannot open the video" in broken["error"]
    stills = entries[str(footage / "stills")]
    assert stills["kind"] == "folder" and stills["frames"] == 3 and stills["faces"] == 2 and stills["fps"] is None


def test_a_folder_of_jpg_is_one_sequence_sorted_by_name(zero_shot, footage):
    out, _ = zero_shot
    rows = pd.read_csv(out / "predictions.csv")
    stills = rows[rows["source"] == str(footage / "stills")]
    # 00_still.jpg is the mirrored astronaut, 01 the coffee, 02 the astronaut: sorted by name, each row its file.
    assert list(stills["frame"]) == [0, 1, 2] and list(stills["status"]) == ["face", "no face", "face"]
    assert list(stills["file"]) == ["00_still.jpg", "01_still.jpg", "02_still.jpg"] and stills["time_s"].isna().all()
    assert stills.iloc[0]["x1"] > 512 - 300 and stills.iloc[2]["x2"] < 300  # the mirrored face is on the other side
    # The same person in both photos (mirrored): one id; every readable image is annotated, the coffee with "no face".
    assert list(stills["person"].dropna()) == [1, 1]
    name = next(e["name"] for e in json.loads((out / "predictions.json").read_text())["inputs"] if e["kind"] == "folder")
    assert sorted(p.name for p in (out / f"{name}_annotated").iterdir()) == ["00_still.jpg", "01_still.jpg", "02_still.jpg"]


def test_the_plot_and_the_rendered_video(zero_shot, footage):
    out, _ = zero_shot
    name = next(e["name"] for e in json.loads((out / "predictions.json").read_text())["inputs"] if e["kind"] == "video"
                and not e["error"])
    assert (out / f"{name}.png").stat().st_size > 10_000
    capture = cv2.VideoCapture(str(out / f"{name}.mp4"))
    frames = []
    while (ok := capture.read())[0]:
        frames.append(ok[1])
    # The picture and, beside it, the panel with the valence-arousal plane.
    assert len(frames) == FACE_FRAMES + EMPTY_FRAMES and frames[0].shape == (240, 320 + PANEL_WIDTH, 3)
    plain = cv2.VideoCapture(str(footage / "walk.mp4")).read()[1]
    assert np.abs(frames[0][:, :320].astype(int) - plain.astype(int)).mean() > 1  # the face boxed and labelled
    capture = cv2.VideoCapture(str(out / f"{name}.webm"))  # the browser's copy, for report.html
    assert sum(1 for _ in iter(lambda: capture.read()[0] or None, None)) == FACE_FRAMES + EMPTY_FRAMES
    stills = next(e for e in json.loads((out / "predictions.json").read_text())["inputs"] if e["kind"] == "folder")
    assert "mp4" not in stills["outputs"] and "png" in stills["outputs"] and "folder" in stills["outputs"]


def test_a_rerun_skips_finished_inputs_and_another_model_is_refused(zero_shot, footage, released_checkpoint, caplog):
    out, _ = zero_shot
    before = {p: p.stat().st_mtime_ns for p in (out / "inputs").glob("*")}
    caplog.set_level(logging.INFO)
    assert _predict("--inputs", footage / "walk.mp4", footage / "stills", "--pretrained_path", released_checkpoint,
                    "--output_dir", out, "--render") == 0
    assert caplog.text.count("skipped (finished") == 2
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    with pytest.raises(EmoNetError, match=r"holds predictions of another model or other options \(.*crop 'landmarks' -> 'box'"):
        _predict("--inputs", footage / "walk.mp4", "--pretrained_path", released_checkpoint, "--output_dir", out,
                 "--crop", "box")


@pytest.fixture(scope="module")
def head(released_checkpoint, tmp_path_factory):
    """A temporal head trained on features recorded as HSV, whole-frame crop, made with the released checkpoint."""
    return trained_temporal_head(tmp_path_factory.mktemp("head"), released_checkpoint, "resize")


def test_a_trained_head_runs_in_its_colour_space_crop_and_sequence(head, footage, released_checkpoint, tmp_path):
    out = tmp_path / "hsv"
    assert _predict("--inputs", footage / "walk.mp4", "--pretrained_path", released_checkpoint, "--model_path", head,
                    "--output_dir", out) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert (summary["model"], summary["color_space"], summary["crop"]) == ("feature_head", "hsv", "resize")
    assert summary["head"]["kind"] == "temporal"
    hsv = pd.read_csv(out / "predictions.csv")
    assert list(hsv["status"]) == ["face"] * FACE_FRAMES + ["no face"] * EMPTY_FRAMES and "p_happy" not in hsv
    # The same weights recorded as RGB features predict otherwise: the colour space of the record is the one used.
    ckpt = torch.load(head, weights_only=True)
    ckpt["settings"]["color_space"] = "rgb"
    torch.save(ckpt, tmp_path / "rgb.pth")
    _predict("--inputs", footage / "walk.mp4", "--pretrained_path", released_checkpoint, "--model_path",
             tmp_path / "rgb.pth", "--output_dir", tmp_path / "rgb")
    rgb = pd.read_csv(tmp_path / "rgb" / "predictions.csv")
    assert not np.allclose(rgb["valence"].dropna(), hsv["valence"].dropna())


def test_a_head_made_with_another_emonet_checkpoint_is_refused(head, footage, tmp_path):
    other = tmp_path / "emonet_8.pth"
    weights = deterministic_state_dict(8, prefix="module.")
    weights["module.emo_fc_2.3.bias"] = weights["module.emo_fc_2.3.bias"] + 1
    torch.save(weights, other)
    with pytest.raises(EmoNetError, match=r"was made with the EmoNet checkpoint sha256 .*pass the checkpoint it was made with"):
        _predict("--inputs", footage / "walk.mp4", "--pretrained_path", other, "--model_path", head,
                 "--output_dir", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_an_afew_va_tree_stored_as_jpg_is_extracted(released_checkpoint, tmp_path):
    root = write_afew_va_tree(tmp_path / "AFEW-VA", clip_labels(1), frames_per_clip=2, suffix=".jpg")
    assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(
        ["--dataset_root", str(root), "--pretrained_path", str(released_checkpoint), "--output_dir", str(tmp_path / "f"),
         "--manifest_file", str(tmp_path / "m.json"), "--no_progress", "--device", "cpu"])) == 0
    assert len(manifest_as_list(tmp_path / "m.json")["samples"]) == 2


def test_an_empty_folder_is_listed_and_a_missing_path_refused_at_once(released_checkpoint, footage, tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmoNetError, match=r"--inputs: .*nowhere\.mp4: not found"):  # a typo: said before any work
        _predict("--inputs", tmp_path / "empty", tmp_path / "nowhere.mp4", "--pretrained_path", released_checkpoint,
                 "--output_dir", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    status = _predict("--inputs", tmp_path / "empty", footage / "stills" / "01_still.jpg",
                      "--pretrained_path", released_checkpoint, "--output_dir", tmp_path / "out", "--crop", "box")
    assert status == 1
    errors = {e["input"]: e["error"] for e in json.loads((tmp_path / "out" / "predictions.json").read_text())["inputs"]}
    assert "the folder holds no image" in errors[str(tmp_path / "empty")]
    assert errors[str(footage / "stills" / "01_still.jpg")] is None  # the coffee: predicted, no face found
    assert sum(r.levelname == "ERROR" for r in caplog.records) == 1


def test_landmarks_that_do_not_fit_the_face_fall_back_to_the_box():
    box = square_from_box(100, 100, 200, 200)
    fitting = landmark_template() * 100 + 100  # a face filling the box
    assert landmark_square(fitting, box) == pytest.approx(square_from_box(*fitting.min(0), *fitting.max(0)))
    assert landmark_square(landmark_template() * 10 + 100, box) is None  # a tenth of the face: not it
    assert landmark_square(fitting + 150, box) is None  # another place


def test_a_fine_tuned_network_runs_in_its_colour_space(footage, released_checkpoint, tmp_path):
    # A checkpoint as train_emonet_hsv.py writes it (a Lab network, its last layer moved by "training").
    weights = {k.removeprefix("module."): v for k, v in deterministic_state_dict(8).items()}
    weights["emo_fc_2.3.bias"] = weights["emo_fc_2.3.bias"] + 0.5
    torch.save({"format": CHECKPOINT_FORMAT, "model_type": "emonet", "model": weights, "args": {"amp": False},
                "settings": {"color_space": "lab", "crop": "landmarks", "pretrained_sha256": sha256_file(released_checkpoint)}},
               tmp_path / "best_model.pth")
    assert _predict("--inputs", footage / "stills" / "00_still.jpg", "--pretrained_path", released_checkpoint,
                    "--model_path", tmp_path / "best_model.pth", "--output_dir", tmp_path / "out") == 0
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert (summary["model"], summary["color_space"], summary["precision"]) == ("emonet", "lab", "fp32")
    rows = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(rows["status"]) == ["face"] and np.isfinite(rows["valence"]).all() and "p_happy" not in rows
    with pytest.raises(EmoNetError, match=r"--amp: the model was made without it \(its record says precision fp32\)"):
        _predict("--inputs", footage / "stills", "--pretrained_path", released_checkpoint, "--model_path",
                 tmp_path / "best_model.pth", "--output_dir", tmp_path / "amp", "--amp")
