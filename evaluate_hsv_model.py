"""Stage 5: evaluate a trained model (or EmoNet zero-shot) with PCC, CCC, MSE, RMSE, SAGR and a leakage audit.

    python evaluate_hsv_model.py --model_path hsv_features_training/best_model.pth --model_type feature \\
        --output_dir hsv_features_evaluation    # any head: frame, smooth or temporal
    python evaluate_hsv_model.py --model_path hsv_full_training/best_model.pth --model_type full --output_dir hsv_full_evaluation
    python evaluate_hsv_model.py --model_type pretrained --manifest_file features_manifest.json --subset all \\
        --output_dir rgb_zero_shot_evaluation

Evaluates the held-out side of the split stored in the checkpoint (`--subset val`, the default); the
checkpoint also gives the manifest, colour space and crop. Writes evaluation_results.json,
predictions.csv, evaluation_scatter.png and evaluation_distributions.png, and prints a summary table.
`pretrained` uses EmoNet's own valence/arousal: from the feature files when a manifest is given (or the
checkpoint names one), else by running --pretrained_path on the frames of --dataset_root; with
--model_path, only that checkpoint's split is used. Under torchrun, frames are shared among the processes.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from emonet.checkpoint import load_emonet
from emonet.cli import add_frame_arguments, add_runtime_arguments, dataset_root_or_env, run
from emonet.colour import DEFAULT_COLOR_SPACE
from emonet.constants import LABEL_SCALE
from emonet.crop import DEFAULT_CROP
from emonet.device import amp_enabled, resolve_device
from emonet.distributed import init_distributed
from emonet.errors import EmoNetError
from emonet.evaluation import (SUBSETS, check_results_dir, evaluation_results, leak_warning, selected_on,
                               selection_warning, summary_table, write_evaluation)
from emonet.features import load_feature_set
from emonet.heads import HeadPredictor, head_record
from emonet.finetune import load_frames_for, predict_frames
from emonet.manifest import read_manifest
from emonet.splits import selection_side, split_indices
from emonet.training import load_training_checkpoint

# --model_type -> the checkpoint's model_type (pretrained takes any checkpoint, for its split only)
MODEL_TYPES = {"feature": "feature_head", "full": "emonet", "pretrained": None}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another evaluation in --output_dir (default: refuse)")
    add_frame_arguments(parser, color_space=None)
    add_runtime_arguments(parser, batch_size=64)
    return parser


def _on_frames(args, ckpt: dict | None) -> bool:
    """Whether the model runs on frames (full, or pretrained without features to read) or reads features."""
    if args.model_type == "full":
        return True
    if args.model_type == "feature" or args.manifest_file:
        return False
    return ckpt is None or ckpt["model_type"] == "emonet"


def _resolve_input(args, ckpt: dict | None, on_frames: bool) -> dict:
    """Where the evaluated input comes from, and how it is made; refuses flags that would be ignored."""
    given = {k: getattr(args, k) for k in ("color_space", "crop") if getattr(args, k) is not None}
    settings = (ckpt or {}).get("settings", {})
    if not on_frames:
        for flag, value in (("--flip_tta", args.flip_tta), ("--amp", args.amp), ("--dataset_root", args.dataset_root)):
            if value:
                raise EmoNetError(f"{flag} applies to frames (--model_type full, or pretrained without a manifest); "
                                  "these features were extracted already")
        manifest_file = args.manifest_file or settings.get("manifest_file")
        if not manifest_file:
            raise EmoNetError("--manifest_file is needed (no checkpoint names one)")
        manifest = read_manifest(manifest_file)
        described = manifest.described_settings
        for key, value in given.items():
            if described.get(key, value) != value:
                raise EmoNetError(f"--{key} {value}: the manifest {manifest.path} holds {described[key]!r} "
                                  "features; drop the flag (the manifest decides)")
        return {"manifest": manifest, "manifest_file": str(manifest.path.resolve()), "dataset_root": None,
                "color_space": described.get("color_space"), "crop": described.get("crop")}
    for flag, value in (("--manifest_file", args.manifest_file), ("--data_root", args.data_root)):
        if value:
            raise EmoNetError(f"{flag} applies to features; --model_type {args.model_type} here runs on frames")
    if args.model_type == "full":  # the fine-tuned network only makes sense on the input it was trained on
        for key, value in given.items():
            if settings[key] != value:
                raise EmoNetError(f"--{key} {value}: the model was trained on {key} {settings[key]!r}; drop the flag")
    root = args.dataset_root or settings.get("dataset_root") or dataset_root_or_env(None)
    return {"manifest": None, "manifest_file": None, "dataset_root": str(Path(root).resolve()),
            "color_space": given.get("color_space", settings.get("color_space", DEFAULT_COLOR_SPACE)),
            "crop": given.get("crop", settings.get("crop", DEFAULT_CROP))}


def _subset(samples: list[dict], split: dict | None, subset: str) -> tuple[np.ndarray, list[dict]]:
    """Indices of the evaluated samples and the development samples (training and inner validation, for the
    leakage audit)."""
    if split is None:
        return np.arange(len(samples)), []
    sides = split_indices(samples, split)
    development = np.sort(np.concatenate([sides.train, sides.inner_val]))
    chosen = {"val": sides.val, "train": sides.train, "all": np.sort(np.concatenate([development, sides.val]))}[subset]
    return chosen, [samples[i] for i in development]


def evaluate_features(args, ckpt: dict | None, source: dict) -> tuple[list[dict], np.ndarray, list[dict], list[dict]]:
    """Feature head, or EmoNet's own outputs stored in the feature files (pretrained).

    Returns (evaluated samples, predictions on the raw scale, development samples, excluded frames).
    """
    manifest = source["manifest"]
    data = load_feature_set(manifest, args.data_root, progress=not args.no_progress)
    if args.model_type == "feature":
        for key in ("color_space", "crop"):
            trained, given = ckpt["settings"].get(key), source[key]
            if trained is not None and given is not None and trained != given:
                raise EmoNetError(f"the model was trained on {key} {trained!r} but manifest {manifest.path} has "
                                  f"{given!r}; evaluate it on matching input")
    chosen, development = _subset(data.samples, ckpt["split"] if ckpt else None, args.subset)
    if args.model_type == "pretrained":
        if data.emonet_va is None:
            raise EmoNetError(f"{manifest.path}: the feature files lack EmoNet's own outputs (the seed's files and "
                              "older extractions hold the features only); score EmoNet zero-shot on the frames instead "
                              "(--pretrained_path PATH --dataset_root ROOT) or re-extract the features")
        pred = data.emonet_va[chosen] * LABEL_SCALE
    else:
        samples = [data.samples[i] for i in chosen]  # a smooth or temporal head places them along their clips
        pred = HeadPredictor.from_checkpoint(ckpt).predict(data.features[chosen], samples, resolve_device(args.device))
    return [data.samples[i] for i in chosen], pred, development, []


def evaluate_frames(args, ckpt: dict | None, source: dict, dist) -> tuple[list[dict], np.ndarray, list[dict], list[dict]]:
    """A fine-tuned EmoNet (full), or the released one (pretrained), run on the frames themselves; frames
    that cannot be decoded are left out and listed. Returns as `evaluate_features`."""
    device = dist.device
    model, _ = load_emonet(args.model_path if args.model_type == "full" else args.pretrained_path, device)
    frames = load_frames_for(source["dataset_root"], crop=source["crop"])
    samples = [f.sample() for f in frames]
    chosen, development = _subset(samples, ckpt["split"] if ckpt else None, args.subset)
    pred, failed = predict_frames(model, [frames[i] for i in chosen], source["color_space"], source["crop"], device,
                                  args.batch_size, args.num_workers, amp_enabled(device, args.amp), args.flip_tta,
                                  progress=not args.no_progress and dist.is_main, dist=dist)
    excluded = [{"path": str(frames[chosen[i]].image_path), "reason": r} for i, r in sorted(failed.items())]
    keep = [i for i in range(len(chosen)) if i not in failed]
    return [samples[chosen[i]] for i in keep], pred[keep] * LABEL_SCALE, development, excluded


def main(args):
    if args.model_type != "pretrained" and not args.model_path:
        raise EmoNetError(f"--model_type {args.model_type} needs --model_path")
    if args.subset != "all" and not args.model_path:
        raise EmoNetError(f"--subset {args.subset} needs a checkpoint with a split (--model_path); use --subset all")
    ckpt = load_training_checkpoint(args.model_path, MODEL_TYPES[args.model_type]) if args.model_path else None
    on_frames = _on_frames(args, ckpt)
    source = _resolve_input(args, ckpt, on_frames)
    info = {
        "model_path": str(Path(args.model_path).resolve()) if args.model_path else None, "model_type": args.model_type,
        "pretrained_path": str(Path(args.pretrained_path).resolve()) if args.model_type == "pretrained" and on_frames else None,
        "manifest_file": source["manifest_file"], "dataset_root": source["dataset_root"], "subset": args.subset,
        "split": ckpt["split"]["mode"] if ckpt else None, "color_space": source["color_space"], "crop": source["crop"],
        "flip_tta": args.flip_tta,
        "head": head_record(ckpt) if args.model_type == "feature" else None,
    }
    check_results_dir(args.output_dir, info, args.overwrite)
    dist = init_distributed(args.device if on_frames else "cpu")
    try:
        if on_frames:
            samples, pred, development, excluded = evaluate_frames(args, ckpt, source, dist)
        else:
            samples, pred, development, excluded = evaluate_features(args, ckpt, source)
        if not dist.is_main:
            return 0
        trained = ckpt is not None and args.model_type != "pretrained"  # the released model was not selected here
        info |= {"excluded_frames": excluded, "selection_side": selection_side(ckpt["split"]) if trained else None,
                 "selected_on_evaluated_frames": trained and selected_on(samples, ckpt["split"])}
        results = evaluation_results(samples, pred, development, info)
        write_evaluation(args.output_dir, results, samples, pred)
        print(summary_table(results))
        for warning in (leak_warning(results), selection_warning(results)):
            if warning:
                print(warning, file=sys.stderr)
        print(f"results in {args.output_dir}/")
    finally:
        dist.close()


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
