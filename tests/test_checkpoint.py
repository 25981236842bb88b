"""Checkpoint loading: the released format and every way a file can be wrong."""
import fractions

import pytest
import torch

from emonet.checkpoint import load_emonet
from emonet.errors import CheckpointError
from emonet.testing import deterministic_state_dict


def _assert_same_weights(model, n_expression):
    reference = deterministic_state_dict(n_expression)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


def test_released_format_loads(released_checkpoint):
    raw = torch.load(released_checkpoint, weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    assert not any(k.endswith("num_batches_tracked") for k in raw)
    model, metadata = load_emonet(released_checkpoint)
    assert model.n_expression == 8 and not model.training and metadata == {}
    _assert_same_weights(model, 8)


def test_infers_five_classes_and_reads_project_checkpoints(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": deterministic_state_dict(5), "epoch": 3}, path)
    model, metadata = load_emonet(path)
    assert model.n_expression == 5 and metadata == {"epoch": 3}
    _assert_same_weights(model, 5)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"emonet_8\.pth: file not found.*face-analysis/emonet"):
        load_emonet(tmp_path / "emonet_8.pth")


def _write(tmp_path, obj, name="bad.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = deterministic_state_dict(8)
    del state["conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = _write(tmp_path, state)
    with pytest.raises(CheckpointError, match=r"bad\.pth.*1 missing keys: conv1\.weight.*1 unexpected keys: extra\.weight"):
        load_emonet(path)


def test_wrong_shape_is_named(tmp_path):
    state = deterministic_state_dict(8)
    state["l1.bias"] = torch.zeros(67)
    with pytest.raises(CheckpointError, match=r"wrong shapes: l1\.bias \(67,\) \(expected \(68,\)\)"):
        load_emonet(_write(tmp_path, state))


def test_truncated_file(tmp_path, released_checkpoint):
    path = tmp_path / "truncated.pth"
    path.write_bytes(released_checkpoint.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: the file is truncated or corrupt"):
        load_emonet(path)


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.pth: not a PyTorch checkpoint"):
        load_emonet(path)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_emonet(empty)


def test_pickle_that_needs_code_is_refused(tmp_path):
    path = _write(tmp_path, {"conv1.weight": torch.zeros(1), "note": fractions.Fraction(1, 3)})
    with pytest.raises(CheckpointError, match=r"bad\.pth: refused.*need code to load"):
        load_emonet(path)


def test_checkpoint_of_something_else(tmp_path):
    with pytest.raises(CheckpointError, match=r"not a state dict \(found list\)"):
        load_emonet(_write(tmp_path, [torch.zeros(2)]))
    with pytest.raises(CheckpointError, match=r"not a state dict \(entries that are not tensors: epoch\)"):
        load_emonet(_write(tmp_path, {"conv1.weight": torch.zeros(1), "epoch": 3}))
    with pytest.raises(CheckpointError, match=r"no valid 'emo_fc_2\.3\.weight'"):
        load_emonet(_write(tmp_path, {"fc.weight": torch.zeros(2, 2)}))
