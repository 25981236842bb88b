"""What a new user met (overwritten runs, ignored flags, hidden points, unreadable files): one test or more
for each item of that report, each failing on the code before the fix."""
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate_hsv_model
import extract_features_all
import train_emonet_features
import train_emonet_hsv
from conftest import ROOT, clip_labels, manifest_as_list
from emonet.afew_va import read_afew_va
from emonet.checkpoint import load_emonet
from emonet.cli import run
from emonet.errors import DatasetError, EmoNetError
from emonet.evaluation import plot_distributions, plot_predictions, summary_table
from emonet.io import write_text
from emonet.testing import write_feature_set
from emonet.training import plot_curves

N_CLIPS = 20


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    """HSV and RGB feature sets of the same 20 clips, in one folder."""
    folder = tmp_path_factory.mktemp("spaces")
    labels = clip_labels(N_CLIPS)
    write_feature_set(folder, labels)
    write_feature_set(folder, labels, "features_manifest.json", "features", color_space="rgb", seed=1)
    return folder


def _train(folder, manifest, *extra, cwd=None):
    argv = ["--manifest_file", str(folder / manifest), "--epochs", "1", "--no_progress", "--device", "cpu", *extra]
    old = os.getcwd()
    os.chdir(cwd or folder)
    try:
        return train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(argv))
    finally:
        os.chdir(old)


def _evaluate(*argv):
    args = evaluate_hsv_model.get_args_parser().parse_args([*argv, "--no_progress", "--device", "cpu"])
    evaluate_hsv_model.main(args)
    return json.loads((Path(args.output_dir) / "evaluation_results.json").read_text())


# 1. Runs are not replaced silently; default folders name the colour space.
def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(spaces, tmp_path):
    _train(spaces, "features_hsv_manifest.json", cwd=tmp_path)
    run_dir = tmp_path / "hsv_features_training"  # the default names the input's colour space
    _train(spaces, "features_manifest.json", cwd=tmp_path)
    assert (tmp_path / "rgb_features_training" / "best_model.pth").is_file()
    before = (run_dir / "best_model.pth").read_bytes()
    with pytest.raises(EmoNetError, match=r"already holds a training run.*--resume .*last\.pth.*--overwrite"):
        _train(spaces, "features_manifest.json", "--output_dir", str(run_dir), "--save_freq", "1")
    assert (run_dir / "best_model.pth").read_bytes() == before  # untouched
    _train(spaces, "features_hsv_manifest.json", "--output_dir", str(run_dir), "--epochs", "2", "--save_freq", "1",
           "--resume", str(run_dir / "last.pth"))
    assert torch.load(run_dir / "last.pth", weights_only=True)["epoch"] == 2
    _train(spaces, "features_manifest.json", "--output_dir", str(run_dir), "--overwrite")
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


def test_extraction_names_follow_the_colour_space(afew_tree, released_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--limit", "1",
            "--color_space", "lab", "--no_progress", "--num_workers", "0"]
    assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(argv)) == 0
    manifest = manifest_as_list(tmp_path / "features_lab_manifest.json")
    assert manifest["settings"]["color_space"] == "lab" and manifest["samples"][0]["path"].startswith("features_lab/")
    assert not (tmp_path / "features").exists() and not (tmp_path / "features_manifest.json").exists()


# 2. A resumed head refuses input or flags that change what it sees.
def test_resume_refuses_another_colour_space_or_split(spaces, tmp_path):
    out = str(tmp_path / "run")
    _train(spaces, "features_hsv_manifest.json", "--output_dir", out)
    last = str(tmp_path / "run" / "last.pth")
    with pytest.raises(EmoNetError, match=r"made with other settings \(color_space 'hsv' -> 'rgb'\)"):
        _train(spaces, "features_manifest.json", "--output_dir", out, "--epochs", "2", "--resume", last)
    with pytest.raises(EmoNetError, match=r"folds None -> 5; fold None -> 1"):
        _train(spaces, "features_hsv_manifest.json", "--output_dir", out, "--epochs", "2", "--resume", last,
               "--folds", "5", "--fold", "1")
    with pytest.raises(EmoNetError, match=r"1 epochs are already trained"):
        _train(spaces, "features_hsv_manifest.json", "--output_dir", out, "--resume", last)


# 3. An evaluation folder holds one evaluation.
def test_evaluation_refuses_another_models_results(spaces, tmp_path):
    _train(spaces, "features_hsv_manifest.json", "--output_dir", str(tmp_path / "hsv"))
    _train(spaces, "features_manifest.json", "--output_dir", str(tmp_path / "rgb"))
    out = str(tmp_path / "evaluation_results")
    first = _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", out)
    assert _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", out) == first
    with pytest.raises(EmoNetError, match=r"holds the results of another evaluation \(model_path .*hsv.*rgb.*--overwrite"):
        _evaluate("--model_path", str(tmp_path / "rgb" / "best_model.pth"), "--output_dir", out)
    with pytest.raises(EmoNetError, match=r"subset 'val' -> 'all'"):
        _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", out, "--subset", "all")
    assert _evaluate("--model_path", str(tmp_path / "rgb" / "best_model.pth"), "--output_dir", out,
                     "--overwrite")["color_space"] == "rgb"


# 4. Impossible or ignored flag combinations are refused before any work (the manifest does not even exist).
@pytest.mark.parametrize("flags, message", [
    (["--fold", "2"], "--fold 2 needs --folds K"),
    (["--folds", "5", "--fold", "1", "--val_split", "0.3"], "--val_split does not apply with --folds"),
    (["--folds", "5"], "--folds 5 needs --fold i"),
    (["--folds", "5", "--fold", "5"], "--fold 5: must be in 0..4"),
    (["--epochs", "0"], "--epochs 0: at least 1"),
    (["--val_split", "1.5"], "--val_split 1.5: must be a fraction"),
    (["--inner_val_split", "0"], "--inner_val_split 0.0: must be a fraction"),
    (["--resume", "x.pth", "--overwrite"], "choose one"),
])
def test_flag_combinations_are_refused_before_work(tmp_path, caplog, flags, message):
    args = train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(tmp_path / "absent.json"), "--output_dir", str(tmp_path / "out"), *flags])
    assert run(train_emonet_features.main, args) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "absent.json" not in errors[0]
    assert not (tmp_path / "out").exists()


# 5-6. Plots show every point, say what was evaluated, and read right at 1 epoch and at 12 frames.
def _results(n, color_space="hsv"):
    return {"model_type": "feature", "color_space": color_space, "crop": "landmarks", "subset": "val",
            "num_samples": n, **{f"{d}_metrics": {"PCC": 0.1, "CCC": 0.05, "RMSE": 9.0} for d in ("valence", "arousal")}}


def test_prediction_plot_holds_every_point_and_names_the_input(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(-10, 11, (12, 2)).astype(float)
    pred = truth * 3.0  # a badly scaled model: predictions up to +-30
    fig = plot_predictions(truth, pred, _results(12, "lab"), tmp_path / "scatter.png")
    for ax, i in zip(fig.axes[:2], (0, 1), strict=True):
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert y0 < pred[:, i].min() and y1 > pred[:, i].max() and x0 < truth[:, i].min() and x1 > truth[:, i].max()
        assert "outside [-10, 10] (all shown)" in ax.get_title()
    title = fig._suptitle.get_text()
    assert "lab input" in title and "landmarks crop" in title and "feature model" in title and "N = 12" in title
    assert (tmp_path / "scatter.png").stat().st_size > 10_000


def test_distribution_bins_hold_every_prediction_and_count_whole_frames(tmp_path):
    truth = np.tile(np.arange(-6, 6, dtype=float)[:, None], (1, 2))
    pred = truth * 2.5
    fig = plot_distributions(truth, pred, _results(12), tmp_path / "dist.png")
    value_axes = fig.axes[2:4]
    for ax, i in zip(value_axes, (0, 1), strict=True):
        edges = [p.get_x() for p in ax.patches if p.get_height() > 0] or [ax.get_xlim()[0]]
        lo, hi = ax.get_xlim()
        assert lo <= pred[:, i].min() and hi >= pred[:, i].max()
        assert min(edges) <= pred[:, i].min()
    for ax in fig.axes:
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert all(float(t).is_integer() for t in ticks)
    error_bins = [p for p in fig.axes[0].patches]
    assert len(error_bins) < 12  # not 60 bins for 12 frames


def test_training_curves_show_a_single_epoch_with_whole_epoch_ticks(tmp_path):
    history = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_valence_CCC": 0.1, "val_arousal_CCC": 0.2,
                "val_mean_CCC": 0.15}]
    fig = plot_curves(history, tmp_path / "curves.png")
    for ax in fig.axes:
        assert all(line.get_marker() == "o" for line in ax.lines[:2])
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks == [1.0]


# 7. The summary table keeps its columns apart whatever the values.
def test_summary_table_columns_never_run_together():
    results = _results(5)
    results["valence_metrics"] = {"PCC": -0.0324101, "CCC": -0.0324101, "MSE": 1019.7412, "RMSE": 31.93, "SAGR": 0.5}
    results["arousal_metrics"] = {"PCC": 0.5, "CCC": 0.4, "MSE": 12345.6789, "RMSE": 111.1, "SAGR": 0.25}
    results["overall_metrics"] = {"PCC": 0.2, "CCC": 0.2, "MSE": 6682.7, "RMSE": 71.5}
    results["leakage_check"] = {"leak_free": True}
    rows = {line.split()[0]: line.split()[1:] for line in summary_table(results).splitlines()[2:4]}
    assert [float(v) for v in rows["valence"]] == pytest.approx([-0.0324, -0.0324, 1019.7412, 31.93, 0.5], abs=1e-4)
    assert [float(v) for v in rows["arousal"]] == pytest.approx([0.5, 0.4, 12345.6789, 111.1, 0.25], abs=1e-4)


# 8. Files respect the umask, so a group can share features and checkpoints.
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode


# 9. What the documented commands write is ignored by git.
def test_gitignore_covers_the_documented_outputs():
    paths = ["features_hsv_manifest.json", "features_manifest.json", "features_lab_manifest.json",
             "afew_va_problems.json", "evaluation_results/evaluation_results.json", "data/AFEW-VA/001/001.json",
             "hsv_features_training/last.pth", "rgb_full_training/last.pth", "hsv_evaluation_results/x.csv",
             "hsv_full_evaluation/x.png", "features_hsv/001/00000.npz", "features/001/00000.npz",
             "pretrained/emonet_8.pth", "color_space_comparison/comparison.json",
             "hsv_temporal_features_training/last.pth", "predictions/predictions.csv", "predictions_hsv/x.mp4"]
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(paths)


# 10. Messages that say what to do.
def test_missing_feature_file_names_its_manifest(tmp_path):
    manifest = write_feature_set(tmp_path, clip_labels(3))
    next((tmp_path / "features_hsv").glob("*/*.npz")).unlink()
    with pytest.raises(DatasetError, match=rf"feature file is missing; it is listed in the manifest {manifest}"):
        _train(tmp_path, manifest.name)


def test_truncated_checkpoint_message_has_no_zip_internals(tmp_path, released_checkpoint):
    path = tmp_path / "emonet_8.pth"
    path.write_bytes(released_checkpoint.read_bytes()[:100_000])
    with pytest.raises(EmoNetError) as info:
        load_emonet(path)
    assert "truncated or corrupt" in str(info.value) and "download or save it again" in str(info.value)
    assert "PytorchStreamReader" not in str(info.value) and "miniz" not in str(info.value)


def test_a_folder_without_clips_is_not_an_afew_va_folder(tmp_path, caplog):
    # A checkout after the README's first command: code, tests, and the demo's plots (a folder holding .png files).
    for folder in ("emonet", "tests", "color_space_comparison_demo"):
        (tmp_path / folder).mkdir()
    (tmp_path / "color_space_comparison_demo" / "comparison.png").write_bytes(b"\x89PNG")
    with pytest.raises(DatasetError, match=r"this is not an AFEW-VA folder.*001/001\.json.*AFEW_VA_ROOT"):
        read_afew_va(tmp_path)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# 11. The zero-shot baseline can be scored on the split of a head trained on another colour space.
def test_zero_shot_on_another_colour_spaces_split(spaces, tmp_path):
    _train(spaces, "features_hsv_manifest.json", "--output_dir", str(tmp_path / "hsv"))
    head = _evaluate("--model_path", str(tmp_path / "hsv" / "best_model.pth"), "--output_dir", str(tmp_path / "head"))
    zero = _evaluate("--model_type", "pretrained", "--model_path", str(tmp_path / "hsv" / "best_model.pth"),
                     "--manifest_file", str(spaces / "features_manifest.json"), "--output_dir", str(tmp_path / "zero"))
    assert zero["color_space"] == "rgb" and zero["num_samples"] == head["num_samples"]
    assert zero["leakage_check"]["leak_free"] and not zero["selected_on_evaluated_frames"]


# 12. The README says how to use the environment it sets up.
def test_readme_activates_the_environment_after_set_up():
    readme = (ROOT / "README.md").read_text()
    setup = readme.index("pip install -r requirements_training.txt")
    assert setup < readme.index("source .venv/bin/activate") < readme.index("python compare_color_spaces.py --demo")
