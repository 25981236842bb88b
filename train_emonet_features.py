"""Stage 3: a head on extracted EmoNet features: frame by frame, smoothed along each clip, or a temporal network.

    python train_emonet_features.py --manifest_file features_hsv_manifest.json --inner_val_split 0.1 \\
        --batch_size 64 --epochs 50 --learning_rate 1e-3 --loss_function ccc
    python train_emonet_features.py --manifest_file features_hsv_manifest.json --inner_val_split 0.1 --head temporal
    python train_emonet_features.py --manifest_file aw2_hsv.json --official_split --split actor --inner_val_split 0.1

--head frame (default): 256 -> 128 -> 64 -> 2 on each frame alone. --head smooth: the same network, then a
Gaussian filter along each clip, its sigma (frames) chosen with the epoch on the selection side (0 included).
--head temporal: a non-causal temporal convolution network over each clip's frames, trained on clips (windows of
long videos; --clips_per_batch a step). Splits by clip by default (whole clips on one side; see
README_HSV_PIPELINE.md for why); --official_split holds out Aff-Wild2's or AffectNet's own validation split. Writes best_model.pth (best mean CCC on the selection side: --inner_val_split
of the training clips, else the held-out side), last.pth, checkpoint_epoch_N.pth, training_log.txt and .csv,
training_curves.png, args.json and split.json into --output_dir (default <color space>_features_training, or
<color space>_<head>_features_training); --resume OUTPUT_DIR/last.pth continues, --overwrite replaces a run
already there.
"""
import argparse
import sys
from pathlib import Path

from emonet.cli import add_training_arguments, check_official_split, check_training_args, resume_hint, run
from emonet.datasets import DATASETS
from emonet.device import resolve_device
from emonet.errors import EmoNetError
from emonet.features import HEAD_DEFAULTS, load_feature_set
from emonet.head_training import DEFAULT_CLIPS_PER_BATCH, HeadUnit, head_config, model_args, train_heads
from emonet.heads import DEFAULT_HEAD, HEAD_KINDS
from emonet.manifest import FEATURE_IDENTITY_KEYS, read_manifest, standard_manifests
from emonet.splits import make_split, official_split, split_indices
from emonet.training import (RESUME_FIXED_ARGS, check_output_dir, check_resume, load_training_checkpoint,
                             resume_changes)

MODEL_TYPE = "feature_head"
OUTPUT_KIND = "features_training"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--manifest_file", default=None,
                        help="manifest written by extraction (default: the standard manifest in the working folder, "
                             "features_manifest.json for rgb, features_hsv_manifest.json for hsv, ..., when there is "
                             "exactly one; with several, say which)")
    parser.add_argument("--data_root", default=None,
                        help="folder the manifest's paths are relative to (default: the manifest's folder)")
    parser.add_argument("--head", choices=HEAD_KINDS, default=DEFAULT_HEAD,
                        help="frame: each frame alone; smooth: frame head + Gaussian along the clip, sigma chosen on the "
                             "selection side; temporal: temporal convolution network over each clip (default: frame)")
    parser.add_argument("--clips_per_batch", type=int, default=None,
                        help=f"--head temporal: clips per step, padded to the longest; --batch_size applies to the "
                             f"frame and smooth heads (default: {DEFAULT_CLIPS_PER_BATCH})")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout after each hidden layer (default: 0.2)")
    add_training_arguments(parser, HEAD_DEFAULTS, OUTPUT_KIND)
    return parser


def check_head_args(args, parser) -> None:
    """Refuse the batch flag of the other kind of head (it would be ignored); fill --clips_per_batch."""
    if args.head == "temporal":
        if args.batch_size != parser.get_default("batch_size"):
            raise EmoNetError("--batch_size counts frames of the frame and smooth heads; the temporal head trains on "
                              "whole clips: use --clips_per_batch")
        args.clips_per_batch = args.clips_per_batch or DEFAULT_CLIPS_PER_BATCH
        if args.clips_per_batch < 1:
            raise EmoNetError(f"--clips_per_batch {args.clips_per_batch}: at least 1")
    elif args.clips_per_batch is not None:
        raise EmoNetError(f"--clips_per_batch applies to --head temporal, not {args.head} (which uses --batch_size)")
    if not 0 <= args.dropout < 1:
        raise EmoNetError(f"--dropout {args.dropout}: must be in [0, 1)")


def default_manifest(folder: Path) -> Path:
    """The one standard manifest in `folder`; none or several are refused, naming what is there."""
    found = standard_manifests(folder)
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise EmoNetError(f"no --manifest_file, and {folder} holds none of the standard manifests (features_manifest.json "
                          "for rgb, features_hsv_manifest.json for hsv, ...): extract features first, or pass --manifest_file")
    raise EmoNetError(f"{folder} holds several feature manifests ({', '.join(f'{p.name} ({s})' for s, p in found.items())}): "
                      "pass --manifest_file to say which to train on")


def main(args):
    check_training_args(args)
    check_head_args(args, get_args_parser())
    device = resolve_device(args.device)
    manifest = read_manifest(args.manifest_file or default_manifest(Path.cwd()))
    manifest.check_head(args.head)
    check_official_split(args, manifest.dataset, str(manifest.path))
    kind = "" if args.head == DEFAULT_HEAD else f"{args.head}_"
    args.output_dir = str(args.output_dir or f"{manifest.color_space or 'unknown'}_{kind}{OUTPUT_KIND}")
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.resume, args.overwrite)
    resumed = load_training_checkpoint(args.resume, MODEL_TYPE) if args.resume else None
    if resumed:
        before = {**resumed["args"], "head": resumed.get("head", {}).get("kind", DEFAULT_HEAD)}
        check_resume(args.resume, resumed, args.epochs,
                     resume_changes(before, vars(args), (*RESUME_FIXED_ARGS, "dropout", "head", "clips_per_batch"))
                     + resume_changes(resumed["settings"], manifest.described_settings, FEATURE_IDENTITY_KEYS))
    data_root = Path(args.data_root) if args.data_root else manifest.path.parent
    data = load_feature_set(manifest, data_root, progress=not args.no_progress)
    if resumed:
        split = resumed["split"]
    elif args.official_split:
        split = official_split(data.samples, args.split, args.seed, args.inner_val_split)
    else:
        split = make_split(data.samples, args.split, args.val_split, args.seed, args.folds, args.fold, args.inner_val_split)
    indices = split_indices(data.samples, split)
    meta = {
        "model_type": MODEL_TYPE, "args": vars(args), "split": split, "head": head_config(args.head, args),
        "model_args": model_args(args.head, args),
        "settings": {**manifest.described_settings, "manifest_file": str(manifest.path.resolve()), "data_root": str(data_root.resolve())},
    }
    selection = "inner validation" if len(indices.inner_val) else "validation"
    print(f"{args.head} head: {len(indices.train)} training, {len(indices.inner_val)} inner validation and "
          f"{len(indices.val)} validation frames, split by {split['mode']}; best epoch chosen on the {selection} frames; "
          f"outputs in {output_dir}/")
    if DATASETS[manifest.dataset].caveat:
        print(DATASETS[manifest.dataset].caveat, file=sys.stderr)
    unit = HeadUnit(output_dir, args.head, 0, indices, args.seed, meta, resumed)
    train_heads([unit], [data], args, device, progress=not args.no_progress)
    if args.head == "smooth":
        best = load_training_checkpoint(output_dir / "best_model.pth", MODEL_TYPE)
        print(f"smoothing chosen with epoch {best['best_epoch']}: sigma {best['history'][best['best_epoch'] - 1]['sigma']:g} "
              "frames")


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args(), interrupted=resume_hint))
