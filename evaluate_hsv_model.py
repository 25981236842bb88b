"""Stage 5: evaluate a trained model (or EmoNet zero-shot) with PCC, CCC, MSE, RMSE, SAGR and a leakage audit.

    python evaluate_hsv_model.py --model_path hsv_features_training/best_model.pth --model_type feature \\
        --output_dir hsv_features_evaluation    # any head: frame, smooth or temporal
    python evaluate_hsv_model.py --model_path hsv_full_training/best_model.pth --model_type full --output_dir hsv_full_evaluation
    python evaluate_hsv_model.py --model_type pretrained --manifest_file features_manifest.json --subset all \\
        --output_dir rgb_zero_shot_evaluation
    python evaluate_hsv_model.py --model_path rgb_features_training/best_model.pth \\
        --manifest_file aff_wild2/features_manifest.json --output_dir afew_to_aff_wild2    # cross-corpus
    python evaluate_hsv_model.py --model_type pretrained --manifest_file affectnet_manifest.json --subset val \\
        --expression_classes 8 --output_dir affectnet_zero_shot    # EmoNet's own published check
    python evaluate_hsv_model.py --model_path hsv_full_training/best_model.pth --model_type full --dataset aff_wild2 \\
        --dataset_root /data/Aff-Wild2 --output_dir full_afew_to_aff_wild2    # fine-tuned with --crop resize, cross-corpus

Evaluates the held-out side of the split stored in the checkpoint (`--subset val`, the default); the
checkpoint also gives the manifest, colour space and crop. Cross-corpus: a head trained on one dataset's features
and a --manifest_file of another dataset's (same colour space, crop and EmoNet) is scored on that dataset's
validation split (`--subset val`; `train`, `all`), on AFEW-VA's [-10, 10] scale for both; a fine-tuned network
(full) is scored on another dataset's frames with --dataset and --dataset_root the same way. Writes evaluation_results.json,
predictions.csv, evaluation_scatter.png and evaluation_distributions.png, and prints a summary table.
`pretrained` uses EmoNet's own valence/arousal: from the feature files when a manifest is given (or the
checkpoint names one), else by running --pretrained_path on the frames of --dataset_root; with
--model_path, only that checkpoint's split is used. Under torchrun, frames are shared among the processes.
"""
import sys

from emonet.cli import add_frame_arguments, add_runtime_arguments, make_parser, run
from emonet.constants import EVALUATED_MODELS, EXPRESSION_CLASS_SETS, SUBSETS
from emonet.dataset_info import DATASETS
from emonet.settings import EvaluationConfig


def get_args_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--model_path", default=None, help="checkpoint of train_emonet_features.py or train_emonet_hsv.py")
    parser.add_argument("--model_type", choices=EVALUATED_MODELS, default="feature",
                        help="feature: feature head; full: fine-tuned EmoNet; pretrained: released EmoNet, "
                             "zero-shot (default: feature)")
    parser.add_argument("--manifest_file", default=None, help="feature manifest (default: the one the checkpoint was trained on)")
    parser.add_argument("--data_root", default=None, help="folder the manifest's paths are relative to (default: the manifest's folder)")
    parser.add_argument("--subset", choices=SUBSETS, default="val",
                        help="val: the held-out side of the checkpoint's split; train; all (default: val)")
    parser.add_argument("--expression_classes", type=int, choices=EXPRESSION_CLASS_SETS, default=None,
                        help="AffectNet: only the images whose expression is one of EmoNet's 8 classes (its cleaned "
                             "test set, on which its paper reports valence CCC 0.82, arousal 0.75) or 5 (default: all)")
    parser.add_argument("--flip_tta", action="store_true",
                        help="full/pretrained on frames: average the predictions of each frame and its mirror (default: off)")
    parser.add_argument("--output_dir", default="evaluation_results", help="where results go (default: evaluation_results)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another evaluation in --output_dir (default: refuse)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=None,
                        help="full, or pretrained without a manifest: the dataset whose frames --dataset_root holds; "
                             "another than the checkpoint's is scored cross-corpus, on its official split (default: the "
                             "checkpoint's, else afew_va)")
    add_frame_arguments(parser, color_space=None)
    add_runtime_arguments(parser, batch_size=64)
    return parser


def main(args):
    config = EvaluationConfig.from_args(args)
    from emonet.evaluation import leak_warning, scale_warning, selection_warning, summary_table  # torch: after the flags
    from emonet.evaluation_run import evaluate

    results = evaluate(config)
    if results is None:  # another rank of a torchrun job: rank 0 reports
        return 0
    print(summary_table(results))
    for warning in (leak_warning(results), selection_warning(results), scale_warning(results), *results["caveats"]):
        if warning:
            print(warning, file=sys.stderr)
    print(f"results in {config.output_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
