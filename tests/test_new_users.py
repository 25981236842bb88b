"""What new users met in the fourth round (issue 21): one test or more for each numbered item (predict.py's words,
item 7, are in tests/test_people.py)."""
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import compare_color_spaces
import evaluate_hsv_model
import train_emonet_features
from conftest import ROOT, clip_labels, write_spaces
from emonet.comparison_report import plot_report
from emonet.errors import CheckpointError, EmoNetError
from emonet.testing import write_feature_set

SCRIPTS = sorted(p.stem for p in ROOT.glob("*.py")) + sorted(f"benchmarks.{p.stem}" for p in (ROOT / "benchmarks").glob("bench_*.py"))
FOLDS = 2


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("new_user_spaces")
    return write_spaces(folder, clip_labels(12), (1.0, 3.0), noise=2.0)


def _compare(folder, out, *extra, manifests=None):
    manifests = manifests if manifests is not None else [f"rgb={folder / 'features_manifest.json'}",
                                                         f"hsv={folder / 'features_hsv_manifest.json'}"]
    argv = [*(["--manifests", *manifests] if manifests else []), "--folds", str(FOLDS), "--epochs", "2",
            "--bootstrap", "100", "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    return json.loads((out / "comparison.json").read_text()) if (out / "comparison.json").is_file() else None


# 1. One colour space with several heads is a comparison of heads; with one head it is refused, saying what to add.
def test_one_colour_space_compares_its_heads(spaces, tmp_path, capsys):
    report = _compare(spaces, tmp_path / "rgb_heads", "--heads", "frame", "smooth", "temporal",
                      manifests=[f"rgb={spaces / 'features_manifest.json'}"])
    assert list(report["color_spaces"]) == ["rgb"] and report["protocol"]["reference"] == "rgb"
    heads = report["color_spaces"]["rgb"]["heads"]
    assert set(heads) == {"frame", "smooth", "temporal"} and all(h["vs_reference"] is None for h in heads.values())
    for head in ("smooth", "temporal"):
        diff = heads[head]["vs_frame"]["valence"]
        assert diff["CCC_diff_ci"][0] <= diff["CCC_diff"] <= diff["CCC_diff_ci"][1]
    table = (tmp_path / "rgb_heads" / "comparison.md").read_text()
    assert "ΔCCC vs frame head" in table and "ΔCCC vs rgb" not in table and "there is no other space" in table
    printed = capsys.readouterr().out
    assert "vs frame:" in printed and "vs rgb" not in printed
    fig = plot_report(report, tmp_path / "again.png")
    assert len(fig.axes) == 4  # CCC and head minus frame head, per dimension: no empty difference-to-reference panel
    with pytest.raises(EmoNetError, match=r"needs two colour spaces or more, or one colour space with several heads.*"
                                          r"add another space's manifest.*--heads frame smooth temporal"):
        _compare(spaces, tmp_path / "alone", manifests=[f"rgb={spaces / 'features_manifest.json'}"])
    assert not (tmp_path / "alone").exists()


# 2. A flag is never taken for another: no script accepts a shortened or misspelt flag.
@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_takes_a_flag_for_another(name):
    parser = importlib.import_module(name).get_args_parser()
    required = [arg for action in parser._actions if action.required for arg in (action.option_strings[0], "x")]
    for action in parser._actions:
        for flag in action.option_strings:
            prefix = flag[:-1]
            if not flag.startswith("--") or len(prefix) < 4 or prefix in parser._option_string_actions:
                continue
            _, unknown = parser.parse_known_args([prefix, "1", *required])
            assert prefix in unknown, f"{name}: {prefix} was taken for {flag}"


# 3. --report_only never narrows a finished report; heads and repetitions come from the units.
def test_report_only_takes_heads_and_repetitions_from_the_units(spaces, tmp_path, monkeypatch, caplog):
    out = tmp_path / "cmp"
    full = _compare(spaces, out, "--heads", "frame", "smooth", "--repeats", "2")
    files = {name: (out / name).read_bytes() for name in ("comparison.json", "comparison.md", "comparison.csv")}
    (out / "comparison.json").unlink()
    # From another folder holding another space's manifest: the units' own manifests are used, and said to be.
    elsewhere = tmp_path / "elsewhere"
    write_feature_set(elsewhere, clip_labels(3), "features_lab_manifest.json", "features_lab", color_space="lab")
    monkeypatch.chdir(elsewhere)
    caplog.set_level("INFO")
    assert _compare(spaces, out, "--report_only", manifests=[]) == full
    assert "the manifests the finished units were made from: rgb=" in caplog.text
    assert (out / "comparison.md").read_bytes() == files["comparison.md"]
    for flags, left_out in ((["--heads", "frame"], "heads smooth"), (["--repeats", "1"], "repetitions 1..1")):
        with pytest.raises(EmoNetError, match=rf"holds finished units of {left_out} that this report would leave out"):
            _compare(spaces, out, "--report_only", *flags)
        assert all((out / name).read_bytes() == data for name, data in files.items())
    with pytest.raises(EmoNetError, match="holds finished units of heads smooth"):  # a training run too
        _compare(spaces, out, "--heads", "frame")
    # Asked for into another folder, a narrower report is written there, and says where its units are.
    _compare(spaces, out, "--report_only", "--heads", "frame", "--repeats", "1", "--report_dir", str(tmp_path / "narrow"))
    narrow = json.loads((tmp_path / "narrow" / "comparison.json").read_text())
    assert narrow["protocol"]["heads"] == ["frame"] and narrow["protocol"]["repeats"] == 1
    assert narrow["protocol"]["units_folder"] == str(out.resolve())
    assert all((out / name).read_bytes() == data for name, data in files.items())


# 4. Ctrl-C in the comparison: "stopping" at once, the units in flight ended within seconds, finished units kept; a
# second Ctrl-C while they end aborts at once; no worker is left behind.
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_the_comparison_within_seconds(spaces, tmp_path, presses):
    out = tmp_path / f"cmp{presses}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "compare_color_spaces.py"), "--manifests", f"rgb={spaces / 'features_manifest.json'}",
           f"hsv={spaces / 'features_hsv_manifest.json'}", "--folds", "2", "--epochs", "5000", "--workers", "2", "--output_dir", str(out), "--no_progress", "--device", "cpu"]
    # Its own process group, as a terminal's job is: Ctrl-C reaches the command and its workers alike.
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.rglob("last.pth")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("unit.json")}
    start = time.monotonic()
    for _ in range(presses):
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.05)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - start < 15, err
    # 130: the command's own exit; a second press may also end it by the signal itself (-2), as an abort does.
    assert process.returncode in ((130,) if presses == 1 else (130, -signal.SIGINT)), err
    assert "stopping: ending the units in flight" in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("unit.json")} == finished  # nothing finished is lost
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(str(out)) and p.name != str(os.getpid())]
    assert not left, "workers left running"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# 6. The demo's plot: titles apart, the legend inside the figure (see also the demo test in test_compare.py).
def test_the_comparison_plot_keeps_titles_and_legend_inside(spaces, tmp_path):
    report = _compare(spaces, tmp_path / "cmp")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_report(report, tmp_path / "plot.png")
    renderer = FigureCanvasAgg(fig).get_renderer()
    page = fig.bbox
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    for i, a in enumerate(titles):
        assert page.x0 <= a.x0 and a.x1 <= page.x1, "a title runs off the figure"
        assert not any(a.overlaps(b) for b in titles[i + 1:]), "two titles overlap"
    legend = fig.legends[0].get_window_extent(renderer)
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0


# 8. A JSON file passed as a checkpoint is named as what it is.
def test_a_manifest_passed_as_a_checkpoint_is_named(spaces, tmp_path):
    with pytest.raises(CheckpointError, match=r"features_manifest\.json: not a checkpoint, this is a JSON file"):
        evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
            ["--model_path", str(spaces / "features_manifest.json"), "--output_dir", str(tmp_path / "e"), "--no_progress"]))


# 9. Names that say what they are.
def test_logs_name_the_inner_split_and_folds_name_their_grouping(spaces, tmp_path):
    run = tmp_path / "run"
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(spaces / "features_manifest.json"), "--head", "temporal", "--epochs", "2",
         "--inner_val_split", "0.2", "--output_dir", str(run), "--no_progress", "--device", "cpu"]))
    log = pd.read_csv(run / "training_log.csv")
    assert {"inner_val_loss", "inner_val_mean_CCC", "inner_val_valence_CCC"} <= set(log) and "val_mean_CCC" not in log
    assert "inner_val_mean_CCC" in (run / "training_log.txt").read_text()
    out = tmp_path / "evaluation"
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
        ["--model_path", str(run / "best_model.pth"), "--output_dir", str(out), "--no_progress", "--device", "cpu"]))
    assert json.loads((out / "evaluation_results.json").read_text())["head"] == {"kind": "temporal"}  # no sigma: 0.0
    report = _compare(spaces, tmp_path / "cmp")
    folds = json.loads((tmp_path / "cmp" / "folds.json").read_text())
    assert folds["group_by"] == "clip" and "unit" not in folds and report["protocol"]["group_by"] == "clip"


def test_the_feature_head_trains_on_the_manifest_that_exists(spaces, tmp_path, monkeypatch):
    rgb_only = tmp_path / "rgb_only"
    write_feature_set(rgb_only, clip_labels(4), "features_manifest.json", "features", color_space="rgb")
    monkeypatch.chdir(rgb_only)
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--epochs", "1", "--no_progress", "--device", "cpu"]))
    assert (rgb_only / "rgb_features_training" / "best_model.pth").is_file()
    monkeypatch.chdir(spaces)
    with pytest.raises(EmoNetError, match=r"several feature manifests \(features_manifest\.json \(rgb\), "
                                          r"features_hsv_manifest\.json \(hsv\)\): pass --manifest_file"):
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(["--epochs", "1"]))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EmoNetError, match="holds none of the standard manifests"):
        train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(["--epochs", "1"]))


# 9. Plots, captions and rendered videos never print "-0.000" or "-0.0": their numbers go through text.number.
def test_plots_and_renderings_format_numbers_through_text_number():
    import re

    for name in ("evaluation.py", "comparison_report.py", "prediction_outputs.py", "training.py"):
        source = (ROOT / "emonet" / name).read_text()
        assert not re.findall(r"\{[^{}]*:[+]?\.\d+f\}", source), f"{name}: a number formatted without text.number"
