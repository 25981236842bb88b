"""Stage 2: feature extraction on the fixture tree, its failure records, refusal to mix, kill-and-resume, and finding
the dataset among what sits beside it."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import extract_features_all
import extract_features_hsv_crop
from conftest import ROOT, clip_labels, manifest_as_list
from emonet.afew_va import read_afew_va
from emonet.checkpoint import load_emonet
from emonet.comparison import check_manifests
from emonet.constants import PRETRAINED_SOURCE
from emonet.data import FrameDataset
from emonet.errors import DatasetError, EmoNetError
from emonet.extraction import feature_file_ok
from emonet.feature_store import FRAME_KEYS, clip_frames, frame_arrays
from emonet.manifest import read_manifest
from emonet.testing import write_afew_va_tree, write_synthetic_dataset

CLIPS = 2  # --limit for the runs below: 8 frames each, a few seconds on 2 cores


def _run(script, argv):
    return script.main(script.get_args_parser().parse_args([*argv, "--no_progress", "--num_workers", "1"]))


@pytest.fixture(scope="module")
def hsv_run(afew_tree, released_checkpoint, tmp_path_factory):
    """One uninterrupted HSV extraction (batch size 1) of the first CLIPS clips, in its own folder."""
    cwd = tmp_path_factory.mktemp("hsv_run")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = _run(extract_features_hsv_crop, ["--dataset_root", str(afew_tree), "--pretrained_path",
                                                str(released_checkpoint), "--limit", str(CLIPS), "--batch_size", "1"])
    finally:
        os.chdir(old)
    assert code == 0
    return cwd


def test_hsv_run_writes_manifest_and_files(hsv_run, afew_tree):
    manifest = read_manifest(hsv_run / "features_hsv_manifest.json")
    frames, _ = read_afew_va(afew_tree, limit=CLIPS)
    assert manifest.settings["color_space"] == "hsv" and manifest.settings["crop"] == "landmarks"
    assert manifest.settings["image_size"] == 256 and len(manifest.settings["pretrained_sha256"]) == 64
    assert [(s["clip"], s["frame"]) for s in manifest.samples] == [(f.clip, f.frame) for f in frames]
    sample = manifest.samples[0]
    # One file a clip; the per-frame files written while extracting are gone.
    assert sample["path"] == f"features_hsv/{sample['clip']}.npz"
    assert not list((hsv_run / "features_hsv").glob("*/*.npz")) and len(list((hsv_run / "features_hsv").glob("*.npz"))) == CLIPS
    assert sample["actor"] == frames[0].actor and sample["valence"] == frames[0].valence
    with np.load(manifest.resolve(sample)) as data:
        assert set(data.files) == {"frames", *FRAME_KEYS} and list(data["frames"]) == [f.frame for f in frames[:4]]
    data = frame_arrays(manifest.resolve(sample), sample["frame"])
    assert data["features"].shape == (256,) and data["features"].dtype == np.float32
    assert data["emonet_expression"].shape == (8,)
    assert float(data["valence"]) == frames[0].valence and float(data["arousal"]) == frames[0].arousal
    errors = json.loads((hsv_run / "features_hsv" / "extraction_errors.json").read_text())
    assert errors == {"count": 0, "errors": []}


def test_features_equal_model_on_the_frames_crop(hsv_run, afew_tree, released_checkpoint):
    frames, _ = read_afew_va(afew_tree, limit=CLIPS)
    model, _ = load_emonet(released_checkpoint)
    frame = frames[-1]
    image = FrameDataset([frame], "hsv", "landmarks")[0]["image"]
    with torch.inference_mode():
        out = model(image[None])
    data = frame_arrays(hsv_run / "features_hsv" / f"{frame.clip}.npz", frame.frame)
    assert np.allclose(data["features"], out["features"][0].numpy(), rtol=1e-5, atol=1e-3)
    assert np.allclose(data["emonet_valence"], out["valence"].numpy(), rtol=1e-5, atol=1e-4)
    assert np.allclose(data["emonet_expression"], out["expression"][0].numpy(), rtol=1e-5, atol=1e-3)


def test_rgb_script_defaults_and_different_features(hsv_run, afew_tree, released_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFEW_VA_ROOT", str(afew_tree))  # the default of --dataset_root
    assert _run(extract_features_all, ["--pretrained_path", str(released_checkpoint), "--limit", "1"]) == 0
    manifest = read_manifest(tmp_path / "features_manifest.json")
    assert manifest.settings["color_space"] == "rgb" and len(manifest.samples) == 4
    sample = manifest.samples[0]
    assert sample["path"].startswith("features/")
    rgb = frame_arrays(manifest.resolve(sample), sample["frame"])["features"]
    hsv = frame_arrays(hsv_run / sample["path"].replace("features/", "features_hsv/"), sample["frame"])["features"]
    assert not np.allclose(rgb, hsv)


def test_missing_dataset_root_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("AFEW_VA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="no dataset root: pass --dataset_root or set AFEW_VA_ROOT"):
        _run(extract_features_hsv_crop, [])


def test_changed_settings_are_refused(hsv_run, afew_tree, released_checkpoint, monkeypatch, tmp_path):
    monkeypatch.chdir(hsv_run)
    base = ["--dataset_root", str(afew_tree), "--limit", "1"]
    with pytest.raises(DatasetError, match=r"color_space: 'hsv' -> 'rgb'.*refusing to mix"):
        _run(extract_features_hsv_crop, [*base, "--pretrained_path", str(released_checkpoint), "--color_space", "rgb",
                                         "--output_dir", "features_hsv"])
    with pytest.raises(DatasetError, match=r"crop: 'landmarks' -> 'resize'"):
        _run(extract_features_hsv_crop, [*base, "--pretrained_path", str(released_checkpoint), "--crop", "resize"])
    other = tmp_path / "emonet_8.pth"
    state = torch.load(released_checkpoint, weights_only=True)
    state["module.emo_fc_2.3.bias"] = state["module.emo_fc_2.3.bias"] + 1
    torch.save(state, other)
    with pytest.raises(DatasetError, match="pretrained_sha256"):
        _run(extract_features_hsv_crop, [*base, "--pretrained_path", str(other)])


def test_failures_are_recorded_and_good_frames_extracted(released_checkpoint, tmp_path, monkeypatch, capsys):
    root, _ = write_synthetic_dataset(tmp_path, clips=4, frames_per_clip=2, seed=5)
    (root / "001" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt PNG
    (root / "002" / "00000.png").unlink()  # missing image
    meta = json.loads((root / "003" / "003.json").read_text())
    meta["frames"]["00001"]["arousal"] = 42  # bad label
    (root / "003" / "003.json").write_text(json.dumps(meta))
    (root / "004" / "004.json").unlink()  # missing JSON
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset_root", str(root), "--pretrained_path", str(released_checkpoint), "--batch_size", "2"]
    assert _run(extract_features_hsv_crop, argv) == 0
    # The counts add up: 4 usable frames to extract, 3 extracted and 1 undecodable; 3 other problems.
    assert "extracted 3 of 4 (1 could not be decoded), skipped 0 (already done), 3 problems in the dataset" \
        in capsys.readouterr().out
    errors = json.loads((tmp_path / "features_hsv" / "extraction_errors.json").read_text())["errors"]
    kinds = sorted((e["kind"], Path(e["path"]).parent.name if e["kind"] != "missing_json" else Path(e["path"]).name)
                   for e in errors)
    assert kinds == [("bad_label", "003"), ("missing_image", "002"), ("missing_json", "004"), ("unreadable_image", "001")]
    manifest = read_manifest(tmp_path / "features_hsv_manifest.json")
    assert sorted((s["clip"], s["frame"]) for s in manifest.samples) == [("001", "00000"), ("002", "00001"), ("003", "00000")]
    assert "00001" not in clip_frames(tmp_path / "features_hsv" / "001.npz")
    assert not (tmp_path / "features_hsv" / "001").exists()
    # A rerun skips the three good frames, records the failures again, and --strict turns them into exit 1.
    assert _run(extract_features_hsv_crop, [*argv, "--strict"]) == 1


def test_kill_and_resume_gives_the_uninterrupted_result(hsv_run, afew_tree, released_checkpoint, tmp_path):
    cmd = [sys.executable, str(ROOT / "extract_features_hsv_crop.py"), "--dataset_root", str(afew_tree),
           "--pretrained_path", str(released_checkpoint), "--limit", str(CLIPS), "--batch_size", "1",
           "--num_workers", "1", "--no_progress"]
    # The same number of intra-op threads as the reference run in this process: float results depend on it.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    out = tmp_path / "features_hsv"
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/*.npz"))) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = list(out.glob("*/*.npz"))
    # A kill that lands while the finished clips are being packed leaves some clips in their clip files.
    done = len(written) + sum(len(clip_frames(p)) for p in out.glob("*.npz"))
    total = len(read_manifest(hsv_run / "features_hsv_manifest.json").samples)
    assert 3 <= done < total, "the kill must land in the middle of the run"
    assert all(feature_file_ok(p) for p in written)  # nothing half-written under a final name
    assert not (tmp_path / "features_hsv_manifest.json").exists()

    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"extracted {total - done} of {total - done} (0 could not be decoded), skipped {done}" in result.stdout
    assert not list(out.glob("*/.*.tmp*"))
    resumed = read_manifest(tmp_path / "features_hsv_manifest.json")
    reference = read_manifest(hsv_run / "features_hsv_manifest.json")
    assert resumed.samples == reference.samples
    for sample in reference.samples:
        a, b = (frame_arrays(m.resolve(sample), sample["frame"]) for m in (resumed, reference))
        for key in FRAME_KEYS:
            assert np.array_equal(a[key], b[key]), (sample["path"], key)


def test_script_turns_a_missing_checkpoint_into_one_line(afew_tree, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "extract_features_hsv_crop.py"), "--dataset_root", str(afew_tree)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ERROR pretrained/emonet_8.pth: file not found. Download emonet_8.pth from {PRETRAINED_SOURCE} "
        "and put it there, or pass its path."]
    assert not (tmp_path / "features_hsv").exists()  # nothing written before the checkpoint is known good


def test_compiled_features_match_eager_and_are_pinned_apart(hsv_run, afew_tree, released_checkpoint, monkeypatch, tmp_path):
    """--compile: the eager run's features to float rounding, recorded as their own precision, never mixed."""
    monkeypatch.chdir(tmp_path)
    base = ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--limit", "1"]
    assert _run(extract_features_hsv_crop, [*base, "--compile"]) == 0
    compiled = read_manifest(tmp_path / "features_hsv_manifest.json")
    assert compiled.settings["precision"] == "fp32-compiled"
    for sample in compiled.samples:
        new = frame_arrays(compiled.resolve(sample), sample["frame"])
        eager = frame_arrays(hsv_run / sample["path"], sample["frame"])
        for key in ("features", "emonet_valence", "emonet_arousal", "emonet_expression"):
            scale = np.abs(eager[key]).max()
            assert np.abs(new[key] - eager[key]).max() <= 1e-5 * scale, key
    with pytest.raises(DatasetError, match=r"precision: 'fp32-compiled' -> 'fp32'.*refusing to mix"):
        _run(extract_features_hsv_crop, base)
    eager = read_manifest(hsv_run / "features_hsv_manifest.json")
    as_rgb = dataclasses.replace(compiled, settings={**compiled.settings, "color_space": "rgb"})
    with pytest.raises(EmoNetError, match=r"differ in precision: hsv 'fp32', rgb 'fp32-compiled'"):
        check_manifests({"hsv": eager, "rgb": as_rgb}, common_frames=True)
    monkeypatch.chdir(hsv_run)
    with pytest.raises(DatasetError, match=r"precision: 'fp32' -> 'fp32-compiled'"):
        _run(extract_features_hsv_crop, [*base, "--compile"])


def test_a_machine_that_cannot_compile_fails_in_one_line_and_leaves_the_folder_usable(
        afew_tree, released_checkpoint, monkeypatch, tmp_path):
    def no_compiler(model, **options):
        def fail(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(traceback follows)")
        return fail

    monkeypatch.chdir(tmp_path)
    base = ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--limit", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(torch, "compile", no_compiler)
        with pytest.raises(EmoNetError, match=r"^--compile: torch.compile cannot build EmoNet on this machine "
                                              r"\(InvalidCxxCompiler: No working C\+\+ compiler found\); run without"):
            _run(extract_features_hsv_crop, [*base, "--compile"])
    assert not list((tmp_path / "features_hsv").glob("*/*.npz")) and not list((tmp_path / "features_hsv").glob("*.npz"))
    assert _run(extract_features_hsv_crop, base) == 0  # the folder was pinned for --compile but holds no features
    assert read_manifest(tmp_path / "features_hsv_manifest.json").settings["precision"] == "fp32"


def test_extraction_names_follow_the_colour_space(afew_tree, released_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--limit", "1",
            "--color_space", "lab", "--no_progress", "--num_workers", "0"]
    assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(argv)) == 0
    manifest = manifest_as_list(tmp_path / "features_lab_manifest.json")
    assert manifest["settings"]["color_space"] == "lab" and manifest["samples"][0]["path"].startswith("features_lab/")
    assert not (tmp_path / "features").exists() and not (tmp_path / "features_manifest.json").exists()


# Finding the data: a plot folder is not a clip; AFEW-VA/ is found whatever sits beside it.
def test_a_folder_of_plots_is_not_an_afew_va_folder(released_checkpoint, tmp_path, monkeypatch):
    for name in ("color_space_comparison_demo", "hsv_features_training", "evaluation_results"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "comparison.png").write_bytes(b"\x89PNG not an AFEW-VA frame")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"this is not an AFEW-VA folder"):
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            ["--dataset_root", ".", "--pretrained_path", str(released_checkpoint), "--no_progress"]))


def test_afew_va_is_found_beside_outputs_and_macosx(afew_tree, released_checkpoint, tmp_path):
    data = tmp_path / "data"
    write_afew_va_tree(data / "AFEW-VA", clip_labels(2), frames_per_clip=2)
    (data / "__MACOSX" / "AFEW-VA" / "001").mkdir(parents=True)
    (data / "__MACOSX" / "AFEW-VA" / "001" / "._00000.png").write_bytes(b"resource fork")
    argv = ["--dataset_root", str(data), "--pretrained_path", str(released_checkpoint), "--output_dir",
            str(data / "features_rgb"), "--manifest_file", str(tmp_path / "m.json"), "--no_progress", "--device", "cpu"]
    for _ in range(2):  # the second run finds AFEW-VA/ although features_rgb/ now sits beside it
        assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(argv)) == 0
    assert len(manifest_as_list(tmp_path / "m.json")["samples"]) == 4


# A missing key is named as missing; only the landmark crop needs landmarks.
def test_missing_landmarks_are_needed_only_by_the_landmark_crop(released_checkpoint, tmp_path):
    root = write_afew_va_tree(tmp_path / "AFEW-VA", clip_labels(2), frames_per_clip=2)
    for clip in ("001", "002"):
        path = root / clip / f"{clip}.json"
        meta = json.loads(path.read_text())
        for entry in meta["frames"].values():
            del entry["landmarks"]
        meta["frames"]["00001"].pop("arousal") if clip == "002" else None
        path.write_text(json.dumps(meta))
    base = ["--dataset_root", str(root), "--pretrained_path", str(released_checkpoint), "--no_progress", "--device", "cpu"]
    resize = [*base, "--crop", "resize", "--output_dir", str(tmp_path / "r"), "--manifest_file", str(tmp_path / "r.json")]
    assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(resize)) == 0
    assert len(manifest_as_list(tmp_path / "r.json")["samples"]) == 3
    errors = json.loads((tmp_path / "r" / "extraction_errors.json").read_text())["errors"]
    assert [e["reason"] for e in errors] == ["no arousal"]
    with pytest.raises(DatasetError) as info:
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            [*base, "--output_dir", str(tmp_path / "l"), "--manifest_file", str(tmp_path / "l.json")]))
    message = str(info.value)
    assert "no usable frame (4 problems: " in message and "no landmarks" in message and "--dataset_root" not in message
    assert json.loads((tmp_path / "l" / "extraction_errors.json").read_text())["count"] == 4  # and the list is written


# Smaller traps.
def test_an_undecodable_frame_is_named_where_it_fails(released_checkpoint, tmp_path, caplog):
    root = write_afew_va_tree(tmp_path / "AFEW-VA", clip_labels(1), frames_per_clip=2)
    (root / "001" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    extract_features_all.main(extract_features_all.get_args_parser().parse_args(
        ["--dataset_root", str(root), "--pretrained_path", str(released_checkpoint), "--output_dir", str(tmp_path / "f"),
         "--manifest_file", str(tmp_path / "m.json"), "--no_progress", "--device", "cpu"]))
    assert any(r.levelname == "WARNING" and str(root / "001" / "00001.png") in r.getMessage() for r in caplog.records)
