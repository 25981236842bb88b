"""Does feeding EmoNet another colour space help? The answer in one command: cross-validated by clip (or on a dataset's
official split), with a statistic of the difference that covers training again.

    python compare_color_spaces.py --demo          # a first run: no data, no weights, a planted signal
    python compare_color_spaces.py \\
        --manifests rgb=features_manifest.json hsv=features_hsv_manifest.json lab=features_lab_manifest.json \\
        --heads frame smooth temporal --repeats 5 --folds 5 --split clip --epochs 50 --output_dir color_space_comparison
    python compare_color_spaces.py --manifests rgb=aw2_rgb.json hsv=aw2_hsv.json --repeats 5 --split actor \\
        --test_manifests rgb=afew_rgb.json hsv=afew_hsv.json --output_dir aw2_comparison   # official split, cross-corpus
    python compare_color_spaces.py --approach finetune --dataset_root $AFEW_VA_ROOT \\
        --pretrained_path pretrained/emonet_8.pth --color_spaces rgb hsv lab yuv --folds 5 --freeze_backbone

Every colour space and head is scored on the same frames and folds (folds.json); each fold's model chooses its epoch
on an inner split of its training clips and predicts the held-out fold once; --repeats R repeats the whole
cross-validation with seeds seed..seed+R-1. The report (comparison.json, .csv, .md, .png, oof_predictions.csv) leads
each row with one named statistic: the clip bootstrap, or with R > 1 the corrected resampled t-test over the R x K
folds (or, on an official split, a clip x seed bootstrap). Units are independent: --only UNIT runs one (a job-array
task; --list_units prints them), --report_only aggregates finished ones, a rerun skips finished units and resumes an
interrupted one. The protocol in full: README_HSV_PIPELINE.md, "Comparing colour spaces"; the code: emonet/comparison*.py.
"""
import sys

from emonet.cli import add_finetune_arguments, add_frame_arguments, add_optimisation_arguments, make_parser, run
from emonet.constants import APPROACHES, COLOR_SPACES, DEFAULT_CLIPS_PER_BATCH, DEFAULT_COLOR_SPACE, HEAD_KINDS
from emonet.settings import DEFAULT_BOOTSTRAP, DEFAULT_FOLDS, ComparisonConfig


def get_args_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--approach", choices=APPROACHES, default="head",
                        help="head: heads on extracted features; finetune: EmoNet fine-tuned on frames (default: head)")
    parser.add_argument("--manifests", nargs="+", metavar="SPACE=MANIFEST", default=None,
                        help="head: the feature manifest of each colour space (default: the standard manifest of every "
                             "space found in the working folder: features_manifest.json, features_hsv_manifest.json, ...)")
    parser.add_argument("--test_manifests", nargs="+", metavar="SPACE=MANIFEST", default=None,
                        help="head: another corpus's manifest of each colour space of --manifests (same crop and "
                             "checkpoint): every unit's chosen model also predicts its official validation split (every "
                             "frame of a corpus without one), and the report adds cross-corpus rows beside the in-corpus "
                             "ones (default: none)")
    parser.add_argument("--common_frames", action="store_true",
                        help="head: keep the frames every manifest has, instead of refusing manifests that differ "
                             "(default: refuse)")
    parser.add_argument("--heads", nargs="+", choices=HEAD_KINDS, default=None,
                        help="head: the heads to train on every space: frame (each frame alone), smooth (frame head + "
                             "Gaussian along the clip, sigma chosen on the inner split), temporal (temporal convolution "
                             "network over each clip); frame is always included, every other head is compared with it; "
                             "one colour space with several heads is a comparison of heads (default: frame; with "
                             "--report_only, the heads of the finished units)")
    parser.add_argument("--dropout", type=float, default=0.2, help="head: dropout of the heads (default: 0.2)")
    parser.add_argument("--clips_per_batch", type=int, default=None,
                        help=f"head, with --heads temporal: clips per step of the temporal head (default: "
                             f"{DEFAULT_CLIPS_PER_BATCH})")
    parser.add_argument("--workers", type=int, default=None,
                        help="head: processes that train head units, each on one core (default: every core of a CPU "
                             "run; 1 under torchrun, whose processes share the units, and on a GPU)")
    parser.add_argument("--color_spaces", nargs="+", choices=COLOR_SPACES, default=None,
                        help="finetune: the colour spaces to compare (default: rgb hsv lab yuv)")
    add_frame_arguments(parser, one_space=False)
    add_finetune_arguments(parser)
    parser.add_argument("--flip_tta", action="store_true",
                        help="finetune: predict each held-out frame as the mean with its mirror (default: off)")
    add_optimisation_arguments(parser, None, save_freq=0)
    parser.add_argument("--split", choices=("clip", "actor", "frame"), default=None,
                        help="unit the folds keep whole: clip or actor (frame is refused: it leaks) (default: clip; with "
                             "--report_only, that of folds.json)")
    parser.add_argument("--folds", type=int, default=None,
                        help=f"K of the group K-fold; refused under an official split, which is one fixed test set "
                             f"(default: {DEFAULT_FOLDS}; with --report_only, that of folds.json)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="R: repeat the K-fold cross-validation R times, repetition r with seed --seed + r (folds, "
                             "inner splits, initialisation, order); R > 1 adds the corrected resampled t-test over "
                             "the R x K folds, which covers training again; publish with R >= 3 (default: 1; with "
                             "--report_only, the repetitions of the finished units)")
    parser.add_argument("--inner_val_split", type=float, default=0.1,
                        help="fraction of each fold's training clips on which the best epoch is chosen (default: 0.1)")
    parser.add_argument("--reference", default=None,
                        help=f"colour space every other is compared with (default: {DEFAULT_COLOR_SPACE}; the space itself "
                             "when there is one)")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help=f"bootstrap draws (resampled clips) (default: {DEFAULT_BOOTSTRAP}; with --report_only, that of "
                             "the report already in --report_dir)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--output_dir", default=None,
                        help="where units and report go (default: color_space_comparison, _demo with --demo)")
    parser.add_argument("--report_dir", default=None,
                        help="where the report goes (default: --output_dir); a report of fewer spaces, heads or "
                             "repetitions than --output_dir holds must go to another folder, so that it never replaces "
                             "the report of the whole")
    parser.add_argument("--only", metavar="UNIT", default=None,
                        help="run this unit only: SPACE:FOLD, SPACE:HEAD:FOLD, optionally @REPEAT, e.g. hsv:2 or "
                             "hsv:temporal:2@1 (default: all)")
    parser.add_argument("--list_units", action="store_true",
                        help="print every unit of the comparison, one a line, for --only in a job array; train nothing "
                             "(default: off)")
    parser.add_argument("--report_only", action="store_true",
                        help="aggregate finished units; train nothing. The report describes what the units record: the "
                             "spaces (and their manifests), heads, repetitions and training flags not given here are "
                             "read from them, and one given must match them (default: off)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")
    parser.add_argument("--demo", action="store_true",
                        help="a first run without AFEW-VA or the weights: writes a small sample whose faces change with "
                             "the labels and deterministic weights into <output_dir>/demo_data/, extracts rgb and hsv "
                             "features, compares them (default: off)")
    parser.add_argument("--demo_clips", type=int, default=36, help="with --demo: clips of the sample (default: 36)")
    parser.add_argument("--demo_frames", type=int, default=3, help="with --demo: frames per clip (default: 3)")
    return parser


def main(args):
    config = ComparisonConfig.from_args(args)
    from emonet.comparison_report import DEMO_NOTE, summary  # torch and the rest: after the flags are checked
    from emonet.comparison_run import run_comparison

    if config.demo:
        print(DEMO_NOTE)
    done = run_comparison(config)
    for line in done.lines + done.listed:
        print(line)
    if done.report is not None:
        print(summary(done.report))
        print(f"report in {config.report_dir}/ (comparison.md: the table; comparison.json: every figure)")
    if config.demo:
        print(DEMO_NOTE)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
