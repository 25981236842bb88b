"""Stage 4: fine-tuning EmoNet on the fixture's frames, frozen and not, and its evaluation."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import train_emonet_hsv
from emonet.afew_va import read_afew_va
from emonet.crop import flip_landmarks
from emonet.data import Augment, FrameDataset
from emonet.errors import EmoNetError
from emonet.model import EMOTION_MODULES
from emonet.testing import deterministic_state_dict, write_aff_wild2_tree

CLIPS = "3"  # 12 frames: 2 clips train, 1 clip validates


def _train(tree, ckpt, out, *extra):
    argv = ["--dataset_root", str(tree), "--pretrained_path", str(ckpt), "--limit", CLIPS, "--batch_size", "4",
            "--epochs", "1", "--learning_rate", "1e-3", "--val_split", "0.34", "--num_workers", "0",
            "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]
    train_emonet_hsv.main(train_emonet_hsv.get_args_parser().parse_args(argv))
    return torch.load(out / "last.pth", weights_only=True)


def _evaluate(out, *extra):
    argv = ["--output_dir", str(out), "--no_progress", "--device", "cpu", "--num_workers", "0", "--batch_size", "4", *extra]
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(argv))
    with open(out / "predictions.csv") as f:
        return json.loads((out / "evaluation_results.json").read_text()), list(csv.DictReader(f))


def _is_backbone(name: str) -> bool:
    return name.split(".")[0] not in EMOTION_MODULES


@pytest.fixture(scope="module")
def frozen_run(afew_tree, released_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("frozen") / "hsv_full_training"
    return out, _train(afew_tree, released_checkpoint, out, "--freeze_backbone", "--epochs", "2", "--colour_jitter", "0.2")


def test_frozen_backbone_is_bit_identical_and_emotion_branch_trains(frozen_run):
    _, ckpt = frozen_run
    loaded = deterministic_state_dict(8)
    backbone = [k for k in loaded if _is_backbone(k)]
    assert len(backbone) > 500
    for name in backbone:
        if name.endswith("num_batches_tracked"):
            assert ckpt["model"][name] == 0, name  # BatchNorm never ran in training mode
        else:
            assert torch.equal(ckpt["model"][name], loaded[name]), name
    changed = [k for k in loaded if not _is_backbone(k) and not torch.equal(ckpt["model"][k], loaded[k])]
    assert "emo_fc_2.3.weight" in changed and "emo_net_2.0.conv1.weight" in changed
    assert "emo_net_2.0.bn1.running_mean" in changed  # the emotion branch's BatchNorm does train
    assert ckpt["settings"]["freeze_backbone"] and ckpt["settings"]["color_space"] == "hsv"


def test_unfrozen_backbone_changes(afew_tree, released_checkpoint, tmp_path):
    ckpt = _train(afew_tree, released_checkpoint, tmp_path / "run", "--no-augment")
    loaded = deterministic_state_dict(8)
    for name in ("conv1.weight", "m0.b1_4.conv1.weight", "bn1.running_mean", "l1.bias"):
        assert not torch.equal(ckpt["model"][name], loaded[name]), name


def test_evaluation_reuses_the_split_and_flip_tta_changes_predictions(frozen_run, tmp_path):
    out, ckpt = frozen_run
    results, rows = _evaluate(tmp_path / "plain", "--model_path", str(out / "best_model.pth"), "--model_type", "full")
    assert {r["clip"] for r in rows} == set(ckpt["split"]["val"]) == set(json.loads((out / "split.json").read_text())["val"])
    assert results["leakage_check"]["leak_free"] and results["color_space"] == "hsv" and results["crop"] == "landmarks"
    tta, tta_rows = _evaluate(tmp_path / "tta", "--model_path", str(out / "best_model.pth"), "--model_type", "full", "--flip_tta")
    assert tta["flip_tta"] and len(tta_rows) == len(rows)
    plain_pred = np.array([[float(r["valence_pred"]), float(r["arousal_pred"])] for r in rows])
    tta_pred = np.array([[float(r["valence_pred"]), float(r["arousal_pred"])] for r in tta_rows])
    assert not np.allclose(plain_pred, tta_pred)


def test_flip_mirrors_frame_and_landmarks(afew_tree):
    frames, _ = read_afew_va(afew_tree, limit=1)
    plain = FrameDataset(frames, "rgb", "landmarks")[0]["image"]
    mirrored = FrameDataset(frames, "rgb", "landmarks", flip=True)[0]["image"]
    # Flipping the frame and mirroring its landmarks (with the 68-point order) gives the mirrored crop, up to
    # OpenCV's 1/32-pixel quantisation of bilinear weights (f and 1 - f round differently).
    assert (mirrored - plain.flip(-1)).abs().max() <= 2 / 255 + 1e-6
    assert (mirrored - plain).abs().mean() > 10 * (mirrored - plain.flip(-1)).abs().mean()
    lm = frames[0].landmarks
    flipped = flip_landmarks(lm, 720)
    assert flipped[36, 0] < flipped[45, 0] and lm[36, 0] < lm[45, 0]  # eye corners keep their side


def test_augmentation_is_reproducible_and_varies(afew_tree):
    frames, _ = read_afew_va(afew_tree, limit=1)
    ds = FrameDataset(frames, "hsv", "landmarks", augment=Augment(colour_jitter=0.2), seed=1)
    a, b = ds[0]["image"], ds[0]["image"]
    ds.epoch = 1
    assert torch.equal(a, b) and not torch.equal(a, ds[0]["image"])


def test_resume_continues_to_the_same_weights(frozen_run, afew_tree, released_checkpoint, tmp_path):
    _, uninterrupted = frozen_run
    part = tmp_path / "part"
    _train(afew_tree, released_checkpoint, part, "--freeze_backbone", "--colour_jitter", "0.2")
    resumed = _train(afew_tree, released_checkpoint, part, "--freeze_backbone", "--colour_jitter", "0.2",
                     "--epochs", "2", "--resume", str(part / "last.pth"))
    assert resumed["epoch"] == 2 and len(resumed["history"]) == 2
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    with pytest.raises(Exception, match=r"made with other settings \(color_space 'hsv' -> 'rgb'"):
        _train(afew_tree, released_checkpoint, part, "--freeze_backbone", "--color_space", "rgb",
               "--resume", str(part / "last.pth"))


def test_pretrained_zero_shot_on_frames(afew_tree, released_checkpoint, tmp_path):
    one_clip = tmp_path / "AFEW-VA"
    shutil.copytree(afew_tree / "001", one_clip / "001")
    (one_clip / "001" / "00002.png").write_bytes(b"corrupt")  # left out and listed, not fatal
    results, rows = _evaluate(tmp_path, "--model_type", "pretrained", "--pretrained_path", str(released_checkpoint),
                              "--dataset_root", str(one_clip), "--subset", "all", "--color_space", "rgb")
    assert results["num_samples"] == len(rows) == 3 and results["leakage_check"]["leak_free"]
    assert [Path(e["path"]).name for e in results["excluded_frames"]] == ["00002.png"]
    assert "cannot decode" in results["excluded_frames"][0]["reason"]
    assert results["color_space"] == "rgb" and results["model_type"] == "pretrained"


def test_a_fine_tuned_network_is_scored_on_another_datasets_frames(afew_tree, released_checkpoint, tmp_path):
    aw2 = write_aff_wild2_tree(tmp_path / "aw2", {"a": ("Training_Set", [(0.5, 0.1), (0.4, 0.2)]),
                                                  "b": ("Validation_Set", [(-0.3, 0.6), (-0.2, 0.7), (0.1, -0.5)])})
    out = tmp_path / "full"
    _train(afew_tree, released_checkpoint, out, "--freeze_backbone", "--crop", "resize")
    best = str(out / "best_model.pth")
    with pytest.raises(EmoNetError, match="give the aff_wild2 frames' --dataset_root"):
        _evaluate(tmp_path / "no", "--model_path", best, "--model_type", "full", "--dataset", "aff_wild2")
    results, rows = _evaluate(tmp_path / "cross", "--model_path", best, "--model_type", "full", "--dataset", "aff_wild2",
                              "--dataset_root", str(aw2))
    assert results["cross_corpus"] and results["trained_on"] == "afew_va" and results["dataset"] == "aff_wild2"
    assert sorted((r["clip"], float(r["valence_true"])) for r in rows) == [("b", -3.0), ("b", -2.0), ("b", 1.0)]  # x 10
    # EmoNet zero-shot on the frames of its validation split; the landmark crop is refused on its aligned faces.
    with pytest.raises(EmoNetError, match="--crop landmarks cannot be used with --dataset aff_wild2"):
        _evaluate(tmp_path / "no", "--model_type", "pretrained", "--pretrained_path", str(released_checkpoint),
                  "--dataset", "aff_wild2", "--dataset_root", str(aw2), "--crop", "landmarks")
    results, rows = _evaluate(tmp_path / "zero", "--model_type", "pretrained", "--pretrained_path",
                              str(released_checkpoint), "--dataset", "aff_wild2", "--dataset_root", str(aw2),
                              "--crop", "resize")
    assert results["num_samples"] == 3 and {r["clip"] for r in rows} == {"b"}


def test_fine_tuning_on_an_official_split_of_another_dataset(released_checkpoint, tmp_path, capsys):
    videos = {f"t{k}": ("Training_Set", [(0.1 * k, -0.1 * k), (0.2, 0.1 * k)]) for k in range(4)}
    videos |= {"v0": ("Validation_Set", [(-0.3, 0.6), (-0.2, 0.7)]), "v1": ("Validation_Set", [(0.4, -0.5)])}
    aw2 = write_aff_wild2_tree(tmp_path / "aw2", videos)
    base = ["--dataset", "aff_wild2", "--dataset_root", str(aw2), "--pretrained_path", str(released_checkpoint),
            "--batch_size", "4", "--epochs", "1", "--num_workers", "0", "--no_progress", "--device", "cpu",
            "--freeze_backbone"]
    with pytest.raises(EmoNetError, match="--crop landmarks cannot be used with --dataset aff_wild2"):
        train_emonet_hsv.main(train_emonet_hsv.get_args_parser().parse_args(
            [*base, "--crop", "landmarks", "--output_dir", str(tmp_path / "no")]))
    train_emonet_hsv.main(train_emonet_hsv.get_args_parser().parse_args(  # without --crop: the dataset's own, resize
        [*base, "--official_split", "--inner_val_split", "0.25", "--output_dir", str(tmp_path / "ft")]))
    best = torch.load(tmp_path / "ft" / "best_model.pth", weights_only=True)
    assert best["split"]["val"] == ["v0", "v1"] and best["settings"]["dataset"] == "aff_wild2"
    assert best["settings"]["crop"] == "resize"
    assert sorted(best["split"]["train"] + best["split"]["inner_val"]) == ["t0", "t1", "t2", "t3"]
    # Evaluated on its own dataset: the checkpoint's split (the official validation split), on AFEW-VA's scale.
    results, rows = _evaluate(tmp_path / "eval", "--model_path", str(tmp_path / "ft" / "best_model.pth"), "--model_type", "full")
    assert not results["cross_corpus"] and sorted(float(r["valence_true"]) for r in rows) == [-3.0, -2.0, 4.0]
    # The fine-tuning comparison of that dataset takes its official split: one unit a space, --folds refused.
    argv = ["--approach", "finetune", "--dataset", "aff_wild2", "--dataset_root", str(aw2), "--crop", "resize",
            "--color_spaces", "rgb", "hsv", "--output_dir", str(tmp_path / "cmp"), "--list_units"]
    capsys.readouterr()
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    assert capsys.readouterr().out.split() == ["rgb:0", "hsv:0"]
    with pytest.raises(EmoNetError, match="--folds 3: aff_wild2 has an official training / validation split"):
        compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args([*argv, "--folds", "3"]))
