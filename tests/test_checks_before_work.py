"""What is said before any slow work, and what a long run shows while it works: a missing input, a wrong dataset root
and a folder that cannot be written are named before EmoNet loads; a progress bar moves per frame; old epoch
checkpoints do not pile up; a missing feature file, a truncated checkpoint and a manifest given as a checkpoint are
named as what they are."""
import pytest
import torch

import evaluate_hsv_model
import extract_features_all
import predict
import train_emonet_features
from conftest import QUIET_CPU, clip_labels, run_script
from emonet import extraction
from emonet.checkpoint import load_emonet
from emonet.errors import CheckpointError, DatasetError, EmoNetError
from emonet.inference import OUTPUT_KEYS, infer
from emonet.io import write_json
from emonet.testing import write_feature_set


def test_a_missing_input_is_named_before_emonet_loads(tmp_path):
    with pytest.raises(EmoNetError, match=r"--inputs: .*nowhere\.mp4: not found"):  # not the checkpoint's absence
        predict.main(predict.get_args_parser().parse_args(
            ["--inputs", str(tmp_path / "nowhere.mp4"), "--pretrained_path", str(tmp_path / "no.pth"), "--no_progress"]))


def test_a_wrong_dataset_root_is_named_before_emonet_loads(released_checkpoint, tmp_path, monkeypatch):
    def too_early(*args, **kwargs):
        raise AssertionError("EmoNet loaded before the dataset root was checked")

    monkeypatch.setattr(extraction, "load_emonet", too_early)
    with pytest.raises(EmoNetError, match="nowhere"):
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            ["--dataset_root", str(tmp_path / "nowhere"), "--pretrained_path", str(released_checkpoint),
             "--output_dir", str(tmp_path / "features"), "--no_progress", "--device", "cpu"]))
    with pytest.raises(EmoNetError, match=r"no\.pth: file not found"):  # a missing checkpoint: at once too
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            ["--dataset_root", str(tmp_path / "nowhere"), "--pretrained_path", str(tmp_path / "no.pth"),
             "--output_dir", str(tmp_path / "features"), "--no_progress", "--device", "cpu"]))


def test_a_folder_that_cannot_be_written_is_named_not_a_hidden_temporary_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"a_file/out: cannot write there"):
        predict.main(predict.get_args_parser().parse_args(
            ["--inputs", str(tmp_path), "--pretrained_path", str(tmp_path / "no.pth"), "--output_dir",
             str(blocker / "out"), "--no_progress"]))
    with pytest.raises(OSError) as raised:
        write_json(blocker / "results.json", {})
    assert str(blocker) in str(raised.value) and ".tmp" not in str(raised.value)


def test_a_progress_bar_moves_with_every_frame_on_the_cpu():
    done = []

    def network(x):
        return {k: torch.zeros(len(x), 2) for k in OUTPUT_KEYS}

    infer(network, torch.zeros(3, 3, 8, 8), torch.device("cpu"), False, done=done.append)
    assert done == [1, 1, 1]


def test_only_the_latest_epoch_checkpoints_are_kept(tmp_path):
    manifest = write_feature_set(tmp_path, clip_labels(6))
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(manifest), "--epochs", "5", "--save_freq", "1", "--keep_checkpoints", "2",
         "--output_dir", str(tmp_path / "run"), "--no_progress", "--device", "cpu"]))
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_epoch_*.pth")) == [
        "checkpoint_epoch_4.pth", "checkpoint_epoch_5.pth"]


# Messages that say what to do.
def test_missing_feature_file_names_its_manifest(tmp_path):
    manifest = write_feature_set(tmp_path, clip_labels(3))
    next((tmp_path / "features_hsv").glob("*/*.npz")).unlink()
    with pytest.raises(DatasetError, match=rf"feature file is missing; it is listed in the manifest {manifest}"):
        run_script(train_emonet_features, "--manifest_file", manifest, "--output_dir", tmp_path / "run", *QUIET_CPU)


def test_truncated_checkpoint_message_has_no_zip_internals(tmp_path, released_checkpoint):
    path = tmp_path / "emonet_8.pth"
    path.write_bytes(released_checkpoint.read_bytes()[:100_000])
    with pytest.raises(EmoNetError) as info:
        load_emonet(path)
    assert "truncated or corrupt" in str(info.value) and "download or save it again" in str(info.value)
    assert "PytorchStreamReader" not in str(info.value) and "miniz" not in str(info.value)


# A JSON file passed as a checkpoint is named as what it is.
def test_a_manifest_passed_as_a_checkpoint_is_named(tmp_path):
    manifest = write_feature_set(tmp_path, clip_labels(2), "features_manifest.json", "features", color_space="rgb")
    with pytest.raises(CheckpointError, match=r"features_manifest\.json: not a checkpoint, this is a JSON file"):
        run_script(evaluate_hsv_model, "--model_path", manifest, "--output_dir", tmp_path / "e", *QUIET_CPU)
