"""The colour-space comparison's report, from the out-of-fold predictions of every unit.

For each colour space (and for EmoNet's own zero-shot output on that input): PCC, CCC, RMSE and SAGR per
fold, their mean and sample sd over folds, and pooled over all out-of-fold predictions with a 95 % CI from
a bootstrap that resamples clips (actors with the actor split). Against the reference space: the pooled
CCC difference with its CI and two-sided p-value from the same paired draws (`bootstrap.py`), and the
per-fold differences. Written as comparison.json (for tools), comparison.csv (long format),
comparison.md (the table for a paper, the protocol under it) and comparison.png.
"""
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .bootstrap import BOOTSTRAP_METRICS, CI_LEVEL, draw_counts, group_sums, interval, p_value, resample
from .io import save_figure, write_json, write_text
from .metrics import regression_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

DIMENSIONS = ("valence", "arousal")
MODELS = {"trained": "trained", "zero_shot": "EmoNet zero-shot"}


def _metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    full = regression_metrics(truth, pred)
    return {m: full[m] for m in BOOTSTRAP_METRICS}


def _score(frame: pd.DataFrame, space: str, groups: np.ndarray, n_groups: int, counts: np.ndarray) -> tuple[dict, dict]:
    """Per-fold, fold mean/sd and pooled metrics (with CIs) of one space's predictions in `frame`; also the
    CCC of every bootstrap draw per dimension, for paired differences."""
    result = {"folds": [], "fold_mean": {}, "fold_sd": {}, "pooled": {}}
    draws = {}
    for k, fold in frame.groupby("fold", sort=True):
        result["folds"].append({"fold": int(k), **{d: _metrics(fold[f"{d}_true"].to_numpy(), fold[f"{space}_{d}"].to_numpy())
                                                    for d in DIMENSIONS}})
    for d in DIMENSIONS:
        per_fold = pd.DataFrame([f[d] for f in result["folds"]])
        result["fold_mean"][d] = {m: float(per_fold[m].mean()) for m in BOOTSTRAP_METRICS}
        result["fold_sd"][d] = {m: float(per_fold[m].std(ddof=1)) if len(per_fold) > 1 else 0.0 for m in BOOTSTRAP_METRICS}
        truth, pred = frame[f"{d}_true"].to_numpy(), frame[f"{space}_{d}"].to_numpy()
        boot = resample(group_sums(groups, n_groups, truth, pred), counts)
        result["pooled"][d] = {**_metrics(truth, pred), **{f"{m}_ci": interval(boot[m]) for m in BOOTSTRAP_METRICS}}
        draws[d] = boot["CCC"]
    return result, draws


def build_report(model: pd.DataFrame, zero: pd.DataFrame, spaces: list[str], reference: str, groups: np.ndarray,
                 protocol: dict, manifests: dict[str, str] | None) -> dict:
    """comparison.json's content. `groups`: the bootstrap unit (clip or actor index) of each row."""
    n_groups = int(groups.max()) + 1
    counts = draw_counts(n_groups, protocol["bootstrap"], protocol["seed"])
    scored, ccc_draws = {}, {}
    for space in spaces:
        scored[space], ccc_draws[space] = _score(model, space, groups, n_groups, counts)
        has_zero = zero[[f"{space}_{d}" for d in DIMENSIONS]].notna().all().all()
        scored[space]["zero_shot"] = _score(zero, space, groups, n_groups, counts)[0] if has_zero else None
    report = {"protocol": protocol, "color_spaces": {}}
    for space in spaces:
        entry = {"manifest": (manifests or {}).get(space), **scored[space], "vs_reference": None}
        if space != reference:
            entry["vs_reference"] = {d: {
                "CCC_diff": scored[space]["pooled"][d]["CCC"] - scored[reference]["pooled"][d]["CCC"],
                "CCC_diff_ci": interval(ccc_draws[space][d] - ccc_draws[reference][d]),
                "p_value": p_value(ccc_draws[space][d] - ccc_draws[reference][d]),
                "fold_diffs": [a[d]["CCC"] - b[d]["CCC"] for a, b in
                               zip(scored[space]["folds"], scored[reference]["folds"], strict=True)],
            } for d in DIMENSIONS}
        report["color_spaces"][space] = entry
    return report


def report_table(report: dict) -> pd.DataFrame:
    """comparison.csv: one row per space, model, fold (or "pooled"), dimension and metric."""
    rows = []
    for space, entry in report["color_spaces"].items():
        for model in MODELS:
            block = entry if model == "trained" else entry["zero_shot"]
            if block is None:
                continue
            for fold in block["folds"]:
                rows += [(space, model, str(fold["fold"]), d, m, v) for d in DIMENSIONS for m, v in fold[d].items()]
            for d in DIMENSIONS:
                for m, v in block["pooled"][d].items():
                    rows += [(space, model, "pooled", d, f"{m}_low", v[0]), (space, model, "pooled", d, f"{m}_high", v[1])] \
                        if m.endswith("_ci") else [(space, model, "pooled", d, m, v)]
        for d, diff in (entry["vs_reference"] or {}).items():
            versus = f"trained_minus_{report['protocol']['reference']}"
            rows += [(space, versus, str(k), d, "CCC_diff", v) for k, v in enumerate(diff["fold_diffs"])]
            rows += [(space, versus, "pooled", d, "CCC_diff", diff["CCC_diff"]),
                     (space, versus, "pooled", d, "CCC_diff_ci_low", diff["CCC_diff_ci"][0]),
                     (space, versus, "pooled", d, "CCC_diff_ci_high", diff["CCC_diff_ci"][1]),
                     (space, versus, "pooled", d, "p_value", diff["p_value"])]
    return pd.DataFrame(rows, columns=["space", "model", "fold", "dimension", "metric", "value"])


def _ci(value: float, ci: list[float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _approach_name(protocol: dict) -> str:
    return "feature head on EmoNet features" if protocol["approach"] == "head" else "fine-tuned EmoNet"


def protocol_text(report: dict) -> str:
    p = report["protocol"]
    trained = (f"a head 256-128-64-2 (dropout {p['dropout']}) on the frozen EmoNet features" if p["approach"] == "head"
               else f"EmoNet fine-tuned on the frames ({'emotion branch only' if p['freeze_backbone'] else 'whole network'}"
                    f"{', flip test-time augmentation' if p['flip_tta'] else ''})")
    dropped = {k: v for k, v in (p.get("dropped_frames") or {}).items() if v}
    # The seed's manifests record neither the crop nor the weights that made the features: say so, not None.
    crop = f"{p['crop']} crop" if p.get("crop") else "crop not recorded in the manifests"
    checkpoint = f"sha256 {p['pretrained_sha256'][:12]}..." if p.get("pretrained_sha256") else "not recorded in the manifests"
    return (
        f"{p['frames']} frames of {p['clips']} AFEW-VA clips, {crop}"
        + (f" (restricted to the frames every space has: dropped {', '.join(f'{v} of {k}' for k, v in dropped.items())})"
           if dropped else "")
        + f". {p['folds']}-fold group cross-validation by {p['unit']} (folds fixed by seed {p['seed']}, identical for "
        f"every colour space). In each fold, {trained} was trained on the other {p['folds'] - 1} folds for {p['epochs']} "
        f"epochs ({p['optimizer']}, learning rate {p['learning_rate']:g}, batch {p['batch_size']}, "
        f"{p['loss_function']} loss); the epoch with the best mean CCC on an inner validation split of "
        f"{p['inner_val_split']:g} of the training {p['unit']}s was kept, and the held-out fold was predicted once. "
        f"Metrics on the raw label scale [-10, 10]. Pooled values are over all out-of-fold predictions, with "
        f"{CI_LEVEL:.0%} percentile intervals from {p['bootstrap']} bootstrap resamples of {p['unit']}s (seed {p['seed']}); "
        f"differences to {p['reference']} are paired (same resamples) with two-sided bootstrap p-values, not adjusted "
        f"for multiple comparisons ({len(report['color_spaces']) - 1} here). Fold sd is the sample sd over folds. EmoNet checkpoint "
        f"{checkpoint}, torch {p['torch_version']}."
    )


def markdown(report: dict) -> str:
    ref = report["protocol"]["reference"]
    lines = [f"# Colour-space comparison on AFEW-VA: {_approach_name(report['protocol'])}", ""]
    for d in DIMENSIONS:
        lines += [f"## {d.capitalize()}", "",
                  f"| Input | Model | CCC pooled [95 % CI] | CCC folds mean ± sd | PCC pooled [95 % CI] | "
                  f"PCC folds mean ± sd | ΔCCC vs {ref} [95 % CI] | p |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for model, name in MODELS.items():
            for space, entry in report["color_spaces"].items():
                block = entry if model == "trained" else entry["zero_shot"]
                if block is None:
                    lines.append(f"| {space} | {name} | not in the feature files | | | | | |")
                    continue
                pooled, mean, sd = block["pooled"][d], block["fold_mean"][d], block["fold_sd"][d]
                diff = entry["vs_reference"][d] if model == "trained" and entry["vs_reference"] else None
                lines.append(
                    f"| {space} | {name} | {_ci(pooled['CCC'], pooled['CCC_ci'])} | {mean['CCC']:.3f} ± {sd['CCC']:.3f} | "
                    f"{_ci(pooled['PCC'], pooled['PCC_ci'])} | {mean['PCC']:.3f} ± {sd['PCC']:.3f} | "
                    + (f"{diff['CCC_diff']:+.3f} [{diff['CCC_diff_ci'][0]:+.3f}, {diff['CCC_diff_ci'][1]:+.3f}] | "
                       f"{_p(diff['p_value'])} |" if diff else ("reference | |" if model == "trained" else "| |")))
        lines.append("")
    lines += ["## Protocol", "", protocol_text(report), ""]
    return "\n".join(lines)


def summary(report: dict) -> str:
    """The lines printed at the end of a comparison."""
    ref = report["protocol"]["reference"]
    out = [f"pooled CCC [95 % CI] over {report['protocol']['frames']} out-of-fold frames ({_approach_name(report['protocol'])}):"]
    for space, entry in report["color_spaces"].items():
        line = f"  {space:<11}" + "  ".join(f"{d} {_ci(entry['pooled'][d]['CCC'], entry['pooled'][d]['CCC_ci'])}"
                                            for d in DIMENSIONS)
        if entry["vs_reference"]:
            line += "  | vs " + ref + ": " + ", ".join(
                f"{d[0]} {v['CCC_diff']:+.3f} [{v['CCC_diff_ci'][0]:+.3f}, {v['CCC_diff_ci'][1]:+.3f}] p {_p(v['p_value'])}"
                for d, v in entry["vs_reference"].items())
        out.append(line)
    return "\n".join(out)


def plot_report(report: dict, path: Path) -> "Figure":
    """Per colour space: the fold CCCs as dots and the pooled CCC with its CI (diamond); EmoNet's zero-shot
    output on that input beside it, in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    spaces = list(report["color_spaces"])
    offsets = {"trained": -0.15, "zero_shot": 0.15}
    colours = {"trained": ("tab:blue", "black"), "zero_shot": ("darkgray", "dimgray")}
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.5 * len(spaces), 4.8), sharey=True, layout="constrained")
    for ax, d in zip(axes, DIMENSIONS, strict=True):
        for model, offset in offsets.items():
            blocks = {x: (e if model == "trained" else e["zero_shot"]) for x, e in enumerate(report["color_spaces"].values())}
            blocks = {x: b for x, b in blocks.items() if b is not None}
            if not blocks:
                continue
            dots = pd.DataFrame([{"x": x + offset, "CCC": f[d]["CCC"]} for x, b in blocks.items() for f in b["folds"]])
            sns.stripplot(data=dots, x="x", y="CCC", native_scale=True, jitter=0.04, size=5, alpha=0.7,
                          color=colours[model][0], legend=False, ax=ax)
            pooled = np.array([[b["pooled"][d]["CCC"], *b["pooled"][d]["CCC_ci"]] for b in blocks.values()])
            ax.errorbar(np.array(list(blocks)) + offset, pooled[:, 0], yerr=[pooled[:, 0] - pooled[:, 1], pooled[:, 2] - pooled[:, 0]],
                        fmt="D", color=colours[model][1], markersize=7, capsize=5, lw=1.5, zorder=5, label=MODELS[model])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(spaces)), spaces)
        ax.set(xlim=(-0.6, len(spaces) - 0.4), title=d, xlabel="input colour space", ylabel="CCC")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    p = report["protocol"]
    fig.suptitle(f"{_approach_name(p)}\npooled CCC with {CI_LEVEL:.0%} {p['unit']}-bootstrap CI (diamonds), "
                 f"{p['folds']} folds by {p['unit']} (dots)", fontsize=10)  # two lines: fits two colour spaces' width
    save_figure(fig, path)
    plt.close(fig)
    return fig


def write_report(output_dir: Path, report: dict, model: pd.DataFrame, zero: pd.DataFrame) -> None:
    """Every file of the report; comparison.json last, so that its presence means the report is complete."""
    csv = {"float_format": lambda v: repr(float(v)), "index": False}
    write_text(output_dir / "oof_predictions.csv", model.to_csv(**csv))
    write_text(output_dir / "zero_shot_predictions.csv", zero.to_csv(**csv))
    write_text(output_dir / "comparison.csv", report_table(report).to_csv(**csv))
    write_text(output_dir / "comparison.md", markdown(report))
    plot_report(report, output_dir / "comparison.png")
    write_json(output_dir / "comparison.json", report)
