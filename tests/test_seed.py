"""The seed implementation's own outputs: its feature files and manifest, written here exactly as the seed
wrote them (not with this project's writers), and its HSV features reproduced with `hsv_opencv`.

The seed's pipeline, as users describe it: read the frame as RGB, `cv2.resize` the whole frame to
256 x 256 (bilinear), `cv2.cvtColor(..., cv2.COLOR_RGB2HSV)` on uint8 (H in 0..179), float32 with H / 179,
S / 255, V / 255, EmoNet in float32, then `np.savez_compressed(path, feature=feat)` per frame and a manifest
`{"features_hsv/001/00000.npz": {"arousal": a, "valence": v}, ...}` dumped with indent 2, paths relative
to the folder it ran in.
"""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import compare_color_spaces
import evaluate_hsv_model
import extract_features_hsv_crop
import train_emonet_features
from conftest import clip_labels
from emonet.checkpoint import load_emonet
from emonet.colour import convert_colour
from emonet.errors import DatasetError, EmoNetError
from emonet.feature_store import frame_arrays
from emonet.manifest import read_manifest

N_CLIPS = 12
RNG = np.random.default_rng(0)
RANDOM = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)


def seed_hsv(rgb: np.ndarray) -> np.ndarray:
    """The seed's conversion, as it wrote it."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv = hsv.astype(np.float32)
    hsv[:, :, 0] = hsv[:, :, 0] / 179.0
    hsv[:, :, 1] = hsv[:, :, 1] / 255.0
    hsv[:, :, 2] = hsv[:, :, 2] / 255.0
    return hsv


def write_seed_features(folder, labels: dict) -> str:
    """Feature files and manifest as the seed wrote them, run from `folder`; returns the manifest's name.

    The features carry the labels linearly plus noise, so that a head learns something. Half the files
    hold shape (1, 256) (the model's batch of one), half (256,): users have both."""
    rng = np.random.default_rng(1)
    mixing = rng.standard_normal((2, 256)).astype(np.float32)
    manifest = {}
    for clip, lab in sorted(labels.items()):
        os.makedirs(folder / "features_hsv" / clip, exist_ok=True)
        for i, (v, a) in enumerate(zip(lab["valence"], lab["arousal"], strict=True)):
            feat = (np.array([v, a], np.float32) / 10) @ mixing + 0.3 * rng.standard_normal(256).astype(np.float32)
            path = os.path.join("features_hsv", clip, f"{i:05d}.npz")
            np.savez_compressed(folder / path, feature=feat[None] if i % 2 else feat)
            manifest[path] = {"arousal": float(a), "valence": float(v)}
    with open(folder / "features_hsv_manifest.json", "w") as f:
        json.dump(manifest, f, indent=2)
    return "features_hsv_manifest.json"


@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed_run")
    write_seed_features(folder, clip_labels(N_CLIPS))
    return folder


def test_the_seeds_files_train_and_evaluate(seed_folder, tmp_path, monkeypatch):
    assert np.load(next((seed_folder / "features_hsv").glob("*/00000.npz"))).files == ["feature"]
    monkeypatch.chdir(seed_folder)  # the seed's paths are relative to the folder it ran in
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", "features_hsv_manifest.json", "--epochs", "15", "--output_dir", str(tmp_path / "run"),
         "--no_progress", "--device", "cpu"]))
    ckpt = torch.load(tmp_path / "run" / "best_model.pth", weights_only=True)
    assert ckpt["settings"]["color_space"] == "hsv"  # named by the seed's manifest name
    with pytest.raises(DatasetError, match="actor needs every sample's actor"):  # the seed's manifest names no actor
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
            ["--manifest_file", "features_hsv_manifest.json", "--epochs", "1", "--split", "actor",
             "--output_dir", str(tmp_path / "by_actor"), "--no_progress", "--device", "cpu"]))

    def evaluate(subset):
        out = tmp_path / f"eval_{subset}"
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_path", str(tmp_path / "run" / "best_model.pth"), "--subset", subset, "--output_dir", str(out),
             "--no_progress", "--device", "cpu"]))
        return json.loads((out / "evaluation_results.json").read_text())

    held_out, everything = evaluate("val"), evaluate("all")
    manifest = read_manifest(seed_folder / "features_hsv_manifest.json")
    assert held_out["num_samples"] == sum(s["clip"] in set(ckpt["split"]["val"]) for s in manifest.samples) > 0
    assert held_out["leakage_check"]["leak_free"] and held_out["color_space"] == "hsv"
    # The files were read as written (features that carry the labels): the head fits them. On all frames, since
    # the two held-out clips' valence barely varies and its CCC says little.
    assert everything["num_samples"] == len(manifest.samples)
    assert everything["valence_metrics"]["CCC"] > 0.5 and everything["arousal_metrics"]["CCC"] > 0.5
    with pytest.raises(EmoNetError, match=r"lack EmoNet's own outputs.*--pretrained_path .*--dataset_root"):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_type", "pretrained", "--manifest_file", "features_hsv_manifest.json", "--subset", "all",
             "--output_dir", str(tmp_path / "zero"), "--no_progress", "--device", "cpu"]))


def test_the_seeds_manifest_enters_a_comparison_under_its_label(seed_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(seed_folder)
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(
        ["--manifests", "rgb=features_hsv_manifest.json", "hsv=features_hsv_manifest.json", "--folds", "2",
         "--epochs", "1", "--bootstrap", "100", "--output_dir", str(tmp_path / "cmp"), "--no_progress",
         "--device", "cpu"]))
    report = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert report["color_spaces"]["hsv"]["zero_shot"] is None  # the seed's files hold no EmoNet outputs
    protocol = (tmp_path / "cmp" / "comparison.md").read_text().split("## Protocol")[1]
    assert "crop not recorded in the manifests" in protocol and "EmoNet checkpoint not recorded in the manifests" in protocol
    assert "None" not in protocol
    # The same files under two labels, trained alike: the same figures.
    assert report["color_spaces"]["hsv"]["pooled"] == report["color_spaces"]["rgb"]["pooled"]


def test_hsv_opencv_is_the_seeds_conversion_and_differs_from_hsv_as_documented():
    ours = convert_colour(RANDOM, "hsv_opencv")
    assert ours.dtype == np.float32 and np.array_equal(ours, seed_hsv(RANDOM))  # bit for bit
    # OpenCV's documented 8-bit formula (H = degrees / 2, S and V scaled to 255), computed here in float.
    rgb = RANDOM.astype(np.float64) / 255
    v, lo = rgb.max(axis=2), rgb.min(axis=2)
    chroma = np.where(v > lo, v - lo, 1.0)
    r, g, b = np.moveaxis(rgb, 2, 0)
    hue = np.select([v == r, v == g], [60 * (g - b) / chroma, 120 + 60 * (b - r) / chroma], 240 + 60 * (r - g) / chroma)
    hue = np.where(v > lo, hue % 360, 0)
    formula = np.stack([np.round(hue / 2) % 180 / 179, np.round(255 * np.where(v > 0, (v - lo) / np.where(v > 0, v, 1), 0)) / 255,
                        v], axis=2)
    levels = np.abs(ours - formula) * np.array([179, 255, 255])
    # OpenCV computes in fixed point: about 1 % of values (seen: 1.2 %) land one level off the float formula.
    assert levels.max() <= 1 + 1e-4 and (levels < 1e-3).mean() > 0.98
    # hsv_opencv quantises hue to OpenCV's 180 levels and stretches it by 180/179; hsv keeps float hue / 360.
    ramp = np.stack([np.full(360, 255), np.linspace(0, 255, 360), np.zeros(360)], axis=1)[None].astype(np.uint8)
    assert len(np.unique(convert_colour(ramp, "hsv_opencv")[..., 0])) <= 31 < len(np.unique(convert_colour(ramp, "hsv")[..., 0]))
    green = np.array([[[0, 255, 0]]], np.uint8)
    assert convert_colour(green, "hsv_opencv")[0, 0, 0] == np.float32(60 / 179)
    assert convert_colour(green, "hsv")[0, 0, 0] == pytest.approx(120 / 360)


def test_resize_and_hsv_opencv_reproduce_the_seeds_features(afew_tree, released_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert extract_features_hsv_crop.main(extract_features_hsv_crop.get_args_parser().parse_args(
        ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--limit", "1",
         "--crop", "resize", "--color_space", "hsv_opencv", "--no_progress", "--device", "cpu"])) == 0
    manifest = read_manifest(tmp_path / "features_hsv_opencv_manifest.json")
    model, _ = load_emonet(released_checkpoint)
    model.eval()  # the seed's model: NCHW, float32, one frame at a time, under no_grad
    for sample in manifest.samples:
        rgb = np.asarray(Image.open(afew_tree / sample["clip"] / f"{sample['frame']}.png").convert("RGB"))
        resized = cv2.resize(rgb, (256, 256))
        with torch.no_grad():
            seed = model(torch.from_numpy(seed_hsv(resized)).permute(2, 0, 1)[None])["features"][0].numpy()
            float_hsv = model(torch.from_numpy(convert_colour(resized, "hsv")).permute(2, 0, 1)[None])["features"][0].numpy()
        ours = frame_arrays(manifest.resolve(sample), sample["frame"])["features"]
        scale = np.abs(seed).max()
        # To float rounding (channels_last against NCHW convolutions), and far closer than the float-hue hsv.
        assert np.abs(ours - seed).max() <= 1e-5 * scale
        assert np.abs(float_hsv - seed).max() > 1e-3 * scale
