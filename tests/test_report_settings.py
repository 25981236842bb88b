"""What a comparison's report takes from the finished comparison and how it states its figures: --report_only reads
--folds, --split, --seed and --bootstrap from what was run and refuses another value; a CCC's interval stays within
[-1, 1]; a bootstrap p-value at its floor is printed as a bound; a dataset of images resamples images."""
import json

import numpy as np
import pytest

import compare_color_spaces
from conftest import clip_labels, write_spaces
from emonet.comparison_report import group_word, intervals_text, p_text
from emonet.cv_statistics import corrected_ccc_interval, corrected_resampled_ttest
from emonet.errors import EmoNetError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report_settings")
    write_spaces(folder, clip_labels(9), (1.0, 2.0), noise=2.0)
    out = folder / "cmp"
    _compare(folder, out, "--folds", "3", "--bootstrap", "200")
    return folder, out


def _compare(folder, out, *extra):
    argv = ["--manifests", f"rgb={folder / 'features_manifest.json'}", f"hsv={folder / 'features_hsv_manifest.json'}",
            "--epochs", "2", "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra]
    compare_color_spaces.main(compare_color_spaces.get_args_parser().parse_args(argv))
    return json.loads((out / "comparison.json").read_text())


def test_report_only_reads_folds_split_seed_and_draws_from_the_comparison(finished):
    folder, out = finished
    first = json.loads((out / "comparison.json").read_text())
    again = _compare(folder, out, "--report_only")  # no --folds 3, no --bootstrap 200: read from what was run
    assert again["protocol"]["folds"] == 3 and again["protocol"]["bootstrap"] == 200
    assert again["color_spaces"] == first["color_spaces"]
    for flags, message in ((["--folds", "5"], r"--folds 5: the comparison was made with --folds 3 \(folds.json\)"),
                           (["--bootstrap", "1000"], r"--bootstrap 1000: the comparison was made with --bootstrap 200 "
                                                     r"\(the report already there\)"),
                           (["--split", "actor"], r"--split actor: the comparison was made with --split clip")):
        with pytest.raises(EmoNetError, match=message):
            _compare(folder, out, "--report_only", *flags)


def test_a_ccc_interval_stays_within_minus_one_and_one():
    folds = [[0.95, 0.99, 0.40, 0.97, 0.98]]  # a noisy fold among near-perfect ones: a t interval of the values passes 1
    assert corrected_resampled_ttest(folds)["ci"][1] > 1
    bounded = corrected_ccc_interval(folds)
    low, high = bounded["ci"]
    assert -1 < low < bounded["mean"] < high < 1 and bounded["mean"] == pytest.approx(np.mean(folds))
    assert "Fisher's z scale" in intervals_text({"repeats": 3, "protocol": "cross-validation", "group_by": "clip"})


def test_the_reports_ccc_intervals_lie_within_minus_one_and_one(finished):
    folder, out = finished
    report = _compare(folder, out.parent / "repeated", "--folds", "3", "--repeats", "2", "--bootstrap", "200")
    for entry in report["color_spaces"].values():
        for block in entry["heads"].values():
            for d in ("valence", "arousal"):
                low, high = block["headline"][d]["CCC_ci"]
                assert -1 <= low <= high <= 1


def test_a_bootstrap_p_value_at_its_floor_is_a_bound():
    protocol = {"bootstrap": 1000}
    floor = 2 / 1001
    assert p_text({"p_value": floor, "statistic": "clip bootstrap"}, protocol) == "< 0.002"
    assert p_text({"p_value": 0.0123, "statistic": "clip bootstrap"}, protocol) == "0.012"
    assert p_text({"p_value": floor, "statistic": "corrected resampled t-test"}, protocol) == "0.002"  # not a bootstrap's


def test_a_dataset_of_images_resamples_images():
    assert group_word({"group_by": "clip", "dataset": "affectnet"}) == "image"
    assert group_word({"group_by": "clip", "dataset": "afew_va"}) == "clip"
    assert group_word({"group_by": "actor", "dataset": "aff_wild2"}) == "actor"
