"""Stages 3 and 5 on a synthetic feature set with the real labels and clip structure of AFEW-VA: splits, leaks,
resume, the zero-shot baseline, selection labels that cannot choose, and the names logs and folds carry."""
import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import train_emonet_features
from conftest import NO_LABELS_REASON, QUIET_CPU, clip_labels, manifest_as_list, real_labels, run_script, write_spaces
from emonet.cli import run
from emonet.errors import CheckpointError, EmoNetError
from emonet.metrics import regression_metrics
from emonet.splits import make_split, split_indices
from emonet.testing import write_feature_set

N_CLIPS = 60  # about 2,900 frames: real clip lengths and label dynamics, a few seconds per run
LABELS = real_labels()
needs_labels = pytest.mark.skipif(LABELS is None, reason=NO_LABELS_REASON)


def _labels() -> dict:
    return clip_labels(N_CLIPS)


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    write_feature_set(folder, _labels())
    return folder


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    """rgb and hsv feature sets of the same 12 clips, in one folder."""
    return write_spaces(tmp_path_factory.mktemp("spaces"), clip_labels(12), (1.0, 3.0))


def _train(folder, out, *extra):
    argv = ["--data_root", str(folder), "--manifest_file", str(folder / "features_hsv_manifest.json"),
            "--batch_size", "64", "--epochs", "3", "--learning_rate", "1e-3", "--loss_function", "ccc",
            "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(argv))
    return out


def _evaluate(model_path, out, *extra, model_type="feature"):
    argv = ["--model_type", model_type, "--batch_size", "64", "--output_dir", str(out), "--no_progress", "--device", "cpu"]
    if model_path:
        argv += ["--model_path", str(model_path)]
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args([*argv, *extra]))
    return json.loads((out / "evaluation_results.json").read_text())


@pytest.fixture(scope="module")
def clip_run(feature_dir, tmp_path_factory):
    return _train(feature_dir, tmp_path_factory.mktemp("run") / "hsv_features_training")


def _samples(folder):
    return manifest_as_list(folder / "features_hsv_manifest.json")["samples"]


@pytest.mark.parametrize("mode", ["clip", "actor"])
def test_clip_and_actor_splits_are_disjoint(feature_dir, mode):
    samples = _samples(feature_dir)
    split = make_split(samples, mode, 0.2, seed=3)
    sides = split_indices(samples, split)
    train_idx, val_idx = sides.train, sides.val
    assert len(train_idx) + len(val_idx) == len(samples)
    for key in ("clip", "actor"):
        if key == "clip" or mode == "actor":
            assert not {samples[i][key] for i in train_idx} & {samples[i][key] for i in val_idx}
    # K-fold: each unit is held out exactly once over the K folds.
    held_out = [u for k in range(5) for u in make_split(samples, mode, folds=5, fold=k, seed=3)["val"]]
    assert sorted(held_out) == sorted({s[mode] for s in samples})


def test_checkpoint_contents_and_outputs(clip_run):
    ckpt = torch.load(clip_run / "best_model.pth", weights_only=True)
    for key in ("model", "model_args", "optimizer", "epoch", "best_metric", "best_epoch", "args", "split", "settings"):
        assert key in ckpt, key
    assert ckpt["settings"]["color_space"] == "hsv" and ckpt["split"]["mode"] == "clip"
    assert ckpt["args"]["learning_rate"] == 1e-3
    history = torch.load(clip_run / "last.pth", weights_only=True)["history"]
    assert ckpt["best_metric"] == max(r["val_mean_CCC"] for r in history)  # best is checked every epoch
    assert ckpt["epoch"] == ckpt["best_epoch"]
    split = json.loads((clip_run / "split.json").read_text())
    assert split == ckpt["split"] and not set(split["train"]) & set(split["val"])
    log = (clip_run / "training_log.txt").read_text()
    assert log.count("\n") == 5 and f"best epoch (mean validation CCC): {ckpt['best_epoch']}" in log
    for name in ("args.json", "training_curves.png", "last.pth"):
        assert (clip_run / name).stat().st_size > 0


def test_clip_split_is_leak_free_and_json_matches_csv(clip_run, tmp_path, capsys):
    results = _evaluate(clip_run / "best_model.pth", tmp_path)
    leak = results["leakage_check"]
    assert leak == {"leak_free": True, "eval_clips_seen_in_training": 0, "eval_actors_seen_in_training":
                    leak["eval_actors_seen_in_training"], "nearest_frame_oracle": None}
    split = json.loads((clip_run / "split.json").read_text())
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["clip"] for r in rows} == set(split["val"]) and len(rows) == results["num_samples"]
    for dim in ("valence", "arousal"):
        truth = np.array([float(r[f"{dim}_true"]) for r in rows])
        pred = np.array([float(r[f"{dim}_pred"]) for r in rows])
        recomputed = regression_metrics(truth, pred)
        for name, value in results[f"{dim}_metrics"].items():
            assert value == pytest.approx(recomputed[name], rel=1e-9, abs=1e-12), (dim, name)
        normalized = regression_metrics(truth / 10, pred / 10)
        assert results["normalized"][f"{dim}_metrics"]["MSE"] == pytest.approx(normalized["MSE"], rel=1e-9)
    assert results["overall_metrics"]["CCC"] == pytest.approx(
        (results["valence_metrics"]["CCC"] + results["arousal_metrics"]["CCC"]) / 2)
    assert results["subset"] == "val" and results["split"] == "clip" and results["color_space"] == "hsv"
    assert (tmp_path / "evaluation_scatter.png").stat().st_size > 10_000
    assert (tmp_path / "evaluation_distributions.png").stat().st_size > 10_000
    assert "leak-free" in capsys.readouterr().out


@needs_labels
def test_frame_split_is_reported_as_leaking(feature_dir, tmp_path, capsys):
    run_dir = _train(feature_dir, tmp_path / "frame_run", "--split", "frame", "--epochs", "1")
    results = _evaluate(run_dir / "best_model.pth", tmp_path / "eval")
    leak = results["leakage_check"]
    assert not leak["leak_free"] and leak["eval_clips_seen_in_training"] > 0.9 * N_CLIPS
    assert leak["nearest_frame_oracle"]["valence_PCC"] > 0.99 and leak["nearest_frame_oracle"]["arousal_PCC"] > 0.99
    err = capsys.readouterr().err
    assert "WARNING: the split leaks" in err and f"{leak['nearest_frame_oracle']['valence_PCC']:.3f}" in err


def test_resume_reaches_the_uninterrupted_weights(feature_dir, tmp_path):
    full = _train(feature_dir, tmp_path / "full", "--epochs", "4", "--seed", "7")
    part = _train(feature_dir, tmp_path / "part", "--epochs", "2", "--seed", "7")
    _train(feature_dir, part, "--epochs", "4", "--seed", "7", "--resume", str(part / "last.pth"))
    a = torch.load(full / "last.pth", weights_only=True)
    b = torch.load(part / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["history"] == b["history"]
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
        _train(feature_dir, tmp_path / "x", "--resume", str(tmp_path / "other.pth"))


def test_pretrained_zero_shot_and_wrong_checkpoint_type(feature_dir, clip_run, tmp_path, caplog):
    results = _evaluate(None, tmp_path / "zero", "--manifest_file", str(feature_dir / "features_hsv_manifest.json"),
                        "--subset", "all", model_type="pretrained")
    assert results["subset"] == "all" and results["leakage_check"]["leak_free"]
    assert results["num_samples"] == len(_samples(feature_dir))
    # With a checkpoint, the pretrained baseline is scored on the same held-out clips as the model.
    on_val = _evaluate(clip_run / "best_model.pth", tmp_path / "zero_val", model_type="pretrained")
    assert on_val["num_samples"] == _evaluate(clip_run / "best_model.pth", tmp_path / "head")["num_samples"]
    args = evaluate_hsv_model.get_args_parser().parse_args(
        ["--model_type", "full", "--model_path", str(clip_run / "best_model.pth"), "--output_dir", str(tmp_path)])
    assert run(evaluate_hsv_model.main, args) == 1
    assert "holds a 'feature_head' model (made by train_emonet_features.py; evaluate it with --model_type feature)" \
        in caplog.text


# A selection side whose labels cannot tell epochs apart is reported, with what was kept.
def test_constant_selection_labels_are_warned_about(tmp_path, caplog):
    labels = {clip: {"valence": [0] * len(v["valence"]), "arousal": [3] * len(v["valence"])}
              for clip, v in clip_labels(12).items()}
    write_feature_set(tmp_path, labels)
    _train(tmp_path, tmp_path / "run", "--inner_val_split", "0.2")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("inner validation side's valence labels are all 0 and arousal labels are all 3" in w for w in warnings)
    assert any("every epoch scored the same mean CCC (0.0000) on the selection side, so epoch 1 was kept by default" in w
               for w in warnings)


# The zero-shot baseline can be scored on the split of a head trained on another colour space.
def test_zero_shot_on_another_colour_spaces_split(spaces, tmp_path):
    model = _train(spaces, tmp_path / "hsv", "--epochs", "1") / "best_model.pth"
    head = _evaluate(model, tmp_path / "head")
    zero = _evaluate(model, tmp_path / "zero", "--manifest_file", str(spaces / "features_manifest.json"),
                     model_type="pretrained")
    assert zero["color_space"] == "rgb" and zero["num_samples"] == head["num_samples"]
    assert zero["leakage_check"]["leak_free"] and not zero["selected_on_evaluated_frames"]


def test_the_feature_head_trains_on_the_manifest_that_exists(spaces, tmp_path, monkeypatch):
    rgb_only = tmp_path / "rgb_only"
    write_feature_set(rgb_only, clip_labels(4), "features_manifest.json", "features", color_space="rgb")
    monkeypatch.chdir(rgb_only)
    run_script(train_emonet_features, "--epochs", "1", *QUIET_CPU)
    assert (rgb_only / "rgb_features_training" / "best_model.pth").is_file()
    monkeypatch.chdir(spaces)
    with pytest.raises(EmoNetError, match=r"several feature manifests \(features_manifest\.json \(rgb\), "
                                          r"features_hsv_manifest\.json \(hsv\)\): pass --manifest_file"):
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(["--epochs", "1"]))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EmoNetError, match="holds none of the standard manifests"):
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(["--epochs", "1"]))


# Names that say what they are.
def test_logs_name_the_inner_split_and_folds_name_their_grouping(spaces, tmp_path):
    run = tmp_path / "run"
    run_script(train_emonet_features, "--manifest_file", spaces / "features_manifest.json", "--head", "temporal",
               "--epochs", "2", "--inner_val_split", "0.2", "--output_dir", run, *QUIET_CPU)
    log = pd.read_csv(run / "training_log.csv")
    assert {"inner_val_loss", "inner_val_mean_CCC", "inner_val_valence_CCC"} <= set(log) and "val_mean_CCC" not in log
    assert "inner_val_mean_CCC" in (run / "training_log.txt").read_text()
    assert _evaluate(run / "best_model.pth", tmp_path / "evaluation")["head"] == {"kind": "temporal"}  # no sigma: 0.0
    run_script(compare_color_spaces, "--manifests", f"rgb={spaces / 'features_manifest.json'}",
               f"hsv={spaces / 'features_hsv_manifest.json'}", "--folds", "2", "--epochs", "1", "--bootstrap", "100",
               "--output_dir", tmp_path / "cmp", *QUIET_CPU)
    report = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    folds = json.loads((tmp_path / "cmp" / "folds.json").read_text())
    assert folds["group_by"] == "clip" and "unit" not in folds and report["protocol"]["group_by"] == "clip"
