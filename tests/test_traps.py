"""What a new user met in the third round (issue 15): one test or more for each numbered item."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import compare_color_spaces
import download_afew_va
import evaluate_hsv_model
import extract_features_all
import extract_features_hsv_crop
import train_emonet_features
import train_emonet_hsv
from conftest import ROOT, clip_labels, manifest_as_list, write_spaces
from emonet.errors import DatasetError, EmoNetError
from emonet.evaluation import summary_table
from emonet.testing import write_afew_va_tree, write_feature_set
from emonet.text import number
from emonet.training import plot_curves

SCRIPTS = (compare_color_spaces, download_afew_va, evaluate_hsv_model, extract_features_all, extract_features_hsv_crop,
           train_emonet_features, train_emonet_hsv)


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trap_spaces")
    labels = clip_labels(12)
    return write_spaces(folder, labels, (1.0, 3.0))


def _compare(folder, out, *extra, manifests=None):
    manifests = manifests or [f"rgb={folder / 'features_manifest.json'}", f"hsv={folder / 'features_hsv_manifest.json'}"]
    argv = ["--manifests", *manifests, "--folds", "2", "--bootstrap", "100", "--output_dir", str(out), "--no_progress",
            "--device", "cpu", *extra]
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    return out


def _train(manifest, out, *extra):
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(manifest), "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]))


# 1. --report_only describes what the units record, and refuses flags that contradict them.
def test_report_only_describes_the_units_not_the_command(spaces, tmp_path):
    out = _compare(spaces, tmp_path / "cmp", "--epochs", "2", "--dropout", "0.3", "--inner_val_split", "0.2")
    written = (out / "comparison.md").read_text()
    (out / "comparison.json").unlink()
    _compare(spaces, out, "--report_only")  # no training flag: the units' are reported
    assert (out / "comparison.md").read_text() == written
    protocol = written.split("## Protocol")[1]
    assert "for 2 epochs (adam, learning rate 0.001, batch 64, ccc loss" in protocol and "dropout 0.3" in protocol
    assert "inner validation split of 0.2" in protocol
    for flags, named in ((["--epochs", "77"], "--epochs 2 -> 77"), (["--learning_rate", "0.5"], "--learning_rate 0.001 -> 0.5"),
                         (["--dropout", "0.7"], "--dropout 0.3 -> 0.7"), (["--batch_size", "8"], "--batch_size 64 -> 8"),
                         (["--loss_function", "mse"], "--loss_function 'ccc' -> 'mse'"),
                         (["--optimizer", "sgd"], "--optimizer 'adam' -> 'sgd'")):
        with pytest.raises(EmoNetError, match=re.escape(named)):
            _compare(spaces, out, "--report_only", *flags)
    # Other features under the same labels (here: another crop): refused, not recorded as the protocol.
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        manifest = manifest_as_list(spaces / name)
        manifest["settings"]["crop"] = "resize"
        for s in manifest["samples"]:
            s["path"] = str(spaces / s["path"])
        (tmp_path / name).write_text(json.dumps(manifest))
    with pytest.raises(EmoNetError, match=r"made with other settings \(the features' crop 'landmarks' -> 'resize'\)"):
        _compare(spaces, out, "--report_only", manifests=[f"rgb={tmp_path / 'features_manifest.json'}",
                                                          f"hsv={tmp_path / 'features_hsv_manifest.json'}"])
    assert (out / "comparison.md").read_text() == written


# 2-4. Finding the data: a plot folder is not a clip; AFEW-VA/ is found whatever sits beside it.
def test_a_folder_of_plots_is_not_an_afew_va_folder(released_checkpoint, tmp_path, monkeypatch):
    for name in ("color_space_comparison_demo", "hsv_features_training", "evaluation_results"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "comparison.png").write_bytes(b"\x89PNG not an AFEW-VA frame")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"this is not an AFEW-VA folder"):
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            ["--dataset_root", ".", "--pretrained_path", str(released_checkpoint), "--no_progress"]))


def test_afew_va_is_found_beside_outputs_and_macosx(afew_tree, released_checkpoint, tmp_path):
    data = tmp_path / "data"
    write_afew_va_tree(data / "AFEW-VA", clip_labels(2), frames_per_clip=2)
    (data / "__MACOSX" / "AFEW-VA" / "001").mkdir(parents=True)
    (data / "__MACOSX" / "AFEW-VA" / "001" / "._00000.png").write_bytes(b"resource fork")
    argv = ["--dataset_root", str(data), "--pretrained_path", str(released_checkpoint), "--output_dir",
            str(data / "features_rgb"), "--manifest_file", str(tmp_path / "m.json"), "--no_progress", "--device", "cpu"]
    for _ in range(2):  # the second run finds AFEW-VA/ although features_rgb/ now sits beside it
        assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(argv)) == 0
    assert len(manifest_as_list(tmp_path / "m.json")["samples"]) == 4


# 5. A missing key is named as missing; only the landmark crop needs landmarks.
def test_missing_landmarks_are_needed_only_by_the_landmark_crop(released_checkpoint, tmp_path):
    root = write_afew_va_tree(tmp_path / "AFEW-VA", clip_labels(2), frames_per_clip=2)
    for clip in ("001", "002"):
        path = root / clip / f"{clip}.json"
        meta = json.loads(path.read_text())
        for entry in meta["frames"].values():
            del entry["landmarks"]
        meta["frames"]["00001"].pop("arousal") if clip == "002" else None
        path.write_text(json.dumps(meta))
    base = ["--dataset_root", str(root), "--pretrained_path", str(released_checkpoint), "--no_progress", "--device", "cpu"]
    resize = [*base, "--crop", "resize", "--output_dir", str(tmp_path / "r"), "--manifest_file", str(tmp_path / "r.json")]
    assert extract_features_all.main(extract_features_all.get_args_parser().parse_args(resize)) == 0
    assert len(manifest_as_list(tmp_path / "r.json")["samples"]) == 3
    errors = json.loads((tmp_path / "r" / "extraction_errors.json").read_text())["errors"]
    assert [e["reason"] for e in errors] == ["no arousal"]
    with pytest.raises(DatasetError) as info:
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            [*base, "--output_dir", str(tmp_path / "l"), "--manifest_file", str(tmp_path / "l.json")]))
    message = str(info.value)
    assert "no usable frame (4 problems: " in message and "no landmarks" in message and "--dataset_root" not in message
    assert json.loads((tmp_path / "l" / "extraction_errors.json").read_text())["count"] == 4  # and the list is written


# 6. A changed path string with the same content keeps finished units; a real change is named in words.
def test_units_survive_a_new_path_string_and_refusals_say_what_changed(spaces, tmp_path, capsys):
    out = _compare(spaces, tmp_path / "cmp", "--epochs", "1")
    copy = tmp_path / "copy"
    for name in ("features_manifest.json", "features_hsv_manifest.json"):
        manifest = manifest_as_list(spaces / name)
        manifest["settings"]["pretrained_path"] = "./pretrained/../pretrained/emonet_8.pth"  # same sha, other string
        for s in manifest["samples"]:
            s["path"] = str(spaces / s["path"])
        copy.mkdir(exist_ok=True)
        (copy / name).write_text(json.dumps(manifest))
    capsys.readouterr()
    _compare(spaces, out, "--epochs", "1", manifests=[f"rgb={copy / 'features_manifest.json'}",
                                                      f"hsv={copy / 'features_hsv_manifest.json'}"])
    assert capsys.readouterr().out.count("skipped (finished)") == 4
    manifest = manifest_as_list(copy / "features_hsv_manifest.json")
    manifest["samples"][0]["valence"] = manifest["samples"][0]["valence"] + 1
    (copy / "features_hsv_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EmoNetError, match=r"carry other labels"):
        _compare(spaces, out, "--epochs", "1", manifests=[f"rgb={copy / 'features_manifest.json'}",
                                                          f"hsv={copy / 'features_hsv_manifest.json'}"])


# 7. Runs of different kinds never share a folder.
def test_a_folder_of_another_kind_is_refused(spaces, afew_tree, released_checkpoint, tmp_path):
    comparison = _compare(spaces, tmp_path / "cmp", "--epochs", "1")
    training = tmp_path / "training"
    _train(spaces / "features_hsv_manifest.json", training, "--epochs", "1")
    with pytest.raises(EmoNetError, match=r"cmp holds a colour-space comparison \(folds.json\)"):
        _train(spaces / "features_hsv_manifest.json", comparison, "--epochs", "1", "--overwrite")
    with pytest.raises(EmoNetError, match=r"training holds a training run"):
        _compare(spaces, training, "--epochs", "1")
    with pytest.raises(EmoNetError, match=r"training holds a training run"):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_path", str(training / "best_model.pth"), "--output_dir", str(training), "--overwrite",
             "--no_progress", "--device", "cpu"]))
    with pytest.raises(EmoNetError, match=r"training holds a training run"):
        extract_features_all.main(extract_features_all.get_args_parser().parse_args(
            ["--dataset_root", str(afew_tree), "--pretrained_path", str(released_checkpoint), "--limit", "1",
             "--output_dir", str(training), "--manifest_file", str(tmp_path / "m.json"), "--no_progress"]))
    assert not (training / "evaluation_results.json").exists() and not (comparison / "last.pth").exists()


# 8. After Ctrl-C, the message gives the exact command that continues, and it does.
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


# 9. Every input is read before the first unit trains, and the message says how to repair it.
def test_a_truncated_feature_file_stops_the_comparison_before_any_unit(spaces, tmp_path):
    folder = tmp_path / "inputs"
    labels = clip_labels(12)
    write_spaces(folder, labels)
    victim = sorted((folder / "features_hsv").glob("*/*.npz"))[-1]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(EmoNetError, match=rf"{victim.name}: unreadable feature file.*Rerunning the extraction command"):
        _compare(folder, tmp_path / "cmp", "--epochs", "1")
    assert not (tmp_path / "cmp" / "rgb").exists()  # nothing trained on the other space first


def test_the_comparison_holds_one_colour_space_in_memory_at_a_time(spaces, tmp_path, monkeypatch):
    import emonet.comparison as comparison

    held, load = [], comparison.load_space

    def recording(path, common, space, progress):
        held.append((space, sorted(comparison._SHARED.datasets) if comparison._SHARED else None))
        return load(path, common, space, progress)

    monkeypatch.setattr(comparison, "load_space", recording)
    _compare(spaces, tmp_path / "cmp", "--epochs", "1", "--workers", "1")
    assert held == [("rgb", []), ("hsv", [])]  # each space loaded once, the other let go before it


# 10. A selection side whose labels cannot tell epochs apart is reported, with what was kept.
def test_constant_selection_labels_are_warned_about(tmp_path, caplog):
    labels = {clip: {"valence": [0] * len(v["valence"]), "arousal": [3] * len(v["valence"])}
              for clip, v in clip_labels(12).items()}
    manifest = write_feature_set(tmp_path, labels)
    _train(manifest, tmp_path / "run", "--epochs", "3", "--inner_val_split", "0.2")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("inner validation side's valence labels are all 0 and arousal labels are all 3" in w for w in warnings)
    assert any("every epoch scored the same mean CCC (0.0000) on the selection side, so epoch 1 was kept by default" in w
               for w in warnings)


# 11. Smaller traps.
def test_an_undecodable_frame_is_named_where_it_fails(released_checkpoint, tmp_path, caplog):
    root = write_afew_va_tree(tmp_path / "AFEW-VA", clip_labels(1), frames_per_clip=2)
    (root / "001" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    extract_features_all.main(extract_features_all.get_args_parser().parse_args(
        ["--dataset_root", str(root), "--pretrained_path", str(released_checkpoint), "--output_dir", str(tmp_path / "f"),
         "--manifest_file", str(tmp_path / "m.json"), "--no_progress", "--device", "cpu"]))
    assert any(r.levelname == "WARNING" and str(root / "001" / "00001.png") in r.getMessage() for r in caplog.records)


def test_the_evaluation_summary_says_which_unit_is_leak_free():
    results = {"model_type": "feature", "subset": "val", "num_samples": 3, "split": "clip",
               **{f"{d}_metrics": {"PCC": 0.1, "CCC": -0.00004, "MSE": 1.0, "RMSE": 1.0, "SAGR": 0.5} for d in ("valence", "arousal")},
               "overall_metrics": {"PCC": 0.1, "CCC": 0.1, "MSE": 1.0, "RMSE": 1.0}}
    results["leakage_check"] = {"leak_free": True, "eval_actors_seen_in_training": 3}
    text = summary_table(results)
    assert "leak-free by clip (no evaluated clip seen in training), not by actor: 3 evaluated actors" in text
    assert "-0.0000" not in text and "0.0000" in text
    results["leakage_check"]["eval_actors_seen_in_training"] = 0
    assert "leak-free by clip and by actor" in summary_table(results)
    assert number(-0.0004) == "0.000" and number(-0.0004, sign=True) == "+0.000" and number(-0.5) == "-0.500"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_help_examples_keep_their_line_breaks(script):
    description = script.get_args_parser().description
    assert not re.search(r"\S {4,}--", description), "a line continuation was read as spaces"


def test_training_logs_a_csv_and_curves_that_read_at_400_epochs(spaces, tmp_path):
    _train(spaces / "features_hsv_manifest.json", tmp_path / "run", "--epochs", "3")
    log = pd.read_csv(tmp_path / "run" / "training_log.csv")
    assert list(log["epoch"]) == [1, 2, 3] and log["best"].sum() == 1 and "val_mean_CCC" in log
    rng = np.random.default_rng(0)
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.1, "val_valence_CCC": rng.uniform(),
                "val_arousal_CCC": rng.uniform(), "val_mean_CCC": rng.uniform()} for e in range(1, 401)]
    fig = plot_curves(history, tmp_path / "curves.png", best_epoch=123, title="run_x: frame head, hsv input")
    assert fig._suptitle.get_text() == "run_x: frame head, hsv input"
    for ax in fig.axes:
        curves = [line for line in ax.lines if len(line.get_xdata()) == 400]
        assert curves and all(line.get_marker() in (None, "None", "") for line in curves)  # no marker on every epoch
        assert any(line.get_label() == "kept: epoch 123" for line in ax.lines)
        legend = ax.get_legend()
        fig.canvas.draw()
        box = legend.get_window_extent().transformed(ax.transAxes.inverted())
        assert box.y1 <= 0  # under the axes, never over the curves
