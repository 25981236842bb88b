"""Temporal heads: smooth and temporal heads in training, evaluation and the comparison, on synthetic
features with the real (or synthetic) clip structure."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import train_emonet_features
from conftest import clip_labels, manifest_as_list, write_spaces
from emonet.errors import EmoNetError
from emonet.heads import (SIGMA_GRID, TEMPORAL_WINDOW, ClipSequences, TemporalHead, clip_batch, feature_statistics,
                          smooth_clips, temporal_predictions)
from emonet.metrics import ccc

N_CLIPS = 40
FOLDS = "3"
EPOCHS = "15"
HEADS = ("frame", "smooth", "temporal")


def _compare(folder, out, *extra, epochs=EPOCHS):
    argv = ["--manifests", f"rgb={folder / 'features_manifest.json'}", f"hsv={folder / 'features_hsv_manifest.json'}",
            "--heads", *HEADS, "--folds", FOLDS, "--epochs", epochs, "--clips_per_batch", "2", "--bootstrap", "500",
            "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    return json.loads((out / "comparison.json").read_text()) if (out / "comparison.json").exists() else None


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Features that carry the label under heavy per-frame noise (sd 4 against a signal of 1), labels smooth
    within clips (the real ones, or slowly drifting synthetic ones)."""
    folder = write_spaces(tmp_path_factory.mktemp("noisy"), clip_labels(N_CLIPS), noise=4.0)
    return folder, _compare(folder, folder / "comparison")


def test_smooth_and_temporal_heads_beat_the_frame_head_on_noisy_frames(noisy, capsys):
    _, report = noisy
    for space in ("rgb", "hsv"):
        for head in ("smooth", "temporal"):
            for dim in ("valence", "arousal"):
                diff = report["color_spaces"][space]["heads"][head]["vs_frame"][dim]
                assert diff["CCC_diff_ci"][0] > 0 and diff["p_value"] < 0.05, (space, head, dim, diff)
    # Today's fields stay the frame head's, which `heads` repeats; the frame head has no difference to itself.
    entry = report["color_spaces"]["hsv"]
    assert entry["pooled"] == entry["heads"]["frame"]["pooled"] and "vs_frame" not in entry["heads"]["frame"]
    assert report["protocol"]["heads"] == list(HEADS) and report["protocol"]["clips_per_batch"] == 2


def test_the_report_names_every_head_and_its_columns(noisy):
    folder, report = noisy
    out = folder / "comparison"
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert {"rgb_valence", "hsv_arousal", "rgb_smooth_valence", "hsv_temporal_arousal"} <= set(oof.columns)
    assert "repeat" not in oof.columns and not oof.isna().any().any()
    table = (out / "comparison.md").read_text()
    for head in HEADS:
        assert f"| hsv | {head} head |" in table
    assert "ΔCCC vs frame head" in table and "smooth head (the frame head, then a Gaussian filter" in table
    # Each (space, head) unit has its own folder; the frame head's stay where they always were.
    assert (out / "hsv" / "fold_0" / "unit.json").is_file() and (out / "hsv" / "temporal" / "fold_2" / "unit.json").is_file()
    # The out-of-fold columns are what the report scores.
    assert ccc(oof["valence_true"], oof["hsv_smooth_valence"]) == pytest.approx(
        report["color_spaces"]["hsv"]["heads"]["smooth"]["pooled"]["valence"]["CCC"], rel=1e-9)


def test_without_temporal_structure_no_smoothing_is_chosen_and_temporal_does_not_win(tmp_path):
    rng = np.random.default_rng(3)
    labels = {clip: {d: rng.integers(-10, 11, len(v["valence"])).tolist() for d in ("valence", "arousal")}
              for clip, v in clip_labels(30).items()}  # independent from frame to frame
    folder = write_spaces(tmp_path, labels, noise=0.1)  # and clean features
    report = _compare(folder, tmp_path / "comparison", epochs="12")
    for space in ("rgb", "hsv"):
        for k in range(int(FOLDS)):
            best = torch.load(tmp_path / "comparison" / space / "smooth" / f"fold_{k}" / "best_model.pth", weights_only=True)
            assert best["head"]["kind"] == "smooth" and best["history"][best["best_epoch"] - 1]["sigma"] == 0
        for dim in ("valence", "arousal"):
            assert report["color_spaces"][space]["heads"]["temporal"]["vs_frame"][dim]["CCC_diff_ci"][0] <= 0


def test_a_clip_predicts_the_same_alone_and_in_a_padded_batch():
    torch.manual_seed(0)
    head = TemporalHead().eval()
    rng = np.random.default_rng(0)
    lengths = (20, 70, 130)
    samples = [{"clip": f"{c:03d}", "frame": f"{i:05d}"} for c, n in enumerate(lengths) for i in range(n) if (c, i) != (0, 7)]
    features = rng.standard_normal((len(samples), 256)).astype(np.float32) * 3
    sequences = ClipSequences.from_samples(samples)
    with torch.no_grad():
        x, mask = clip_batch(sequences, features, sequences.windows(TEMPORAL_WINDOW))
        batched = head(x, mask)[0][mask[0]]
        x, mask = clip_batch(sequences, features, sequences.windows(TEMPORAL_WINDOW)[:1])
        alone = head(x, mask)[0][mask[0]]
    assert len(alone) == lengths[0] - 1 and x.shape[1] == lengths[0]  # frame 7 is a gap, not closed up
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_a_long_video_predicted_in_windows_equals_the_whole_video_at_once():
    # A video of 2.6 windows, with a gap across the first window's edge: each frame's output must see what it sees in
    # the whole video, wherever the windows start.
    torch.manual_seed(0)
    head = TemporalHead().eval()
    frames = [i for i in range(int(2.6 * TEMPORAL_WINDOW)) if not TEMPORAL_WINDOW - 20 <= i < TEMPORAL_WINDOW + 5]
    samples = [{"clip": "long", "frame": f"{i:05d}"} for i in frames] + [{"clip": "short", "frame": f"{i:05d}"} for i in range(40)]
    features = np.random.default_rng(1).standard_normal((len(samples), 256)).astype(np.float32)
    sequences = ClipSequences.from_samples(samples)
    assert len(sequences.windows(TEMPORAL_WINDOW)) == 4  # 3 windows of the long video, 1 of the short one
    windowed = temporal_predictions(head, features, sequences, torch.device("cpu"))
    with torch.no_grad():
        whole = []
        for k in range(len(sequences.clips)):
            x, mask = clip_batch(sequences, features, [(k, 0, sequences.length(k))])
            whole.append((sequences.rows[k], head(x, mask)[0][mask[0]].numpy()))
    expected = np.zeros_like(windowed)
    for rows, pred in whole:
        expected[rows] = pred
    np.testing.assert_allclose(windowed, expected, atol=2e-6, rtol=1e-5)
    # Without the overlap a window's edge frames would see zeros instead of their neighbours: measurably different.
    naive = np.zeros_like(windowed)
    with torch.no_grad():
        for k, start, stop in sequences.windows(TEMPORAL_WINDOW):
            x, mask = clip_batch(sequences, features, [(k, start, stop)])
            positions = sequences.positions[k]
            lo, hi = np.searchsorted(positions, [start, stop])
            naive[sequences.rows[k][lo:hi]] = head(x, mask)[0].numpy()[positions[lo:hi] - start]
    assert np.abs(naive - expected).max() > 1e-3


def test_training_windows_cover_every_frame_once_and_move_with_the_offset():
    samples = [{"clip": "a", "frame": str(i)} for i in range(2500)] + [{"clip": "b", "frame": str(i)} for i in range(90)]
    sequences = ClipSequences.from_samples(samples)
    for offsets in (None, np.array([0, 0]), np.array([300, 77])):
        pieces = sequences.windows(1000, offsets)
        covered = [(k, p) for k, a, b in pieces for p in range(a, b)]
        assert sorted(covered) == sorted({*covered}) and len(covered) == 2590
        assert all(b - a <= 1000 for _, a, b in pieces) and (1, 0, 90) in pieces  # a short clip stays whole
    assert [p for p in sequences.windows(1000, np.array([300, 77])) if p[0] == 0] == [(0, 0, 300), (0, 300, 1300),
                                                                                      (0, 1300, 2300), (0, 2300, 2500)]


def test_standardisation_statistics_in_chunks_equal_numpy_on_the_rows(monkeypatch):
    import emonet.heads as heads

    monkeypatch.setattr(heads, "STATISTICS_CHUNK", 7)
    features = (np.random.default_rng(2).standard_normal((100, 256)) * 5 + 3).astype(np.float32)
    rows = np.arange(3, 100, 2)
    mean, std = feature_statistics(features, rows)
    np.testing.assert_allclose(mean, features[rows].mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, features[rows].std(axis=0), rtol=1e-5)


def test_smoothing_places_frames_by_number_and_never_forces_itself():
    # Frames 0-2 predict 1, frames 40-42 (after a gap of 37 missing frames) predict 9.
    samples = [{"clip": "001", "frame": f"{i:05d}"} for i in (0, 1, 2, 40, 41, 42)]
    pred = np.array([[1.0, 1.0]] * 3 + [[9.0, 9.0]] * 3)
    sequences = ClipSequences.from_samples(samples)
    smoothed = smooth_clips(pred, sequences, 2.0)
    np.testing.assert_allclose(smoothed, pred, atol=1e-9)  # the gap is 19 sigmas wide: nothing crosses it
    closed = ClipSequences.from_samples([{"clip": "001", "frame": f"{i:05d}"} for i in range(6)])
    assert smooth_clips(pred, closed, 2.0)[2, 0] > 2  # had the gap been closed, the two runs would mix
    assert np.array_equal(smooth_clips(pred, sequences, 0.0), pred) and SIGMA_GRID[0] == 0


def test_a_unit_of_each_head_resumes_after_an_interruption_to_the_same_figures(noisy, tmp_path):
    folder, full = noisy
    out = tmp_path / "interrupted"
    for unit in ("hsv:1", "hsv:smooth:1", "hsv:temporal:1"):  # as if killed after epoch 5: last.pth holds 5 epochs
        _compare(folder, out, "--only", unit, "--epochs", "5")
    for head in ("", "smooth", "temporal"):
        for name in ("unit.json", "fold_predictions.csv"):
            (out / "hsv" / head / "fold_1" / name).unlink()
    assert _compare(folder, out) == full
    assert torch.load(out / "hsv" / "temporal" / "fold_1" / "last.pth", weights_only=True)["epoch"] == int(EPOCHS)


def test_each_head_trains_and_evaluates_with_the_scripts(noisy, tmp_path, capsys):
    folder, _ = noisy
    manifest = folder / "features_hsv_manifest.json"
    for head in HEADS:
        out = tmp_path / head
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
            ["--manifest_file", str(manifest), "--head", head, "--epochs", "3", "--inner_val_split", "0.2",
             "--output_dir", str(out), "--no_progress", "--device", "cpu"]
            + (["--clips_per_batch", "2"] if head == "temporal" else [])))
        best = torch.load(out / "best_model.pth", weights_only=True)
        assert best["head"]["kind"] == head and best["model_args"]["dropout"] == 0.2
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_path", str(out / "best_model.pth"), "--output_dir", str(out / "eval"), "--no_progress", "--device", "cpu"]))
        results = json.loads((out / "eval" / "evaluation_results.json").read_text())
        predictions = pd.read_csv(out / "eval" / "predictions.csv")
        assert results["head"]["kind"] == head and results["leakage_check"]["leak_free"]
        assert results["valence_metrics"]["CCC"] == pytest.approx(
            ccc(predictions["valence_true"], predictions["valence_pred"]), rel=1e-9)
    printed = capsys.readouterr().out
    sigma = torch.load(tmp_path / "smooth" / "best_model.pth", weights_only=True)
    assert f"sigma {sigma['history'][sigma['best_epoch'] - 1]['sigma']:g} frames" in printed
    assert (tmp_path / "temporal" / "training_log.csv").is_file()


def test_a_frame_missing_from_the_features_leaves_a_gap(noisy, tmp_path):
    folder, _ = noisy
    manifest = manifest_as_list(folder / "features_hsv_manifest.json")
    clip = manifest["samples"][0]["clip"]
    gone = [s for s in manifest["samples"] if s["clip"] == clip][5]
    manifest["samples"] = [s for s in manifest["samples"] if s is not gone]
    for s in manifest["samples"]:
        s["path"] = str(folder / s["path"])
    (tmp_path / "gap_manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "gap"
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(tmp_path / "gap_manifest.json"), "--head", "temporal", "--epochs", "1",
         "--split", "frame", "--output_dir", str(out), "--no_progress", "--device", "cpu"]))
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
        ["--model_path", str(out / "best_model.pth"), "--subset", "all", "--output_dir", str(out / "eval"),
         "--no_progress", "--device", "cpu"]))
    predictions = pd.read_csv(out / "eval" / "predictions.csv", dtype={"clip": str, "frame": str})
    assert gone["frame"] not in set(predictions.loc[predictions["clip"] == clip, "frame"])
    assert len(predictions) == len(manifest["samples"]) and predictions[["valence_pred", "arousal_pred"]].notna().all().all()


@pytest.mark.parametrize("flags, message", [
    (["--head", "temporal", "--batch_size", "32"], "--batch_size counts frames of the frame and smooth heads"),
    (["--head", "smooth", "--clips_per_batch", "4"], "--clips_per_batch applies to --head temporal"),
])
def test_the_batch_flag_of_the_other_head_is_refused(noisy, tmp_path, flags, message):
    folder, _ = noisy
    with pytest.raises(EmoNetError, match=message):
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
            ["--manifest_file", str(folder / "features_hsv_manifest.json"), "--output_dir", str(tmp_path / "x"), *flags]))
    assert not (tmp_path / "x").exists()


def test_heads_with_finetuning_are_refused_in_one_line(tmp_path):
    with pytest.raises(EmoNetError, match="--heads does not apply to --approach finetune; fine-tuning keeps its frame"):
        compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(
            ["--approach", "finetune", "--heads", "frame", "smooth", "--output_dir", str(tmp_path / "x")]))


def test_a_resume_that_changes_the_head_is_refused(noisy, tmp_path):
    folder, _ = noisy
    base = ["--manifest_file", str(folder / "features_hsv_manifest.json"), "--output_dir", str(tmp_path / "run"),
            "--no_progress", "--device", "cpu"]
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args([*base, "--epochs", "1"]))
    shutil.copy(tmp_path / "run" / "last.pth", tmp_path / "last.pth")
    with pytest.raises(EmoNetError, match=r"head 'frame' -> 'smooth'"):
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
            [*base, "--epochs", "2", "--head", "smooth", "--resume", str(tmp_path / "run" / "last.pth")]))
