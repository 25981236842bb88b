"""The project's stand-in EmoNet weights are named wherever they are loaded and recorded in what is written with them;
values outside the labels' scale are counted and said."""
import json
import logging

import cv2
import torch
from skimage import data

import evaluate_hsv_model
import extract_features_all
import predict
from emonet.checkpoint import load_emonet
from emonet.manifest import read_manifest
from emonet.stand_in import is_stand_in
from emonet.testing import deterministic_state_dict


def test_the_stand_in_weights_are_recognised_by_their_content(released_checkpoint, tmp_path, caplog):
    assert is_stand_in(deterministic_state_dict(8)) and is_stand_in(deterministic_state_dict(5))
    other = deterministic_state_dict(8)
    other["emo_fc_2.3.weight"] = other["emo_fc_2.3.weight"] + 1e-3  # one layer moved: fine-tuned, say
    assert not is_stand_in(other)
    copy = tmp_path / "emonet_8.pth"  # a path this process has not loaded yet
    copy.write_bytes(released_checkpoint.read_bytes())
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        model, _ = load_emonet(copy)
    assert model.stand_in
    said = [r for r in caplog.records if "stand-in EmoNet weights" in r.getMessage()]
    assert len(said) == 1 and str(copy) in said[0].getMessage()  # once per process, naming the file
    changed = tmp_path / "changed.pth"
    torch.save(other, changed)
    assert not load_emonet(changed)[0].stand_in


def test_features_evaluation_and_predictions_record_the_stand_in_and_count_values_off_the_scale(
        afew_tree, released_checkpoint, tmp_path, capsys):
    manifest = tmp_path / "features_manifest.json"
    extract_features_all.main(extract_features_all.get_args_parser().parse_args(
        ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--output_dir",
         str(tmp_path / "features"), "--manifest_file", str(manifest), "--no_progress", "--device", "cpu"]))
    assert read_manifest(manifest).settings["stand_in_weights"] is True
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
        ["--model_type", "pretrained", "--manifest_file", str(manifest), "--subset", "all", "--output_dir",
         str(tmp_path / "eval"), "--no_progress", "--device", "cpu"]))
    results = json.loads((tmp_path / "eval" / "evaluation_results.json").read_text())
    # The stand-in network says values in the hundreds: every prediction is off AFEW-VA's scale, and that is said.
    assert results["stand_in_weights"] is True
    assert results["predictions_outside_scale"]["valence"] + results["predictions_outside_scale"]["arousal"] > 0
    assert "lie outside AFEW-VA's scale [-10, 10]" in capsys.readouterr().err
    image = tmp_path / "face.jpg"
    cv2.imwrite(str(image), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    predict.main(predict.get_args_parser().parse_args(
        ["--inputs", str(image), "--pretrained_path", str(released_checkpoint), "--crop", "box", "--output_dir",
         str(tmp_path / "predictions"), "--no_progress", "--device", "cpu"]))
    summary = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    entry = summary["inputs"][0]
    assert summary["stand_in_weights"] is True and entry["values_outside_scale"] == 1
    assert any("outside AFEW-VA's scale" in w and "stand-in" in w for w in entry["warnings"])
    assert "stand-in weights" in (tmp_path / "predictions" / "report.html").read_text()
