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
import sys
from dataclasses import asdict, replace
from pathlib import Path

from emonet.cli import add_training_arguments, make_parser, resume_hint, run
from emonet.constants import DEFAULT_CLIPS_PER_BATCH, DEFAULT_HEAD, HEAD_DEFAULTS, HEAD_KINDS
from emonet.errors import EmoNetError
from emonet.settings import HeadConfig, check_official_split

MODEL_TYPE = "feature_head"
OUTPUT_KIND = "features_training"


def get_args_parser():
    parser = make_parser(__doc__)
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


def default_manifest(folder: Path) -> Path:
    """The one standard manifest in `folder`; none or several are refused, naming what is there."""
    from emonet.manifest import standard_manifests

    found = standard_manifests(folder)
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise EmoNetError(f"no --manifest_file, and {folder} holds none of the standard manifests (features_manifest.json "
                          "for rgb, features_hsv_manifest.json for hsv, ...): extract features first, or pass --manifest_file")
    raise EmoNetError(f"{folder} holds several feature manifests ({', '.join(f'{p.name} ({s})' for s, p in found.items())}): "
                      "pass --manifest_file to say which to train on")


def main(args):
    config = HeadConfig.from_args(args)
    # After the flags: torch and the rest are slow to import.
    from emonet.dataset_info import DATASETS
    from emonet.device import resolve_device
    from emonet.features import load_feature_set
    from emonet.head_training import HeadUnit, head_config, model_args, train_heads
    from emonet.manifest import FEATURE_IDENTITY_KEYS, read_manifest
    from emonet.splits import make_split, official_split, split_indices
    from emonet.training import (RESUME_FIXED_ARGS, check_output_dir, check_resume, load_training_checkpoint,
                                 resume_changes)

    device = resolve_device(config.device)
    manifest = read_manifest(config.manifest_file or default_manifest(Path.cwd()))
    manifest.check_head(config.head)
    check_official_split(config.official_split, manifest.dataset, str(manifest.path))
    kind = "" if config.head == DEFAULT_HEAD else f"{config.head}_"
    config = replace(config, output_dir=str(config.output_dir or f"{manifest.color_space or 'unknown'}_{kind}{OUTPUT_KIND}"))
    output_dir = Path(config.output_dir)
    check_output_dir(output_dir, config.resume, config.overwrite)
    resumed = load_training_checkpoint(config.resume, MODEL_TYPE) if config.resume else None
    if resumed:
        before = {**resumed["args"], "head": resumed.get("head", {}).get("kind", DEFAULT_HEAD)}
        check_resume(config.resume, resumed, config.epochs,
                     resume_changes(before, asdict(config), (*RESUME_FIXED_ARGS, "dropout", "head", "clips_per_batch"))
                     + resume_changes(resumed["settings"], manifest.described_settings, FEATURE_IDENTITY_KEYS))
    data_root = Path(config.data_root) if config.data_root else manifest.path.parent
    data = load_feature_set(manifest, data_root, progress=config.progress)
    if resumed:
        split = resumed["split"]
    elif config.official_split:
        split = official_split(data.samples, config.split, config.seed, config.inner_val_split)
    else:
        split = make_split(data.samples, config.split, config.val_split, config.seed, config.folds, config.fold,
                           config.inner_val_split)
    indices = split_indices(data.samples, split)
    meta = {
        "model_type": MODEL_TYPE, "args": asdict(config), "split": split, "head": head_config(config.head, config),
        "model_args": model_args(config.head, config),
        "settings": {**manifest.described_settings, "manifest_file": str(manifest.path.resolve()),
                     "data_root": str(data_root.resolve())},
    }
    selection = "inner validation" if len(indices.inner_val) else "validation"
    print(f"{config.head} head: {len(indices.train)} training, {len(indices.inner_val)} inner validation and "
          f"{len(indices.val)} validation frames, split by {split['mode']}; best epoch chosen on the {selection} frames; "
          f"outputs in {output_dir}/")
    if DATASETS[manifest.dataset].caveat:
        print(DATASETS[manifest.dataset].caveat, file=sys.stderr)
    unit = HeadUnit(output_dir, config.head, 0, indices, config.seed, meta, resumed)
    train_heads([unit], [data], config, device, progress=config.progress)
    if config.head == "smooth":
        best = load_training_checkpoint(output_dir / "best_model.pth", MODEL_TYPE)
        print(f"smoothing chosen with epoch {best['best_epoch']}: sigma {best['history'][best['best_epoch'] - 1]['sigma']:g} "
              "frames")


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args(), interrupted=lambda args: resume_hint(args.output_dir)))
