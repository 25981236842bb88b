"""The figures a person reads: training curves after one epoch, predict.py's time plot of a folder of photos and of a
video with cuts, and a rendered frame whose valence-arousal plane sits beside the picture, never over a face."""
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from emonet.media import Source
from emonet.prediction_outputs import PANEL_WIDTH, annotate, plot_people
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
