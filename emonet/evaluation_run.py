"""Scoring a model: a head on features, a fine-tuned EmoNet on frames, or EmoNet zero-shot (`evaluate`, which
evaluate_hsv_model.py and `emonet.evaluate` run).

By default the held-out side of the checkpoint's own split is scored, on the input the checkpoint records (manifest,
colour space, crop). Another dataset than the checkpoint's is scored cross-corpus on its official split, on AFEW-VA's
scale; without a checkpoint, the dataset's official split (or all of it). Writes evaluation_results.json,
predictions.csv and the two plots (`evaluation.write_evaluation`).
"""
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .checkpoint import load_emonet
from .constants import DEFAULT_COLOR_SPACE, DEFAULT_CROP, DEFAULT_DATASET, LABEL_SCALE
from .dataset_info import DATASETS, check_crop
from .device import amp_enabled, resolve_device
from .distributed import init_distributed
from .engine import choose_backend
from .errors import EmoNetError
from .evaluation import check_results_dir, evaluation_results, selected_on, write_evaluation
from .features import load_feature_set
from .finetune import load_frames_for, predict_frames
from .heads import HeadPredictor, head_record
from .inference import make_runner
from .io import check_writable, sha256_file
from .manifest import FEATURE_IDENTITY_KEYS, read_manifest
from .settings import EvaluationConfig, dataset_root_for
from .splits import selection_side, split_indices
from .training import load_training_checkpoint

# AffectNet's expression labels of EmoNet's 8- and 5-class models (0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear,
# 5 disgust, 6 anger, 7 contempt; 8-10: none, uncertain, no face).
EXPRESSION_CLASSES = {8: frozenset(range(8)), 5: frozenset({0, 1, 2, 3, 6})}  # keys: EXPRESSION_CLASS_SETS
# Cross-corpus --subset -> the evaluated dataset's official split.
OFFICIAL_SPLITS = {"val": "validation", "train": "train"}
SCALE_NOTE = ("labels and predictions on AFEW-VA's [-10, 10] (Aff-Wild2's and AffectNet's [-1, 1] x 10); 'normalized': "
              "on [-1, 1]; CCC and PCC are the same on both")
# --model_type -> the checkpoint's model_type (pretrained takes any checkpoint, for its split only)
MODEL_TYPES = {"feature": "feature_head", "full": "emonet", "pretrained": None}


def _on_frames(config, ckpt: dict | None) -> bool:
    """Whether the model runs on frames (full, or pretrained without features to read) or reads features."""
    if config.model_type == "full":
        return True
    if config.model_type == "feature" or config.manifest_file:
        return False
    return ckpt is None or ckpt["model_type"] == "emonet"


def _resolve_input(config, ckpt: dict | None, on_frames: bool) -> dict:
    """Where the evaluated input comes from, and how it is made; refuses flags that would be ignored."""
    given = {k: getattr(config, k) for k in ("color_space", "crop") if getattr(config, k) is not None}
    settings = (ckpt or {}).get("settings", {})
    if not on_frames:
        for flag, value in (("--flip_tta", config.flip_tta), ("--amp", config.amp), ("--dataset_root", config.dataset_root),
                            ("--dataset", config.dataset)):
            if value:
                raise EmoNetError(f"{flag} applies to frames (--model_type full, or pretrained without a manifest); "
                                  "these features were extracted already")
        manifest_file = config.manifest_file or settings.get("manifest_file")
        if not manifest_file:
            raise EmoNetError("--manifest_file is needed (no checkpoint names one)")
        manifest = read_manifest(manifest_file)
        described = manifest.described_settings
        for key, value in given.items():
            if described.get(key, value) != value:
                raise EmoNetError(f"--{key} {value}: the manifest {manifest.path} holds {described[key]!r} "
                                  "features; drop the flag (the manifest decides)")
        trained_on = settings.get("dataset", DEFAULT_DATASET) if ckpt and config.model_type == "feature" else None
        return {"manifest": manifest, "manifest_file": str(manifest.path.resolve()), "dataset_root": None,
                "color_space": described.get("color_space"), "crop": described.get("crop"), "dataset": manifest.dataset,
                "trained_on": trained_on, "cross_corpus": trained_on is not None and trained_on != manifest.dataset}
    for flag, value in (("--manifest_file", config.manifest_file), ("--data_root", config.data_root)):
        if value:
            raise EmoNetError(f"{flag} applies to features; --model_type {config.model_type} here runs on frames")
    if config.model_type == "full":  # the fine-tuned network only makes sense on the input it was trained on
        for key, value in given.items():
            if settings[key] != value:
                raise EmoNetError(f"--{key} {value}: the model was trained on {key} {settings[key]!r}; drop the flag")
    trained_on = settings.get("dataset", DEFAULT_DATASET) if ckpt else None
    dataset = config.dataset or trained_on or DEFAULT_DATASET
    cross_corpus = trained_on is not None and trained_on != dataset
    if cross_corpus and not config.dataset_root:
        raise EmoNetError(f"--dataset {dataset}: the model was trained on {trained_on}; give the {dataset} frames' "
                          "--dataset_root")
    crop = given.get("crop", settings.get("crop", DEFAULT_CROP))
    check_crop(dataset, crop)
    root = config.dataset_root or settings.get("dataset_root") or dataset_root_for(DEFAULT_DATASET, None)
    return {"manifest": None, "manifest_file": None, "dataset_root": str(Path(root).resolve()), "dataset": dataset,
            "trained_on": trained_on, "cross_corpus": cross_corpus,
            "color_space": given.get("color_space", settings.get("color_space", DEFAULT_COLOR_SPACE)), "crop": crop}


def _chosen(samples: list[dict], ckpt: dict | None, source: dict, subset: str, where: str) -> tuple[np.ndarray, list[dict]]:
    """(indices of the evaluated samples, the development samples): the dataset's own split where the checkpoint's does
    not apply (cross-corpus, or no checkpoint), else the checkpoint's (`where`: the data in words, for errors)."""
    if source["cross_corpus"] or (ckpt is None and subset != "all"):
        return _official_subset(samples, subset, where), []
    return _subset(samples, ckpt["split"] if ckpt else None, subset)


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


def evaluate_features(config, ckpt: dict | None, source: dict) -> tuple[list[dict], np.ndarray, list[dict], list[dict],
                                                                       bool | None]:
    """Feature head, or EmoNet's own outputs stored in the feature files (pretrained).

    Returns (evaluated samples, predictions on the raw scale, development samples, excluded frames, whether the
    features come from the stand-in weights: None where the manifest does not say).
    """
    manifest = source["manifest"]
    data = load_feature_set(manifest, config.data_root, progress=config.progress)
    if config.model_type == "feature":
        for key in FEATURE_IDENTITY_KEYS:  # the same EmoNet features, whichever dataset they come from
            trained, given = ckpt["settings"].get(key), manifest.described_settings.get(key)
            if trained is not None and given is not None and trained != given:
                raise EmoNetError(f"the model was trained on {key} {trained!r} but manifest {manifest.path} has "
                                  f"{given!r}; evaluate it on matching input")
    chosen, development = _chosen(data.samples, ckpt, source, config.subset, f"{manifest.path} ({manifest.dataset})")
    if config.expression_classes:
        chosen = _with_expressions(data.samples, chosen, config.expression_classes, manifest)
    if config.model_type == "pretrained":
        if data.emonet_va is None:
            raise EmoNetError(f"{manifest.path}: the feature files lack EmoNet's own outputs (the seed's files and "
                              "older extractions hold the features only); score EmoNet zero-shot on the frames instead "
                              "(--pretrained_path PATH --dataset_root ROOT) or re-extract the features")
        pred = data.emonet_va[chosen] * LABEL_SCALE
    else:
        samples = [data.samples[i] for i in chosen]  # a smooth or temporal head places them along their clips
        pred = HeadPredictor.from_checkpoint(ckpt).predict(data.features[chosen], samples, resolve_device(config.device))
    return [data.samples[i] for i in chosen], pred, development, [], manifest.settings.get("stand_in_weights")


def engine_choice(config, device):
    """How EmoNet runs on frames (`--backend`, `--threads`)."""
    return choose_backend(config.backend, device, amp_enabled(device, config.amp), False, False, config.threads)


def evaluate_frames(config, ckpt: dict | None, source: dict, dist) -> tuple[list[dict], np.ndarray, list[dict], list[dict],
                                                                         bool]:
    """A fine-tuned EmoNet (full), or the released one (pretrained), run on the frames themselves; frames
    that cannot be decoded are left out and listed. Returns as `evaluate_features`."""
    device = dist.device
    frames = load_frames_for(source["dataset_root"], crop=source["crop"], dataset=source["dataset"])  # before EmoNet loads
    weights = config.model_path if config.model_type == "full" else config.pretrained_path
    model, _ = load_emonet(weights, device)
    amp = amp_enabled(device, config.amp)
    runner = make_runner(model, device, engine_choice(config, device), amp, False, config.batch_size, sha256_file(weights))[0]
    samples = [f.sample() for f in frames]  # on AFEW-VA's scale, whatever the dataset
    chosen, development = _chosen(samples, ckpt, source, config.subset, f"{source['dataset_root']} ({source['dataset']})")
    pred, failed = predict_frames(runner, [frames[i] for i in chosen], source["color_space"], source["crop"], device,
                                  config.batch_size, config.num_workers, amp, config.flip_tta,
                                  progress=config.progress and dist.is_main, dist=dist)
    excluded = [{"path": str(frames[chosen[i]].image_path), "reason": r} for i, r in sorted(failed.items())]
    keep = [i for i in range(len(chosen)) if i not in failed]
    return [samples[chosen[i]] for i in keep], pred[keep] * LABEL_SCALE, development, excluded, model.stand_in


def evaluate(config: EvaluationConfig) -> dict | None:
    """Score the model `config` names (see the module docstring); write evaluation_results.json, predictions.csv and the
    plots into config.output_dir; return the results (None on the other ranks of a torchrun job)."""
    config = config.checked()
    ckpt = load_training_checkpoint(config.model_path, MODEL_TYPES[config.model_type]) if config.model_path else None
    on_frames = _on_frames(config, ckpt)
    source = _resolve_input(config, ckpt, on_frames)
    info = {
        "model_path": str(Path(config.model_path).resolve()) if config.model_path else None, "model_type": config.model_type,
        "pretrained_path": str(Path(config.pretrained_path).resolve()) if config.model_type == "pretrained" and on_frames else None,
        "manifest_file": source["manifest_file"], "dataset_root": source["dataset_root"], "subset": config.subset,
        "split": ckpt["split"]["mode"] if ckpt else None, "color_space": source["color_space"], "crop": source["crop"],
        "flip_tta": config.flip_tta, "expression_classes": config.expression_classes,
        "head": head_record(ckpt) if config.model_type == "feature" else None,
        "dataset": source["dataset"], "trained_on": source["trained_on"], "cross_corpus": source["cross_corpus"],
        "scale": SCALE_NOTE,
        "caveats": [DATASETS[d].caveat for d in dict.fromkeys((source["dataset"], source["trained_on"]))
                    if d and DATASETS[d].caveat],
    }
    if on_frames:
        info["engine"] = engine_choice(config, resolve_device(config.device)).record()  # refused here, before any work
    check_results_dir(config.output_dir, info, config.overwrite)
    check_writable(config.output_dir)
    dist = init_distributed(config.device if on_frames else "cpu")
    try:
        if on_frames:
            samples, pred, development, excluded, stand_in = evaluate_frames(config, ckpt, source, dist)
        else:
            samples, pred, development, excluded, stand_in = evaluate_features(config, ckpt, source)
        if not dist.is_main:
            return None
        trained = ckpt is not None and config.model_type != "pretrained"  # the released model was not selected here
        info |= {"settings": asdict(config), "stand_in_weights": stand_in, "excluded_frames": excluded, "selection_side": selection_side(ckpt["split"]) if trained else None,
                 "selected_on_evaluated_frames": trained and not source["cross_corpus"] and selected_on(samples, ckpt["split"])}
        results = evaluation_results(samples, pred, development, info)
        write_evaluation(config.output_dir, results, samples, pred)
        return results
    finally:
        dist.close()


