"""The Python API (`emonet.predict`, `extract`, `compare`, `evaluate`): keyword calls give what the scripts give, the
files included, and errors name the keyword, not the flag."""
import json
import subprocess
import sys

import pandas as pd
import pytest

import compare_color_spaces
import evaluate_hsv_model
import extract_features_all
import predict
import train_emonet_features
import emonet
from conftest import QUIET_CPU, ROOT, clip_labels, run_script, write_spaces
from emonet.errors import EmoNetError, MediaError
from emonet.manifest import read_manifest
from emonet.testing import face_image, write_face_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """Two faces crossing each other, then an empty background."""
    path = tmp_path_factory.mktemp("footage") / "two.mp4"
    return write_face_video(path, 6, 2, size=(320, 300), fps=10.0, faces=[face_image(), face_image()[:, ::-1]])


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    return write_spaces(tmp_path_factory.mktemp("spaces"), clip_labels(12), (1.0, 3.0))


def test_predict_returns_the_rows_predict_py_writes(video, released_checkpoint, tmp_path):
    run_script(predict, "--inputs", video, "--pretrained_path", released_checkpoint, "--sample_fps", "5",
               "--output_dir", tmp_path / "script", *QUIET_CPU)
    written = pd.read_csv(tmp_path / "script" / "predictions.csv")
    rows = emonet.predict(video, pretrained_path=released_checkpoint, sample_fps=5, device="cpu")
    assert len(rows) > 0 and rows["person"].notna().any()
    pd.testing.assert_frame_equal(rows.drop(columns="source"), written.drop(columns="source"), check_dtype=False)
    assert set(rows["source"]) == {str(video)} and rows.attrs["unread"] == {}
    # With output_dir, the files are predict.py's too.
    emonet.predict([video], pretrained_path=released_checkpoint, sample_fps=5, device="cpu",
                   output_dir=tmp_path / "api")
    assert (tmp_path / "api" / "predictions.csv").read_bytes() == (tmp_path / "script" / "predictions.csv").read_bytes()
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(p.name for p in (tmp_path / "script").iterdir())


def test_predict_names_what_it_could_not_read(video, released_checkpoint, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows = emonet.predict([broken, video], pretrained_path=released_checkpoint, sample_fps=5, device="cpu")
    assert set(rows["source"]) == {str(video)} and list(rows.attrs["unread"]) == [str(broken)]
    with pytest.raises(MediaError, match="no input could be read"):
        emonet.predict(broken, pretrained_path=released_checkpoint, device="cpu")


def test_errors_name_the_keyword_and_settings_are_keywords_only(video, released_checkpoint, tmp_path):
    with pytest.raises(EmoNetError, match=r"^sample_fps 0") as info:
        emonet.predict(video, pretrained_path=released_checkpoint, sample_fps=0)
    assert "--" not in str(info.value)
    with pytest.raises(TypeError):
        emonet.predict(video, released_checkpoint)  # the checkpoint is never taken by position
    with pytest.raises(TypeError, match="sample_rate"):
        emonet.predict(video, pretrained_path=released_checkpoint, sample_rate=5)  # a misspelt setting is refused
    with pytest.raises(EmoNetError, match=r"^epochs 0: at least 1"):
        emonet.compare({"rgb": "a.json", "hsv": "b.json"}, output_dir=tmp_path / "cmp", epochs=0)
    assert not (tmp_path / "cmp").exists()


def test_compare_returns_the_report_compare_color_spaces_writes(spaces, tmp_path):
    manifests = {"rgb": spaces / "features_manifest.json", "hsv": spaces / "features_hsv_manifest.json"}
    run_script(compare_color_spaces, "--manifests", *(f"{k}={v}" for k, v in manifests.items()), "--heads", "frame",
               "smooth", "--folds", "2", "--epochs", "2", "--bootstrap", "200", "--output_dir", tmp_path / "script",
               *QUIET_CPU)
    report = emonet.compare(manifests, output_dir=tmp_path / "api", heads=("frame", "smooth"), folds=2, epochs=2,
                            bootstrap=200, device="cpu")
    written = (tmp_path / "script" / "comparison.json").read_text()
    assert json.dumps(report, sort_keys=True) == json.dumps(json.loads(written.replace(
        str(tmp_path / "script"), str(tmp_path / "api"))), sort_keys=True)
    assert json.loads((tmp_path / "api" / "comparison.json").read_text()) == report


def test_extract_returns_the_manifest_the_script_writes(afew_tree, released_checkpoint, tmp_path):
    run_script(extract_features_all, "--dataset_root", afew_tree, "--pretrained_path", released_checkpoint,
               "--color_space", "hsv", "--limit", "1", "--output_dir", tmp_path / "script",
               "--manifest_file", tmp_path / "script.json", *QUIET_CPU)
    path = emonet.extract(afew_tree, pretrained_path=released_checkpoint, color_space="hsv", limit=1, device="cpu",
                          output_dir=tmp_path / "api", manifest_file=tmp_path / "api.json")
    assert path == tmp_path / "api.json"
    script, api = read_manifest(tmp_path / "script.json"), read_manifest(path)
    assert [(s["valence"], s["arousal"]) for s in api.samples] == [(s["valence"], s["arousal"]) for s in script.samples]
    different = {k for k in script.settings if script.settings[k] != api.settings[k]}
    assert different <= {"output_dir", "manifest_file"}, different
    for a, b in zip(sorted((tmp_path / "api").rglob("*.npz")), sorted((tmp_path / "script").rglob("*.npz")), strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_evaluate_returns_the_results_it_writes(spaces, tmp_path):
    run_script(train_emonet_features, "--manifest_file", spaces / "features_hsv_manifest.json", "--epochs", "1",
               "--output_dir", tmp_path / "run", *QUIET_CPU)
    model = tmp_path / "run" / "best_model.pth"
    run_script(evaluate_hsv_model, "--model_path", model, "--output_dir", tmp_path / "script", *QUIET_CPU)
    results = emonet.evaluate(model, None, output_dir=tmp_path / "api", device="cpu")
    assert results == json.loads((tmp_path / "api" / "evaluation_results.json").read_text())
    written = json.loads((tmp_path / "script" / "evaluation_results.json").read_text())
    assert ({k: v for k, v in results.items() if k != "settings"} == {k: v for k, v in written.items() if k != "settings"})
    # The settings it records are the script's, but for the folder: the same defaults either way.
    assert results["settings"] | {"output_dir": None} == written["settings"] | {"output_dir": None}
    assert (tmp_path / "api" / "predictions.csv").read_bytes() == (tmp_path / "script" / "predictions.csv").read_bytes()


def test_importing_the_package_sets_up_no_logging_and_loads_no_torch():
    probe = ("import logging, sys, emonet\n"
             "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
             "assert 'torch' not in sys.modules\n"
             "assert callable(emonet.predict) and 'torch' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
