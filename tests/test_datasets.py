"""Aff-Wild2 and AffectNet through the same readers and extraction as AFEW-VA: small trees in the real layouts,
errors naming file and line, splits and scales in the manifest."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import extract_features_all
import train_emonet_features
from conftest import clip_labels, manifest_as_list, write_spaces
from emonet.datasets import read_dataset
from emonet.errors import EmoNetError
from emonet.feature_store import FRAME_KEYS, clip_frames, frame_arrays, pack_clip, read_feature_file
from emonet.features import load_feature_set
from emonet.manifest import read_manifest, write_manifest
from emonet.metrics import ccc
from emonet.testing import write_aff_wild2_tree, write_affectnet_tree, write_afew_va_tree

AFF_WILD2 = {"vid1": ("Training_Set", [(0.5, -0.25), (-5, -5), (0.1, 0.2), (1.0, -1.0)]),
             "vid2_left": ("Validation_Set", [(-0.3, 0.4), (-0.2, 0.5)]),
             "vid2_right": ("Validation_Set", [(0.6, 0.1), (0.7, -5)])}


def test_aff_wild2_frames_splits_people_and_what_is_skipped(tmp_path):
    root = write_aff_wild2_tree(tmp_path / "aw2", AFF_WILD2, missing={"vid1": {3}})
    read = read_dataset("aff_wild2", root)
    got = {(f.clip, f.frame): (f.valence, f.arousal, f.split, f.actor) for f in read.frames}
    # Line 2 is frame 00001; -5 (either value) is not annotated; frame 3 of vid1 has no jpg (no face found).
    assert got == {("vid1", "00001"): (0.5, -0.25, "train", "vid1"), ("vid1", "00004"): (1.0, -1.0, "train", "vid1"),
                   ("vid2_left", "00001"): (-0.3, 0.4, "validation", "vid2"),
                   ("vid2_left", "00002"): (-0.2, 0.5, "validation", "vid2"),
                   ("vid2_right", "00001"): (0.6, 0.1, "validation", "vid2")}
    assert read.skipped == {"no_face_image": 1, "not_annotated": 2} and read.problems == []
    assert read_dataset("aff_wild2", root, limit=1).frames[0].clip == "vid1"


def test_a_wrong_aff_wild2_tree_names_the_file_and_line(tmp_path):
    root = write_aff_wild2_tree(tmp_path / "aw2", {"a": ("Training_Set", [(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)]),
                                                    "b": ("Training_Set", [(0.1, 0.1)])})
    annotation = root / "VA_Set" / "Training_Set" / "a.txt"
    annotation.write_text("valence,arousal\n0.1,0.1\n0.2;0.2\n1.5,0.3\n")
    (root / "VA_Set" / "Training_Set" / "b.txt").write_text("arousal,valence\n0.1,0.1\n")
    problems = {p.path: (p.kind, p.reason) for p in read_dataset("aff_wild2", root).problems}
    assert problems[f"{annotation}:3"][0] == "unreadable_annotation"  # not two numbers
    assert problems[f"{annotation}:4"] == ("bad_label", "valence, arousal = 1.5, 0.3 outside [-1, 1]")
    assert "the first line must be 'valence,arousal'" in problems[f"{root / 'VA_Set' / 'Training_Set' / 'b.txt'}:1"][1]
    with pytest.raises(EmoNetError, match="not an Aff-Wild2 folder"):
        read_dataset("aff_wild2", tmp_path)


def test_affectnet_rows_landmarks_and_errors(tmp_path):
    rows = {"training.csv": [("1/a.jpg", 0.5, 0.25), ("1/b.jpg", -2, -2), ("2/c.jpg", -0.75, 0.0)],
            "validation.csv": [("3/d.jpg", 0.1, -0.9)]}
    root = write_affectnet_tree(tmp_path / "an", rows)
    read = read_dataset("affectnet", root)
    assert [(f.clip, f.split, f.valence) for f in read.frames] == [("1-a", "train", 0.5), ("2-c", "train", -0.75),
                                                                    ("3-d", "validation", 0.1)]
    assert read.skipped == {"not_rated": 1} and all(f.landmarks.shape == (68, 2) for f in read.frames)
    listed = root / "Manually_Annotated_file_lists" / "training.csv"
    text = listed.read_text().splitlines()
    listed.write_text("\n".join([*text, text[1].replace("1/a.jpg", "9/gone.jpg"), text[1].replace(",0.5,", ",3,")]))
    problems = {p.kind: p for p in read_dataset("affectnet", root).problems}
    assert problems["missing_image"].reason == f"listed at {listed}:5, image not found"
    assert problems["bad_label"].path == f"{listed}:6"
    listed.write_text(text[0].replace("facial_landmarks,", "") + "\n")
    with pytest.raises(EmoNetError, match=f"{listed}:1: missing column facial_landmarks"):
        read_dataset("affectnet", root)


def _extract(*argv):
    return extract_features_all.main(extract_features_all.get_args_parser().parse_args(
        [*map(str, argv), "--no_progress", "--num_workers", "0", "--device", "cpu"]))


def test_aff_wild2_features_keep_split_and_scale_and_load_on_one_scale(tmp_path, released_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_aff_wild2_tree(tmp_path / "aw2", AFF_WILD2)
    # Its frames are aligned faces without landmarks: the landmark crop, asked for, is refused before anything is read;
    # without --crop, the dataset's own (resize) is taken.
    with pytest.raises(EmoNetError, match="--crop landmarks cannot be used with --dataset aff_wild2"):
        _extract("--dataset", "aff_wild2", "--dataset_root", root, "--crop", "landmarks", "--pretrained_path",
                 released_checkpoint)
    with pytest.raises(EmoNetError, match="--dataset aff_wild2 needs --dataset_root"):
        _extract("--dataset", "aff_wild2", "--pretrained_path", released_checkpoint)
    assert _extract("--dataset", "aff_wild2", "--dataset_root", root, "--pretrained_path", released_checkpoint) == 0
    manifest = read_manifest(tmp_path / "features_manifest.json")
    assert manifest.settings["dataset"] == "aff_wild2" and manifest.label_scale == 1.0 and manifest.has_time
    assert manifest.settings["crop"] == "resize"
    assert manifest.settings["skipped_by_dataset_rules"] == {"not_annotated": 2}
    by_key = {(s["clip"], s["frame"]): s for s in manifest.samples}
    assert by_key["vid1", "00004"]["split"] == "train" and by_key["vid1", "00004"]["valence"] == 1.0  # its own scale
    data = load_feature_set(manifest, progress=False)
    raw = np.array([[s["valence"], s["arousal"]] for s in manifest.samples])
    assert np.allclose(data.labels, raw * 10)  # every dataset on AFEW-VA's [-10, 10] for training and metrics
    # A rerun of another dataset into the same folder is refused (the folder is pinned to its dataset).
    write_affectnet_tree(tmp_path / "an", {"training.csv": [("1/a.jpg", 0.5, 0.25)]})
    with pytest.raises(EmoNetError, match="dataset: 'aff_wild2' -> 'affectnet'"):
        _extract("--dataset", "affectnet", "--dataset_root", tmp_path / "an", "--crop", "resize",
                 "--pretrained_path", released_checkpoint)


def test_affectnet_features_take_the_landmark_crop_and_refuse_heads_along_time(tmp_path, released_checkpoint,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    validation = [("2/v.jpg", 0.3, 0.3, 6), ("2/w.jpg", -0.5, 0.1, 4), ("2/x.jpg", 0.2, -0.2, 8)]  # anger, fear, none
    root = write_affectnet_tree(tmp_path / "an", {"training.csv": [(f"1/{k}.jpg", k / 10, -k / 10) for k in range(6)],
                                                  "validation.csv": validation}, in_lists_folder=False)
    assert _extract("--dataset", "affectnet", "--dataset_root", root, "--pretrained_path", released_checkpoint) == 0
    manifest = manifest_as_list(tmp_path / "features_manifest.json")
    assert manifest["settings"]["crop"] == "landmarks" and manifest["settings"]["has_time"] is False
    assert sorted({s["split"] for s in manifest["samples"]}) == ["train", "validation"]
    args = train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(tmp_path / "features_manifest.json"), "--head", "smooth", "--device", "cpu"])
    with pytest.raises(EmoNetError, match="single images, without time: the smooth head"):
        train_emonet_features.main(args)
    # EmoNet zero-shot on the validation split, its 8 emotion classes (EmoNet's published check) or the 5-class set.
    for classes, expected in ((8, ["2-v", "2-w"]), (5, ["2-v"])):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_type", "pretrained", "--manifest_file", str(tmp_path / "features_manifest.json"), "--subset",
             "val", "--expression_classes", str(classes), "--output_dir", str(tmp_path / f"zs{classes}"), "--no_progress"]))
        rows = pd.read_csv(tmp_path / f"zs{classes}" / "predictions.csv")
        assert sorted(rows["clip"]) == expected and rows["valence_true"].abs().max() <= 10
        results = json.loads((tmp_path / f"zs{classes}" / "evaluation_results.json").read_text())
        assert any("EmoNet was trained on AffectNet's training images" in c for c in results["caveats"])


def test_a_head_trained_on_afew_va_is_scored_on_aff_wild2s_validation_split(tmp_path, released_checkpoint):
    afew = write_afew_va_tree(tmp_path / "afew", clip_labels(6), frames_per_clip=4)
    aw2 = write_aff_wild2_tree(tmp_path / "aw2", AFF_WILD2)
    for name, root in (("afew_va", afew), ("aff_wild2", aw2)):
        assert _extract("--dataset", name, "--dataset_root", root, "--crop", "resize", "--pretrained_path",
                        released_checkpoint, "--output_dir", tmp_path / name,
                        "--manifest_file", tmp_path / f"{name}.json") == 0
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(tmp_path / "afew_va.json"), "--output_dir", str(tmp_path / "head"), "--epochs", "2",
         "--device", "cpu", "--no_progress"]))
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
        ["--model_path", str(tmp_path / "head" / "best_model.pth"), "--manifest_file", str(tmp_path / "aff_wild2.json"),
         "--output_dir", str(tmp_path / "cross"), "--device", "cpu", "--no_progress"]))
    results = json.loads((tmp_path / "cross" / "evaluation_results.json").read_text())
    assert results["cross_corpus"] is True and results["trained_on"] == "afew_va" and results["dataset"] == "aff_wild2"
    # Aff-Wild2's validation split (vid2_left: 2 frames, vid2_right: 1), its [-1, 1] labels on AFEW-VA's scale.
    rows = pd.read_csv(tmp_path / "cross" / "predictions.csv")
    assert sorted(rows["clip"]) == ["vid2_left", "vid2_left", "vid2_right"] and results["num_samples"] == 3
    assert sorted(rows["valence_true"]) == [-3.0, -2.0, 6.0]
    assert results["leakage_check"]["leak_free"]
    # AFEW-VA has no official split: a head trained on Aff-Wild2 is scored there on --subset all only.
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(tmp_path / "aff_wild2.json"), "--output_dir", str(tmp_path / "head2"), "--epochs", "1",
         "--device", "cpu", "--no_progress", "--val_split", "0.5"]))
    with pytest.raises(EmoNetError, match="has no official validation split"):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_path", str(tmp_path / "head2" / "best_model.pth"), "--manifest_file", str(tmp_path / "afew_va.json"),
             "--output_dir", str(tmp_path / "cross2"), "--device", "cpu", "--no_progress"]))


# -- one feature file a clip ------------------------------------------------------------------------------------------
def test_a_clip_file_keeps_the_frames_not_redone_and_takes_the_redone_ones(tmp_path):
    rows = {f: {k: np.full(256 if k == "features" else 8 if k == "emonet_expression" else (), i, np.float32)
                for k in FRAME_KEYS} for i, f in enumerate(["00000", "00001", "00002"])}
    (tmp_path / "clip").mkdir()
    for frame in ("00000", "00001"):
        np.savez(tmp_path / "clip" / f"{frame}.npz", **rows[frame])
    pack_clip(tmp_path, "clip", ["00000", "00001"])
    assert not (tmp_path / "clip").exists() and clip_frames(tmp_path / "clip.npz") == {"00000", "00001"}
    # A later run redid 00001 (other values) and added 00002: the clip file takes both, keeps 00000.
    (tmp_path / "clip").mkdir()
    np.savez(tmp_path / "clip" / "00001.npz", **{k: v + 10 for k, v in rows["00001"].items()})
    np.savez(tmp_path / "clip" / "00002.npz", **rows["00002"])
    pack_clip(tmp_path, "clip", ["00000", "00001", "00002"])
    assert [frame_arrays(tmp_path / "clip.npz", f)["valence"] for f in ("00000", "00001", "00002")] == [0, 11, 2]
    frames, features, emonet = read_feature_file(tmp_path / "clip.npz")
    assert frames == ["00000", "00001", "00002"] and features.shape == (3, 256) and emonet.shape == (3, 2)


def test_a_truncated_clip_file_is_extracted_again_and_a_missing_frame_is_named(tmp_path, released_checkpoint,
                                                                                monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = write_aff_wild2_tree(tmp_path / "aw2", AFF_WILD2)
    argv = ("--dataset", "aff_wild2", "--dataset_root", root, "--crop", "resize", "--pretrained_path", released_checkpoint)
    assert _extract(*argv) == 0
    before = load_feature_set(read_manifest(tmp_path / "features_manifest.json"), progress=False)
    clip = tmp_path / "features" / "vid1.npz"
    clip.write_bytes(clip.read_bytes()[:500])
    capsys.readouterr()
    assert _extract(*argv) == 0
    assert "extracted 3 of 3 (0 could not be decoded), skipped 3 (already done)" in capsys.readouterr().out  # vid1 again
    after = load_feature_set(read_manifest(tmp_path / "features_manifest.json"), progress=False)
    assert np.array_equal(before.features, after.features)
    manifest = manifest_as_list(tmp_path / "features_manifest.json")
    manifest["samples"][0]["frame"] = "00009"
    (tmp_path / "features_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EmoNetError, match=r"vid1.npz: the clip file lacks frame 00009"):
        load_feature_set(read_manifest(tmp_path / "features_manifest.json"), progress=False)


def _official(path, validation: set[str], dataset: str = "aff_wild2") -> None:
    """Rewrite an AFEW-VA-type synthetic manifest as `dataset`'s: labels on [-1, 1], each clip in its official split."""
    manifest = read_manifest(path)
    samples = [{**s, "valence": s["valence"] / 10, "arousal": s["arousal"] / 10,
                "split": "validation" if s["clip"] in validation else "train"} for s in manifest.samples]
    write_manifest(path, {**manifest.settings, "dataset": dataset, "label_scale": 1.0, "has_time": dataset != "affectnet"},
                   samples)


def _compare(*argv):
    return compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(
        [*map(str, argv), "--device", "cpu", "--no_progress"]))


def test_the_comparison_of_an_official_split_trains_on_training_scores_validation_and_repeats_seeds(tmp_path, monkeypatch,
                                                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    labels = clip_labels(12)
    write_spaces(tmp_path, labels, signals=(1.0, 0.4))
    validation = set(sorted(labels)[-4:])
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        _official(tmp_path / name, validation)
    base = ["--heads", "frame", "smooth", "--epochs", "2", "--repeats", "2", "--bootstrap", "200", "--output_dir",
            tmp_path / "cmp"]
    for folds in ("3", "5"):  # 5, the cross-validation's default, too: given, it would be silently ignored
        with pytest.raises(EmoNetError, match=f"--folds {folds}: aff_wild2 has an official training / validation split"):
            _compare("--folds", folds, *base)
    _compare("--list_units", *base)
    assert capsys.readouterr().out.split() == ["rgb:0", "rgb:smooth:0", "hsv:0", "hsv:smooth:0",
                                               "rgb:0@1", "rgb:smooth:0@1", "hsv:0@1", "hsv:smooth:0@1"]
    _compare(*base)
    folds = json.loads((tmp_path / "cmp" / "folds.json").read_text())
    training = sorted(set(labels) - validation)
    assert folds["protocol"] == "official" and folds["folds"] == [sorted(validation)]
    assert [r["train"] for r in folds["repeats"]] == [training, training] and [r["seed"] for r in folds["repeats"]] == [0, 1]
    for unit in ("rgb/fold_0", "hsv/smooth/fold_0", "repeat_1/hsv/fold_0"):
        scored = pd.read_csv(tmp_path / "cmp" / unit / "fold_predictions.csv", dtype={"clip": str})
        assert set(scored["clip"]) == validation  # the validation split, every frame of it, nothing else
        assert len(scored) == sum(len(labels[c]["valence"]) for c in validation)
        split = torch.load(tmp_path / "cmp" / unit / "best_model.pth", weights_only=True)["split"]
        assert sorted(split["train"] + split["inner_val"]) == training and split["inner_val"]  # epochs chosen inside train
    report = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    oof = pd.read_csv(tmp_path / "cmp" / "oof_predictions.csv", dtype={"clip": str})
    expected_truth = np.concatenate([labels[c]["valence"] for c in sorted(validation)])
    assert np.allclose(np.sort(oof[oof["repeat"] == 0]["valence_true"]), np.sort(expected_truth))  # on [-10, 10]
    assert report["protocol"]["protocol"] == "official" and report["protocol"]["training_groups"] == len(training)
    heads = report["color_spaces"]
    for space, head, column in (("rgb", "frame", "rgb"), ("hsv", "smooth", "hsv_smooth")):
        headline = heads[space]["heads"][head]["headline"]["valence"]
        per_seed = [ccc(r["valence_true"].to_numpy(), r[f"{column}_valence"].to_numpy()) for _, r in oof.groupby("repeat")]
        assert headline["statistic"] == "clip x seed bootstrap" and headline["CCC"] == pytest.approx(np.mean(per_seed))
    diff = heads["hsv"]["heads"]["frame"]["vs_reference"]["valence"]
    assert diff["CCC_diff"] == pytest.approx(heads["hsv"]["headline"]["valence"]["CCC"] - heads["rgb"]["headline"]["valence"]["CCC"])
    assert diff["statistic"] == "clip x seed bootstrap" and 0 < diff["p_value"] <= 1
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Colour-space comparison on Aff-Wild2" in markdown and "official validation split" in markdown
    assert "corrected t" not in markdown.split("## Protocol")[0]  # one fixed test set: not cross-validation's test
    # AffectNet: images, so heads along time are refused; its rows say that EmoNet saw its training faces.
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        _official(tmp_path / name, validation, dataset="affectnet")
    with pytest.raises(EmoNetError, match="single images, without time: the smooth head"):
        _compare(*base[:-2], "--output_dir", tmp_path / "an")
    _compare("--epochs", "1", "--bootstrap", "200", "--output_dir", tmp_path / "an")
    assert "EmoNet was trained on AffectNet's training images" in (tmp_path / "an" / "comparison.md").read_text()


def test_the_seed_bootstrap_averages_the_drawn_seeds_on_the_drawn_groups():
    from emonet.comparison_report import Draws

    plan = Draws(5, {"bootstrap": 300, "seed": 4, "protocol": "official", "group_by": "clip"}, repeats=3)
    per_seed = np.random.default_rng(0).standard_normal((3, 300))
    expected = [np.mean([per_seed[r, b] for r in plan.seeds[b]]) for b in range(300)]
    assert np.allclose(plan.over_seeds(per_seed), expected)
    assert len({tuple(row) for row in plan.seeds}) > 10  # seeds are drawn with replacement, not fixed
    one = Draws(5, {"bootstrap": 300, "seed": 4, "protocol": "official", "group_by": "clip"}, repeats=1)
    assert np.array_equal(one.over_seeds(per_seed[:1]), per_seed[0])  # one seed: the group bootstrap itself


def test_cross_corpus_rows_score_every_unit_on_the_other_corpus(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_spaces(tmp_path / "afew", clip_labels(9), signals=(1.0, 0.4))
    other = {str(100 + k): labels for k, labels in enumerate(clip_labels(14).values()) if k >= 8}  # other clips, names
    write_spaces(tmp_path / "aw2", other, signals=(1.0, 0.4))
    validation = {"110", "112", "113"}
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        _official(tmp_path / "aw2" / name, validation)
    spaces = ["rgb=afew/features_manifest.json", "hsv=afew/features_hsv_manifest.json"]
    tests = ["rgb=aw2/features_manifest.json", "hsv=aw2/features_hsv_manifest.json"]
    with pytest.raises(EmoNetError, match="the dataset the units train on"):
        _compare("--manifests", *spaces, "--test_manifests", *spaces, "--output_dir", tmp_path / "no")
    with pytest.raises(EmoNetError, match="give the colour spaces of --manifests"):
        _compare("--manifests", *spaces, "--test_manifests", tests[0], "--output_dir", tmp_path / "no")
    for space, name in (("rgb", "features_manifest.json"), ("hsv", "features_hsv_manifest.json")):
        resized = read_manifest(tmp_path / "aw2" / name)
        write_manifest(tmp_path / "aw2" / f"resized_{space}.json", {**resized.settings, "crop": "resize"}, resized.samples)
    with pytest.raises(EmoNetError, match="made otherwise than the training features .crop 'landmarks' -> 'resize'"):
        _compare("--manifests", *spaces, "--test_manifests", "rgb=aw2/resized_rgb.json", "hsv=aw2/resized_hsv.json",
                 "--output_dir", tmp_path / "no")
    base = ["--manifests", *spaces, "--folds", "3", "--epochs", "2", "--bootstrap", "200", "--output_dir", tmp_path / "cmp"]
    _compare(*base)  # first without the other corpus: it is added to the finished comparison by prediction alone
    _compare(*base, "--test_manifests", *tests)
    assert "6 units predicted the official validation split of aff_wild2" in capsys.readouterr().out
    folds = [pd.read_csv(tmp_path / "cmp" / "rgb" / f"fold_{k}" / "cross_aff_wild2.csv", dtype={"clip": str})
             for k in range(3)]
    assert all(set(f["clip"]) == validation for f in folds)  # its validation split, every unit
    report = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    cross = report["cross_corpus"]
    assert cross["protocol"]["protocol"] == "cross-corpus" and cross["protocol"]["trained_on"] == "afew_va"
    truth = np.concatenate([np.asarray(other[c]["valence"], float) for c in sorted(validation)])
    ensemble = np.mean([f["valence_pred"].to_numpy() for f in folds], axis=0)  # the 3 fold models' mean
    order = np.lexsort((folds[0]["frame"].to_numpy(), folds[0]["clip"].to_numpy()))
    assert cross["color_spaces"]["rgb"]["headline"]["valence"]["CCC"] == pytest.approx(ccc(truth, ensemble[order]))
    assert cross["color_spaces"]["rgb"]["headline"]["valence"]["statistic"] == "clip bootstrap"
    assert cross["color_spaces"]["hsv"]["vs_reference"]["valence"]["CCC_diff"] == pytest.approx(
        cross["color_spaces"]["hsv"]["headline"]["valence"]["CCC"] - cross["color_spaces"]["rgb"]["headline"]["valence"]["CCC"])
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Cross-corpus: trained on AFEW-VA, scored on the official validation split of Aff-Wild2 (VA track)" in markdown
    assert (tmp_path / "cmp" / "cross_corpus.png").is_file() and (tmp_path / "cmp" / "cross_corpus.csv").is_file()
    # --report_only alone reads the test manifests from the units; one that leaves them out would replace the whole.
    _compare("--report_only", "--folds", "3", "--bootstrap", "200", "--output_dir", tmp_path / "cmp")
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["cross_corpus"] == cross
    write_spaces(tmp_path / "an", other, signals=(1.0, 0.4))
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        _official(tmp_path / "an" / name, validation, dataset="affectnet")
    with pytest.raises(EmoNetError, match="the cross-corpus predictions of aff_wild2 .--test_manifests."):
        _compare(*base, "--test_manifests", "rgb=an/features_manifest.json", "hsv=an/features_hsv_manifest.json")
    # Other frames of the test corpus are refused, not mixed with what the units scored.
    _official(tmp_path / "aw2" / "features_manifest.json", {"110"})
    _official(tmp_path / "aw2" / "features_hsv_manifest.json", {"110"})
    with pytest.raises(EmoNetError, match="scored other aff_wild2 frames"):
        _compare(*base, "--test_manifests", *tests)


def test_sample_columns_read_as_the_samples_they_hold(monkeypatch):
    import emonet.manifest as manifest

    from emonet.manifest import SampleColumns, take

    monkeypatch.setattr(manifest, "SAMPLE_CHUNK", 3)  # iteration crosses chunk boundaries
    samples = [{"clip": f"v{k % 3}", "frame": f"{k:05d}", "actor": "v" if k % 2 else "", "valence": k / 10 - 0.3,
                "arousal": -k / 7, "split": "train" if k < 5 else "validation", "path": "ignored.npz"} for k in range(8)]
    columns = SampleColumns(samples)
    expected = [{k: v for k, v in s.items() if k != "path"} for s in samples]
    assert list(columns) == expected and len(columns) == 8
    assert columns[-1] == expected[-1] and columns[2] == expected[2] and columns[1:3] == expected[1:3]
    assert take(columns, np.array([6, 0])) == [expected[6], expected[0]] == take(expected, np.array([6, 0]))
    assert columns.columns["clip"].dtype == np.int32 and columns.names["clip"] == ["v0", "v1", "v2"]
    assert "split" not in SampleColumns([{k: v for k, v in s.items() if k != "split"} for s in samples])[0]
    with pytest.raises(IndexError):
        columns[8]


def test_a_head_trains_on_the_official_training_split_and_holds_out_its_validation_split(tmp_path):
    labels = clip_labels(8)
    write_spaces(tmp_path, labels)
    validation = set(sorted(labels)[-3:])
    manifest = tmp_path / "features_manifest.json"

    def train(*argv):
        return train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
            ["--manifest_file", str(manifest), "--epochs", "2", "--device", "cpu", "--no_progress", *map(str, argv)]))

    with pytest.raises(EmoNetError, match="afew_va data, which have no official split"):
        train("--official_split", "--output_dir", tmp_path / "no")
    _official(manifest, validation)
    with pytest.raises(EmoNetError, match="--folds does not apply with --official_split"):
        train("--official_split", "--folds", "3", "--fold", "0", "--output_dir", tmp_path / "no")
    train("--official_split", "--inner_val_split", "0.2", "--output_dir", tmp_path / "run")
    split = torch.load(tmp_path / "run" / "best_model.pth", weights_only=True)["split"]
    assert split["val"] == sorted(validation) and split["protocol"] == "official"
    assert sorted(split["train"] + split["inner_val"]) == sorted(set(labels) - validation) and split["inner_val"]
