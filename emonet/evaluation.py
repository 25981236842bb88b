"""Evaluation outputs: metrics JSON with a leakage audit, predictions CSV, plots, a summary table.

Metrics are reported on the raw AFEW-VA scale [-10, 10] (as in the seed's table) and, under
`normalized`, on EmoNet's [-1, 1] scale (PCC, CCC and SAGR are the same on both; MSE is 100x and RMSE
10x smaller there).
"""
import csv
import io
from pathlib import Path

import numpy as np

from .constants import LABEL_MAX, LABEL_MIN, LABEL_SCALE
from .io import save_figure, write_json, write_text
from .metrics import regression_metrics
from .splits import leakage_check

SUBSETS = ("val", "train", "all")
DIMENSIONS = ("valence", "arousal")
OVERALL = ("PCC", "CCC", "MSE", "RMSE")
CSV_COLUMNS = ("clip", "frame", "valence_true", "arousal_true", "valence_pred", "arousal_pred")


def _metric_block(truth: np.ndarray, pred: np.ndarray) -> dict:
    block = {f"{dim}_metrics": regression_metrics(truth[:, i], pred[:, i]) for i, dim in enumerate(DIMENSIONS)}
    block["overall_metrics"] = {m: (block["valence_metrics"][m] + block["arousal_metrics"][m]) / 2 for m in OVERALL}
    return block


def evaluation_results(samples: list[dict], pred: np.ndarray, train_samples: list[dict], info: dict) -> dict:
    """Results dict for `samples` (evaluated) and `pred` (N x 2, raw scale); `info` adds model_path etc."""
    truth = np.array([[s["valence"], s["arousal"]] for s in samples], dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    return {
        **info,
        "num_samples": len(samples),
        **_metric_block(truth, pred),
        "normalized": _metric_block(truth / LABEL_SCALE, pred / LABEL_SCALE),
        "leakage_check": leakage_check(train_samples, samples),
    }


def predictions_csv(samples: list[dict], pred: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for s, (v, a) in zip(samples, pred, strict=True):
        writer.writerow([s["clip"], s["frame"], repr(float(s["valence"])), repr(float(s["arousal"])), repr(float(v)), repr(float(a))])
    return buffer.getvalue()


def leak_warning(results: dict) -> str | None:
    """A warning when the evaluated frames share clips with training, the oracle's score beside the model's."""
    leak = results["leakage_check"]
    if leak["leak_free"]:
        return None
    text = (f"WARNING: the split leaks: {leak['eval_clips_seen_in_training']} evaluated clips have frames in training. "
            f"Model PCC valence {results['valence_metrics']['PCC']:.3f}, arousal {results['arousal_metrics']['PCC']:.3f}")
    oracle = leak["nearest_frame_oracle"]
    if oracle:
        text += (f"; copying the label of the nearest training frame of the same clip scores PCC valence "
                 f"{oracle['valence_PCC']:.3f}, arousal {oracle['arousal_PCC']:.3f} ({oracle['frames']} frames). "
                 "These numbers measure clip recognition, not emotion; use --split clip or actor.")
    return text


def summary_table(results: dict) -> str:
    rows = [f"{results['model_type']} model, {results.get('color_space') or '?'} input, subset {results['subset']} "
            f"({results['num_samples']} frames, split {results.get('split') or 'none'})",
            f"{'':<9}{'PCC':>8}{'CCC':>8}{'MSE':>9}{'RMSE':>8}{'SAGR':>8}   (raw scale [-10, 10])"]
    for dim in DIMENSIONS:
        m = results[f"{dim}_metrics"]
        rows.append(f"{dim:<9}{m['PCC']:>8.4f}{m['CCC']:>8.4f}{m['MSE']:>9.4f}{m['RMSE']:>8.4f}{m['SAGR']:>8.4f}")
    o = results["overall_metrics"]
    rows.append(f"{'mean':<9}{o['PCC']:>8.4f}{o['CCC']:>8.4f}{o['MSE']:>9.4f}{o['RMSE']:>8.4f}")
    leak = results["leakage_check"]
    rows.append("leakage check: " + ("leak-free (no evaluated clip seen in training)" if leak["leak_free"]
                                     else f"LEAKS ({leak['eval_clips_seen_in_training']} evaluated clips seen in training)"))
    return "\n".join(rows)


def write_evaluation(output_dir: str | Path, results: dict, samples: list[dict], pred: np.ndarray) -> None:
    """evaluation_results.json, predictions.csv, evaluation_scatter.png, evaluation_distributions.png."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "evaluation_results.json", results)
    write_text(output_dir / "predictions.csv", predictions_csv(samples, pred))
    truth = np.array([[s["valence"], s["arousal"]] for s in samples], dtype=np.float64)
    _plot_scatter(truth, np.asarray(pred), results, output_dir / "evaluation_scatter.png")
    _plot_distributions(truth, np.asarray(pred), output_dir / "evaluation_distributions.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_scatter(truth: np.ndarray, pred: np.ndarray, results: dict, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    lo, hi = LABEL_MIN - 0.5, LABEL_MAX + 0.5
    for i, (ax, dim) in enumerate(zip(axes, DIMENSIONS, strict=True)):
        m = results[f"{dim}_metrics"]
        # Labels are integers: jitter them slightly so that overlapping points stay visible.
        jitter = np.random.default_rng(i).uniform(-0.2, 0.2, len(truth))
        ax.scatter(truth[:, i] + jitter, pred[:, i], s=4, alpha=0.25, linewidths=0)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel=f"true {dim}", ylabel=f"predicted {dim}",
               title=f"{dim}: PCC {m['PCC']:.3f}  CCC {m['CCC']:.3f}  RMSE {m['RMSE']:.2f}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.suptitle(f"{results['model_type']} model, subset {results['subset']}, {len(truth)} frames")
    save_figure(fig, path)
    plt.close(fig)


def _plot_distributions(truth: np.ndarray, pred: np.ndarray, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    bins = np.arange(LABEL_MIN - 0.5, LABEL_MAX + 1.0, 1.0)
    for i, dim in enumerate(DIMENSIONS):
        error = pred[:, i] - truth[:, i]
        axes[0, i].hist(error, bins=60, color="tab:red", alpha=0.8)
        axes[0, i].axvline(0, color="k", lw=1)
        axes[0, i].set(title=f"{dim} error (pred - true): mean {error.mean():.2f}, sd {error.std():.2f}",
                       xlabel="error", ylabel="frames")
        axes[1, i].hist(truth[:, i], bins=bins, alpha=0.6, label="true")
        axes[1, i].hist(pred[:, i], bins=bins, alpha=0.6, label="predicted")
        axes[1, i].set(title=f"{dim} values", xlabel=dim, ylabel="frames")
        axes[1, i].legend()
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
