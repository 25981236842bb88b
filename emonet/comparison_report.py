"""The colour-space comparison's report, from the out-of-fold predictions of every unit.

For each colour space and head (and for EmoNet's own zero-shot output on that input): PCC, CCC, RMSE and
SAGR per fold, their mean and sample sd over folds, and pooled over all out-of-fold predictions with a 95 %
CI from a bootstrap that resamples clips (actors with the actor split), on repetition 0. Against the
reference space (same head) and against the frame head (same space): the pooled CCC difference with its CI
and two-sided p-value from the same paired draws (`bootstrap.py`), and the per-fold differences. With
repetitions (R > 1): each repetition's pooled figures and their mean, and the corrected resampled t-test of
the R x K per-fold differences (`cv_statistics.py`), which the report leads with.

Written as comparison.json (for tools), comparison.csv (long format), comparison.md (the table for a paper,
the protocol under it) and comparison.png.
"""
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .bootstrap import BOOTSTRAP_METRICS, CI_LEVEL, draw_counts, group_sums, interval, p_value, resample
from .cv_statistics import corrected_resampled_ttest
from .heads import DEFAULT_HEAD, SIGMA_GRID, TEMPORAL_DEFAULTS
from .io import save_figure, write_json, write_text
from .metrics import regression_metrics
from .text import number

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIMENSIONS = ("valence", "arousal")
HEAD_COLOURS = {"frame": "tab:blue", "smooth": "tab:orange", "temporal": "tab:green"}
ZERO_SHOT_COLOUR = "darkgray"
DEMO_NOTE = ("DEMO: random (deterministic) EmoNet weights and a synthetic sample of one face, made brighter with "
             "valence and warmer in colour with arousal (a planted signal, so that training has something to find); "
             "the numbers show what a real comparison writes and how to read it, and say nothing about real faces")


def column(space: str, head: str) -> str:
    return space if head == DEFAULT_HEAD else f"{space}_{head}"


def _metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    full = regression_metrics(truth, pred)
    return {m: full[m] for m in BOOTSTRAP_METRICS}


def _folds(frame: pd.DataFrame, col: str) -> list[dict]:
    return [{"fold": int(k), **{d: _metrics(fold[f"{d}_true"].to_numpy(), fold[f"{col}_{d}"].to_numpy()) for d in DIMENSIONS}}
            for k, fold in frame.groupby("fold", sort=True)]


def _pooled(frame: pd.DataFrame, col: str) -> dict:
    return {d: _metrics(frame[f"{d}_true"].to_numpy(), frame[f"{col}_{d}"].to_numpy()) for d in DIMENSIONS}


def _score(frame: pd.DataFrame, col: str, groups: np.ndarray, n_groups: int, counts: np.ndarray) -> tuple[dict, dict]:
    """Per-fold, fold mean/sd and pooled metrics (with bootstrap CIs) of one column's predictions in `frame`; also
    the CCC of every bootstrap draw per dimension, for paired differences."""
    result = {"folds": _folds(frame, col), "fold_mean": {}, "fold_sd": {}, "pooled": {}}
    draws = {}
    for d in DIMENSIONS:
        per_fold = pd.DataFrame([f[d] for f in result["folds"]])
        result["fold_mean"][d] = {m: float(per_fold[m].mean()) for m in BOOTSTRAP_METRICS}
        result["fold_sd"][d] = {m: float(per_fold[m].std(ddof=1)) if len(per_fold) > 1 else 0.0 for m in BOOTSTRAP_METRICS}
        truth, pred = frame[f"{d}_true"].to_numpy(), frame[f"{col}_{d}"].to_numpy()
        boot = resample(group_sums(groups, n_groups, truth, pred), counts)
        result["pooled"][d] = {**_metrics(truth, pred), **{f"{m}_ci": interval(boot[m]) for m in BOOTSTRAP_METRICS}}
        draws[d] = boot["CCC"]
    return result, draws


def _difference(a: dict, b: dict, draws_a: dict, draws_b: dict, folds_a: list[list[dict]], folds_b: list[list[dict]]) -> dict:
    """a - b per dimension: the pooled CCC difference of repetition 0 with its paired-bootstrap CI and p, the
    per-fold differences, and with repetitions the corrected resampled t-test of all R x K fold differences."""
    out = {}
    for d in DIMENSIONS:
        diffs = draws_a[d] - draws_b[d]
        per_repeat = [[x[d]["CCC"] - y[d]["CCC"] for x, y in zip(fa, fb, strict=True)] for fa, fb in zip(folds_a, folds_b, strict=True)]
        out[d] = {"CCC_diff": a["pooled"][d]["CCC"] - b["pooled"][d]["CCC"], "CCC_diff_ci": interval(diffs),
                  "p_value": p_value(diffs), "fold_diffs": per_repeat[0]}
        if len(per_repeat) > 1:
            out[d]["repeated"] = corrected_resampled_ttest(per_repeat)
    return out


def build_report(preds: list[pd.DataFrame], zero: pd.DataFrame, spaces: list[str], heads: list[str], reference: str,
                 groups: np.ndarray, protocol: dict, manifests: dict[str, str] | None) -> dict:
    """comparison.json's content. `preds`: one frame per repetition (`comparison.collect_predictions`), `groups`:
    the bootstrap unit (clip or actor index) of each row. The bootstrap runs on repetition 0."""
    n_groups = int(groups.max()) + 1
    counts = draw_counts(n_groups, protocol["bootstrap"], protocol["seed"])
    repeats = len(preds)
    scored, draws, folds = {}, {}, {}
    for head in heads:
        for space in spaces:
            col = column(space, head)
            scored[head, space], draws[head, space] = _score(preds[0], col, groups, n_groups, counts)
            folds[head, space] = [scored[head, space]["folds"]] + [_folds(p, col) for p in preds[1:]]
            if repeats > 1:
                per_repeat = [{"repeat": r, "seed": protocol["seed"] + r, "pooled": _pooled(p, col),
                               "folds": folds[head, space][r]} for r, p in enumerate(preds)]
                scored[head, space]["repeats"] = per_repeat
                scored[head, space]["repeats_mean"] = {
                    d: {m: float(np.mean([x["pooled"][d][m] for x in per_repeat])) for m in BOOTSTRAP_METRICS}
                    for d in DIMENSIONS}
    report = {"protocol": protocol, "color_spaces": {}}
    for space in spaces:
        entries = {}
        for head in heads:
            entry = dict(scored[head, space])
            entry["vs_reference"] = None if space == reference else _difference(
                entry, scored[head, reference], draws[head, space], draws[head, reference], folds[head, space],
                folds[head, reference])
            if head != DEFAULT_HEAD:
                entry["vs_frame"] = _difference(entry, scored[DEFAULT_HEAD, space], draws[head, space],
                                                draws[DEFAULT_HEAD, space], folds[head, space], folds[DEFAULT_HEAD, space])
            entries[head] = entry
        has_zero = zero[[f"{space}_{d}" for d in DIMENSIONS]].notna().all().all()
        zero_shot = _score(zero, space, groups, n_groups, counts)[0] if has_zero else None
        report["color_spaces"][space] = {"manifest": (manifests or {}).get(space), **entries[DEFAULT_HEAD],
                                         "zero_shot": zero_shot, "heads": entries}
    return report


# -- tables ------------------------------------------------------------------------------------------------------
def _model_name(protocol: dict, head: str) -> str:
    return f"{head} head" if protocol["approach"] == "head" else "fine-tuned"


def report_table(report: dict) -> pd.DataFrame:
    """comparison.csv: one row per space, head, model, repetition, fold (or "pooled"), dimension and metric.
    `model` is trained, zero_shot, trained_minus_<reference> or trained_minus_frame."""
    rows = []
    ref = report["protocol"]["reference"]

    def block_rows(space, head, model, block, repeat=0):
        for fold in block["folds"]:
            rows.extend((space, head, model, repeat, str(fold["fold"]), d, m, v) for d in DIMENSIONS for m, v in fold[d].items())
        for d in DIMENSIONS:
            for m, v in block["pooled"][d].items():
                if m.endswith("_ci"):
                    rows.extend([(space, head, model, repeat, "pooled", d, f"{m}_low", v[0]),
                                 (space, head, model, repeat, "pooled", d, f"{m}_high", v[1])])
                else:
                    rows.append((space, head, model, repeat, "pooled", d, m, v))
        for entry in block.get("repeats", [])[1:]:  # repetition 0 is above
            rows.extend((space, head, model, entry["repeat"], "pooled", d, m, v)
                        for d in DIMENSIONS for m, v in entry["pooled"][d].items())
            rows.extend((space, head, model, entry["repeat"], str(f["fold"]), d, m, v)
                        for f in entry["folds"] for d in DIMENSIONS for m, v in f[d].items())

    def diff_rows(space, head, model, diffs):
        for d, diff in (diffs or {}).items():
            rows.extend((space, head, model, 0, str(k), d, "CCC_diff", v) for k, v in enumerate(diff["fold_diffs"]))
            rows.extend([(space, head, model, 0, "pooled", d, "CCC_diff", diff["CCC_diff"]),
                         (space, head, model, 0, "pooled", d, "CCC_diff_ci_low", diff["CCC_diff_ci"][0]),
                         (space, head, model, 0, "pooled", d, "CCC_diff_ci_high", diff["CCC_diff_ci"][1]),
                         (space, head, model, 0, "pooled", d, "p_value", diff["p_value"])])
            t = diff.get("repeated")
            if t:
                rows.extend((space, head, model, r, str(k), d, "CCC_diff", v)
                            for r, per in enumerate(t["fold_diffs"]) if r for k, v in enumerate(per))
                rows.extend((space, head, model, "all", "repeated", d, name, value) for name, value in
                            (("CCC_diff_mean", t["mean"]), ("ci_low", t["ci"][0]), ("ci_high", t["ci"][1]),
                             ("t", t["t"]), ("df", t["df"]), ("p_value", t["p_value"])))

    for space, entry in report["color_spaces"].items():
        for head, block in entry["heads"].items():
            block_rows(space, head, "trained", block)
            diff_rows(space, head, f"trained_minus_{ref}", block["vs_reference"])
            diff_rows(space, head, "trained_minus_frame", block.get("vs_frame"))
        if entry["zero_shot"] is not None:
            block_rows(space, "", "zero_shot", entry["zero_shot"])
    return pd.DataFrame(rows, columns=["space", "head", "model", "repeat", "fold", "dimension", "metric", "value"])


def _ci(value: float, ci: list[float], sign: bool = False) -> str:
    return f"{number(value, sign=sign)} [{number(ci[0], sign=sign)}, {number(ci[1], sign=sign)}]"


def _p(p: float) -> str:
    return number(p) if p >= 0.001 else "< 0.001"


def _approach_name(protocol: dict) -> str:
    return "heads on EmoNet features" if protocol["approach"] == "head" else "fine-tuned EmoNet"


def _head_text(protocol: dict) -> str:
    heads = protocol.get("heads", [DEFAULT_HEAD])
    parts = [f"a frame head 256-128-64-2 (dropout {protocol['dropout']}) on each frame's frozen EmoNet feature"]
    if "smooth" in heads:
        parts.append("a smooth head (the frame head, then a Gaussian filter along each clip, its sigma chosen with the "
                     f"epoch on the inner split from {{{', '.join(f'{s:g}' for s in SIGMA_GRID)}}} frames)")
    if "temporal" in heads:
        rf = 1 + (TEMPORAL_DEFAULTS["kernel"] - 1) * (2 ** TEMPORAL_DEFAULTS["levels"] - 1)
        parts.append(f"a temporal head (a non-causal temporal convolution network, {TEMPORAL_DEFAULTS['levels']} levels of "
                     f"{TEMPORAL_DEFAULTS['channels']} channels, kernel {TEMPORAL_DEFAULTS['kernel']}, receptive field "
                     f"{rf} frames, trained on whole clips, {protocol.get('clips_per_batch')} clips a step)")
    return "; ".join(parts)


def protocol_text(report: dict) -> str:
    p = report["protocol"]
    trained = (_head_text(p) if p["approach"] == "head"
               else f"EmoNet fine-tuned on the frames ({'emotion branch only' if p['freeze_backbone'] else 'whole network'}"
                    f"{', flip test-time augmentation' if p['flip_tta'] else ''})")
    dropped = {k: v for k, v in (p.get("dropped_frames") or {}).items() if v}
    # The seed's manifests record neither the crop nor the weights that made the features: say so, not None.
    crop = f"{p['crop']} crop" if p.get("crop") else "crop not recorded in the manifests"
    checkpoint = f"sha256 {p['pretrained_sha256'][:12]}..." if p.get("pretrained_sha256") else "not recorded in the manifests"
    repeats = p.get("repeats", 1)
    comparisons = (len(report["color_spaces"]) - 1) * len(p.get("heads", [DEFAULT_HEAD]))
    text = (
        f"{p['frames']:,} frames of {p['clips']:,} AFEW-VA clips, {crop}"
        + (f" (restricted to the frames every space has: dropped {', '.join(f'{v} of {k}' for k, v in dropped.items())})"
           if dropped else "")
        + f". {p['folds']}-fold group cross-validation by {p['unit']} (folds fixed by seed {p['seed']}, identical for "
        f"every colour space and head)"
        + (f", repeated {repeats} times with seeds {p['seed']} to {p['seed'] + repeats - 1} (each repetition draws its "
           "own folds, inner splits, initialisations and orders)" if repeats > 1 else "")
        + f". In each fold, {trained} was trained on the other {p['folds'] - 1} folds for {p['epochs']} "
        f"epochs ({p['optimizer']}, learning rate {p['learning_rate']:g}, batch {p['batch_size']}, "
        f"{p['loss_function']} loss, weight decay {p['weight_decay']:g}); the epoch with the best mean CCC on an inner "
        f"validation split of {p['inner_val_split']:g} of the training {p['unit']}s was kept, and the held-out fold was "
        f"predicted once. Metrics on the raw label scale [-10, 10]. Pooled values are over all out-of-fold predictions, "
        f"with {CI_LEVEL:.0%} percentile intervals from {p['bootstrap']} bootstrap resamples of {p['unit']}s (seed {p['seed']}"
        f"{', repetition 0' if repeats > 1 else ''}); differences to {p['reference']} (same head) and to the frame head "
        f"(same space) are paired (same resamples) with two-sided bootstrap p-values"
        + (f", and tested across all {repeats} x {p['folds']} folds with the corrected resampled t-test (Nadeau & Bengio "
           f"2003; variance (1/{repeats * p['folds']} + 1/{p['folds'] - 1}) s^2, df {repeats * p['folds'] - 1})"
           if repeats > 1 else "")
        + f"; p-values are not adjusted for multiple comparisons ({comparisons} against {p['reference']} here). Fold sd "
        f"is the sample sd over folds. EmoNet checkpoint {checkpoint}, torch {p['torch_version']}."
    )
    return text


def intervals_text(protocol: dict) -> str:
    """What each interval of the report covers, in one sentence each."""
    if protocol.get("repeats", 1) > 1:
        return ("Intervals: the corrected t interval of a difference (over all repetitions and folds) covers training "
                "again on other folds with other seeds as well as which clips were scored; the clip-bootstrap interval "
                "(repetition 0) covers only which clips were scored, with the trained models held fixed.")
    return ("Intervals: the clip-bootstrap interval covers which clips were scored, with the trained models held fixed; "
            "it does not cover training again with another seed, so a difference is one training's: run --repeats 3 "
            "or more before claiming that a colour space helps.")


def headline(diff: dict) -> tuple[float, list[float], float]:
    """The figure a report leads with for one dimension's difference: (mean, 95 % CI, p) of the corrected
    resampled t-test with repetitions, else the pooled difference with its bootstrap CI and p."""
    t = diff.get("repeated")
    return (t["mean"], t["ci"], t["p_value"]) if t else (diff["CCC_diff"], diff["CCC_diff_ci"], diff["p_value"])


def _row_cells(block: dict, d: str, repeats: int, differences: bool) -> list[str]:
    """One table row's cells after Input and Model; `differences`: a trained row (a zero-shot row has none)."""
    pooled, mean, sd = block["pooled"][d], block["fold_mean"][d], block["fold_sd"][d]

    def diff_cells(diff: dict | None, absent: str) -> list[str]:
        if diff is None:
            return [absent, ""]
        value, ci, p = headline(diff[d])
        return [_ci(value, ci, sign=True), _p(p)]

    cells = []
    if repeats > 1:
        values = [r["pooled"][d]["CCC"] for r in block["repeats"]]
        cells.append(f"{number(np.mean(values))} ({number(min(values))} to {number(max(values))})")
    cells += [_ci(pooled["CCC"], pooled["CCC_ci"]), f"{number(mean['CCC'])} ± {number(sd['CCC'])}",
              _ci(pooled["PCC"], pooled["PCC_ci"]), number(pooled["RMSE"], 2), number(pooled["SAGR"])]
    if differences:
        cells += diff_cells(block["vs_reference"], "reference") + diff_cells(block.get("vs_frame"), "")
    else:
        cells += ["", "", "", ""]
    return cells


def markdown(report: dict) -> str:
    p = report["protocol"]
    ref, repeats = p["reference"], p.get("repeats", 1)
    heads = p.get("heads", [DEFAULT_HEAD])
    lines = [f"# Colour-space comparison on AFEW-VA: {_approach_name(p)}", ""]
    if p.get("demo"):
        lines += [f"**{DEMO_NOTE}.**", ""]
    lines += [intervals_text(p), ""]
    rep0 = " (repetition 0)" if repeats > 1 else ""
    diff_kind = f"{repeats} x {p['folds']} folds, corrected t" if repeats > 1 else "clip bootstrap"
    header = (([f"CCC, mean of {repeats} repetitions (range)"] if repeats > 1 else [])
              + [f"CCC pooled [95 % CI]{rep0}", f"CCC folds mean ± sd{rep0}", f"PCC pooled [95 % CI]{rep0}",
                 f"RMSE{rep0}", f"SAGR{rep0}", f"ΔCCC vs {ref} [95 % CI, {diff_kind}]", "p",
                 f"ΔCCC vs frame head [95 % CI, {diff_kind}]", "p"])
    for d in DIMENSIONS:
        lines += [f"## {d.capitalize()}", "", "| Input | Model | " + " | ".join(header) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in header) + " |"]
        for head in heads:
            for space, entry in report["color_spaces"].items():
                block = entry["heads"][head]
                lines.append(f"| {space} | {_model_name(p, head)} | " + " | ".join(_row_cells(block, d, repeats, True)) + " |")
        for space, entry in report["color_spaces"].items():
            block = entry["zero_shot"]
            if block is None:
                lines.append(f"| {space} | EmoNet zero-shot | not in the feature files |" + " |" * (len(header) - 1))
                continue
            cells = ([""] if repeats > 1 else []) + _row_cells(block, d, 1, False)
            lines.append(f"| {space} | EmoNet zero-shot | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Protocol", "", protocol_text(report), ""]
    if p.get("demo"):
        lines += [f"**{DEMO_NOTE}.**", ""]
    return "\n".join(lines)


def summary(report: dict) -> str:
    """The lines printed at the end of a comparison: each (space, head) with its differences."""
    p = report["protocol"]
    ref, repeats = p["reference"], p.get("repeats", 1)
    what = (f"mean over {repeats} repetitions of the pooled CCC; differences: corrected t over {repeats} x {p['folds']} folds"
            if repeats > 1 else "pooled CCC [95 % clip-bootstrap CI]")
    out = [f"{what}, {p['frames']:,} out-of-fold frames a repetition ({_approach_name(p)}):"]
    for space, entry in report["color_spaces"].items():
        for head, block in entry["heads"].items():
            if repeats > 1:
                scores = "  ".join(f"{d} {number(block['repeats_mean'][d]['CCC'])}" for d in DIMENSIONS)
            else:
                scores = "  ".join(f"{d} {_ci(block['pooled'][d]['CCC'], block['pooled'][d]['CCC_ci'])}" for d in DIMENSIONS)
            line = f"  {space:<11}{head:<9}{scores}"
            for name, diff in ((f"vs {ref}", block["vs_reference"]), ("vs frame", block.get("vs_frame"))):
                if diff:
                    figures = {d: headline(v) for d, v in diff.items()}
                    line += f"  | {name}: " + ", ".join(f"{d[0]} {_ci(value, ci, True)} p {_p(pv)}"
                                                        for d, (value, ci, pv) in figures.items())
            out.append(line)
    return "\n".join(out)


# -- the figure --------------------------------------------------------------------------------------------------
def plot_report(report: dict, path: Path) -> "Figure":
    """Per colour space and head: the fold CCCs (dots) and the pooled CCC with its CI (diamond), EmoNet's zero-shot
    output beside them in grey; under them each space's CCC difference to the reference with its interval, and,
    with several heads, each head's difference to the frame head. The legend sits under the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    p = report["protocol"]
    spaces, heads = list(report["color_spaces"]), p.get("heads", [DEFAULT_HEAD])
    repeats, ref = p.get("repeats", 1), p["reference"]
    has_zero = any(e["zero_shot"] is not None for e in report["color_spaces"].values())
    series = [*heads, *(["zero_shot"] if has_zero else [])]
    width = 0.8 / len(series)
    offsets = {s: (i - (len(series) - 1) / 2) * width for i, s in enumerate(series)}
    colours = {**{h: HEAD_COLOURS.get(h, "tab:purple") for h in heads}, "zero_shot": ZERO_SHOT_COLOUR}
    rows = 2 + (len(heads) > 1)
    fig, axes = plt.subplots(rows, 2, figsize=(3.5 + 1.6 * len(spaces) * max(1, len(series) / 2), 3.3 * rows + 1.2),
                             sharex=True, layout="constrained", squeeze=False)
    rng = np.random.default_rng(0)
    for col, d in enumerate(DIMENSIONS):
        ax = axes[0, col]
        for s in series:
            for x, space in enumerate(spaces):
                entry = report["color_spaces"][space]
                block = entry["zero_shot"] if s == "zero_shot" else entry["heads"][s]
                if block is None:
                    continue
                folds = [f[d]["CCC"] for f in block["folds"]]
                if s != "zero_shot" and repeats > 1:  # every repetition's folds (its pooled CCC is in the json)
                    folds = [v for r in _fold_cccs(report, space, s, d) for v in r]
                xs = x + offsets[s] + rng.uniform(-0.25, 0.25, len(folds)) * width
                ax.scatter(xs, folds, s=10, color=colours[s], alpha=0.45, lw=0, zorder=3)
                pooled = block["pooled"][d]
                ax.errorbar(x + offsets[s], pooled["CCC"], yerr=[[pooled["CCC"] - pooled["CCC_ci"][0]],
                                                                 [pooled["CCC_ci"][1] - pooled["CCC"]]],
                            fmt="D", color=colours[s], mec="black", ms=6, capsize=3, lw=1.3, zorder=5)
        ax.set(title=f"{d}: CCC", ylabel="CCC")
        ax = axes[1, col]
        for h in heads:
            for x, space in enumerate(spaces):
                diff = report["color_spaces"][space]["heads"][h]["vs_reference"]
                if diff is None:
                    continue
                mean, (lo, hi), _ = headline(diff[d])
                ax.errorbar(x + offsets[h], mean, yerr=[[mean - lo], [hi - mean]], fmt="o", color=colours[h], ms=6,
                            capsize=3, lw=1.3)
        ax.text(spaces.index(ref), 0, "reference", ha="center", va="bottom", fontsize=8, color="dimgray")
        ax.set(title=f"{d}: CCC difference to {ref} (same head)", ylabel=f"ΔCCC vs {ref}")
        if rows == 3:
            ax = axes[2, col]
            for h in heads[1:]:
                for x, space in enumerate(spaces):
                    mean, (lo, hi), _ = headline(report["color_spaces"][space]["heads"][h]["vs_frame"][d])
                    ax.errorbar(x + offsets[h], mean, yerr=[[mean - lo], [hi - mean]], fmt="s", color=colours[h], ms=6,
                                capsize=3, lw=1.3)
            ax.set(title=f"{d}: head minus frame head (same space)", ylabel="ΔCCC vs frame head")
        for ax in axes[1:, col]:
            ax.axhline(0, color="k", lw=0.8)
    for ax in axes.ravel():
        ax.grid(axis="y", alpha=0.3)
        ax.set_xticks(range(len(spaces)), spaces)
        ax.set_xlim(-0.6, len(spaces) - 0.4)
    for ax in axes[-1]:
        ax.set_xlabel("input colour space")
    interval_kind = (f"corrected t over {repeats} x {p['folds']} folds" if repeats > 1 else f"{p['unit']} bootstrap")
    handles = [Line2D([], [], color=colours[s], marker="D", mec="black", ls="", ms=7,
                      label=_model_name(p, s) if s != "zero_shot" else "EmoNet zero-shot") for s in series]
    handles += [Line2D([], [], color="gray", marker="o", ls="", ms=4, alpha=0.6,
                       label=f"one fold{' (every repetition)' if repeats > 1 else ''}"),
                Line2D([], [], color="gray", marker="D", ls="-", ms=6, label=f"pooled CCC, {CI_LEVEL:.0%} {p['unit']}-bootstrap CI"),
                Line2D([], [], color="gray", marker="o", ls="-", ms=6, label=f"difference, {CI_LEVEL:.0%} CI ({interval_kind})")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    title = f"{_approach_name(p)}: {p['folds']} folds by {p['unit']}" + (f", {repeats} repetitions" if repeats > 1 else "")
    if p.get("demo"):
        title = "DEMO: random weights, synthetic faces; the numbers say nothing about real faces\n" + title
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def _fold_cccs(report: dict, space: str, head: str, d: str) -> list[list[float]]:
    """Every repetition's fold CCCs of (space, head)."""
    return [[f[d]["CCC"] for f in r["folds"]] for r in report["color_spaces"][space]["heads"][head]["repeats"]]


def write_report(output_dir: Path, report: dict, preds: list[pd.DataFrame], zero: pd.DataFrame) -> None:
    """Every file of the report; comparison.json last, so that its presence means the report is complete.
    oof_predictions.csv: with repetitions, one row per (repetition, frame) and a `repeat` column."""
    csv = {"float_format": lambda v: repr(float(v)), "index": False}
    oof = preds[0] if len(preds) == 1 else pd.concat([f.assign(repeat=r) for r, f in enumerate(preds)])[
        ["repeat", *preds[0].columns]]
    write_text(output_dir / "oof_predictions.csv", oof.to_csv(**csv))
    write_text(output_dir / "zero_shot_predictions.csv", zero.to_csv(**csv))
    write_text(output_dir / "comparison.csv", report_table(report).to_csv(**csv))
    write_text(output_dir / "comparison.md", markdown(report))
    plot_report(report, output_dir / "comparison.png")
    write_json(output_dir / "comparison.json", report)
