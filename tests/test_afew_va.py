"""Reading AFEW-VA: good frames from the fixture, and each kind of problem reported without losing the rest."""
import json
import shutil

import numpy as np
import pytest

from conftest import FIXTURE_CLIPS, FIXTURE_FRAMES, fixture_labels
from emonet.afew_va import read_afew_va, resolve_dataset_root, summarize
from emonet.errors import DatasetError
from emonet.testing import write_afew_va_tree


def test_reads_fixture_tree(afew_tree):
    frames, problems = read_afew_va(afew_tree)
    assert problems == []
    assert len(frames) == FIXTURE_CLIPS * FIXTURE_FRAMES
    first = frames[0]
    meta = json.loads((afew_tree / first.clip / f"{first.clip}.json").read_text())
    entry = meta["frames"][first.frame]
    assert first.actor == meta["actor"] and first.image_path == afew_tree / first.clip / f"{first.frame}.png"
    assert (first.valence, first.arousal) == (float(entry["valence"]), float(entry["arousal"]))
    assert first.landmarks.shape == (68, 2) and np.allclose(first.landmarks, entry["landmarks"])
    assert summarize(frames, problems)["clips"] == FIXTURE_CLIPS


def test_limit_and_nested_root(afew_tree):
    frames, _ = read_afew_va(afew_tree.parent, limit=2)  # the download folder that holds AFEW-VA/
    assert resolve_dataset_root(afew_tree.parent) == afew_tree
    assert sorted({f.clip for f in frames}) == sorted(p.name for p in afew_tree.iterdir())[:2]
    with pytest.raises(DatasetError, match="dataset root not found"):
        read_afew_va(afew_tree / "nowhere")


@pytest.fixture
def broken_tree(afew_tree, tmp_path):
    """A copy of the fixture with one problem of each kind, in different clips."""
    root = tmp_path / "AFEW-VA"
    shutil.copytree(afew_tree, root)
    clips = sorted(p.name for p in root.iterdir())

    def edit(clip, change):
        path = root / clip / f"{clip}.json"
        meta = json.loads(path.read_text())
        change(meta["frames"])
        path.write_text(json.dumps(meta))

    (root / clips[0] / f"{clips[0]}.json").unlink()  # missing JSON
    (root / clips[1] / f"{clips[1]}.json").write_text("{not json")  # unparsable
    edit(clips[2], lambda f: (f["00000"].update(valence=float("nan")), f["00001"].update(arousal=11),
                              f["00002"].pop("valence")))
    edit(clips[3], lambda f: f["00000"].update(landmarks=[[1, 2]] * 67))
    (root / clips[4] / "00001.png").unlink()  # labelled, image missing
    shutil.copy(root / clips[4] / "00000.png", root / clips[4] / "00099.png")  # image, no label
    (root / clips[5] / f"{clips[5]}.json").write_text(json.dumps({"actor": "x"}))  # lacks "frames"
    return root, clips


def test_every_problem_is_reported_and_good_frames_kept(broken_tree):
    root, clips = broken_tree
    frames, problems = read_afew_va(root)
    reasons = {(p.kind, p.path.split("AFEW-VA/")[1]): p.reason for p in problems}
    assert ("missing_json", clips[0]) in reasons
    assert ("unreadable_json", f"{clips[1]}/{clips[1]}.json") in reasons
    assert "outside [-10, 10]" in reasons[("bad_label", f"{clips[2]}/{clips[2]}.json#00000")]
    assert "arousal = 11" in reasons[("bad_label", f"{clips[2]}/{clips[2]}.json#00001")]
    assert "no valence" == reasons[("bad_label", f"{clips[2]}/{clips[2]}.json#00002")]
    assert "(67, 2)" in reasons[("bad_landmarks", f"{clips[3]}/{clips[3]}.json#00000")]
    assert ("missing_image", f"{clips[4]}/00001.png") in reasons
    assert ("unlabelled_image", f"{clips[4]}/00099.png") in reasons
    assert "missing key 'frames'" in reasons[("unreadable_json", f"{clips[5]}/{clips[5]}.json")]
    assert len(problems) == 9
    # Everything else survives: clip 2 keeps 1 frame, clip 3 keeps 3, clip 4 keeps 3.
    kept = {(f.clip, f.frame) for f in frames}
    assert len(kept) == 1 + 3 + 3
    assert (clips[2], "00003") in kept and (clips[4], "00000") in kept and (clips[4], "00001") not in kept
    summary = summarize(frames, problems)
    assert summary["missing_image"] == 1 and summary["unlabelled_image"] == 1 and summary["unreadable_json"] == 2


def test_float_labels_are_accepted(afew_tree, tmp_path):
    root = tmp_path / "AFEW-VA"
    shutil.copytree(afew_tree, root)
    clip = sorted(p.name for p in root.iterdir())[0]
    path = root / clip / f"{clip}.json"
    meta = json.loads(path.read_text())
    meta["frames"]["00000"]["valence"] = 5.0  # some copies store labels as floats
    path.write_text(json.dumps(meta))
    frames, problems = read_afew_va(root, limit=1)
    assert problems == [] and frames[0].valence == 5.0


def test_frames_stored_as_jpg_are_read_and_a_clip_never_mixes_formats(tmp_path, caplog):
    caplog.set_level("INFO")
    root = write_afew_va_tree(tmp_path / "AFEW-VA", fixture_labels(), frames_per_clip=2, suffix=".jpg")
    frames, problems = read_afew_va(root)
    assert problems == [] and len(frames) == 2 * FIXTURE_CLIPS
    assert {f.image_path.suffix for f in frames} == {".jpg"} and summarize(frames, problems)["image_formats"] == {".jpg": 12}
    assert any("12 usable frames (12 .jpg)" in r.getMessage() for r in caplog.records)  # says which it found
    clip = frames[0].clip
    shutil.copy(root / clip / "00000.jpg", root / clip / "00001.png")  # one clip now holds both formats
    (root / clip / "00001.jpg").unlink()
    frames, problems = read_afew_va(root)
    assert [(p.kind, p.path) for p in problems] == [("mixed_image_formats", str(root / clip))]
    assert "(1 .jpg, 1 .png)" in problems[0].reason and clip not in {f.clip for f in frames}
    assert len(frames) == 2 * (FIXTURE_CLIPS - 1)


def test_folders_that_are_not_clips_are_passed_over(afew_tree, tmp_path):
    root = tmp_path / "AFEW-VA"
    shutil.copytree(afew_tree, root)
    (root / "plots").mkdir()
    (root / "plots" / "comparison.png").write_bytes(b"\x89PNG")
    (root / "__MACOSX").mkdir()
    frames, problems = read_afew_va(root)
    assert problems == [] and len(frames) == FIXTURE_CLIPS * FIXTURE_FRAMES


def test_a_folder_without_clips_is_not_an_afew_va_folder(tmp_path, caplog):
    # A checkout after the README's first command: code, tests, and the demo's plots (a folder holding .png files).
    for folder in ("emonet", "tests", "color_space_comparison_demo"):
        (tmp_path / folder).mkdir()
    (tmp_path / "color_space_comparison_demo" / "comparison.png").write_bytes(b"\x89PNG")
    with pytest.raises(DatasetError, match=r"this is not an AFEW-VA folder.*001/001\.json.*AFEW_VA_ROOT"):
        read_afew_va(tmp_path)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
