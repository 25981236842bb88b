"""The colour-space comparison's report, from the out-of-fold predictions of every unit.

Per colour space and head (and EmoNet's zero-shot output): PCC, CCC, RMSE and SAGR per fold and pooled, with a
bootstrap over clips (actors with the actor split); differences to the reference space and to the frame head, paired.
Each row leads with one headline figure whose differences add up on the page, the statistic named beside it: one
repetition, the pooled CCC and the paired bootstrap (`bootstrap.py`); R > 1 repetitions of K folds, the mean of the
R x K fold CCCs and the corrected resampled t-test (`cv_statistics.py`); the official protocol's one fixed split with
R > 1 seeds, the mean over seeds with a bootstrap over groups and seeds (`Draws`), since the corrected t-test is for
cross-validation's overlapping training sets. The guide, "Reading the report", says how to read each.

Written as comparison.json (for tools), comparison.csv (long format), comparison.md (the table for a paper, the
protocol under it) and comparison.png."""
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .bootstrap import BOOTSTRAP_METRICS, CI_LEVEL, draw_counts, group_sums, interval, p_value, resample
from .constants import CROSS_CORPUS, DEFAULT_DATASET, DEFAULT_HEAD, OFFICIAL
from .cv_statistics import corrected_ccc_interval, corrected_resampled_ttest
from .dataset_info import DATASETS
from .heads import SIGMA_GRID, TEMPORAL_DEFAULTS, TEMPORAL_WINDOW
from .io import save_figure, write_json, write_text
from .metrics import regression_metrics
from .text import number, plural

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIMENSIONS = ("valence", "arousal")
HEAD_COLOURS = {"frame": "tab:blue", "smooth": "tab:orange", "temporal": "tab:green"}
ZERO_SHOT_COLOUR = "darkgray"
CORRECTED_T = "corrected resampled t-test"
REPORT_FILE = "comparison.json"
# The seeds of the official protocol's group x seed bootstrap: their own stream of --seed, apart from the groups'.
SEED_DRAW_STREAM = 3
AFFECTNET_NOTE = DATASETS["affectnet"].caveat
DEMO_NOTE = ("DEMO: random (deterministic) EmoNet weights and a synthetic sample of one face, made brighter with "
             "valence and warmer in colour with arousal (a planted signal, so that training has something to find); "
             "the numbers show what a real comparison writes and how to read it, and say nothing about real faces")


def demo_zero_shot_note(protocol: dict) -> str:
    """Why a demo report has no zero-shot rows: EmoNet's own outputs there come from the random stand-in weights."""
    return ("EmoNet zero-shot is left out of the demo: with random stand-in weights its outputs (median "
            f"{number(protocol['demo_zero_shot_median'], 1)} on the label scale [-10, 10]) are noise, not a baseline")


def column(space: str, head: str) -> str:
    return space if head == DEFAULT_HEAD else f"{space}_{head}"


def bootstrap_name(protocol: dict) -> str:
    """The bootstrap's name as the report prints it: what it resamples."""
    return f"{group_word(protocol)} bootstrap"


def fixed_test_set(protocol: dict) -> bool:
    """Scored on one fixed test set, not cross-validated: a dataset's official validation split (Aff-Wild2,
    AffectNet), or another corpus (the cross-corpus rows)."""
    return protocol.get("protocol") in (OFFICIAL, CROSS_CORPUS)


def test_set_name(protocol: dict) -> str:
    """The fixed test set in words."""
    if protocol.get("protocol") == CROSS_CORPUS:
        return f"the {protocol['scored']} of {dataset_title(protocol)}"
    return "the official validation split"


def group_word(protocol: dict) -> str:
    """What a bootstrap resamples, in words: a clip is an image in a dataset of single images (AffectNet)."""
    dataset = protocol.get("dataset") or DEFAULT_DATASET
    if protocol["group_by"] == "clip" and dataset in DATASETS and not DATASETS[dataset].has_time:
        return "image"
    return protocol["group_by"]


def seed_bootstrap_name(protocol: dict) -> str:
    """The official protocol's statistic with repetitions: it resamples the scored groups and the training seeds."""
    return f"{group_word(protocol)} x seed bootstrap"


def headline_statistic(protocol: dict, repeats: int) -> str:
    """What every row leads with (see the module docstring)."""
    if repeats == 1:
        return bootstrap_name(protocol)
    return seed_bootstrap_name(protocol) if fixed_test_set(protocol) else CORRECTED_T


def dataset_title(protocol: dict) -> str:
    """The dataset's name as the report prints it (reports written before other datasets: AFEW-VA)."""
    return DATASETS[protocol.get("dataset", DEFAULT_DATASET)].title


def _metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    full = regression_metrics(truth, pred)
    return {m: full[m] for m in BOOTSTRAP_METRICS}


def _folds(frame: pd.DataFrame, col: str) -> list[dict]:
    return [{"fold": int(k), **{d: _metrics(fold[f"{d}_true"].to_numpy(), fold[f"{col}_{d}"].to_numpy()) for d in DIMENSIONS}}
            for k, fold in frame.groupby("fold", sort=True)]


def _pooled(frame: pd.DataFrame, col: str) -> dict:
    return {d: _metrics(frame[f"{d}_true"].to_numpy(), frame[f"{col}_{d}"].to_numpy()) for d in DIMENSIONS}


def _score(preds: list[pd.DataFrame], col: str, groups: np.ndarray, n_groups: int, draws_plan: "Draws",
           statistic: str) -> tuple[dict, dict]:
    """Everything the report says of one column's predictions (a space and head, or zero-shot): repetition 0's
    folds, fold mean/sd and pooled metrics (with bootstrap CIs); with repetitions each repetition's; and the
    headline CCC per dimension. Also the CCC of every draw per dimension, for paired differences: repetition 0's
    bootstrap draws (`repeat0`) and, for the group x seed bootstrap, its draws (`headline`)."""
    result = {"folds": _folds(preds[0], col), "fold_mean": {}, "fold_sd": {}, "pooled": {}}
    draws = {"repeat0": {}, "headline": {}}
    for d in DIMENSIONS:
        per_fold = pd.DataFrame([f[d] for f in result["folds"]])
        result["fold_mean"][d] = {m: float(per_fold[m].mean()) for m in BOOTSTRAP_METRICS}
        result["fold_sd"][d] = {m: float(per_fold[m].std(ddof=1)) if len(per_fold) > 1 else 0.0 for m in BOOTSTRAP_METRICS}
        boots = [resample(group_sums(groups, n_groups, p[f"{d}_true"].to_numpy(), p[f"{col}_{d}"].to_numpy()),
                          draws_plan.counts) for p in (preds if statistic == draws_plan.seed_statistic else preds[:1])]
        truth, pred = preds[0][f"{d}_true"].to_numpy(), preds[0][f"{col}_{d}"].to_numpy()
        result["pooled"][d] = {**_metrics(truth, pred), **{f"{m}_ci": interval(boots[0][m]) for m in BOOTSTRAP_METRICS}}
        draws["repeat0"][d] = boots[0]["CCC"]
        if statistic == draws_plan.seed_statistic:
            draws["headline"][d] = draws_plan.over_seeds(np.stack([b["CCC"] for b in boots]))
    if len(preds) > 1:
        result["repeats"] = [{"repeat": r, "pooled": _pooled(p, col), "folds": _folds(p, col) if r else result["folds"]}
                             for r, p in enumerate(preds)]
    result["headline"] = {d: _headline_ccc(result, d, statistic, draws["headline"].get(d)) for d in DIMENSIONS}
    return result, draws


class Draws:
    """The resamples every row shares, so that differences are paired: `counts` (draws x groups, how often each
    scored clip or video is drawn) and, for the official protocol's repetitions, `seeds` (draws x R, which training
    seeds each draw takes, with replacement)."""

    def __init__(self, n_groups: int, protocol: dict, repeats: int):
        self.counts = draw_counts(n_groups, protocol["bootstrap"], protocol["seed"])
        self.seed_statistic = seed_bootstrap_name(protocol) if fixed_test_set(protocol) else None
        self.seeds = np.random.default_rng([protocol["seed"], SEED_DRAW_STREAM]).integers(
            0, repeats, size=(protocol["bootstrap"], repeats))

    def over_seeds(self, per_seed: np.ndarray) -> np.ndarray:
        """Draws of the mean over seeds (per_seed: R x draws, each seed's CCC on each group draw): draw b averages
        the seeds it takes, each on draw b's groups."""
        return np.take_along_axis(per_seed.T, self.seeds, axis=1).mean(axis=1)


def _fold_cccs(block: dict, d: str) -> list[list[float]]:
    """Every repetition's fold CCCs of a block (repetition 0's alone without repetitions)."""
    repeats = block.get("repeats") or [{"folds": block["folds"]}]
    return [[f[d]["CCC"] for f in r["folds"]] for r in repeats]


def _headline_ccc(block: dict, d: str, statistic: str, seed_draws: np.ndarray | None) -> dict:
    """The CCC a row leads with (see the module docstring), its CI and the statistic that made them."""
    if statistic == CORRECTED_T:
        t = corrected_ccc_interval(_fold_cccs(block, d))
        return {"statistic": statistic, "CCC": t["mean"], "CCC_ci": t["ci"]}
    if seed_draws is not None:  # the official protocol's repetitions: the mean over seeds of the pooled CCCs
        return {"statistic": statistic, "CCC": float(np.mean([r["pooled"][d]["CCC"] for r in block["repeats"]])),
                "CCC_ci": interval(seed_draws)}
    return {"statistic": statistic, "CCC": block["pooled"][d]["CCC"], "CCC_ci": block["pooled"][d]["CCC_ci"]}


def _difference(a: dict, b: dict, draws_a: dict, draws_b: dict, statistic: str) -> dict:
    """a - b per dimension, led by the headline statistic (`statistic`, `CCC_diff` = the difference of the two
    rows' headline CCCs, `CCC_diff_ci`, `p_value`); then repetition 0's per-fold differences, the paired clip
    bootstrap of repetition 0's pooled CCCs (`bootstrap`) and, with repetitions, the corrected resampled t-test of
    all R x K fold differences (`corrected_t`, cross-validation) or the paired group x seed bootstrap (official
    protocol: its draws lead)."""
    out = {}
    for d in DIMENSIONS:
        diffs = draws_a["repeat0"][d] - draws_b["repeat0"][d]
        per_repeat = [[x - y for x, y in zip(fa, fb, strict=True)]
                      for fa, fb in zip(_fold_cccs(a, d), _fold_cccs(b, d), strict=True)]
        bootstrap = {"repeat": 0, "CCC_diff": a["pooled"][d]["CCC"] - b["pooled"][d]["CCC"], "CCC_diff_ci": interval(diffs),
                     "p_value": p_value(diffs)}
        t = None
        if statistic == CORRECTED_T:
            t = corrected_resampled_ttest(per_repeat)
            lead = {"CCC_diff": a["headline"][d]["CCC"] - b["headline"][d]["CCC"], "CCC_diff_ci": t["ci"],
                    "p_value": t["p_value"]}
        elif d in draws_a["headline"]:
            seeds = draws_a["headline"][d] - draws_b["headline"][d]
            lead = {"CCC_diff": a["headline"][d]["CCC"] - b["headline"][d]["CCC"], "CCC_diff_ci": interval(seeds),
                    "p_value": p_value(seeds)}
        else:
            lead = {k: bootstrap[k] for k in ("CCC_diff", "CCC_diff_ci", "p_value")}
        out[d] = {"statistic": statistic, **lead, "fold_diffs": per_repeat[0], "bootstrap": bootstrap}
        if t is not None:
            out[d]["corrected_t"] = t
    return out


def build_report(preds: list[pd.DataFrame], zero: pd.DataFrame | None, spaces: list[str], heads: list[str],
                 reference: str, groups: np.ndarray, protocol: dict, manifests: dict[str, str] | None) -> dict:
    """comparison.json's content. `preds`: one frame per repetition (`comparison.collect_predictions`); `zero`:
    EmoNet's zero-shot predictions (None: no zero-shot rows, as in the demo); `groups`: the bootstrap unit (clip
    or actor index) of each row. The bootstrap runs on repetition 0."""
    n_groups = int(groups.max()) + 1
    statistic = headline_statistic(protocol, len(preds))
    plan = Draws(n_groups, protocol, len(preds))
    scored, draws = {}, {}
    for head in heads:
        for space in spaces:
            scored[head, space], draws[head, space] = _score(preds, column(space, head), groups, n_groups, plan, statistic)
    report = {"protocol": protocol, "color_spaces": {}}
    for space in spaces:
        entries = {}
        for head in heads:
            entry = dict(scored[head, space])
            entry["vs_reference"] = None if space == reference else _difference(
                entry, scored[head, reference], draws[head, space], draws[head, reference], statistic)
            if head != DEFAULT_HEAD:
                entry["vs_frame"] = _difference(entry, scored[DEFAULT_HEAD, space], draws[head, space],
                                                draws[DEFAULT_HEAD, space], statistic)
            entries[head] = entry
        zero_shot = None
        if zero is not None and zero[[f"{space}_{d}" for d in DIMENSIONS]].notna().all().all():
            # EmoNet's output does not depend on the repetition; its folds do: score it on each repetition's folds.
            zero_preds = [zero.assign(fold=p["fold"].to_numpy()) for p in preds]
            zero_shot = _score(zero_preds, space, groups, n_groups, plan, statistic)[0]
            zero_shot.pop("repeats", None)
        report["color_spaces"][space] = {"manifest": (manifests or {}).get(space), **entries[DEFAULT_HEAD],
                                         "zero_shot": zero_shot, "heads": entries}
    return report


# -- tables ------------------------------------------------------------------------------------------------------
def _model_name(protocol: dict, head: str) -> str:
    return f"{head} head" if protocol["approach"] == "head" else "fine-tuned"


def report_table(report: dict) -> pd.DataFrame:
    """comparison.csv: one row per space, head, model, repetition, fold (or "pooled", "headline", "all folds"),
    dimension and metric, with the statistic that made the figure where one did (`statistic`). `model` is
    trained, zero_shot, trained_minus_<reference> or trained_minus_frame."""
    rows = []
    ref = report["protocol"]["reference"]
    boot = bootstrap_name(report["protocol"])

    def add(space, head, model, repeat, fold, d, metric, value, statistic=""):
        rows.append((space, head, model, repeat, fold, d, metric, value, statistic))

    def block_rows(space, head, model, block):
        for d in DIMENSIONS:
            h = block["headline"][d]
            add(space, head, model, "all", "headline", d, "CCC", h["CCC"], h["statistic"])
            add(space, head, model, "all", "headline", d, "CCC_ci_low", h["CCC_ci"][0], h["statistic"])
            add(space, head, model, "all", "headline", d, "CCC_ci_high", h["CCC_ci"][1], h["statistic"])
        for fold in block["folds"]:
            for d in DIMENSIONS:
                for m, v in fold[d].items():
                    add(space, head, model, 0, str(fold["fold"]), d, m, v)
        for d in DIMENSIONS:
            for m, v in block["pooled"][d].items():
                if m.endswith("_ci"):
                    add(space, head, model, 0, "pooled", d, f"{m}_low", v[0], boot)
                    add(space, head, model, 0, "pooled", d, f"{m}_high", v[1], boot)
                else:
                    add(space, head, model, 0, "pooled", d, m, v)
        for entry in block.get("repeats", [])[1:]:  # repetition 0 is above
            for d in DIMENSIONS:
                for m, v in entry["pooled"][d].items():
                    add(space, head, model, entry["repeat"], "pooled", d, m, v)
                for f in entry["folds"]:
                    for m, v in f[d].items():
                        add(space, head, model, entry["repeat"], str(f["fold"]), d, m, v)

    def diff_rows(space, head, model, diffs):
        for d, diff in (diffs or {}).items():
            stat = diff["statistic"]
            for name in ("CCC_diff", "p_value"):
                add(space, head, model, "all", "headline", d, name, diff[name], stat)
            add(space, head, model, "all", "headline", d, "CCC_diff_ci_low", diff["CCC_diff_ci"][0], stat)
            add(space, head, model, "all", "headline", d, "CCC_diff_ci_high", diff["CCC_diff_ci"][1], stat)
            b = diff["bootstrap"]
            add(space, head, model, 0, "pooled", d, "CCC_diff", b["CCC_diff"], boot)
            add(space, head, model, 0, "pooled", d, "CCC_diff_ci_low", b["CCC_diff_ci"][0], boot)
            add(space, head, model, 0, "pooled", d, "CCC_diff_ci_high", b["CCC_diff_ci"][1], boot)
            add(space, head, model, 0, "pooled", d, "p_value", b["p_value"], boot)
            t = diff.get("corrected_t")
            per_repeat = t["fold_diffs"] if t else [diff["fold_diffs"]]
            for r, per in enumerate(per_repeat):
                for k, v in enumerate(per):
                    add(space, head, model, r, str(k), d, "CCC_diff", v)
            if t:
                for name, value in (("CCC_diff", t["mean"]), ("CCC_diff_ci_low", t["ci"][0]), ("CCC_diff_ci_high", t["ci"][1]),
                                    ("t", t["t"]), ("df", t["df"]), ("p_value", t["p_value"])):
                    add(space, head, model, "all", "all folds", d, name, value, CORRECTED_T)

    for space, entry in report["color_spaces"].items():
        for head, block in entry["heads"].items():
            block_rows(space, head, "trained", block)
            diff_rows(space, head, f"trained_minus_{ref}", block["vs_reference"])
            diff_rows(space, head, "trained_minus_frame", block.get("vs_frame"))
        if entry["zero_shot"] is not None:
            block_rows(space, "", "zero_shot", entry["zero_shot"])
    return pd.DataFrame(rows, columns=["space", "head", "model", "repeat", "fold", "dimension", "metric", "value",
                                       "statistic"])


def _ci(value: float, ci: list[float], sign: bool = False) -> str:
    return f"{number(value, sign=sign)} [{number(ci[0], sign=sign)}, {number(ci[1], sign=sign)}]"


def p_text(diff: dict, protocol: dict) -> str:
    """A difference's p-value as printed. A bootstrap's cannot go below 2 / (draws + 1), its resolution: at that floor
    it is "p < floor", not an exact value."""
    p = diff["p_value"]
    if diff["statistic"] != CORRECTED_T:
        floor = 2 / (protocol["bootstrap"] + 1)
        if p <= floor * (1 + 1e-9):
            return f"< {number(floor)}"
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
                     f"{rf} frames, trained on clips cut into windows of at most {TEMPORAL_WINDOW} frames at offsets drawn each "
                     f"epoch, {protocol.get('clips_per_batch')} a step, and predicting each clip whole)")
    return "; ".join(parts)


def _spaces_text(report: dict) -> str:
    spaces = list(report["color_spaces"])
    return f"colour space {spaces[0]}" if len(spaces) == 1 else "every colour space"


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
    spaces, heads = len(report["color_spaces"]), len(p.get("heads", [DEFAULT_HEAD]))
    comparisons = (spaces - 1) * heads + spaces * (heads - 1)
    against = " and ".join(x for x in ((f"{p['reference']} (same head)" if spaces > 1 else ""),
                                       ("the frame head (same space)" if heads > 1 else "")) if x)
    if p.get("protocol") == CROSS_CORPUS:
        return _cross_corpus_text(report, against)
    if fixed_test_set(p):
        return _official_protocol_text(report, trained, crop, checkpoint, against, comparisons)
    text = (
        f"{p['frames']:,} frames of {p['clips']:,} {dataset_title(p)} clips, {crop}"
        + (f" (restricted to the frames every space has: dropped {', '.join(f'{v} of {k}' for k, v in dropped.items())})"
           if dropped else "")
        + f". {p['folds']}-fold group cross-validation by {p['group_by']} (folds fixed by seed {p['seed']}, identical for "
        f"{_spaces_text(report)} and every head)"
        + (f", repeated {repeats} times with seeds {p['seed']} to {p['seed'] + repeats - 1} (each repetition draws its "
           "own folds, inner splits, initialisations and orders)" if repeats > 1 else "")
        + f". In each fold, {trained} was trained on the other {p['folds'] - 1} folds for "
        f"{plural(p['epochs'], 'epoch')} ({p['optimizer']}, learning rate {p['learning_rate']:g}, batch {p['batch_size']}, "
        f"{p['loss_function']} loss, weight decay {p['weight_decay']:g}); the epoch with the best mean CCC on an inner "
        f"validation split of {p['inner_val_split']:g} of the training {p['group_by']}s was kept, and the held-out fold was "
        f"predicted once. Metrics on the raw label scale [-10, 10]. "
        + (f"Each row leads with the mean CCC of its {repeats} x {p['folds']} folds and a 95 % interval from the corrected "
           f"resampled t-test (Nadeau & Bengio 2003; variance (1/{repeats * p['folds']} + 1/{p['folds'] - 1}) s^2, df "
           f"{repeats * p['folds'] - 1}); differences to {against} are the means of the per-fold differences (the "
           f"difference of the two rows' means), with that test's interval and two-sided p. Repetition 0's pooled "
           f"values follow, with {CI_LEVEL:.0%} percentile intervals from {p['bootstrap']} bootstrap resamples of "
           f"{p['group_by']}s (seed {p['seed']})"
           if repeats > 1 else
           f"Each row leads with the CCC pooled over all out-of-fold predictions, with a {CI_LEVEL:.0%} percentile "
           f"interval from {p['bootstrap']} bootstrap resamples of {p['group_by']}s (seed {p['seed']}); differences to "
           f"{against} are the differences of the pooled CCCs, with paired (same resamples) intervals and two-sided "
           "bootstrap p-values")
        + f"; p-values are not adjusted for multiple comparisons ({comparisons} here). Fold sd "
        f"is the sample sd over folds. EmoNet checkpoint {checkpoint}, torch {p['torch_version']}."
    )
    return text


def _official_protocol_text(report: dict, trained: str, crop: str, checkpoint: str, against: str, comparisons: int) -> str:
    """protocol_text for a dataset's official split (Aff-Wild2, AffectNet)."""
    p = report["protocol"]
    repeats, group = p.get("repeats", 1), group_word(p)
    return (
        f"{dataset_title(p)}: trained on its official training split ({p['training_groups']:,} {group}s), scored on its "
        f"official validation split ({p['frames']:,} frames of {p['clips']:,} clips), {crop}; the same split for "
        f"{_spaces_text(report)} and every head"
        + (f", trained {repeats} times with seeds {p['seed']} to {p['seed'] + repeats - 1} (each its own inner split, "
           "initialisation and order; the training and test data are the same every time)" if repeats > 1 else "")
        + f". {trained[0].upper() + trained[1:]} was trained for {plural(p['epochs'], 'epoch')} ({p['optimizer']}, learning rate "
        f"{p['learning_rate']:g}, batch {p['batch_size']}, {p['loss_function']} loss, weight decay {p['weight_decay']:g}); "
        f"the epoch with the best mean CCC on an inner validation split of {p['inner_val_split']:g} of the training "
        f"{group}s was kept, and the validation split was predicted once. Labels and metrics on AFEW-VA's scale [-10, "
        f"10] (the dataset's [-1, 1] x 10: CCC and PCC as on [-1, 1], RMSE ten times). "
        + (f"Each row leads with the mean over the {repeats} seeds of the CCC pooled over the validation split, with a "
           f"{CI_LEVEL:.0%} percentile interval from {p['bootstrap']} draws that resample the validation {group}s and the "
           f"{repeats} seeds, both with replacement (a draw's CCC is the mean of its seeds' CCCs on its {group}s; seed "
           f"{p['seed']}); differences to {against} are the differences of those means, with paired intervals (the same "
           "draws) and two-sided bootstrap p-values. One test set is fixed, so the corrected resampled t-test of "
           "cross-validation (overlapping training sets) does not apply; these draws cover both which "
           f"{group}s were scored and training again with another seed"
           if repeats > 1 else
           f"Each row leads with the CCC pooled over the validation split, with a {CI_LEVEL:.0%} percentile interval from "
           f"{p['bootstrap']} bootstrap resamples of {group}s (seed {p['seed']}); differences to {against} are the "
           "differences of the pooled CCCs, with paired intervals and two-sided bootstrap p-values")
        + f"; p-values are not adjusted for multiple comparisons ({comparisons} here). EmoNet checkpoint {checkpoint}, "
        f"torch {p['torch_version']}." + (f" {AFFECTNET_NOTE}." if p.get("dataset") == "affectnet" else "")
    )


def _cross_corpus_text(report: dict, against: str) -> str:
    """protocol_text of the cross-corpus rows (the training is described by the in-corpus protocol above them)."""
    p = report["protocol"]
    repeats, group = p.get("repeats", 1), group_word(p)
    return (
        f"Trained on {DATASETS[p['trained_on']].title} as above, scored on {test_set_name(p)} ({p['frames']:,} frames of "
        f"{p['clips']:,} {'images' if group == 'image' else 'clips'}), which no model trained on: each repetition's prediction of a frame is {p['combination']}. "
        + (f"Rows lead with the mean over the {repeats} repetitions of the pooled CCC, with a {CI_LEVEL:.0%} interval from "
           f"{p['bootstrap']} draws resampling the {group}s of {dataset_title(p)} and the repetitions (paired for the "
           f"differences to {against}); it covers which {group}s were scored and training again with another seed"
           if repeats > 1 else
           f"Rows lead with the pooled CCC, with a {CI_LEVEL:.0%} interval from {p['bootstrap']} resamples of "
           f"the {group}s of {dataset_title(p)} (paired for the differences to {against}); it does not cover training again")
        + ". Labels and metrics on AFEW-VA's scale [-10, 10]."
        + (f" {AFFECTNET_NOTE}." if p.get("dataset") == "affectnet" or p.get("trained_on") == "affectnet" else "")
    )


def intervals_text(protocol: dict) -> str:
    """What each interval of the report covers, in one sentence each."""
    if fixed_test_set(protocol):
        group = group_word(protocol)
        if protocol.get("repeats", 1) > 1:
            return (f"Intervals: the {seed_bootstrap_name(protocol)} interval covers which {group}s of "
                    f"{test_set_name(protocol)} were scored and training again with another seed; the test set itself is "
                    "fixed.")
        return (f"Intervals: the {bootstrap_name(protocol)} interval covers which {group}s were scored, with the trained "
                "models held fixed; it does not cover training again with another seed: run --repeats 3 or more before "
                "claiming that a colour space helps.")
    if protocol.get("repeats", 1) > 1:
        return ("Intervals: the corrected t interval (over all repetitions and folds) covers training again on other "
                "folds with other seeds as well as which clips were scored; a CCC's is computed on Fisher's z scale (the "
                "CCC's z-transform, Lin 1989) and transformed back, so it stays within [-1, 1], while a difference's "
                "stays on the CCC's own scale. The clip-bootstrap interval (repetition 0) covers only which clips were "
                "scored, with the trained models held fixed.")
    return ("Intervals: the clip-bootstrap interval covers which clips were scored, with the trained models held fixed; "
            "it does not cover training again with another seed, so a difference is one training's: run --repeats 3 "
            "or more before claiming that a colour space helps.")


def _columns(report: dict) -> list[str]:
    """The md table's columns after Input and Model."""
    p = report["protocol"]
    ref, repeats = p["reference"], p.get("repeats", 1)
    heads = p.get("heads", [DEFAULT_HEAD])
    if repeats > 1 and fixed_test_set(p):
        lead = f"CCC, mean of {repeats} seeds [95 % CI, {seed_bootstrap_name(p)}]"
        diff_kind, rep0 = seed_bootstrap_name(p), ", seed 0"
    elif repeats > 1:
        lead = f"CCC, mean of {repeats} x {p['folds']} folds [95 % CI, corrected t]"
        diff_kind, rep0 = "corrected t", ", repetition 0"
    else:
        lead = f"CCC pooled [95 % CI, {bootstrap_name(p)}]"
        diff_kind, rep0 = bootstrap_name(p), ""
    columns = [lead]
    if len(report["color_spaces"]) > 1:
        columns += [f"ΔCCC vs {ref} [95 % CI, {diff_kind}]", "p"]
    if len(heads) > 1:
        columns += [f"ΔCCC vs frame head [95 % CI, {diff_kind}]", "p"]
    if repeats > 1:
        columns.append(f"CCC pooled{rep0} [95 % CI, {bootstrap_name(p)}]")
    folds = [] if fixed_test_set(p) else [f"CCC folds mean ± sd{rep0}"]  # one test set: no folds
    return columns + [*folds, f"PCC pooled{rep0} [95 % CI, {bootstrap_name(p)}]", f"RMSE{rep0}", f"SAGR{rep0}"]


def _row_cells(report: dict, block: dict, d: str, trained: bool) -> list[str]:
    """One table row's cells after Input and Model, in the order of `_columns`; a zero-shot row has no differences."""
    p = report["protocol"]
    pooled, mean, sd = block["pooled"][d], block["fold_mean"][d], block["fold_sd"][d]
    head = block["headline"][d]

    def diff_cells(diff: dict | None, absent: str) -> list[str]:
        if not trained:
            return ["", ""]
        if diff is None:
            return [absent, ""]
        return [_ci(diff[d]["CCC_diff"], diff[d]["CCC_diff_ci"], sign=True), p_text(diff[d], p)]

    cells = [_ci(head["CCC"], head["CCC_ci"])]
    if len(report["color_spaces"]) > 1:
        cells += diff_cells(block.get("vs_reference"), "reference")
    if len(p.get("heads", [DEFAULT_HEAD])) > 1:
        cells += diff_cells(block.get("vs_frame"), "")
    if p.get("repeats", 1) > 1:
        cells.append(_ci(pooled["CCC"], pooled["CCC_ci"]))
    folds = [] if fixed_test_set(p) else [f"{number(mean['CCC'])} ± {number(sd['CCC'])}"]
    return cells + [*folds, _ci(pooled["PCC"], pooled["PCC_ci"]), number(pooled["RMSE"], 2), number(pooled["SAGR"])]


def markdown(report: dict) -> str:
    p = report["protocol"]
    lines = [f"# Colour-space comparison on {dataset_title(p)}: {_approach_name(p)}", ""]
    if p.get("demo"):
        lines += [f"**{DEMO_NOTE}.**", ""]
    if p.get("dataset") == "affectnet":
        lines += [f"**{AFFECTNET_NOTE}.**", ""]
    lines += [intervals_text(p), ""]
    if len(report["color_spaces"]) == 1:
        lines += [f"One colour space ({next(iter(report['color_spaces']))}): its heads are compared with the frame head; "
                  "there is no other space to compare it with.", ""]
    lines += _tables(report, "##")
    if p.get("demo"):
        lines += [f"{demo_zero_shot_note(p)}.", ""]
    lines += ["## Protocol", "", protocol_text(report), ""]
    cross = report.get("cross_corpus")
    if cross is not None:
        c = cross["protocol"]
        lines += [f"## Cross-corpus: trained on {dataset_title(p)}, scored on {test_set_name(c)}", "",
                  intervals_text(c), "", *_tables(cross, "###"), protocol_text(cross), ""]
    if p.get("demo"):
        lines += [f"**{DEMO_NOTE}.**", ""]
    return "\n".join(lines)


def _tables(report: dict, level: str) -> list[str]:
    """One table a dimension: every space and head, then EmoNet's zero-shot rows."""
    p = report["protocol"]
    header, lines = _columns(report), []
    for d in DIMENSIONS:
        lines += [f"{level} {d.capitalize()}", "", "| Input | Model | " + " | ".join(header) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in header) + " |"]
        for head in p.get("heads", [DEFAULT_HEAD]):
            for space, entry in report["color_spaces"].items():
                cells = _row_cells(report, entry["heads"][head], d, trained=True)
                lines.append(f"| {space} | {_model_name(p, head)} | " + " | ".join(cells) + " |")
        for space, entry in report["color_spaces"].items():
            block = entry["zero_shot"]
            if block is not None:
                lines.append(f"| {space} | EmoNet zero-shot | " + " | ".join(_row_cells(report, block, d, False)) + " |")
            elif not p.get("demo"):
                lines.append(f"| {space} | EmoNet zero-shot | not in the feature files |" + " |" * (len(header) - 1))
        lines.append("")
    return lines


def summary(report: dict) -> str:
    """The lines printed at the end of a comparison: each (space, head) with its headline CCC and differences, the
    statistic named once at the top."""
    p = report["protocol"]
    ref, repeats = p["reference"], p.get("repeats", 1)
    if repeats > 1 and fixed_test_set(p):
        what = (f"CCC: mean over {repeats} seeds of the CCC pooled over {test_set_name(p)} [95 % CI]; "
                f"differences: of those means [95 % CI] and p, {seed_bootstrap_name(p)}")
    elif repeats > 1:
        what = (f"CCC: mean of the {repeats} x {p['folds']} fold CCCs [95 % CI]; differences: of those means [95 % CI] "
                f"and p, {CORRECTED_T}")
    elif fixed_test_set(p):
        what = f"CCC: pooled over {test_set_name(p)} [95 % CI]; differences: of pooled CCCs, {bootstrap_name(p)}"
    else:
        what = f"CCC: pooled over the out-of-fold predictions [95 % CI]; differences: of pooled CCCs, {bootstrap_name(p)}"
    scored = "frames scored" if fixed_test_set(p) else "out-of-fold frames a repetition"
    out = [f"{what}; {dataset_title(p)}, {p['frames']:,} {scored} ({_approach_name(p)}):"]
    for space, entry in report["color_spaces"].items():
        for head, block in entry["heads"].items():
            scores = "  ".join(f"{d} {_ci(block['headline'][d]['CCC'], block['headline'][d]['CCC_ci'])}" for d in DIMENSIONS)
            line = f"  {space:<11}{head:<9}{scores}"
            for name, diff in ((f"vs {ref}", block["vs_reference"]), ("vs frame", block.get("vs_frame"))):
                if diff:
                    line += f"  | {name}: " + ", ".join(f"{d[0]} {_ci(v['CCC_diff'], v['CCC_diff_ci'], True)} p {p_text(v, p)}"
                                                        for d, v in diff.items())
            out.append(line)
    if report["protocol"].get("demo"):
        out.append(f"({demo_zero_shot_note(p)})")
    if p.get("dataset") == "affectnet":
        out.append(f"({AFFECTNET_NOTE})")
    if report.get("cross_corpus") is not None:
        out += [f"Cross-corpus, trained on {dataset_title(p)}:", summary(report["cross_corpus"])]
    return "\n".join(out)


# -- the figure --------------------------------------------------------------------------------------------------
def plot_report(report: dict, path: Path) -> "Figure":
    """Per colour space and head: every fold's CCC (dots; of every repetition) and the row's headline CCC with its
    interval (diamond), EmoNet's zero-shot output beside them in grey; under them, with several spaces, each space's
    CCC difference to the reference, and, with several heads, each head's difference to the frame head, with their
    intervals. The legend sits under the panels."""
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
    panels = ["ccc"] + (["reference"] if len(spaces) > 1 else []) + (["frame"] if len(heads) > 1 else [])
    panel_width = max(4.2, 0.9 + 0.45 * len(spaces) * len(series))
    fig, axes = plt.subplots(len(panels), 2, figsize=(2 * panel_width + 0.8, 3.2 * len(panels) + 1.6), sharex=True,
                             layout="constrained", squeeze=False)
    rng = np.random.default_rng(0)
    for col, d in enumerate(DIMENSIONS):
        for row, panel in enumerate(panels):
            ax = axes[row, col]
            if panel == "ccc":
                for s in series:
                    for x, space in enumerate(spaces):
                        entry = report["color_spaces"][space]
                        block = entry["zero_shot"] if s == "zero_shot" else entry["heads"][s]
                        if block is None:
                            continue
                        folds = [v for r in _fold_cccs(block, d) for v in r]
                        xs = x + offsets[s] + rng.uniform(-0.25, 0.25, len(folds)) * width
                        ax.scatter(xs, folds, s=10, color=colours[s], alpha=0.45, lw=0, zorder=3)
                        h = block["headline"][d]
                        ax.errorbar(x + offsets[s], h["CCC"], yerr=[[h["CCC"] - h["CCC_ci"][0]], [h["CCC_ci"][1] - h["CCC"]]],
                                    fmt="D", color=colours[s], mec="black", ms=6, capsize=3, lw=1.3, zorder=5)
                ax.set(title=f"{d}: CCC", ylabel="CCC")
                continue
            key, marker = ("vs_reference", "o") if panel == "reference" else ("vs_frame", "s")
            for h in heads if panel == "reference" else heads[1:]:
                for x, space in enumerate(spaces):
                    diff = report["color_spaces"][space]["heads"][h].get(key)
                    if diff is None:
                        continue
                    v = diff[d]
                    ax.errorbar(x + offsets[h], v["CCC_diff"], yerr=[[v["CCC_diff"] - v["CCC_diff_ci"][0]],
                                                                     [v["CCC_diff_ci"][1] - v["CCC_diff"]]],
                                fmt=marker, color=colours[h], ms=6, capsize=3, lw=1.3)
            if panel == "reference":
                ax.text(spaces.index(ref), 0, "reference", ha="center", va="bottom", fontsize=8, color="dimgray")
                ax.set(title=f"{d}: ΔCCC vs {ref} (same head)", ylabel=f"ΔCCC vs {ref}")
            else:
                ax.set(title=f"{d}: ΔCCC vs frame head (same space)", ylabel="ΔCCC vs frame head")
            ax.axhline(0, color="k", lw=0.8)
    for ax in axes.ravel():
        ax.grid(axis="y", alpha=0.3)
        ax.set_xticks(range(len(spaces)), spaces)
        ax.set_xlim(-0.6, len(spaces) - 0.4)
        ax.title.set_fontsize(10)
    for ax in axes[-1]:
        ax.set_xlabel("input colour space")
    if repeats > 1 and fixed_test_set(p):
        lead = f"mean of {repeats} seeds' CCCs, {CI_LEVEL:.0%} CI ({seed_bootstrap_name(p)})"
        diff_label = f"difference of those means, {CI_LEVEL:.0%} CI ({seed_bootstrap_name(p)})"
    elif repeats > 1:
        lead = f"mean of {repeats} x {p['folds']} fold CCCs, {CI_LEVEL:.0%} CI (corrected t)"
        diff_label = f"difference of those means, {CI_LEVEL:.0%} CI (corrected t)"
    else:
        lead = f"pooled CCC, {CI_LEVEL:.0%} CI ({bootstrap_name(p)})"
        diff_label = f"difference of pooled CCCs, {CI_LEVEL:.0%} CI ({bootstrap_name(p)})"
    handles = [Line2D([], [], color=colours[s], marker="D", mec="black", ls="", ms=7,
                      label=_model_name(p, s) if s != "zero_shot" else "EmoNet zero-shot") for s in series]
    handles += [Line2D([], [], color="gray", marker="o", ls="", ms=4, alpha=0.6,
                       label="one seed" if fixed_test_set(p) else f"one fold{' (every repetition)' if repeats > 1 else ''}"),
                Line2D([], [], color="gray", marker="D", ls="-", ms=6, label=lead)]
    if len(panels) > 1:
        handles.append(Line2D([], [], color="gray", marker="o", ls="-", ms=6, label=diff_label))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False)
    seeds = f"{repeats} seed{'s' if repeats > 1 else ''}"
    if p.get("protocol") == CROSS_CORPUS:
        title = (f"Cross-corpus: trained on {DATASETS[p['trained_on']].title}, scored on {test_set_name(p)}\n"
                 f"{_approach_name(p)}, {seeds}")
    elif fixed_test_set(p):
        title = f"{dataset_title(p)}, {_approach_name(p)}: trained on the official training split, {seeds}"
    else:
        title = (f"{dataset_title(p)}, {_approach_name(p)}: {p['folds']} folds by {p['group_by']}"
                 + (f", {repeats} repetitions" if repeats > 1 else ""))
    if p.get("demo"):
        title = ("DEMO: random weights, synthetic faces; the numbers say nothing about real faces\n" + title
                 + " (no zero-shot rows: random weights)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def recorded_report(report_dir: Path) -> dict | None:
    """The comparison.json of a report already in `report_dir`, if any."""
    path = report_dir / REPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_report(report_dir: Path, report: dict, preds: list[pd.DataFrame], zero: pd.DataFrame | None,
                 cross_preds: list[pd.DataFrame] | None = None) -> None:
    """Every file of the report; comparison.json last, so that its presence means the report is complete.
    oof_predictions.csv: with repetitions, one row per (repetition, frame) and a `repeat` column. With cross-corpus
    rows also cross_corpus_predictions.csv, cross_corpus.csv and cross_corpus.png."""
    csv = {"float_format": lambda v: repr(float(v)), "index": False}
    write_text(report_dir / "oof_predictions.csv", _by_repeat(preds).to_csv(**csv))
    if zero is not None:
        write_text(report_dir / "zero_shot_predictions.csv", zero.to_csv(**csv))
    write_text(report_dir / "comparison.csv", report_table(report).to_csv(**csv))
    if report.get("cross_corpus") is not None:
        write_text(report_dir / "cross_corpus_predictions.csv", _by_repeat(cross_preds).to_csv(**csv))
        write_text(report_dir / "cross_corpus.csv", report_table(report["cross_corpus"]).to_csv(**csv))
        plot_report(report["cross_corpus"], report_dir / "cross_corpus.png")
    write_text(report_dir / "comparison.md", markdown(report))
    plot_report(report, report_dir / "comparison.png")
    write_json(report_dir / REPORT_FILE, report)


def _by_repeat(preds: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of every repetition's predictions (with a `repeat` column when there are several)."""
    return preds[0] if len(preds) == 1 else pd.concat([f.assign(repeat=r) for r, f in enumerate(preds)])[
        ["repeat", *preds[0].columns]]
