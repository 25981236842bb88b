"""Stage 3: a regression head (256 -> 128 -> 64 -> 2) on extracted EmoNet features.

    python train_emonet_features.py --manifest_file features_hsv_manifest.json --inner_val_split 0.1 \
        --batch_size 64 --epochs 50 --learning_rate 1e-3 --loss_function ccc

Splits by clip by default (whole clips on one side; see README_HSV_PIPELINE.md for why). Writes
best_model.pth (best mean CCC on the selection side: --inner_val_split of the training clips, else the
held-out side), last.pth, checkpoint_epoch_N.pth, training_log.txt, training_curves.png, args.json and
split.json into --output_dir (default <color space>_features_training); --resume OUTPUT_DIR/last.pth
continues, --overwrite replaces a run already there.
"""
import argparse
import sys
from pathlib import Path

from emonet.cli import add_training_arguments, check_training_args, run
from emonet.device import resolve_device
from emonet.features import HEAD_DEFAULTS, load_feature_set, train_feature_head
from emonet.manifest import FEATURE_IDENTITY_KEYS, read_manifest
from emonet.splits import make_split, split_indices
from emonet.training import (RESUME_FIXED_ARGS, check_output_dir, check_resume, load_training_checkpoint,
                             resume_changes)

MODEL_TYPE = "feature_head"
OUTPUT_KIND = "features_training"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", default="features_hsv_manifest.json",
                        help="manifest written by extraction (default: features_hsv_manifest.json)")
    parser.add_argument("--data_root", default=None,
                        help="folder the manifest's paths are relative to (default: the manifest's folder)")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout after each hidden layer (default: 0.2)")
    add_training_arguments(parser, HEAD_DEFAULTS, OUTPUT_KIND)
    return parser


def main(args):
    check_training_args(args)
    device = resolve_device(args.device)
    manifest = read_manifest(args.manifest_file)
    output_dir = Path(args.output_dir or f"{manifest.color_space or 'unknown'}_{OUTPUT_KIND}")
    check_output_dir(output_dir, args.resume, args.overwrite)
    resumed = load_training_checkpoint(args.resume, MODEL_TYPE) if args.resume else None
    if resumed:
        check_resume(args.resume, resumed, args.epochs,
                     resume_changes(resumed["args"], vars(args), (*RESUME_FIXED_ARGS, "dropout"))
                     + resume_changes(resumed["settings"], manifest.described_settings, FEATURE_IDENTITY_KEYS))
    data_root = Path(args.data_root) if args.data_root else manifest.path.parent
    data = load_feature_set(manifest, data_root, progress=not args.no_progress)
    split = resumed["split"] if resumed else make_split(data.samples, args.split, args.val_split, args.seed, args.folds,
                                                        args.fold, args.inner_val_split)
    indices = split_indices(data.samples, split)
    meta = {
        "model_type": MODEL_TYPE, "args": vars(args), "split": split,
        "settings": {**manifest.described_settings, "manifest_file": str(manifest.path.resolve()), "data_root": str(data_root.resolve())},
    }
    selection = "inner validation" if len(indices.inner_val) else "validation"
    print(f"{len(indices.train)} training, {len(indices.inner_val)} inner validation and {len(indices.val)} "
          f"validation frames, split by {split['mode']}; best epoch chosen on the {selection} frames; "
          f"outputs in {output_dir}/")
    train_feature_head(data, indices, args, output_dir, meta, resumed, device)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
