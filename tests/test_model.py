"""The model against the facts of the released checkpoints and the original code's reference outputs."""
import json

import numpy as np
import pytest
import torch

from conftest import DATA_DIR
from emonet.constants import FEATURE_DIM, HEATMAP_SIZE, IMAGE_SIZE, NUM_LANDMARKS
from emonet.model import EmoNet
from emonet.testing import deterministic_state_dict

GOLDEN = np.load(DATA_DIR / "emonet_golden.npz")
RTOL = 1e-4


@pytest.mark.parametrize("n_expression", [8, 5])
def test_state_dict_matches_released_names_shapes_dtypes_in_order(n_expression):
    reference = json.loads((DATA_DIR / f"emonet_{n_expression}_state_dict.json").read_text())["tensors"]
    ours = EmoNet(n_expression).state_dict()
    assert list(ours) == list(reference)
    for name, tensor in ours.items():
        shape, dtype = reference[name]
        assert list(tensor.shape) == shape, name
        assert str(tensor.dtype).removeprefix("torch.") == dtype, name


def _golden_model(n_expression: int) -> EmoNet:
    model = EmoNet(n_expression)
    model.load_state_dict(deterministic_state_dict(n_expression))
    return model.eval()


def _golden_input() -> torch.Tensor:
    return torch.from_numpy(GOLDEN["input_rgb"]).permute(2, 0, 1)[None].float() / 255


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("n_expression", [8, 5])
def test_reproduces_original_emonet_outputs(n_expression):
    with torch.inference_mode():
        out = _golden_model(n_expression)(_golden_input())
    got = {
        "features": out["features"][0].numpy(),
        "valence": out["valence"].numpy(),
        "arousal": out["arousal"].numpy(),
        "expression": out["expression"][0].numpy(),
        "heatmap_sum": out["heatmap"][0].sum(dim=(1, 2)).numpy(),
    }
    for key, value in got.items():
        reference = GOLDEN[f"emonet{n_expression}_{key}"]
        assert value.shape == reference.shape, key
        assert _relative_error(value, reference) < RTOL, key


def test_output_shapes_batch_and_channels_last():
    model = _golden_model(8)
    x = _golden_input().repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    with torch.inference_mode():
        out = model(x)
        out_cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert out["heatmap"].shape == (2, NUM_LANDMARKS, HEATMAP_SIZE, HEATMAP_SIZE)
    assert out["expression"].shape == (2, 8)
    assert out["valence"].shape == out["arousal"].shape == (2,)
    assert out["features"].shape == (2, FEATURE_DIM)
    assert x.shape[-1] == IMAGE_SIZE
    # The batch does not mix samples (BatchNorm in eval mode) and channels_last changes nothing.
    assert _relative_error(out["features"][0].numpy(), GOLDEN["emonet8_features"]) < RTOL
    assert not torch.allclose(out["features"][0], out["features"][1])
    for key in ("features", "valence", "arousal", "expression"):
        assert torch.allclose(out[key], out_cl[key], rtol=1e-4, atol=1e-3 * out[key].abs().max().item())


def test_eval_returns_model_and_does_not_touch_torch_nn():
    model = EmoNet()
    assert model.eval() is model and not model.training
    assert model.train() is model and model.training
    assert torch.nn.BatchNorm2d.forward is torch.nn.modules.batchnorm._BatchNorm.forward
