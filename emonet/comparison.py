"""The colour-space comparison's protocol: what makes its numbers defensible.

- Every colour space is scored on the same frames (manifests that differ are refused, or, with
  common_frames, restricted to the frames all of them have) and the same folds: group K-fold over clips
  (or actors), computed once from the frame list and the seed (`folds.json`).
- A unit is one colour space and one fold. It trains on the other K-1 folds, chooses its best epoch on an
  inner split of those training clips, and predicts the held-out fold once, with the chosen model. Every
  frame thus gets one out-of-fold prediction per colour space; the held-out fold never picks an epoch.
- A unit's folder `<output_dir>/<space>/fold_<k>/` holds its training outputs (as the training scripts
  write them), `fold_predictions.csv` (the held-out frames: the chosen model's prediction and EmoNet's own
  zero-shot one, raw scale) and `unit.json`, written last: a unit with `unit.json` is finished. A rerun
  skips finished units with the same settings, resumes an interrupted one from its `last.pth`, and refuses a
  unit made with other settings.

Two approaches: `head` trains the feature head on each space's extracted features
(`features.train_feature_head`, the code of train_emonet_features.py); `finetune` fine-tunes EmoNet on the
frames (`finetune.finetune_emonet`, the code of train_emonet_hsv.py).
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from .afew_va import Frame
from .checkpoint import load_emonet
from .constants import LABEL_SCALE
from .distributed import Distributed
from .errors import EmoNetError
from .features import FeatureSet, load_feature_set, load_head, predict_head, train_feature_head
from .finetune import FINETUNE_FIXED_ARGS, finetune_emonet, predict_frames
from .io import sha256_file, write_json, write_text
from .manifest import FEATURE_IDENTITY_KEYS, Manifest, default_feature_paths, read_manifest
from .splits import assign_folds, sample_key, split_indices, split_with_inner
from .training import RESUME_FIXED_ARGS, load_training_checkpoint

logger = logging.getLogger(__name__)

APPROACHES = ("head", "finetune")
FOLDS_FILE = "folds.json"
UNIT_FILE = "unit.json"
UNIT_PREDICTIONS = "fold_predictions.csv"
PREDICTION_COLUMNS = ("clip", "frame", "valence_pred", "arousal_pred", "valence_zero_shot", "arousal_zero_shot")
MODEL_TYPES = {"head": "feature_head", "finetune": "emonet"}
# The flags of a unit's training run; with the split, the input and the approach they make its fingerprint.
HEAD_TRAINING_ARGS = (*RESUME_FIXED_ARGS, "epochs", "dropout")
FINETUNE_TRAINING_ARGS = (*RESUME_FIXED_ARGS, *FINETUNE_FIXED_ARGS, "epochs", "flip_tta")


# -- inputs --------------------------------------------------------------------------------------------------
def parse_manifest_args(values: list[str] | None, folder: Path, known_spaces: tuple[str, ...]) -> dict[str, Path]:
    """`LABEL=PATH` pairs; without any, the standard manifest of every colour space found in `folder`."""
    if not values:
        found = {s: folder / default_feature_paths(s)[1] for s in known_spaces}
        found = {s: p for s, p in found.items() if p.is_file()}
        if len(found) < 2:
            raise EmoNetError(f"--manifests: need two colour spaces or more; found {', '.join(found) or 'none'} of the "
                              f"standard manifests in {folder} (features_manifest.json, features_hsv_manifest.json, ...); "
                              "extract the features of each space first, or pass LABEL=PATH pairs")
        return found
    out: dict[str, Path] = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise EmoNetError(f"--manifests {value!r}: expected LABEL=PATH, e.g. rgb=features_manifest.json")
        if label in out:
            raise EmoNetError(f"--manifests: the label {label!r} is given twice")
        out[label] = Path(path)
    if len(out) < 2:
        raise EmoNetError("--manifests: a comparison needs two colour spaces or more")
    return out


@dataclass
class CommonFrames:
    """The frames every space is scored on, in one order, and where each space's manifest holds them."""

    samples: list[dict]  # clip, frame, actor, valence, arousal
    positions: dict[str, np.ndarray]  # label -> indices into that manifest's samples
    dropped: dict[str, int]  # label -> frames of its manifest left out (common_frames)


def _key(sample: dict) -> tuple[str, str]:
    return sample["clip"], sample["frame"]


def check_manifests(manifests: dict[str, Manifest], common_frames: bool) -> CommonFrames:
    """Refuse manifests that do not describe the same frames with the same crop and checkpoint (or, with
    `common_frames`, keep the frames they all have); labels must agree where frames are shared."""
    for label, m in manifests.items():
        if "color_space" in m.settings and m.settings["color_space"] != label:
            raise EmoNetError(f"--manifests {label}={m.path}: that manifest holds {m.settings['color_space']!r} "
                              f"features, not {label!r}")
    with_settings = {label: m for label, m in manifests.items() if m.settings}
    for key in FEATURE_IDENTITY_KEYS:
        if key == "color_space":
            continue
        values = {label: m.settings.get(key) for label, m in with_settings.items()}
        if len(set(map(str, values.values()))) > 1:
            raise EmoNetError(f"the manifests differ in {key}: "
                              f"{', '.join(f'{label} {v!r}' for label, v in values.items())}; extract every colour "
                              "space with the same crop, checkpoint and precision")
    for label in set(manifests) - set(with_settings):
        logger.warning("%s: its manifest %s has no settings (the seed's format): its crop and checkpoint cannot be "
                       "checked against the others'", label, manifests[label].path)
    keys = {label: {_key(s) for s in m.samples} for label, m in manifests.items()}
    common = set.intersection(*keys.values())
    if not common_frames:
        every = set.union(*keys.values())
        missing = {label: sorted(every - k) for label, k in keys.items() if every - k}
        if missing:
            parts = [f"{label} lacks {len(m)} frames (clips {', '.join(sorted({c for c, _ in m})[:5])}"
                     f"{', ...' if len({c for c, _ in m}) > 5 else ''})" for label, m in missing.items()]
            raise EmoNetError(f"the manifests describe different frames: {'; '.join(parts)}. Extract the same frames "
                              "for every colour space, or pass --common_frames to keep only those all of them have")
    if not common:
        raise EmoNetError("the manifests share no frame")
    order = sorted(common)
    positions, samples = {}, None
    for label, m in manifests.items():
        index = {_key(s): i for i, s in enumerate(m.samples)}
        positions[label] = np.array([index[k] for k in order], dtype=np.int64)
        chosen = [m.samples[i] for i in positions[label]]
        if samples is None:
            samples = [{k: s[k] for k in ("clip", "frame", "actor", "valence", "arousal")} for s in chosen]
            continue
        differ = [f"{s['clip']}/{s['frame']}" for s, t in zip(samples, chosen, strict=True)
                  if (s["valence"], s["arousal"]) != (t["valence"], t["arousal"])]
        if differ:
            raise EmoNetError(f"{label}: {len(differ)} frames carry other labels than in the first manifest "
                              f"(e.g. {differ[0]}); these are not the same frames")
    dropped = {label: len(m.samples) - len(order) for label, m in manifests.items()}
    if common_frames and any(dropped.values()):
        logger.warning("--common_frames: %d frames kept; dropped %s", len(order),
                       ", ".join(f"{n} of {label}" for label, n in dropped.items()))
    return CommonFrames(samples, positions, dropped)


def reorder(data: FeatureSet, samples: list[dict], positions: np.ndarray) -> FeatureSet:
    """A space's features in the comparison's frame order."""
    return FeatureSet(samples, data.features[positions], data.labels[positions],
                      None if data.emonet_va is None else data.emonet_va[positions])


# -- folds and units -------------------------------------------------------------------------------------------
def make_folds(samples: list[dict], unit: str, folds: int, seed: int) -> dict:
    """The folds shared by every colour space: `{"unit", "seed", "folds": [[ids of fold 0], ...]}`."""
    return {"unit": unit, "seed": seed, "folds": assign_folds(samples, unit, folds, seed)}


def claim_folds(output_dir: Path, folds: dict, write: bool) -> None:
    """Write `folds.json`, or check that the one there is the same (a folder holds one comparison)."""
    path = output_dir / FOLDS_FILE
    if path.is_file():
        if json.loads(path.read_text()) != folds:
            raise EmoNetError(f"{path} holds other folds (another frame list, unit, --folds or --seed): {output_dir} "
                              "belongs to another comparison; choose another --output_dir")
    elif write:
        write_json(path, folds)


def unit_split(folds: dict, k: int, inner_val_split: float) -> dict:
    """The split of fold k: the other folds train (less the inner validation units), fold k is held out."""
    train = sorted(u for j, fold in enumerate(folds["folds"]) if j != k for u in fold)
    return split_with_inner(folds["unit"], folds["seed"], train, folds["folds"][k], inner_val_split,
                            val_split=None, folds=len(folds["folds"]), fold=k)


def parse_only(value: str, spaces: list[str], n_folds: int) -> tuple[str, int]:
    space, sep, fold = value.rpartition(":")
    if not sep or space not in spaces or not fold.isdigit() or not 0 <= int(fold) < n_folds:
        raise EmoNetError(f"--only {value}: expected SPACE:FOLD with SPACE one of {', '.join(spaces)} and FOLD in "
                          f"0..{n_folds - 1}")
    return space, int(fold)


def unit_dir(output_dir: Path, space: str, fold: int) -> Path:
    return output_dir / space / f"fold_{fold}"


def unit_args(args, folds: dict, k: int, names: tuple[str, ...]) -> SimpleNamespace:
    """The training flags of unit k, as the training script would hold them (its checkpoints resume there too)."""
    values = {n: getattr(args, n) for n in names if hasattr(args, n)}
    values.update(split=folds["unit"], val_split=None, folds=len(folds["folds"]), fold=k, save_freq=args.save_freq,
                  no_progress=args.no_progress)
    return SimpleNamespace(**values)


def _fingerprint(approach: str, space: str, split: dict, training: SimpleNamespace, names, source: dict) -> dict:
    return {"approach": approach, "space": space, "split": split,
            "training": {n: getattr(training, n) for n in names if hasattr(training, n)}, "input": source}


def unit_state(folder: Path, fingerprint: dict, model_type: str, epochs: int) -> tuple[str, dict | None]:
    """("done", None), ("predict", None) when training is complete but not its predictions, ("resume", ckpt)
    or ("new", None); refuses a unit made with other settings."""
    marker = folder / UNIT_FILE
    if marker.is_file():
        stored = json.loads(marker.read_text())["fingerprint"]
        if stored != fingerprint:
            raise EmoNetError(f"{folder}: this unit was made with other settings ({_differences(stored, fingerprint)}); "
                              "refusing to mix them. Use another --output_dir")
        return "done", None
    last = folder / "last.pth"
    if not last.is_file():
        return "new", None
    ckpt = load_training_checkpoint(last, model_type)
    stored = ckpt.get("unit")
    if stored is None:
        raise EmoNetError(f"{last}: not a unit of a comparison (no fingerprint); use another --output_dir")
    stored = {**stored, "training": {**stored["training"], "epochs": epochs}}  # an interrupted unit may train longer
    if stored != fingerprint:
        raise EmoNetError(f"{last}: this unit was started with other settings ({_differences(stored, fingerprint)}); "
                          "refusing to mix them. Use another --output_dir")
    return ("predict", None) if int(ckpt["epoch"]) >= epochs else ("resume", ckpt)


def _differences(before: dict, after: dict, prefix: str = "") -> str:
    out = []
    for k in sorted(set(before) | set(after)):
        a, b = before.get(k), after.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            nested = _differences(a, b, f"{prefix}{k}.")
            out += [nested] if nested else []
        elif a != b:
            out.append(f"{prefix}{k} {a!r} -> {b!r}" if not isinstance(a, list) else f"{prefix}{k} differs")
    return "; ".join(out)


def _finish_unit(folder: Path, samples: list[dict], pred: np.ndarray, zero_shot: np.ndarray | None,
                 fingerprint: dict) -> None:
    zero = zero_shot if zero_shot is not None else np.full((len(samples), 2), np.nan)
    frame = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
                          "valence_pred": pred[:, 0], "arousal_pred": pred[:, 1],
                          "valence_zero_shot": zero[:, 0], "arousal_zero_shot": zero[:, 1]}, columns=PREDICTION_COLUMNS)
    write_text(folder / UNIT_PREDICTIONS, frame.to_csv(index=False, float_format=lambda v: repr(float(v))))
    write_json(folder / UNIT_FILE, {"fingerprint": fingerprint, "frames": len(samples)})  # last: the unit is done


def run_head_unit(output_dir: Path, space: str, k: int, data: FeatureSet, manifest: Manifest, folds: dict, args,
                  device: torch.device) -> str:
    """Train, select and predict one unit of the head comparison; returns what was done."""
    folder = unit_dir(output_dir, space, k)
    split = unit_split(folds, k, args.inner_val_split)
    training = unit_args(args, folds, k, (*HEAD_TRAINING_ARGS, "inner_val_split"))
    source = {"manifest": str(manifest.path.resolve()), "manifest_sha256": sha256_file(manifest.path)}
    fingerprint = _fingerprint("head", space, split, training, HEAD_TRAINING_ARGS, source)
    state, resumed = unit_state(folder, fingerprint, MODEL_TYPES["head"], args.epochs)
    if state == "done":
        return "skipped (finished)"
    indices = split_indices(data.samples, split)
    if state in ("new", "resume"):
        meta = {"model_type": MODEL_TYPES["head"], "args": vars(training), "split": split, "unit": fingerprint,
                "settings": {**manifest.settings, "color_space": space, "manifest_file": source["manifest"],
                             "data_root": str(manifest.path.resolve().parent)}}
        train_feature_head(data, indices, training, folder, meta, resumed, device)
    best = load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["head"])
    held_out = [data.samples[i] for i in indices.val]
    zero_shot = None if data.emonet_va is None else data.emonet_va[indices.val] * LABEL_SCALE
    _finish_unit(folder, held_out, predict_head(load_head(best), data.features[indices.val], device), zero_shot, fingerprint)
    return _done(state, best, len(held_out))


def run_finetune_unit(output_dir: Path, space: str, k: int, frames: list[Frame], source: dict, folds: dict, args,
                      dist: Distributed) -> str:
    """Fine-tune, select and predict one unit of the fine-tuning comparison (every process of a torchrun job
    takes part; rank 0 writes); returns what was done."""
    folder = unit_dir(output_dir, space, k)
    split = unit_split(folds, k, args.inner_val_split)
    training = unit_args(args, folds, k, (*FINETUNE_TRAINING_ARGS, "inner_val_split", "pretrained_path", "num_workers"))
    training.color_space = space
    fingerprint = _fingerprint("finetune", space, split, training, FINETUNE_TRAINING_ARGS, source)
    state, resumed = unit_state(folder, fingerprint, MODEL_TYPES["finetune"], args.epochs)
    if state == "done":
        return "skipped (finished)"
    samples = [f.sample() for f in frames]
    indices = split_indices(samples, split)
    if state in ("new", "resume"):
        meta = {"model_type": MODEL_TYPES["finetune"], "args": vars(training), "split": split, "unit": fingerprint,
                "settings": {"color_space": space, "crop": args.crop, "pretrained_path": args.pretrained_path,
                             "pretrained_sha256": source["pretrained_sha256"], "freeze_backbone": args.freeze_backbone,
                             "augment": args.augment, "dataset_root": source["dataset_root"]},
                "world_size": dist.world_size, "global_batch_size": dist.world_size * args.batch_size}
        finetune_emonet(frames, indices, training, folder, meta, resumed, dist)
    dist.barrier()  # rank 0 has written best_model.pth
    held_out = [frames[i] for i in indices.val]
    pred, zero = (_predict_frames(path, held_out, space, args, dist)
                  for path in (folder / "best_model.pth", Path(args.pretrained_path)))
    failed = np.isnan(pred).any(axis=1) | np.isnan(zero).any(axis=1)  # undecodable frames: left out, listed
    if dist.is_main:
        if failed.any():
            logger.warning("%s: %d held-out frames could not be decoded and are left out", folder, int(failed.sum()))
        kept = [samples[i] for i, bad in zip(indices.val, failed, strict=True) if not bad]
        _finish_unit(folder, kept, pred[~failed], zero[~failed], fingerprint)
    return _done(state, load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["finetune"]), len(held_out))


def _done(state: str, best: dict, held_out: int) -> str:
    """One line on a unit: what was done, the epoch chosen on the inner split, the frames predicted."""
    action = {"new": "trained", "resume": "resumed and trained", "predict": "predicted"}[state]
    return (f"{action}: epoch {best['best_epoch']} chosen (inner-validation mean CCC {best['best_metric']:.3f}), "
            f"{held_out} held-out frames predicted")


def _predict_frames(weights: Path, frames: list[Frame], space: str, args, dist: Distributed) -> np.ndarray:
    model, _ = load_emonet(weights, dist.device)
    pred, _ = predict_frames(model, frames, space, args.crop, dist.device, args.batch_size, args.num_workers, args.amp,
                             args.flip_tta, progress=not args.no_progress and dist.is_main, dist=dist)
    return pred * LABEL_SCALE


def load_space(label: str, manifest: Manifest, common: CommonFrames, progress: bool) -> FeatureSet:
    """One colour space's features, in the comparison's frame order."""
    return reorder(load_feature_set(manifest, progress=progress), common.samples, common.positions[label])


def read_manifests(paths: dict[str, Path]) -> dict[str, Manifest]:
    return {label: read_manifest(path) for label, path in paths.items()}


def unit_fingerprints(output_dir: Path, spaces: list[str], n_folds: int) -> list[dict]:
    """The fingerprints of finished units (what each was trained with, and how many processes it used)."""
    markers = [unit_dir(output_dir, s, k) / UNIT_FILE for s in spaces for k in range(n_folds)]
    return [json.loads(m.read_text())["fingerprint"] for m in markers if m.is_file()]


# -- collecting the units --------------------------------------------------------------------------------------
def collect_predictions(output_dir: Path, spaces: list[str], folds: dict, samples: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The out-of-fold predictions of every finished unit, one row per frame: (model, zero-shot) frames with
    columns clip, frame, fold, valence_true, arousal_true, then <space>_valence, <space>_arousal per space."""
    missing = [f"{s}:{k}" for s in spaces for k in range(len(folds["folds"]))
               if not (unit_dir(output_dir, s, k) / UNIT_FILE).is_file()]
    if missing:
        raise EmoNetError(f"{len(missing)} units are not finished ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}); "
                          "run them (--only SPACE:FOLD, or without --report_only) before the report")
    fold_of = {u: k for k, fold in enumerate(folds["folds"]) for u in fold}
    base = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
                         "fold": [fold_of[sample_key(s, folds["unit"])] for s in samples],
                         "valence_true": [float(s["valence"]) for s in samples],
                         "arousal_true": [float(s["arousal"]) for s in samples]})
    model, zero = base.copy(), base.copy()
    for space in spaces:
        units = pd.concat([pd.read_csv(unit_dir(output_dir, space, k) / UNIT_PREDICTIONS, dtype={"clip": str, "frame": str})
                           for k in range(len(folds["folds"]))])
        units = base[["clip", "frame"]].merge(units, on=["clip", "frame"], how="left", validate="one_to_one")
        for dim in ("valence", "arousal"):
            model[f"{space}_{dim}"] = units[f"{dim}_pred"].to_numpy()
            zero[f"{space}_{dim}"] = units[f"{dim}_zero_shot"].to_numpy()
    return model, zero
