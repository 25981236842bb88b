"""What is said before any slow work, and what a long run shows while it works: a missing input, a wrong dataset root
and a folder that cannot be written are named before EmoNet loads; a progress bar moves per frame; old epoch
checkpoints do not pile up."""
import pytest
import torch

import extract_features_all
import predict
import train_emonet_features
from conftest import clip_labels
from emonet import extraction
from emonet.errors import EmoNetError
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
