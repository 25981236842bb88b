"""compare_color_spaces.py on synthetic feature sets with the real labels and clip structure, where one
colour space carries a stronger signal than the other."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import train_emonet_features
from conftest import ROOT, clip_labels, manifest_as_list, write_spaces
from emonet.bootstrap import draw_counts, group_sums, p_value, resample
from emonet.comparison_report import plot_report
from emonet.errors import EmoNetError
from emonet.features import load_feature_set
from emonet.heads import frame_predictions, load_head
from emonet.manifest import read_manifest
from emonet.metrics import ccc, regression_metrics
from emonet.splits import split_indices

N_CLIPS = 40  # about 2,000 frames
FOLDS = 3
EPOCHS = "4"
# hsv's features carry the labels 8x as strongly as rgb's; everything else is alike. rgb's signal is weak enough
# that the gap is clear with the real labels and with the synthetic ones (which vary more between clips, so that
# at 1.0 rgb already reached CCC 0.84 and the arousal difference's CI touched 0): seen 0.16 to 0.73 above 0.
SIGNALS = {"rgb": 0.5, "hsv": 4.0}


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare_inputs")
    labels = clip_labels(N_CLIPS)
    return write_spaces(folder, labels, (SIGNALS["rgb"], SIGNALS["hsv"]))


def _compare(folder, out, *extra):
    argv = ["--manifests", f"rgb={folder / 'features_manifest.json'}", f"hsv={folder / 'features_hsv_manifest.json'}",
            "--folds", str(FOLDS), "--epochs", EPOCHS, "--bootstrap", "500", "--output_dir", str(out), "--no_progress",
            "--device", "cpu", *extra]
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    return out


@pytest.fixture(scope="module")
def full(spaces, tmp_path_factory):
    return _compare(spaces, tmp_path_factory.mktemp("full") / "comparison")


def _json(out):
    return json.loads((out / "comparison.json").read_text())


def test_the_stronger_space_wins_and_its_difference_excludes_zero(full):
    report = _json(full)["color_spaces"]
    for dim in ("valence", "arousal"):
        assert report["hsv"]["pooled"][dim]["CCC"] > report["rgb"]["pooled"][dim]["CCC"]
        diff = report["hsv"]["vs_reference"][dim]
        assert diff["CCC_diff_ci"][0] > 0 and diff["p_value"] < 0.05
        assert diff["CCC_diff_ci"][0] <= diff["CCC_diff"] <= diff["CCC_diff_ci"][1]
        lo, hi = report["hsv"]["pooled"][dim]["CCC_ci"]
        assert lo <= report["hsv"]["pooled"][dim]["CCC"] <= hi
    assert report["rgb"]["vs_reference"] is None
    table = (full / "comparison.md").read_text()
    assert "| hsv | frame head |" in table and "| rgb | EmoNet zero-shot |" in table and "## Protocol" in table


def test_folds_are_shared_disjoint_and_cover_every_clip(full, spaces):
    folds = json.loads((full / "folds.json").read_text())
    assert folds["group_by"] == "clip" and folds["seed"] == 0 and len(folds["folds"]) == FOLDS
    every = [c for fold in folds["folds"] for c in fold]
    assert len(every) == len(set(every)) == N_CLIPS
    for k in range(FOLDS):
        splits = [json.loads((full / space / f"fold_{k}" / "split.json").read_text()) for space in SIGNALS]
        assert splits[0] == splits[1]  # the same split for every colour space
        split = splits[0]
        assert split["val"] == folds["folds"][k]
        assert not set(split["inner_val"]) & set(split["val"]) and not set(split["inner_val"]) & set(split["train"])
        assert sorted(split["train"] + split["inner_val"] + split["val"]) == sorted(every)


def test_every_frame_has_one_out_of_fold_prediction_and_json_matches_csv(full, spaces):
    oof = pd.read_csv(full / "oof_predictions.csv", dtype={"clip": str, "frame": str})
    samples = read_manifest(spaces / "features_manifest.json").samples
    assert len(oof) == len(samples) and not oof.isna().any().any()
    assert not oof.duplicated(["clip", "frame"]).any()
    folds = json.loads((full / "folds.json").read_text())["folds"]
    assert all(row.clip in folds[row.fold] for row in oof.itertuples())
    report = _json(full)["color_spaces"]
    for space in SIGNALS:
        for dim in ("valence", "arousal"):
            pooled = regression_metrics(oof[f"{dim}_true"], oof[f"{space}_{dim}"])
            for metric in ("PCC", "CCC", "RMSE", "SAGR"):
                assert report[space]["pooled"][dim][metric] == pytest.approx(pooled[metric], rel=1e-9, abs=1e-12)
            for entry in report[space]["folds"]:
                fold = oof[oof["fold"] == entry["fold"]]
                assert entry[dim]["CCC"] == pytest.approx(ccc(fold[f"{dim}_true"], fold[f"{space}_{dim}"]), rel=1e-9)
            assert report[space]["fold_mean"][dim]["CCC"] == pytest.approx(
                np.mean([e[dim]["CCC"] for e in report[space]["folds"]]), rel=1e-12)
    long = pd.read_csv(full / "comparison.csv", dtype={"fold": str})
    row = long[(long.space == "hsv") & (long.model == "trained") & (long.fold == "pooled") & (long.dimension == "arousal")
               & (long.metric == "CCC")]
    assert row["value"].item() == report["hsv"]["pooled"]["arousal"]["CCC"]


def _mean_ccc(truth, pred):
    return (ccc(truth[:, 0], pred[:, 0]) + ccc(truth[:, 1], pred[:, 1])) / 2


def test_the_epoch_is_chosen_on_the_inner_split_never_on_the_held_out_fold(full, spaces):
    manifest = read_manifest(spaces / "features_hsv_manifest.json")
    data = load_feature_set(manifest, progress=False)
    for k in range(FOLDS):
        unit = full / "hsv" / f"fold_{k}"
        best = torch.load(unit / "best_model.pth", weights_only=True)
        history = torch.load(unit / "last.pth", weights_only=True)["history"]
        assert best["best_epoch"] == 1 + int(np.argmax([r["val_mean_CCC"] for r in history]))
        sides = split_indices(data.samples, best["split"])
        pred = frame_predictions(load_head(best), data.features, torch.device("cpu"))
        inner, held_out = (_mean_ccc(data.labels[rows] / 10, pred[rows]) for rows in (sides.inner_val, sides.val))
        # The recorded selection score of the best epoch is the inner split's, not the held-out fold's.
        assert history[best["best_epoch"] - 1]["val_mean_CCC"] == pytest.approx(inner, abs=1e-5)
        assert abs(held_out - inner) > 1e-4


def test_only_units_and_report_only_equal_one_full_run(full, spaces, tmp_path):
    out = tmp_path / "units"
    for space in SIGNALS:
        for k in range(FOLDS):
            _compare(spaces, out, "--only", f"{space}:{k}")
    assert not (out / "comparison.json").exists()
    _compare(spaces, out, "--report_only")
    assert _json(out) == _json(full)  # the same figures, bit for bit (same seed, same inputs)
    for name in ("oof_predictions.csv", "comparison.csv", "comparison.md"):
        assert (out / name).read_text() == (full / name).read_text(), name


def test_an_interrupted_comparison_resumes_to_the_same_figures(full, spaces, tmp_path):
    out = tmp_path / "interrupted"
    # As if killed after epoch 2 of unit hsv:1: its last.pth holds 2 epochs, it never finished.
    _compare(spaces, out, "--only", "hsv:1", "--epochs", "2")
    for name in ("unit.json", "fold_predictions.csv"):
        (out / "hsv" / "fold_1" / name).unlink()
    _compare(spaces, out)
    assert torch.load(out / "hsv" / "fold_1" / "last.pth", weights_only=True)["epoch"] == int(EPOCHS)
    assert _json(out) == _json(full)


def test_a_unit_made_with_other_settings_is_refused(full, spaces, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(full, out)
    with pytest.raises(EmoNetError, match=r"rgb/fold_0: this unit was made with other settings \(.*learning_rate"):
        _compare(spaces, out, "--learning_rate", "0.01")
    with pytest.raises(EmoNetError, match="holds other folds"):
        _compare(spaces, out, "--seed", "1")


def test_mismatched_manifests_are_refused_or_restricted(spaces, tmp_path):
    manifest = manifest_as_list(spaces / "features_manifest.json")
    dropped = [s for s in manifest["samples"] if s["clip"] == "002"]
    manifest["samples"] = [s for s in manifest["samples"] if s["clip"] != "002"]
    short = tmp_path / "short_manifest.json"
    short.write_text(json.dumps(manifest))
    for sample in manifest["samples"]:
        sample["path"] = str(spaces / sample["path"])
    short.write_text(json.dumps(manifest))
    argv = ["--manifests", f"rgb={short}", f"hsv={spaces / 'features_hsv_manifest.json'}", "--folds", "2", "--epochs", "1",
            "--bootstrap", "100", "--no_progress", "--device", "cpu"]
    with pytest.raises(EmoNetError, match=rf"rgb lacks {len(dropped)} frames \(clips 002\).*--common_frames"):
        compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args([*argv, "--output_dir", str(tmp_path / "a")]))
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(
        [*argv, "--output_dir", str(tmp_path / "b"), "--common_frames"]))
    protocol = _json(tmp_path / "b")["protocol"]
    assert protocol["dropped_frames"] == {"rgb": 0, "hsv": len(dropped)} and protocol["clips"] == N_CLIPS - 1
    manifest["settings"]["crop"] = "resize"
    short.write_text(json.dumps(manifest))
    with pytest.raises(EmoNetError, match=r"differ in crop: rgb 'resize', hsv 'landmarks'"):
        compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args([*argv, "--output_dir", str(tmp_path / "c")]))
    with pytest.raises(EmoNetError, match=r"lab=.*holds 'hsv' features, not 'lab'"):
        compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(
            ["--manifests", f"rgb={spaces / 'features_manifest.json'}", f"lab={spaces / 'features_hsv_manifest.json'}"]))


@pytest.mark.parametrize("flags, message", [
    (["--split", "frame"], "--split frame is refused: neighbouring frames"),
    (["--freeze_backbone"], "--freeze_backbone does not apply to --approach head"),
    (["--approach", "finetune", "--dropout", "0.5"], "--dropout does not apply to --approach finetune"),
    (["--reference", "lab"], "--reference lab is not among the colour spaces compared"),
    (["--only", "hsv:1", "--report_only"], "choose one"),
    (["--only", "yuv:1"], "--only yuv:1: expected SPACE:FOLD"),
    (["--demo_clips", "4"], "go with --demo"),
])
def test_flags_that_cannot_work_are_refused(spaces, tmp_path, flags, message):
    argv = ["--manifests", f"rgb={spaces / 'features_manifest.json'}", f"hsv={spaces / 'features_hsv_manifest.json'}",
            "--output_dir", str(tmp_path / "out"), "--no_progress", "--device", "cpu", *flags]
    with pytest.raises(EmoNetError, match=message):
        compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    assert not (tmp_path / "out" / "folds.json").exists() or "--only" in flags


def test_default_manifests_are_the_standard_ones_in_the_working_folder(spaces, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(spaces)
    args = compare_color_spaces.get_args_parser().parse_args(
        ["--folds", "2", "--epochs", "1", "--bootstrap", "100", "--output_dir", str(tmp_path / "out"), "--no_progress"])
    compare_color_spaces.main(args)
    assert set(_json(tmp_path / "out")["color_spaces"]) == {"rgb", "hsv"}
    assert "vs rgb" in capsys.readouterr().out


def test_the_demo_recovers_its_planted_signal_and_says_it_is_a_demo(tmp_path, capsys):
    # One frame a clip: 32 independent draws of the labels, which the faces show (brighter with valence, warmer
    # with arousal); 64 EmoNet passes, under a third of the default demo's.
    args = compare_color_spaces.get_args_parser().parse_args(
        ["--demo", "--demo_clips", "32", "--demo_frames", "1", "--folds", "4", "--bootstrap", "200",
         "--output_dir", str(tmp_path / "demo"), "--no_progress", "--device", "cpu"])
    compare_color_spaces.main(args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("DEMO:") and lines[-1].startswith("DEMO:") and "planted signal" in lines[0]
    report = _json(tmp_path / "demo")
    assert set(report["color_spaces"]) == {"rgb", "hsv"} and report["protocol"]["frames"] == 32
    for space, entry in report["color_spaces"].items():
        # EmoNet's own outputs come from the random stand-in weights: noise, not a baseline, so no zero-shot row.
        assert entry["zero_shot"] is None
        for dim in ("valence", "arousal"):
            assert entry["pooled"][dim]["CCC_ci"][0] > 0, (space, dim, entry["pooled"][dim])
    # The files say on themselves that they come from random weights, not only the console.
    table = (tmp_path / "demo" / "comparison.md").read_text()
    assert report["protocol"]["demo"] and "DEMO: random" in table and "zero-shot is left out of the demo" in table
    assert "EmoNet zero-shot |" not in table and not (tmp_path / "demo" / "zero_shot_predictions.csv").exists()
    assert plot_report(report, tmp_path / "again.png")._suptitle.get_text().startswith("DEMO: random weights")
    for name in ("comparison.md", "comparison.png", "comparison.csv", "oof_predictions.csv"):
        assert (tmp_path / "demo" / name).stat().st_size > 0


def test_bootstrap_resamples_whole_clips_and_its_p_value_is_two_sided():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 20)
    truth = rng.normal(size=600) + np.repeat(rng.normal(size=30), 20)
    pred = truth + rng.normal(scale=0.5, size=600)
    sums = group_sums(groups, 30, truth, pred)
    direct = regression_metrics(truth, pred)
    every_clip_once = resample(sums, np.ones((1, 30)))
    for metric in ("PCC", "CCC", "RMSE", "SAGR"):
        assert every_clip_once[metric][0] == pytest.approx(direct[metric], rel=1e-9)
    counts = draw_counts(30, 200, seed=3)
    assert counts.shape == (200, 30) and (counts.sum(axis=1) == 30).all()  # each draw: 30 clips, with replacement
    drawn = np.concatenate([np.flatnonzero(groups == g) for g in range(30) for _ in range(int(counts[0, g]))])
    assert resample(sums, counts[:1])["CCC"][0] == pytest.approx(ccc(truth[drawn], pred[drawn]), rel=1e-9)
    assert p_value(np.full(99, 0.3)) == pytest.approx(2 / 100)
    assert p_value(np.full(99, -0.3)) == pytest.approx(2 / 100)
    assert p_value(np.linspace(-1, 1, 101)) == 1.0


def test_evaluation_says_when_the_epoch_was_chosen_on_the_evaluated_frames(spaces, tmp_path, capsys):
    def train(out, *extra):
        argv = ["--manifest_file", str(spaces / "features_hsv_manifest.json"), "--epochs", "1", "--output_dir", str(out),
                "--no_progress", "--device", "cpu", *extra]
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(argv))
        args = evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_path", str(out / "best_model.pth"), "--output_dir", str(out / "eval"), "--no_progress", "--device", "cpu"])
        evaluate_hsv_model.main(args)
        return json.loads((out / "eval" / "evaluation_results.json").read_text()), capsys.readouterr().err

    selected, err = train(tmp_path / "plain")
    assert selected["selected_on_evaluated_frames"] and selected["selection_side"] == "val"
    assert "best epoch was chosen on these frames, so these figures are optimistic" in err
    inner, err = train(tmp_path / "inner", "--inner_val_split", "0.1")
    assert not inner["selected_on_evaluated_frames"] and inner["selection_side"] == "inner_val"
    assert "optimistic" not in err
    assert inner["num_samples"] == selected["num_samples"]  # the held-out side is the same; only selection moved


def test_bootstrap_figures_do_not_depend_on_the_number_of_threads(tmp_path):
    # A real-sized bootstrap (1,000 draws of 600 clips), computed by processes with 1 and 2 BLAS/OpenMP threads:
    # torchrun runs one thread per process, a plain run all cores; a comparison must print the same CIs.
    code = ("import sys, numpy as np; from emonet.bootstrap import draw_counts, resample; "
            "sums = np.random.default_rng(0).standard_normal((600, 7)) * 1000; sums[:, 0] = 50; "
            "np.save(sys.argv[1], resample(sums, draw_counts(600, 1000, 0))['CCC'])")
    for threads in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / threads)], env=env, check=True)
    assert np.array_equal(np.load(tmp_path / "1.npy"), np.load(tmp_path / "2.npy"))
