"""Evaluation outputs: metrics JSON with a leakage audit, predictions CSV, plots, a summary table.

Metrics are reported on the raw AFEW-VA scale [-10, 10] (as in the seed's table) and, under
`normalized`, on EmoNet's [-1, 1] scale (PCC, CCC and SAGR are the same on both; MSE is 100x and RMSE
10x smaller there).
"""
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .constants import LABEL_MAX, LABEL_MIN, LABEL_SCALE
from .errors import EmoNetError
from .io import save_figure, write_json, write_text
from .metrics import METRIC_NAMES, regression_metrics
from .runs import check_kind
from .splits import leakage_check, sample_key, selection_side
from .text import number

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIMENSIONS = ("valence", "arousal")
OVERALL = ("PCC", "CCC", "MSE", "RMSE")
CSV_COLUMNS = ("clip", "frame", "valence_true", "arousal_true", "valence_pred", "arousal_pred")
RESULTS_FILE = "evaluation_results.json"
# What makes two evaluations the same: a results folder holds one of them (re-running it there is fine).
IDENTITY_KEYS = ("model_type", "model_path", "pretrained_path", "manifest_file", "dataset_root", "subset",
                 "color_space", "crop", "flip_tta")
# Up to this many distinct true values (AFEW-VA has 21 integers) predictions are drawn as one box per
# value; beyond, as a 2-D density. Up to STRIP_MAX_POINTS frames the points are drawn over the boxes.
MAX_BOX_LEVELS = 41
STRIP_MAX_POINTS = 2000
MAX_ERROR_BINS = 60


def check_results_dir(output_dir: str | Path, identity: dict, overwrite: bool) -> None:
    """Refuse a folder holding the results of another evaluation (another model, type, subset, input...), or a run of
    another kind."""
    check_kind(output_dir, "evaluation")
    path = Path(output_dir) / RESULTS_FILE
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmoNetError(f"{path}: unreadable earlier results ({exc}); pass --overwrite to replace them") from None
    changes = [f"{k} {old.get(k)!r} -> {identity.get(k)!r}" for k in IDENTITY_KEYS if old.get(k) != identity.get(k)]
    if changes:
        raise EmoNetError(f"{output_dir} holds the results of another evaluation ({'; '.join(changes)}); pass "
                          "--overwrite to replace them, or choose another --output_dir")


def selected_on(evaluated: list[dict], split: dict | None) -> bool:
    """True when some evaluated frames belong to the units on which the checkpoint's best epoch was chosen."""
    if not split:
        return False
    chosen_on = set(split.get(selection_side(split), ()))
    return any(sample_key(s, split["mode"]) in chosen_on for s in evaluated)


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
        "predictions_outside_scale": {d: int((np.abs(pred[:, j]) > LABEL_MAX).sum())
                                      for j, d in enumerate(("valence", "arousal"))},
    }


def scale_warning(results: dict) -> str | None:
    """One line when predictions fall outside the labels' scale (stand-in weights, or a head that extrapolates)."""
    outside = results["predictions_outside_scale"]
    if not any(outside.values()):
        return None
    stand_in = " EmoNet's stand-in weights give such values: they are not the released network." if results.get(
        "stand_in_weights") else ""
    return (f"WARNING: {outside['valence']} valence and {outside['arousal']} arousal predictions of "
            f"{results['num_samples']} lie outside AFEW-VA's scale [{LABEL_MIN:g}, {LABEL_MAX:g}]; the metrics score "
            f"them as they are.{stand_in}")


def predictions_frame(samples: list[dict], pred: np.ndarray) -> pd.DataFrame:
    """One row per evaluated frame, raw scale (the columns of predictions.csv)."""
    pred = np.asarray(pred, dtype=np.float64)
    return pd.DataFrame({
        "clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
        "valence_true": [float(s["valence"]) for s in samples], "arousal_true": [float(s["arousal"]) for s in samples],
        "valence_pred": pred[:, 0], "arousal_pred": pred[:, 1],
    }, columns=CSV_COLUMNS)


def leak_warning(results: dict) -> str | None:
    """A warning when the evaluated frames share clips with training, the oracle's score beside the model's."""
    leak = results["leakage_check"]
    if leak["leak_free"]:
        return None
    text = (f"WARNING: the split leaks: {leak['eval_clips_seen_in_training']} evaluated clips have frames in training. "
            f"Model PCC valence {number(results['valence_metrics']['PCC'])}, arousal {number(results['arousal_metrics']['PCC'])}")
    oracle = leak["nearest_frame_oracle"]
    if oracle:
        text += (f"; copying the label of the nearest training frame of the same clip scores PCC valence "
                 f"{number(oracle['valence_PCC'])}, arousal {number(oracle['arousal_PCC'])} ({oracle['frames']} frames). "
                 "These numbers measure clip recognition, not emotion; use --split clip or actor.")
    return text


def selection_warning(results: dict) -> str | None:
    """One line when the best epoch was chosen on (some of) the frames just scored."""
    if not results.get("selected_on_evaluated_frames"):
        return None
    return ("NOTE: the checkpoint's best epoch was chosen on these frames, so these figures are optimistic; train "
            "with --inner_val_split 0.1 (or use compare_color_spaces.py) to choose it on other clips.")


def _title(results: dict) -> str:
    head = results.get("head")
    model = f"{results['model_type']} model"
    if head:
        model = f"{head['kind']} head" + (f" (sigma {head['sigma']:g} frames)" if head["kind"] == "smooth" else "")
    return (f"{model}, {results.get('color_space') or '?'} input, {results.get('crop') or '?'} crop, "
            f"subset {results['subset']}, N = {results['num_samples']} frames")


def summary_table(results: dict) -> str:
    table = pd.DataFrame({dim: results[f"{dim}_metrics"] for dim in DIMENSIONS} | {"mean": results["overall_metrics"]}).T
    # to_string always puts a space between columns, so no value (an MSE of 1,000, say) runs into the next.
    body = table[list(METRIC_NAMES)].to_string(float_format=lambda v: number(v, 4), na_rep="")
    return "\n".join([_title(results) + f", split {results.get('split') or 'none'}; raw scale [-10, 10]", body,
                      "leakage check: " + leak_summary(results["leakage_check"])])


def leak_summary(leak: dict) -> str:
    """What the audit says, naming the unit that is (or is not) kept apart: clips, and actors where recorded."""
    if not leak["leak_free"]:
        return f"LEAKS ({leak['eval_clips_seen_in_training']} evaluated clips seen in training)"
    actors = leak.get("eval_actors_seen_in_training")
    if actors is None:
        return "leak-free by clip (no evaluated clip seen in training; actors not recorded)"
    if actors:
        return (f"leak-free by clip (no evaluated clip seen in training), not by actor: {actors} evaluated actors "
                "also appear in training (--split actor keeps actors apart)")
    return "leak-free by clip and by actor (no evaluated clip or actor seen in training)"


def write_evaluation(output_dir: str | Path, results: dict, samples: list[dict], pred: np.ndarray) -> None:
    """evaluation_results.json, predictions.csv, evaluation_scatter.png, evaluation_distributions.png."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    frame = predictions_frame(samples, pred)
    # repr: the shortest text that reads back as the same float, so metrics recomputed from the CSV match exactly.
    write_text(output_dir / "predictions.csv", frame.to_csv(index=False, float_format=lambda v: repr(float(v))))
    truth = frame[["valence_true", "arousal_true"]].to_numpy()
    plot_predictions(truth, frame[["valence_pred", "arousal_pred"]].to_numpy(), results, output_dir / "evaluation_scatter.png")
    plot_distributions(truth, frame[["valence_pred", "arousal_pred"]].to_numpy(), results,
                       output_dir / "evaluation_distributions.png")
    write_json(output_dir / RESULTS_FILE, results)  # last: its presence means the folder's results are complete


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _value_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """Axis limits that hold the label range and every value (a badly scaled model's predictions included)."""
    lo = min(LABEL_MIN, *(float(a.min()) for a in arrays))
    hi = max(LABEL_MAX, *(float(a.max()) for a in arrays))
    pad = 0.04 * (hi - lo) + 0.5
    return lo - pad, hi + pad


def _outside_note(pred: np.ndarray) -> str:
    outside = int(((pred < LABEL_MIN) | (pred > LABEL_MAX)).sum())
    return (f"\n{outside} prediction{'s' if outside > 1 else ''} outside [{LABEL_MIN:g}, {LABEL_MAX:g}] (all shown)"
            if outside else "")


def plot_predictions(truth: np.ndarray, pred: np.ndarray, results: dict, path: Path) -> "Figure":
    """For each true label value, the distribution of predictions (box), their mean, and the identity line."""
    import seaborn as sns

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), layout="constrained")
    for i, (ax, dim) in enumerate(zip(axes, DIMENSIONS, strict=True)):
        data = pd.DataFrame({"true": truth[:, i], "predicted": pred[:, i]})
        lims = _value_limits(truth[:, i], pred[:, i])
        if data["true"].nunique() <= MAX_BOX_LEVELS:
            sns.boxplot(data=data, x="true", y="predicted", native_scale=True, width=0.6, color="tab:blue",
                        fliersize=2, linewidth=1, boxprops={"alpha": 0.5}, ax=ax)
            if len(data) <= STRIP_MAX_POINTS:
                sns.stripplot(data=data, x="true", y="predicted", native_scale=True, jitter=0.15, size=3,
                              color="black", alpha=0.5, ax=ax)
            means = data.groupby("true")["predicted"].mean()
            ax.plot(means.index, means.to_numpy(), "D", color="tab:red", markersize=5, label="mean prediction")
        else:
            sns.histplot(data=data, x="true", y="predicted", bins=60, cbar=True, ax=ax)
        ax.plot(lims, lims, "k--", lw=1, label="identity")
        m = results[f"{dim}_metrics"]
        ax.set(xlim=lims, ylim=lims, aspect="equal", xlabel=f"true {dim}", ylabel=f"predicted {dim}",
               title=f"{dim}: PCC {number(m['PCC'])}  CCC {number(m['CCC'])}  RMSE {number(m['RMSE'], 2)}"
                     f"{_outside_note(pred[:, i])}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.suptitle(_title(results))
    save_figure(fig, path)
    plt.close(fig)
    return fig


def plot_distributions(truth: np.ndarray, pred: np.ndarray, results: dict, path: Path) -> "Figure":
    """Error histograms, and the true and predicted values on bins that hold every prediction."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
    for i, dim in enumerate(DIMENSIONS):
        error = pred[:, i] - truth[:, i]
        edges = np.histogram_bin_edges(error, bins="auto")
        bins = edges if len(edges) <= MAX_ERROR_BINS + 1 else MAX_ERROR_BINS
        sns.histplot(x=error, bins=bins, color="tab:red", ax=axes[0, i])
        axes[0, i].axvline(0, color="k", lw=1)
        axes[0, i].set(title=f"{dim} error (pred - true): mean {number(error.mean(), 2)}, sd {number(error.std(), 2)}",
                       xlabel="error", ylabel="frames")
        lo, hi = _value_limits(truth[:, i], pred[:, i])
        values = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0, 1.0)  # one bin per integer label value
        values_frame = pd.DataFrame({dim: np.concatenate([truth[:, i], pred[:, i]]),
                                     "": ["true"] * len(truth) + ["predicted"] * len(pred)})
        sns.histplot(data=values_frame, x=dim, hue="", bins=values, element="step", ax=axes[1, i])
        axes[1, i].set(title=f"{dim} values{_outside_note(pred[:, i])}", ylabel="frames")
    for ax in axes.ravel():
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # frame counts are whole numbers
        ax.grid(alpha=0.3)
    fig.suptitle(_title(results))
    save_figure(fig, path)
    plt.close(fig)
    return fig
