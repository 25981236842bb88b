"""A run's folder holds one run: it is refused unless resumed or overwritten, and to runs of another kind; a resume
refuses changed inputs or settings; Ctrl-C says the command that continues; written files respect the umask."""
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import compare_color_spaces
import evaluate_hsv_model
import extract_features_all
import train_emonet_features
import train_emonet_hsv
from conftest import QUIET_CPU, ROOT, clip_labels, run_script
from emonet.errors import EmoNetError
from emonet.io import write_text
from emonet.testing import write_feature_set

HSV, RGB = "features_hsv_manifest.json", "features_manifest.json"


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    """HSV and RGB feature sets of the same 20 clips, in one folder."""
    folder = tmp_path_factory.mktemp("spaces")
    labels = clip_labels(20)
    write_feature_set(folder, labels)
    write_feature_set(folder, labels, RGB, "features", color_space="rgb", seed=1)
    return folder


def _train(manifest, *extra, cwd=None):
    """train_emonet_features.py for one epoch (unless `extra` says otherwise), run from `cwd`."""
    old = os.getcwd()
    os.chdir(cwd or manifest.parent)
    try:
        return run_script(train_emonet_features, "--manifest_file", manifest, "--epochs", "1", *QUIET_CPU, *extra)
    finally:
        os.chdir(old)


def _evaluate(*argv) -> dict:
    args = evaluate_hsv_model.get_args_parser().parse_args([*map(str, argv), *QUIET_CPU])
    evaluate_hsv_model.main(args)
    return json.loads((Path(args.output_dir) / "evaluation_results.json").read_text())


# Runs are not replaced silently; default folders name the colour space.
def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(spaces, tmp_path):
    _train(spaces / HSV, cwd=tmp_path)
    run_dir = tmp_path / "hsv_features_training"  # the default names the input's colour space
    _train(spaces / RGB, cwd=tmp_path)
    assert (tmp_path / "rgb_features_training" / "best_model.pth").is_file()
    before = (run_dir / "best_model.pth").read_bytes()
    with pytest.raises(EmoNetError, match=r"already holds a training run.*--resume .*last\.pth.*--overwrite"):
        _train(spaces / RGB, "--output_dir", str(run_dir), "--save_freq", "1")
    assert (run_dir / "best_model.pth").read_bytes() == before  # untouched
    _train(spaces / HSV, "--output_dir", str(run_dir), "--epochs", "2", "--save_freq", "1",
           "--resume", str(run_dir / "last.pth"))
    assert torch.load(run_dir / "last.pth", weights_only=True)["epoch"] == 2
    _train(spaces / RGB, "--output_dir", str(run_dir), "--overwrite")
    replaced = torch.load(run_dir / "last.pth", weights_only=True)
    assert replaced["epoch"] == 1 and replaced["settings"]["color_space"] == "rgb"
    assert not list(run_dir.glob("checkpoint_epoch_*.pth"))  # nothing of the old run is left to mix with the new


def test_fine_tuning_refuses_a_folder_holding_a_run_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab_full_training").mkdir()
    (tmp_path / "lab_full_training" / "last.pth").write_bytes(b"another run")
    args = train_emonet_hsv.get_args_parser().parse_args(["--color_space", "lab", "--dataset_root", str(tmp_path / "none"),
                                                          "--device", "cpu"])
    with pytest.raises(EmoNetError, match=r"lab_full_training already holds a training run"):
        train_emonet_hsv.main(args)


# Runs of different kinds never share a folder.
def test_a_folder_of_another_kind_is_refused(spaces, afew_tree, released_checkpoint, tmp_path):
    manifests = ["--manifests", f"rgb={spaces / RGB}", f"hsv={spaces / HSV}", "--folds", "2", "--epochs", "1", *QUIET_CPU]
    comparison, training = tmp_path / "cmp", tmp_path / "training"
    run_script(compare_color_spaces, *manifests, "--output_dir", comparison)
    _train(spaces / HSV, "--output_dir", training)
    with pytest.raises(EmoNetError, match=r"cmp holds a colour-space comparison \(folds.json\)"):
        _train(spaces / HSV, "--output_dir", comparison, "--overwrite")
    with pytest.raises(EmoNetError, match=r"training holds a training run"):
        run_script(compare_color_spaces, *manifests, "--output_dir", training)
    with pytest.raises(EmoNetError, match=r"training holds a training run"):
        _evaluate("--model_path", training / "best_model.pth", "--output_dir", training, "--overwrite")
    with pytest.raises(EmoNetError, match=r"training holds a training run"):
        run_script(extract_features_all, "--dataset_root", afew_tree, "--pretrained_path", released_checkpoint,
                   "--limit", "1", "--output_dir", training, "--manifest_file", tmp_path / "m.json", "--no_progress")
    assert not (training / "evaluation_results.json").exists() and not (comparison / "last.pth").exists()


# A resumed head refuses input or flags that change what it sees.
def test_resume_refuses_another_colour_space_or_split(spaces, tmp_path):
    out = str(tmp_path / "run")
    _train(spaces / HSV, "--output_dir", out)
    last = str(tmp_path / "run" / "last.pth")
    with pytest.raises(EmoNetError, match=r"made with other settings \(color_space 'hsv' -> 'rgb'\)"):
        _train(spaces / RGB, "--output_dir", out, "--epochs", "2", "--resume", last)
    with pytest.raises(EmoNetError, match=r"folds None -> 5; fold None -> 1"):
        _train(spaces / HSV, "--output_dir", out, "--epochs", "2", "--resume", last,
               "--folds", "5", "--fold", "1")
    with pytest.raises(EmoNetError, match=r"1 epochs are already trained"):
        _train(spaces / HSV, "--output_dir", out, "--resume", last)


# An evaluation folder holds one evaluation.
def test_evaluation_refuses_another_models_results(spaces, tmp_path):
    _train(spaces / HSV, "--output_dir", str(tmp_path / "hsv"))
    _train(spaces / RGB, "--output_dir", str(tmp_path / "rgb"))
    out = str(tmp_path / "evaluation_results")
    first = _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", out)
    assert _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", out) == first
    with pytest.raises(EmoNetError, match=r"holds the results of another evaluation \(model_path .*hsv.*rgb.*--overwrite"):
        _evaluate("--model_path", str(tmp_path / "rgb" / "best_model.pth"), "--output_dir", out)
    with pytest.raises(EmoNetError, match=r"subset 'val' -> 'all'"):
        _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", out, "--subset", "all")
    assert _evaluate("--model_path", str(tmp_path / "rgb" / "best_model.pth"), "--output_dir", out,
                     "--overwrite")["color_space"] == "rgb"


# After Ctrl-C, the message gives the exact command that continues, and it does.
def test_ctrl_c_in_training_prints_the_command_that_continues(tmp_path):
    manifest = write_feature_set(tmp_path, clip_labels(12))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train_emonet_features.py"), "--manifest_file", str(manifest), "--epochs", "400",
           "--output_dir", str(tmp_path / "run"), "--no_progress", "--device", "cpu"]
    process = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "last.pth").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    line = next(line for line in err.splitlines() if "interrupted" in line)
    command = line.split("continue it with: ", 1)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["python", str(ROOT / "train_emonet_features.py")] and argv[-2:] == ["--resume", str(tmp_path / "run" / "last.pth")]
    result = subprocess.run([sys.executable, *argv[1:-5], "--epochs", "2", *argv[-2:]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 or "epochs are already trained" in result.stderr, result.stderr


# Files respect the umask, so a group can share features and checkpoints.
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode
