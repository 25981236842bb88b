"""EmoNet through ONNX Runtime: the same outputs as the torch network (the original network's reference outputs, a real
face), a cache that rebuilds what is stale or damaged, the backends a run may take, and extraction by either backend
giving the same features while int8 gives another feature set."""
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import DATA_DIR, ROOT
from emonet.engine import choose_backend, load_engine
from emonet.extraction import extract_features
from emonet.settings import ExtractionConfig
from emonet.errors import EmoNetError
from emonet.faces import FaceDetector
from emonet.manifest import read_manifest
from emonet.model import EmoNet
from emonet.testing import deterministic_state_dict

GOLDEN = np.load(DATA_DIR / "emonet_golden.npz")
FACES_DIR = ROOT.parent / "shared" / "faces"
RTOL = 1e-4
CPU = torch.device("cpu")


def _network(n_expression: int) -> EmoNet:
    network = EmoNet(n_expression)
    network.load_state_dict(deterministic_state_dict(n_expression))
    return network.eval()


def _engine(network: EmoNet, name: str):
    return load_engine(network, f"test-{name}-{network.n_expression}", choose_backend("onnxruntime", CPU, False, False,
                                                                                       False, 1))


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def _outputs(runner, image: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = runner(image)
    return {"features": out["features"][0].numpy(), "valence": out["valence"].numpy(), "arousal": out["arousal"].numpy(),
            "expression": out["expression"][0].numpy(), "heatmap_sum": out["heatmap"][0].sum(dim=(1, 2)).numpy()}


@pytest.mark.parametrize("n_expression", [8, 5])
def test_the_engine_gives_the_original_networks_outputs(n_expression):
    image = torch.from_numpy(GOLDEN["input_rgb"]).permute(2, 0, 1)[None].float() / 255
    network = _network(n_expression)
    engine, eager = _outputs(_engine(network, "golden"), image), _outputs(network, image)
    for key, value in engine.items():
        assert _relative_error(value, GOLDEN[f"emonet{n_expression}_{key}"]) < RTOL, key
        assert _relative_error(value, eager[key]) < RTOL, key


@pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"needs the real photos of {FACES_DIR} (absent here)")
def test_the_engine_equals_torch_on_a_real_face():
    rgb = cv2.cvtColor(cv2.imread(str(FACES_DIR / "rose_leslie2.jpg")), cv2.COLOR_BGR2RGB)
    x1, y1, x2, y2 = FaceDetector(CPU)(rgb)[0].box.astype(int)
    crop = cv2.resize(rgb[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    network = _network(8)
    engine, eager = _outputs(_engine(network, "face"), image), _outputs(network, image)
    for key, value in engine.items():
        assert _relative_error(value, eager[key]) < RTOL, key


def test_a_stale_or_damaged_cache_file_is_exported_again(engine_cache, caplog):
    network = _network(8)
    path = _engine(network, "cache").path
    record = json.loads(path.with_suffix(".json").read_text())
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    assert _engine(network, "cache").path.stat().st_size > 1000 and "stale or damaged" in caplog.text
    stale = record | {"onnxruntime": "0.0"}  # made by another version of the engine
    path.with_suffix(".json").write_text(json.dumps(stale))
    caplog.clear()
    _engine(network, "cache")
    assert "stale or damaged" in caplog.text
    assert json.loads(path.with_suffix(".json").read_text())["onnxruntime"] == record["onnxruntime"]


def test_the_backend_is_chosen_and_impossible_combinations_are_refused():
    cuda = torch.device("cuda")
    assert choose_backend("auto", CPU, False, False, False, None).backend == "onnxruntime"
    assert choose_backend("auto", cuda, False, False, False, None).backend == "torch"
    assert choose_backend("auto", CPU, True, False, False, None).backend == "torch"  # bf16 autocast is PyTorch's
    assert choose_backend("auto", CPU, False, False, True, 2).int8 and choose_backend("auto", CPU, False, False, True, 2).threads == 2
    for args, message in (((cuda, False, False, False, None), "runs on the CPU"),
                          ((CPU, True, False, False, None), "--amp is PyTorch's"),
                          ((CPU, False, True, False, None), "--compile is PyTorch's"),
                          ((CPU, False, False, False, 0), "--threads 0")):
        with pytest.raises(EmoNetError, match=message):
            choose_backend("onnxruntime", *args)
    with pytest.raises(EmoNetError, match="int8 runs through ONNX Runtime"):
        choose_backend("torch", CPU, False, False, True, None)


def _extract(afew_tree, released_checkpoint, folder, **kwargs):
    config = ExtractionConfig(str(afew_tree), str(folder / "features"), str(folder / "manifest.json"),
                              str(released_checkpoint), color_space="rgb", device="cpu", progress=False, **kwargs)
    return extract_features(config)


def _features(manifest_path) -> np.ndarray:
    from emonet.features import load_feature_set

    return load_feature_set(read_manifest(manifest_path)).features


def test_both_backends_extract_the_same_features_and_a_run_may_continue_with_the_other(afew_tree, released_checkpoint,
                                                                                         tmp_path):
    _extract(afew_tree, released_checkpoint, tmp_path / "torch", backend="torch")
    _extract(afew_tree, released_checkpoint, tmp_path / "engine", backend="onnxruntime", limit=3)  # half, then the rest
    result = _extract(afew_tree, released_checkpoint, tmp_path / "engine", backend="torch")
    assert result.skipped > 0 and result.extracted > 0
    torch_features, mixed = _features(tmp_path / "torch" / "manifest.json"), _features(tmp_path / "engine" / "manifest.json")
    assert _relative_error(mixed, torch_features) < RTOL
    settings = read_manifest(tmp_path / "engine" / "manifest.json").settings
    assert settings["precision"] == "fp32" and settings["backend"]["name"] == "torch"


def test_int8_features_are_another_feature_set_close_to_fp32(afew_tree, released_checkpoint, tmp_path):
    _extract(afew_tree, released_checkpoint, tmp_path / "fp32")
    _extract(afew_tree, released_checkpoint, tmp_path / "int8", int8_calibration=8)
    settings = read_manifest(tmp_path / "int8" / "manifest.json").settings
    assert settings["precision"].startswith("int8-") and settings["backend"]["int8"]
    fp32, int8 = _features(tmp_path / "fp32" / "manifest.json"), _features(tmp_path / "int8" / "manifest.json")
    cosine = (fp32 * int8).sum(axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() > 0.99 and _relative_error(int8, fp32) > RTOL  # close, and not the same features
    with pytest.raises(EmoNetError, match="precision: 'fp32' -> 'int8-"):
        _extract(afew_tree, released_checkpoint, tmp_path / "fp32", int8_calibration=8)
