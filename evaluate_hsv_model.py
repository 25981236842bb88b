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
import argparse
import sys
from pathlib import Path

import numpy as np

from emonet.checkpoint import load_emonet
from emonet.cli import add_frame_arguments, add_runtime_arguments, dataset_root_or_env, run
from emonet.colour import DEFAULT_COLOR_SPACE
from emonet.constants import LABEL_SCALE
from emonet.crop import DEFAULT_CROP
from emonet.datasets import DATASETS, DEFAULT_DATASET, check_crop
from emonet.device import amp_enabled, resolve_device
from emonet.distributed import init_distributed
from emonet.engine import choose_backend
from emonet.errors import EmoNetError
from emonet.evaluation import (SUBSETS, check_results_dir, evaluation_results, leak_warning, scale_warning, selected_on,
                               selection_warning, summary_table, write_evaluation)
from emonet.features import load_feature_set
from emonet.finetune import load_frames_for, predict_frames
from emonet.heads import HeadPredictor, head_record
from emonet.inference import make_runner
from emonet.io import check_writable, sha256_file
from emonet.manifest import FEATURE_IDENTITY_KEYS, read_manifest
from emonet.splits import selection_side, split_indices
from emonet.training import load_training_checkpoint

# AffectNet's expression labels of EmoNet's 8- and 5-class models (0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear,
# 5 disgust, 6 anger, 7 contempt; 8-10: none, uncertain, no face).
EXPRESSION_CLASSES = {8: frozenset(range(8)), 5: frozenset({0, 1, 2, 3, 6})}
# Cross-corpus --subset -> the evaluated dataset's official split.
OFFICIAL_SPLITS = {"val": "validation", "train": "train"}
SCALE_NOTE = ("labels and predictions on AFEW-VA's [-10, 10] (Aff-Wild2's and AffectNet's [-1, 1] x 10); 'normalized': "
              "on [-1, 1]; CCC and PCC are the same on both")
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
    parser.add_argument("--expression_classes", type=int, choices=tuple(EXPRESSION_CLASSES), default=None,
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
        for flag, value in (("--flip_tta", args.flip_tta), ("--amp", args.amp), ("--dataset_root", args.dataset_root),
                            ("--dataset", args.dataset)):
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
        trained_on = settings.get("dataset", DEFAULT_DATASET) if ckpt and args.model_type == "feature" else None
        return {"manifest": manifest, "manifest_file": str(manifest.path.resolve()), "dataset_root": None,
                "color_space": described.get("color_space"), "crop": described.get("crop"), "dataset": manifest.dataset,
                "trained_on": trained_on, "cross_corpus": trained_on is not None and trained_on != manifest.dataset}
    for flag, value in (("--manifest_file", args.manifest_file), ("--data_root", args.data_root)):
        if value:
            raise EmoNetError(f"{flag} applies to features; --model_type {args.model_type} here runs on frames")
    if args.model_type == "full":  # the fine-tuned network only makes sense on the input it was trained on
        for key, value in given.items():
            if settings[key] != value:
                raise EmoNetError(f"--{key} {value}: the model was trained on {key} {settings[key]!r}; drop the flag")
    trained_on = settings.get("dataset", DEFAULT_DATASET) if ckpt else None
    dataset = args.dataset or trained_on or DEFAULT_DATASET
    cross_corpus = trained_on is not None and trained_on != dataset
    if cross_corpus and not args.dataset_root:
        raise EmoNetError(f"--dataset {dataset}: the model was trained on {trained_on}; give the {dataset} frames' "
                          "--dataset_root")
    crop = given.get("crop", settings.get("crop", DEFAULT_CROP))
    check_crop(dataset, crop)
    root = args.dataset_root or settings.get("dataset_root") or dataset_root_or_env(None)
    return {"manifest": None, "manifest_file": None, "dataset_root": str(Path(root).resolve()), "dataset": dataset,
            "trained_on": trained_on, "cross_corpus": cross_corpus,
            "color_space": given.get("color_space", settings.get("color_space", DEFAULT_COLOR_SPACE)), "crop": crop}


def _subset(samples: list[dict], split: dict | None, subset: str) -> tuple[np.ndarray, list[dict]]:
    """Indices of the evaluated samples and the development samples (training and inner validation, for the
    leakage audit)."""
    if split is None:
        return np.arange(len(samples)), []
    sides = split_indices(samples, split)
    development = np.sort(np.concatenate([sides.train, sides.inner_val]))
    chosen = {"val": sides.val, "train": sides.train, "all": np.sort(np.concatenate([development, sides.val]))}[subset]
    return chosen, [samples[i] for i in development]


def _official_subset(samples: list[dict], subset: str, where: str) -> np.ndarray:
    """Cross-corpus, or without a checkpoint: the evaluated dataset's own split (`--subset val`: its validation
    split, `train`: its training split), or all of it; a checkpoint's split belongs to another corpus. `where`: the
    data in words, for the error."""
    if subset == "all":
        return np.arange(len(samples))
    wanted = OFFICIAL_SPLITS[subset]
    chosen = np.array([i for i, s in enumerate(samples) if s.get("split") == wanted], dtype=int)
    if not len(chosen):
        raise EmoNetError(f"--subset {subset}: {where} has no official {wanted} split, and the checkpoint's split (if "
                          "any) belongs to another dataset; use --subset all")
    return chosen


def _with_expressions(samples: list[dict], chosen: np.ndarray, classes: int, manifest) -> np.ndarray:
    """The chosen samples whose AffectNet expression is one of EmoNet's `classes` (8: the eight emotions, EmoNet's
    cleaned test set; 5: neutral, happy, sad, surprise, anger)."""
    if not all("expression" in samples[i] for i in chosen):
        raise EmoNetError(f"--expression_classes: {manifest.path} ({manifest.dataset}) has no expression labels; it "
                          "applies to AffectNet features")
    wanted = EXPRESSION_CLASSES[classes]
    return np.array([i for i in chosen if samples[i]["expression"] in wanted], dtype=int)


def evaluate_features(args, ckpt: dict | None, source: dict) -> tuple[list[dict], np.ndarray, list[dict], list[dict],
                                                                       bool | None]:
    """Feature head, or EmoNet's own outputs stored in the feature files (pretrained).

    Returns (evaluated samples, predictions on the raw scale, development samples, excluded frames, whether the
    features come from the stand-in weights: None where the manifest does not say).
    """
    manifest = source["manifest"]
    data = load_feature_set(manifest, args.data_root, progress=not args.no_progress)
    if args.model_type == "feature":
        for key in FEATURE_IDENTITY_KEYS:  # the same EmoNet features, whichever dataset they come from
            trained, given = ckpt["settings"].get(key), manifest.described_settings.get(key)
            if trained is not None and given is not None and trained != given:
                raise EmoNetError(f"the model was trained on {key} {trained!r} but manifest {manifest.path} has "
                                  f"{given!r}; evaluate it on matching input")
    if source["cross_corpus"] or (ckpt is None and args.subset != "all"):
        chosen, development = _official_subset(data.samples, args.subset, f"{manifest.path} ({manifest.dataset})"), []
    else:
        chosen, development = _subset(data.samples, ckpt["split"] if ckpt else None, args.subset)
    if args.expression_classes:
        chosen = _with_expressions(data.samples, chosen, args.expression_classes, manifest)
    if args.model_type == "pretrained":
        if data.emonet_va is None:
            raise EmoNetError(f"{manifest.path}: the feature files lack EmoNet's own outputs (the seed's files and "
                              "older extractions hold the features only); score EmoNet zero-shot on the frames instead "
                              "(--pretrained_path PATH --dataset_root ROOT) or re-extract the features")
        pred = data.emonet_va[chosen] * LABEL_SCALE
    else:
        samples = [data.samples[i] for i in chosen]  # a smooth or temporal head places them along their clips
        pred = HeadPredictor.from_checkpoint(ckpt).predict(data.features[chosen], samples, resolve_device(args.device))
    return [data.samples[i] for i in chosen], pred, development, [], manifest.settings.get("stand_in_weights")


def engine_choice(args, device):
    """How EmoNet runs on frames (`--backend`, `--threads`)."""
    return choose_backend(args.backend, device, amp_enabled(device, args.amp), False, False, args.threads)


def evaluate_frames(args, ckpt: dict | None, source: dict, dist) -> tuple[list[dict], np.ndarray, list[dict], list[dict],
                                                                         bool]:
    """A fine-tuned EmoNet (full), or the released one (pretrained), run on the frames themselves; frames
    that cannot be decoded are left out and listed. Returns as `evaluate_features`."""
    device = dist.device
    frames = load_frames_for(source["dataset_root"], crop=source["crop"], dataset=source["dataset"])  # before EmoNet loads
    weights = args.model_path if args.model_type == "full" else args.pretrained_path
    model, _ = load_emonet(weights, device)
    amp = amp_enabled(device, args.amp)
    runner = make_runner(model, device, engine_choice(args, device), amp, False, args.batch_size, sha256_file(weights))[0]
    samples = [f.sample() for f in frames]  # on AFEW-VA's scale, whatever the dataset
    if source["cross_corpus"] or (ckpt is None and args.subset != "all"):
        chosen, development = _official_subset(samples, args.subset, f"{source['dataset_root']} ({source['dataset']})"), []
    else:
        chosen, development = _subset(samples, ckpt["split"] if ckpt else None, args.subset)
    pred, failed = predict_frames(runner, [frames[i] for i in chosen], source["color_space"], source["crop"], device,
                                  args.batch_size, args.num_workers, amp, args.flip_tta,
                                  progress=not args.no_progress and dist.is_main, dist=dist)
    excluded = [{"path": str(frames[chosen[i]].image_path), "reason": r} for i, r in sorted(failed.items())]
    keep = [i for i in range(len(chosen)) if i not in failed]
    return [samples[chosen[i]] for i in keep], pred[keep] * LABEL_SCALE, development, excluded, model.stand_in


def main(args):
    if args.model_type != "pretrained" and not args.model_path:
        raise EmoNetError(f"--model_type {args.model_type} needs --model_path")
    if args.subset != "all" and not (args.model_path or args.manifest_file or
                                     (args.dataset and DATASETS[args.dataset].official_split)):
        raise EmoNetError(f"--subset {args.subset} needs a checkpoint with a split (--model_path), or a dataset with an "
                          "official split (its --manifest_file, or --dataset and --dataset_root); use --subset all")
    if args.expression_classes and not args.manifest_file:
        raise EmoNetError("--expression_classes applies to AffectNet features: give their --manifest_file")
    ckpt = load_training_checkpoint(args.model_path, MODEL_TYPES[args.model_type]) if args.model_path else None
    on_frames = _on_frames(args, ckpt)
    source = _resolve_input(args, ckpt, on_frames)
    info = {
        "model_path": str(Path(args.model_path).resolve()) if args.model_path else None, "model_type": args.model_type,
        "pretrained_path": str(Path(args.pretrained_path).resolve()) if args.model_type == "pretrained" and on_frames else None,
        "manifest_file": source["manifest_file"], "dataset_root": source["dataset_root"], "subset": args.subset,
        "split": ckpt["split"]["mode"] if ckpt else None, "color_space": source["color_space"], "crop": source["crop"],
        "flip_tta": args.flip_tta, "expression_classes": args.expression_classes,
        "head": head_record(ckpt) if args.model_type == "feature" else None,
        "dataset": source["dataset"], "trained_on": source["trained_on"], "cross_corpus": source["cross_corpus"],
        "scale": SCALE_NOTE,
        "caveats": [DATASETS[d].caveat for d in dict.fromkeys((source["dataset"], source["trained_on"]))
                    if d and DATASETS[d].caveat],
    }
    if on_frames:
        info["engine"] = engine_choice(args, resolve_device(args.device)).record()  # refused here, before any work
    check_results_dir(args.output_dir, info, args.overwrite)
    check_writable(args.output_dir)
    dist = init_distributed(args.device if on_frames else "cpu")
    try:
        if on_frames:
            samples, pred, development, excluded, stand_in = evaluate_frames(args, ckpt, source, dist)
        else:
            samples, pred, development, excluded, stand_in = evaluate_features(args, ckpt, source)
        if not dist.is_main:
            return 0
        trained = ckpt is not None and args.model_type != "pretrained"  # the released model was not selected here
        info |= {"stand_in_weights": stand_in, "excluded_frames": excluded, "selection_side": selection_side(ckpt["split"]) if trained else None,
                 "selected_on_evaluated_frames": trained and not source["cross_corpus"] and selected_on(samples, ckpt["split"])}
        results = evaluation_results(samples, pred, development, info)
        write_evaluation(args.output_dir, results, samples, pred)
        print(summary_table(results))
        for warning in (leak_warning(results), selection_warning(results), scale_warning(results), *results["caveats"]):
            if warning:
                print(warning, file=sys.stderr)
        print(f"results in {args.output_dir}/")
    finally:
        dist.close()


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
