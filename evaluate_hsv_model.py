"""Stage 5: evaluate a trained model (or EmoNet zero-shot) with PCC, CCC, MSE, RMSE, SAGR and a leakage audit.

    python evaluate_hsv_model.py --model_path hsv_features_training/best_model.pth \
        --manifest_file features_hsv_manifest.json --model_type feature --batch_size 64 --output_dir hsv_evaluation_results
    python evaluate_hsv_model.py --model_path hsv_full_training/best_model.pth --model_type full --output_dir hsv_full_evaluation
    python evaluate_hsv_model.py --model_type pretrained --manifest_file features_hsv_manifest.json

Evaluates the held-out side of the split stored in the checkpoint (`--subset val`, the default); the
checkpoint also gives the manifest, colour space and crop. Writes evaluation_results.json,
predictions.csv, evaluation_scatter.png and evaluation_distributions.png, and prints a summary table.
`pretrained` uses EmoNet's own valence/arousal: from the feature files when a manifest is given, else by
running --pretrained_path on the frames of --dataset_root.
"""
import argparse
import sys

import numpy as np
import torch

from emonet.checkpoint import load_emonet
from emonet.cli import add_frame_arguments, add_runtime_arguments, dataset_root_or_env, run
from emonet.constants import LABEL_SCALE
from emonet.errors import EmoNetError
from emonet.evaluation import SUBSETS, evaluation_results, leak_warning, summary_table, write_evaluation
from emonet.features import FeatureHead, load_feature_set
from emonet.finetune import load_frames_for, predict_frames
from emonet.device import amp_enabled, resolve_device
from emonet.manifest import read_manifest
from emonet.splits import split_indices
from emonet.training import load_training_checkpoint

# --model_type -> the checkpoint's model_type (pretrained takes any checkpoint, for its split only)
MODEL_TYPES = {"feature": "feature_head", "full": "emonet", "pretrained": None}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", default=None, help="checkpoint of train_emonet_features.py or train_emonet_hsv.py")
    parser.add_argument("--model_type", choices=tuple(MODEL_TYPES), default="feature",
                        help="feature: feature head; full: fine-tuned EmoNet; pretrained: released EmoNet, "
                             "zero-shot (default: feature)")
    parser.add_argument("--manifest_file", default=None, help="feature manifest (default: the one the checkpoint was trained on)")
    parser.add_argument("--data_root", default=None, help="folder the manifest's paths are relative to (default: the manifest's folder)")
    parser.add_argument("--subset", choices=SUBSETS, default="val",
                        help="val: the held-out side of the checkpoint's split; train; all (default: val)")
    parser.add_argument("--flip_tta", action="store_true",
                        help="full/pretrained on frames: average the predictions of each frame and its mirror (default: off)")
    parser.add_argument("--output_dir", default="evaluation_results", help="where results go (default: evaluation_results)")
    add_frame_arguments(parser, color_space="hsv")
    add_runtime_arguments(parser, batch_size=64)
    return parser


def _subset(samples: list[dict], split: dict | None, subset: str) -> tuple[np.ndarray, list[dict]]:
    """Indices of the evaluated samples and the training samples (for the leakage audit)."""
    if split is None:
        if subset != "all":
            raise EmoNetError(f"--subset {subset} needs a checkpoint with a split (--model_path); use --subset all")
        return np.arange(len(samples)), []
    train_idx, val_idx = split_indices(samples, split)
    chosen = {"val": val_idx, "train": train_idx, "all": np.sort(np.concatenate([train_idx, val_idx]))}[subset]
    return chosen, [samples[i] for i in train_idx]


def _check_same_input(ckpt_settings: dict, data_settings: dict, what: str) -> None:
    for key in ("color_space", "crop"):
        if key in ckpt_settings and key in data_settings and ckpt_settings[key] != data_settings[key]:
            raise EmoNetError(f"the model was trained on {key} {ckpt_settings[key]!r} but {what} has "
                              f"{data_settings[key]!r}; evaluate it on matching input")


def evaluate_features(args, ckpt: dict | None) -> tuple[list[dict], np.ndarray, list[dict], dict, list[dict]]:
    """Feature head, or EmoNet's own outputs stored in the feature files (pretrained).

    Returns (evaluated samples, predictions on the raw scale, training samples, input settings, excluded frames).
    """
    manifest_file = args.manifest_file or (ckpt or {}).get("settings", {}).get("manifest_file")
    if not manifest_file:
        raise EmoNetError("--manifest_file is needed (no checkpoint names one)")
    manifest = read_manifest(manifest_file)
    data = load_feature_set(manifest, args.data_root, progress=not args.no_progress)
    if ckpt:
        _check_same_input(ckpt.get("settings", {}), manifest.settings, f"manifest {manifest.path}")
    chosen, train = _subset(data.samples, ckpt["split"] if ckpt else None, args.subset)
    if args.model_type == "pretrained":
        if data.emonet_va is None:
            raise EmoNetError(f"{manifest.path}: the feature files lack EmoNet's own outputs (older extraction)")
        pred = data.emonet_va[chosen] * LABEL_SCALE
    else:
        device = resolve_device(args.device)
        head = FeatureHead(**ckpt["model_args"])
        head.load_state_dict(ckpt["model"])
        head.to(device).eval()
        with torch.no_grad():
            x = torch.from_numpy(data.features[chosen])
            pred = torch.cat([head(x[i : i + args.batch_size].to(device)).cpu() for i in range(0, len(x), args.batch_size)])
        pred = pred.numpy() * LABEL_SCALE
    return [data.samples[i] for i in chosen], pred, train, manifest.settings, []


def evaluate_frames(args, ckpt: dict | None) -> tuple[list[dict], np.ndarray, list[dict], dict, list[dict]]:
    """A fine-tuned EmoNet (full), or the released one (pretrained), run on the frames themselves; frames
    that cannot be decoded are left out and listed. Returns as `evaluate_features`."""
    device = resolve_device(args.device)
    if ckpt:
        settings = ckpt["settings"]
        model, _ = load_emonet(args.model_path, device)
        dataset_root = args.dataset_root or settings["dataset_root"]
    else:
        model, _ = load_emonet(args.pretrained_path, device)
        settings = {"color_space": args.color_space, "crop": args.crop, "pretrained_path": args.pretrained_path}
        dataset_root = dataset_root_or_env(args.dataset_root)
    frames = load_frames_for(dataset_root)
    samples = [f.sample() for f in frames]
    chosen, train = _subset(samples, ckpt["split"] if ckpt else None, args.subset)
    pred, failed = predict_frames(model, [frames[i] for i in chosen], settings["color_space"], settings["crop"], device,
                                  args.batch_size, args.num_workers, amp_enabled(device, args.amp), args.flip_tta,
                                  progress=not args.no_progress)
    excluded = [{"path": str(frames[chosen[i]].image_path), "reason": r} for i, r in sorted(failed.items())]
    keep = [i for i in range(len(chosen)) if i not in failed]
    return [samples[chosen[i]] for i in keep], pred[keep] * LABEL_SCALE, train, settings, excluded


def main(args):
    ckpt = None
    if args.model_type != "pretrained" or args.model_path:
        if not args.model_path:
            raise EmoNetError(f"--model_type {args.model_type} needs --model_path")
        ckpt = load_training_checkpoint(args.model_path, MODEL_TYPES[args.model_type])
    if args.model_type == "full" or (args.model_type == "pretrained" and not args.manifest_file and not ckpt):
        samples, pred, train, settings, excluded = evaluate_frames(args, ckpt)
    else:
        if args.flip_tta:
            raise EmoNetError("--flip_tta needs frames: it applies to --model_type full or pretrained without a manifest")
        samples, pred, train, settings, excluded = evaluate_features(args, ckpt)
    info = {"model_path": args.model_path, "model_type": args.model_type, "subset": args.subset,
            "split": ckpt["split"]["mode"] if ckpt else None, "color_space": settings.get("color_space"),
            "crop": settings.get("crop"), "flip_tta": args.flip_tta,
            "excluded_frames": excluded}
    results = evaluation_results(samples, pred, train, info)
    write_evaluation(args.output_dir, results, samples, pred)
    print(summary_table(results))
    warning = leak_warning(results)
    if warning:
        print(warning, file=sys.stderr)
    print(f"results in {args.output_dir}/")


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
