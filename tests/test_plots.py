"""The figures and tables a person reads: training curves after one epoch and after 400, the evaluation's scatter,
distributions and summary table, predict.py's time plot of a folder of photos and of a video with cuts, and a rendered
frame whose valence-arousal plane sits beside the picture, never over a face."""
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import train_emonet_features
from conftest import QUIET_CPU, ROOT, clip_labels, run_script
from emonet.evaluation import plot_distributions, plot_predictions, summary_table
from emonet.media import Source
from emonet.prediction_outputs import PANEL_WIDTH, annotate, plot_people
from emonet.testing import write_feature_set
from emonet.text import number
from emonet.training import plot_curves

matplotlib.use("Agg")

LONG_TITLE = ("hsv_full_training: fine-tuned EmoNet, hsv input, landmarks crop, afew_va, 5-fold fold 0, selection on "
              "the inner validation split of the training clips")


def test_curves_after_one_epoch_keep_readable_axes_and_the_whole_title(tmp_path):
    history = [{"epoch": 1, "train_loss": 0.93, "val_loss": 0.95, "val_valence_CCC": 2e-4, "val_arousal_CCC": -3e-4,
                "val_mean_CCC": -5e-5}]
    fig = plot_curves(history, tmp_path / "curves.png", 1, LONG_TITLE, side="inner_val")
    loss, ccc = fig.axes[:2]
    assert np.ptp(ccc.get_ylim()) >= 0.3 and np.ptp(loss.get_ylim()) >= 0.1  # not a few thousandths blown up
    assert "\n" in fig.get_suptitle() and fig.get_suptitle().replace("\n", " ") == LONG_TITLE
    assert len(ccc.get_title()) < 50
    for ax in fig.axes:  # one epoch: a marker to see it by, and one whole-epoch tick
        assert all(line.get_marker() == "o" for line in ax.lines[:2])
        lo, hi = ax.get_xlim()
        assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0]


class _Model:
    kind, head, color_space, crop, expressions, notes = "zero_shot", None, "rgb", "box", (), {}


def _rows(frames: list[int], shots: list[int], files: list[str], time_s) -> pd.DataFrame:
    n = len(frames)
    return pd.DataFrame({"source": "x", "file": files, "frame": frames, "time_s": time_s, "shot": shots,
                         "person": pd.array([1] * n, dtype="Int64"), "status": ["face"] * n, "score": 0.99,
                         "x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 10.0, "valence": np.linspace(-3, 3, n),
                         "arousal": np.linspace(2, -2, n)})


def test_a_folder_of_photos_is_plotted_as_points_named_by_file(tmp_path):
    files = ["a.jpg", "b.jpg", "c.jpg"]
    fig = plot_people(_rows([0, 1, 2], [0, 1, 2], files, [None] * 3), _Model(), Source(Path("photos"), "folder", "p"),
                      tmp_path / "p.png")
    ax = fig.axes[1]
    lines = [line for line in ax.get_lines() if line.get_label() == "person 1"]
    assert lines and all(line.get_linewidth() == 0 for line in lines)  # separate photos: no line between them
    assert [t.get_text() for t in ax.get_xticklabels()] == files and list(ax.get_xticks()) == [0, 1, 2]
    assert not [line for line in ax.get_lines() if line.get_label() == "shot cut"]  # photos have no shots


def test_a_videos_time_plot_marks_its_shot_cuts(tmp_path):
    frames = list(range(10))
    fig = plot_people(_rows(frames, [0] * 4 + [1] * 6, [""] * 10, [f / 25 for f in frames]), _Model(),
                      Source(Path("v.mp4"), "video", "v"), tmp_path / "v.png")
    cuts = [line for line in fig.axes[0].get_lines() if line.get_label() == "shot cut"]
    assert len(cuts) == 1 and cuts[0].get_xdata()[0] < 4 / 25 < cuts[0].get_xdata()[0] + 1 / 25


def test_the_valence_arousal_plane_is_beside_the_picture_and_markers_stay_apart():
    rgb = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    rows = _rows([0, 0], [0, 0], ["", ""], [0.0, 0.0]).assign(person=pd.array([1, 2], dtype="Int64"),
                                                                 valence=[-1200.0, -1300.0], arousal=[900.0, 950.0],
                                                                 x1=[200.0, 20.0], x2=[300.0, 100.0], y1=10.0, y2=110.0)
    shown = annotate(rgb, rows)
    assert shown.shape == (240, 320 + PANEL_WIDTH, 3)
    assert np.array_equal(shown[160:, :320], rgb[160:])  # below the boxes and their labels the picture is untouched
    panel = shown[:, 320:]
    # Both values lie far beyond the scale: two hollow markers on the plane's edge, not one hiding the other.
    marked = np.argwhere(np.abs(panel.astype(int) - [31, 119, 180]).sum(axis=2) < 60)  # person 1's colour
    second = np.argwhere(np.abs(panel.astype(int) - [255, 127, 14]).sum(axis=2) < 60)  # person 2's colour
    assert len(marked) and len(second)
    assert np.abs(np.median(marked, axis=0) - np.median(second, axis=0)).max() >= 8


# Plots show every point, say what was evaluated, and read right at 1 epoch and at 12 frames.
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


def test_training_logs_a_csv_and_curves_that_read_at_400_epochs(tmp_path):
    manifest = write_feature_set(tmp_path, clip_labels(12))
    run_script(train_emonet_features, "--manifest_file", manifest, "--output_dir", tmp_path / "run", "--epochs", "3",
               *QUIET_CPU)
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


# The summary table keeps its columns apart whatever the values.
def test_summary_table_columns_never_run_together():
    results = _results(5)
    results["valence_metrics"] = {"PCC": -0.0324101, "CCC": -0.0324101, "MSE": 1019.7412, "RMSE": 31.93, "SAGR": 0.5}
    results["arousal_metrics"] = {"PCC": 0.5, "CCC": 0.4, "MSE": 12345.6789, "RMSE": 111.1, "SAGR": 0.25}
    results["overall_metrics"] = {"PCC": 0.2, "CCC": 0.2, "MSE": 6682.7, "RMSE": 71.5}
    results["leakage_check"] = {"leak_free": True}
    rows = {line.split()[0]: line.split()[1:] for line in summary_table(results).splitlines()[2:4]}
    assert [float(v) for v in rows["valence"]] == pytest.approx([-0.0324, -0.0324, 1019.7412, 31.93, 0.5], abs=1e-4)
    assert [float(v) for v in rows["arousal"]] == pytest.approx([0.5, 0.4, 12345.6789, 111.1, 0.25], abs=1e-4)


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


# Plots, captions and rendered videos never print "-0.000" or "-0.0": their numbers go through text.number.
def test_plots_and_renderings_format_numbers_through_text_number():
    for name in ("evaluation.py", "comparison_report.py", "prediction_outputs.py", "training.py"):
        source = (ROOT / "emonet" / name).read_text()
        assert not re.findall(r"\{[^{}]*:[+]?\.\d+f\}", source), f"{name}: a number formatted without text.number"
