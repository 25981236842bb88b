"""Repeated cross-validation: the corrected resampled t-test, repetitions as units, every core in one
command, and a demo that recovers its planted signal."""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import compare_color_spaces
from conftest import ROOT, clip_labels, write_spaces
from emonet.cv_statistics import corrected_ccc_interval, corrected_resampled_ttest
from emonet.errors import EmoNetError

N_CLIPS = 30
FOLDS = 3
SIGNALS = {"rgb": 0.5, "hsv": 4.0}


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repeat_inputs")
    labels = clip_labels(N_CLIPS)
    return write_spaces(folder, labels, (SIGNALS["rgb"], SIGNALS["hsv"]))


def _argv(folder, out, *extra, training=("--epochs", "3")) -> list[str]:
    return ["--manifests", f"rgb={folder / 'features_manifest.json'}", f"hsv={folder / 'features_hsv_manifest.json'}",
            "--folds", str(FOLDS), *training, "--bootstrap", "200", "--output_dir", str(out), "--no_progress",
            "--device", "cpu", *extra]


def _compare(folder, out, *extra, training=("--epochs", "3")):
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(_argv(folder, out, *extra,
                                                                                        training=training)))
    return json.loads((out / "comparison.json").read_text()) if (out / "comparison.json").exists() else None


@pytest.fixture(scope="module")
def repeated(spaces, tmp_path_factory):
    """Three repetitions in two worker processes, run as a command: a fresh process, whose workers can be forked (in
    a process that has already trained, such as this test's, the units would be trained in the process itself)."""
    out = tmp_path_factory.mktemp("repeated") / "comparison"
    argv = _argv(spaces, out, "--repeats", "3", "--heads", "frame", "smooth", "--workers", "2")
    result = subprocess.run([sys.executable, str(ROOT / "compare_color_spaces.py"), *argv], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and "a process forked from this one cannot train" not in result.stderr, result.stderr
    return out, json.loads((out / "comparison.json").read_text())


def test_the_statistic_equals_a_hand_computation():
    diffs = [[0.10, 0.20, 0.15], [0.05, 0.12, 0.20]]
    flat = [d for row in diffs for d in row]
    n, k = len(flat), 3
    mean = sum(flat) / n
    s2 = sum((d - mean) ** 2 for d in flat) / (n - 1)
    variance = (1 / n + 1 / (k - 1)) * s2  # Nadeau & Bengio: n_test / n_train = 1 / (K - 1)
    t = mean / math.sqrt(variance)
    result = corrected_resampled_ttest(diffs)
    assert result["mean"] == pytest.approx(0.1366666666666667) and result["df"] == 5
    assert result["t"] == pytest.approx(t) and t == pytest.approx(2.8428385, rel=1e-6)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(t, 5)) and 0.03 < result["p_value"] < 0.04
    half = stats.t.ppf(0.975, 5) * math.sqrt(variance)
    assert result["ci"] == pytest.approx([mean - half, mean + half])
    # Uncorrected, the same differences would look far more certain: the correction is what makes it honest.
    assert math.sqrt(variance) > 1.7 * math.sqrt(s2 / n)
    assert corrected_resampled_ttest([[0.1, 0.1], [0.1, 0.1]])["p_value"] == 0.0  # no spread: t undefined
    assert corrected_resampled_ttest([[0.1, 0.1], [0.1, 0.1]])["t"] is None


def test_repetitions_draw_distinct_partitions_and_folds_json_keeps_repetition_0(repeated):
    out, _ = repeated
    folds = json.loads((out / "folds.json").read_text())
    assert [r["seed"] for r in folds["repeats"]] == [0, 1, 2] and folds["folds"] == folds["repeats"][0]["folds"]
    partitions = [sorted(map(tuple, r["folds"])) for r in folds["repeats"]]
    assert len({tuple(p) for p in partitions}) == 3
    for r in folds["repeats"]:
        assert sorted(c for fold in r["folds"] for c in fold) == sorted(clip_labels(N_CLIPS))


def test_the_report_leads_with_the_repeated_figures(repeated):
    out, report = repeated
    hsv = report["color_spaces"]["hsv"]
    for head in ("frame", "smooth"):
        entry = hsv["heads"][head]
        assert [r["repeat"] for r in entry["repeats"]] == [0, 1, 2]
        assert entry["repeats"][0]["pooled"]["valence"]["CCC"] == entry["pooled"]["valence"]["CCC"]
        # The headline CCC is the mean of the 3 x K fold CCCs, with the corrected-t interval on Fisher's z scale.
        folds = [f["arousal"]["CCC"] for r in entry["repeats"] for f in r["folds"]]
        lead = entry["headline"]["arousal"]
        assert lead["statistic"] == "corrected resampled t-test" and lead["CCC"] == pytest.approx(np.mean(folds))
        assert lead["CCC_ci"] == corrected_ccc_interval([folds[i:i + FOLDS] for i in range(0, len(folds), FOLDS)])["ci"]
        for diff in (entry["vs_reference"], entry.get("vs_frame")):
            if diff is None:
                continue
            t = diff["valence"]["corrected_t"]
            assert np.array(t["fold_diffs"]).shape == (3, FOLDS) and t["df"] == 3 * FOLDS - 1
            assert t["fold_diffs"][0] == diff["valence"]["fold_diffs"]
            assert t == corrected_resampled_ttest(t["fold_diffs"])
            # The headline leads, named, and is the corrected t's; the bootstrap is repetition 0's, named as such.
            assert list(diff["valence"])[:4] == ["statistic", "CCC_diff", "CCC_diff_ci", "p_value"]
            assert (diff["valence"]["statistic"], diff["valence"]["p_value"], diff["valence"]["CCC_diff_ci"]) == (
                "corrected resampled t-test", t["p_value"], t["ci"])
            assert diff["valence"]["bootstrap"]["repeat"] == 0
    # Every difference is exactly the difference of the two rows' headline CCCs (the figures add up on the page).
    for space, entry in report["color_spaces"].items():
        for head, block in entry["heads"].items():
            for key, other in (("vs_reference", report["color_spaces"]["rgb"]["heads"][head]), ("vs_frame", entry["heads"]["frame"])):
                if block.get(key):
                    for dim in ("valence", "arousal"):
                        assert block[key][dim]["CCC_diff"] == pytest.approx(
                            block["headline"][dim]["CCC"] - other["headline"][dim]["CCC"], abs=1e-12), (space, head, key)
    # The fold differences are those of the per-repetition fold CCCs.
    rgb = report["color_spaces"]["rgb"]["heads"]["frame"]
    assert hsv["vs_reference"]["arousal"]["corrected_t"]["fold_diffs"][2][1] == pytest.approx(
        hsv["heads"]["frame"]["repeats"][2]["folds"][1]["arousal"]["CCC"] - rgb["repeats"][2]["folds"][1]["arousal"]["CCC"])
    assert hsv["vs_reference"]["valence"]["CCC_diff_ci"][0] > 0  # the stronger space wins, across repetitions
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert list(oof["repeat"].unique()) == [0, 1, 2] and len(oof) == 3 * report["protocol"]["frames"]
    table = (out / "comparison.md").read_text()
    assert "CCC, mean of 3 x 3 folds [95 % CI, corrected t]" in table and "CCC pooled, repetition 0" in table
    assert "RMSE, repetition 0" in table and "covers training again on other folds with other seeds" in table
    long = pd.read_csv(out / "comparison.csv", dtype={"fold": str, "repeat": str})
    named = long[(long.fold == "all folds") & (long.metric == "p_value")]
    assert not named.empty and set(named.statistic) == {"corrected resampled t-test"}
    assert set(long[(long.fold == "pooled") & (long.metric == "p_value")].statistic) == {"clip bootstrap"}
    headline = long[(long.fold == "headline") & (long.metric == "p_value")]
    assert set(headline.statistic) == {"corrected resampled t-test"}


def test_one_repetition_writes_what_it_always_wrote(spaces, tmp_path):
    report = _compare(spaces, tmp_path / "one")
    oof = pd.read_csv(tmp_path / "one" / "oof_predictions.csv")
    assert list(oof.columns) == ["clip", "frame", "fold", "valence_true", "arousal_true", "rgb_valence", "rgb_arousal",
                                 "hsv_valence", "hsv_arousal"]
    entry = report["color_spaces"]["hsv"]
    assert "repeats" not in entry and "corrected_t" not in entry["vs_reference"]["valence"]
    assert set(entry) == {"manifest", "folds", "fold_mean", "fold_sd", "pooled", "headline", "vs_reference", "zero_shot",
                          "heads"}
    # One repetition: the pooled CCC leads, and a difference is the difference of two pooled CCCs (clip bootstrap).
    diff = entry["vs_reference"]["arousal"]
    assert entry["headline"]["arousal"] == {"statistic": "clip bootstrap", "CCC": entry["pooled"]["arousal"]["CCC"],
                                            "CCC_ci": entry["pooled"]["arousal"]["CCC_ci"]}
    assert diff["statistic"] == "clip bootstrap" and diff["CCC_diff"] == pytest.approx(
        entry["pooled"]["arousal"]["CCC"] - report["color_spaces"]["rgb"]["pooled"]["arousal"]["CCC"], abs=1e-12)
    assert {k: diff[k] for k in ("CCC_diff", "CCC_diff_ci", "p_value")} == {
        k: diff["bootstrap"][k] for k in ("CCC_diff", "CCC_diff_ci", "p_value")}
    assert "clip-bootstrap interval covers which clips were scored" in (tmp_path / "one" / "comparison.md").read_text()


def test_a_rerun_with_more_repetitions_trains_only_the_new_ones(repeated, spaces, tmp_path, capsys):
    out, full = repeated
    partial = tmp_path / "partial"
    _compare(spaces, partial, "--repeats", "2", "--heads", "frame", "smooth", "--workers", "2")
    before = {p: p.stat().st_mtime_ns for p in partial.rglob("unit.json")}
    capsys.readouterr()
    assert _compare(spaces, partial, "--repeats", "3", "--heads", "frame", "smooth", "--workers", "2") == full
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "skipped (finished)" in line]) == 2 * 2 * 2 * FOLDS
    assert {line.split()[0] for line in lines if " trained: " in line} == {
        f"{s}:{h}{k}@2" for s in ("rgb", "hsv") for h in ("", "smooth:") for k in range(FOLDS)}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished units were not touched
    assert len(json.loads((partial / "folds.json").read_text())["repeats"]) == 3


def test_one_and_two_processes_give_the_same_figures(repeated, spaces, tmp_path):
    out, full = repeated
    assert _compare(spaces, tmp_path / "one", "--repeats", "3", "--heads", "frame", "smooth", "--workers", "1") == full
    for name in ("oof_predictions.csv", "comparison.csv", "comparison.md"):
        assert (tmp_path / "one" / name).read_text() == (out / name).read_text(), name


def test_only_names_the_repetition_and_report_only_takes_the_units_settings(repeated, spaces, tmp_path, capsys):
    out, full = repeated
    units = tmp_path / "units"
    shutil.copytree(out, units, ignore=shutil.ignore_patterns("comparison*", "oof_predictions.csv", "zero_shot_predictions.csv"))
    shutil.rmtree(units / "repeat_2" / "hsv" / "smooth" / "fold_1")
    args = ["--repeats", "3", "--heads", "frame", "smooth"]
    _compare(spaces, units, *args, "--list_units")
    listed = capsys.readouterr().out.split()
    assert len(listed) == 3 * 2 * 2 * FOLDS and "hsv:1" in listed and "hsv:smooth:1@2" in listed
    _compare(spaces, units, *args, "--only", "hsv:smooth:1@2")
    assert (units / "repeat_2" / "hsv" / "smooth" / "fold_1" / "unit.json").is_file()
    # --report_only reports what the units record: flags left out (here --epochs) are read from them ...
    assert _compare(spaces, units, *args, "--report_only", training=()) == full
    # ... and a flag that contradicts them is refused, in words.
    with pytest.raises(EmoNetError, match=r"this unit was made with other settings \(--epochs 3 -> 77"):
        _compare(spaces, units, *args, "--report_only", "--epochs", "77")
    with pytest.raises(EmoNetError, match=r"@REPEAT.*REPEAT in 0\.\.2"):
        _compare(spaces, units, *args, "--only", "hsv:smooth:1@3")
