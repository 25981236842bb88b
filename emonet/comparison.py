"""The colour-space comparison's protocol: what makes its numbers defensible.

- Every colour space is scored on the same frames (manifests that differ are refused, or, with
  common_frames, restricted to the frames all of them have) and the same folds: group K-fold over clips
  (or actors), computed from the frame list and the seed (`folds.json`). Repetition r of a repeated
  cross-validation draws its own folds, inner splits, initialisations and orders from seed + r.
- A unit is one (repetition, colour space, head, fold). It trains on the other K-1 folds, chooses its best
  epoch (and, for the smooth head, its sigma) on an inner split of those training clips, and predicts the
  held-out fold once, with the chosen model. Every frame thus gets one out-of-fold prediction per
  repetition, colour space and head; the held-out fold never picks anything.
- A unit's folder (`Unit.folder`) holds its training outputs (as the training scripts write them),
  `fold_predictions.csv` (the held-out frames: the chosen model's prediction and EmoNet's own zero-shot one,
  raw scale) and `unit.json`, written last: a unit with `unit.json` is finished. A rerun skips finished
  units with the same settings, resumes an interrupted one from its `last.pth`, and refuses a unit made with
  other settings, saying which in words.

Two approaches: `head` trains heads (`heads.py`) on each space's extracted features
(`head_training.train_heads`, the code of train_emonet_features.py); `finetune` fine-tunes EmoNet on the
frames (`finetune.finetune_emonet`, the code of train_emonet_hsv.py), frame head only.

A dataset with an official split (Aff-Wild2, AffectNet: its samples carry `split`) is not cross-validated: one
"fold", its official validation split, and every repetition trains on its official training split, with the inner
split, initialisation and order of seed + r (`make_folds(official=True)`; `folds.json` says `"protocol":
"official"`). The report's statistic for that one fixed test set is in `comparison_report.py`.

Head units of one command use every core: frame and smooth units are trained as batches
(`head_training.StackedHeads`), one batch per worker process, and temporal units one per worker. A unit's
figures do not depend on the batch or the process it was trained in, so 1 or N workers, torchrun or a job
array give the same report bit for bit. One colour space's features are in memory at a time
(`HeadComparison.use`), and the frames are held once, as columns (`manifest.SampleColumns`): at Aff-Wild2's 2.8
million frames the comparison of two spaces peaks at 6.6 GB (the guide's "Other datasets").
"""
import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .afew_va import Frame
from .checkpoint import load_emonet
from .constants import LABEL_SCALE, OFFICIAL
from .distributed import Distributed
from .errors import EmoNetError
from .feature_store import check_feature_file
from .features import FeatureSet, load_feature_set
from .finetune import FINETUNE_FIXED_ARGS, finetune_emonet, predict_frames
from .head_training import HEAD_THREADS, HeadUnit, head_config, intra_op_threads, model_args, train_heads
from .heads import DEFAULT_HEAD, HeadPredictor
from .io import write_json, write_text
from .manifest import FEATURE_IDENTITY_KEYS, Manifest, SampleColumns, read_manifest, standard_manifests
from .splits import assign_folds, official_sides, sample_key, split_indices, split_with_inner
from .text import number
from .training import RESUME_FIXED_ARGS, load_training_checkpoint

logger = logging.getLogger(__name__)

APPROACHES = ("head", "finetune")
FOLDS_FILE = "folds.json"
UNIT_FILE = "unit.json"
UNIT_PREDICTIONS = "fold_predictions.csv"
PREDICTION_COLUMNS = ("clip", "frame", "valence_pred", "arousal_pred", "valence_zero_shot", "arousal_zero_shot")
MODEL_TYPES = {"head": "feature_head", "finetune": "emonet"}
# The flags of a unit's training run; with the split, the head, the input and the approach they make its
# fingerprint. `clips_per_batch` is the temporal head's (None for the others).
HEAD_TRAINING_ARGS = (*RESUME_FIXED_ARGS, "epochs", "dropout", "clips_per_batch")
FINETUNE_TRAINING_ARGS = (*RESUME_FIXED_ARGS, *FINETUNE_FIXED_ARGS, "epochs", "flip_tta")
# The flags a report takes from its units (with --report_only, those not given are read from them).
TRAINING_FLAGS = {"head": ("epochs", "batch_size", "learning_rate", "weight_decay", "optimizer", "loss_function",
                           "dropout", "inner_val_split", "clips_per_batch"),
                  "finetune": ("epochs", "batch_size", "learning_rate", "weight_decay", "optimizer", "loss_function",
                               "inner_val_split", "crop", "freeze_backbone", "augment", "colour_jitter", "grad_clip",
                               "amp", "flip_tta", "limit", "n_expression", "sync_bn")}


# -- units -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Unit:
    """One (repetition, colour space, head, fold) of a comparison."""

    repeat: int
    space: str
    head: str
    fold: int

    @property
    def label(self) -> str:
        """As --only takes it: SPACE:FOLD for the frame head, SPACE:HEAD:FOLD for another; @REPEAT after it for a
        repetition other than 0."""
        core = f"{self.space}:{self.fold}" if self.head == DEFAULT_HEAD else f"{self.space}:{self.head}:{self.fold}"
        return core + (f"@{self.repeat}" if self.repeat else "")

    def folder(self, output_dir: Path) -> Path:
        """<output_dir>[/repeat_R]/<space>[/<head>]/fold_<k>: repetition 0's frame head where it always was."""
        base = output_dir if self.repeat == 0 else output_dir / f"repeat_{self.repeat}"
        base = base / self.space
        return (base if self.head == DEFAULT_HEAD else base / self.head) / f"fold_{self.fold}"


def all_units(repeats: int, spaces: list[str], heads: list[str], folds: int) -> list[Unit]:
    """Every unit, ordered by repetition, space, head, fold."""
    return [Unit(r, s, h, k) for r in range(repeats) for s in spaces for h in heads for k in range(folds)]


ONLY_PATTERN = re.compile(r"^(?P<space>[^:@]+)(?::(?P<head>[^:@]+))?:(?P<fold>\d+)(?:@(?P<repeat>\d+))?$")


def parse_only(value: str, spaces: list[str], heads: list[str], folds: int, repeats: int) -> Unit:
    """--only SPACE:FOLD (frame head, repetition 0), SPACE:HEAD:FOLD, or either with @REPEAT."""
    match = ONLY_PATTERN.match(value)
    unit = None
    if match:
        unit = Unit(int(match["repeat"] or 0), match["space"], match["head"] or DEFAULT_HEAD, int(match["fold"]))
    if (unit is None or unit.space not in spaces or unit.head not in heads or not 0 <= unit.fold < folds
            or not 0 <= unit.repeat < repeats):
        raise EmoNetError(f"--only {value}: expected SPACE:FOLD or SPACE:HEAD:FOLD, optionally followed by @REPEAT, with "
                          f"SPACE one of {', '.join(spaces)}, HEAD one of {', '.join(heads)} (--heads), FOLD in "
                          f"0..{folds - 1} and REPEAT in 0..{repeats - 1} (--repeats), e.g. {spaces[-1]}:{heads[-1]}:0"
                          + ("@1" if repeats > 1 else ""))
    return unit


# -- inputs ------------------------------------------------------------------------------------------------------
def parse_manifest_args(values: list[str] | None, folder: Path, several_heads: bool,
                        flag: str = "--manifests") -> dict[str, Path]:
    """`LABEL=PATH` pairs; without any, the standard manifest of every colour space found in `folder`. A comparison
    needs two colour spaces, or one with several heads (each compared with the frame head)."""
    what = "two colour spaces or more, or one colour space with several heads (--heads frame smooth temporal)"
    if not values:
        found = standard_manifests(folder)
        if len(found) < (1 if several_heads else 2):
            raise EmoNetError(f"--manifests: a comparison needs {what}; found {', '.join(found) or 'none'} of the "
                              f"standard manifests in {folder} (features_manifest.json, features_hsv_manifest.json, ...); "
                              "extract the features of each space first, or pass LABEL=PATH pairs")
        logger.info("no --manifests: comparing the standard manifests found in %s: %s", folder,
                    ", ".join(f"{s}={p.name}" for s, p in found.items()))
        return found
    out: dict[str, Path] = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise EmoNetError(f"{flag} {value!r}: expected LABEL=PATH, e.g. rgb=features_manifest.json")
        if label in out:
            raise EmoNetError(f"{flag}: the label {label!r} is given twice")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", label):
            raise EmoNetError(f"{flag} {value!r}: a label is letters, digits, - and _ (it names folders and columns)")
        out[label] = Path(path)
    if len(out) < 2 and not several_heads:
        raise EmoNetError(f"--manifests: a comparison needs {what}: add another space's manifest (e.g. "
                          f"hsv=features_hsv_manifest.json), or compare heads on {next(iter(out))} with --heads frame "
                          "smooth temporal")
    return out


@dataclass
class CommonFrames:
    """The frames every space is scored on, in one order, and where each space's manifest holds them."""

    samples: SampleColumns  # clip, frame, actor, valence, arousal on AFEW-VA's scale, and split where the dataset has one
    positions: dict[str, np.ndarray]  # label -> indices into that manifest's samples
    dropped: dict[str, int]  # label -> frames of its manifest left out (common_frames)
    dataset: str  # the dataset every manifest comes from

    @property
    def official(self) -> bool:
        """Whether the dataset has an official training / validation split, on which the comparison is scored."""
        return any(s.get("split") for s in self.samples[:1])


def _key(sample: dict) -> tuple[str, str]:
    return sample["clip"], sample["frame"]


def check_manifests(manifests: dict[str, Manifest], common_frames: bool) -> CommonFrames:
    """Refuse manifests that do not describe the same frames with the same crop and checkpoint (or, with
    `common_frames`, keep the frames they all have); labels must agree where frames are shared."""
    for label, m in manifests.items():
        if "color_space" in m.settings and m.settings["color_space"] != label:
            raise EmoNetError(f"--manifests {label}={m.path}: that manifest holds {m.settings['color_space']!r} "
                              f"features, not {label!r}")
    datasets = {label: m.dataset for label, m in manifests.items()}
    if len(set(datasets.values())) > 1:
        raise EmoNetError(f"the manifests come from different datasets ({', '.join(f'{k} {v}' for k, v in datasets.items())}): "
                          "every colour space is trained and scored on one dataset; another corpus is scored with "
                          "--test_manifests")
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
    del keys
    order = sorted(common)
    del common
    positions, samples = {}, None
    for label, m in manifests.items():
        index = {_key(s): i for i, s in enumerate(m.samples)}
        positions[label] = np.array([index[k] for k in order], dtype=np.int64)
        del index
        chosen = [m.samples[i] for i in positions[label]]
        if samples is None:
            samples = chosen
            continue
        differ = [f"{s['clip']}/{s['frame']}" for s, t in zip(samples, chosen, strict=True)
                  if (s["valence"], s["arousal"]) != (t["valence"], t["arousal"])]
        if differ:
            raise EmoNetError(f"{label}: {len(differ)} frames carry other labels than in the first manifest "
                              f"(e.g. {differ[0]}); these are not the same frames")
    first = next(iter(manifests.values()))
    columns = SampleColumns(samples)
    if first.label_scale != LABEL_SCALE:  # every figure on AFEW-VA's scale, as load_feature_set puts the labels
        for dim in ("valence", "arousal"):
            columns.columns[dim] *= LABEL_SCALE / first.label_scale
    dropped = {label: len(m.samples) - len(order) for label, m in manifests.items()}
    if common_frames and any(dropped.values()):
        logger.warning("--common_frames: %d frames kept; dropped %s", len(order),
                       ", ".join(f"{n} of {label}" for label, n in dropped.items()))
    return CommonFrames(columns, positions, dropped, first.dataset)


def frames_sha256(samples: list[dict]) -> str:
    """What a unit learns from and is scored on, whatever folder or path string the files came from: every frame's
    clip, number and labels, in order."""
    text = "\n".join(f"{s['clip']}/{s['frame']} {float(s['valence']):g} {float(s['arousal']):g}" for s in samples)
    return hashlib.sha256(text.encode()).hexdigest()


def feature_identity(manifest: Manifest, samples: list[dict]) -> dict:
    """A head unit's input, by content: the settings that define the features, and the frames. The manifest's
    path and its other settings (the path string of the checkpoint, say) are left out on purpose."""
    return {"features": {k: manifest.settings.get(k) for k in FEATURE_IDENTITY_KEYS},
            "frames_sha256": frames_sha256(samples)}


def load_space(path: Path, common: CommonFrames, space: str, progress: bool) -> FeatureSet:
    """One space's features in the comparison's frame order, its manifest read again (it must still list the frames
    `check_manifests` saw there)."""
    manifest = read_manifest(path)
    p = common.positions[space]
    if len(p) and (int(p.max()) >= len(manifest.samples) or any(
            _key(manifest.samples[i]) != _key(s) for i, s in zip(p.tolist(), common.samples, strict=True))):
        raise EmoNetError(f"{path}: the manifest changed while the comparison ran (it lists other frames than when it "
                          "was checked); rerun the comparison")
    data = load_feature_set(manifest, progress=progress)
    del manifest
    if np.array_equal(p, np.arange(len(data.features))):  # the usual case: no copy of the features
        return FeatureSet(common.samples, data.features, data.labels, data.emonet_va)
    return FeatureSet(common.samples, data.features[p], data.labels[p], None if data.emonet_va is None else data.emonet_va[p])


def read_manifests(paths: dict[str, Path]) -> dict[str, Manifest]:
    return {label: read_manifest(path) for label, path in paths.items()}


def without_samples(manifests: dict[str, Manifest]) -> dict[str, Manifest]:
    """The manifests' paths and settings, their sample lists let go: after `check_manifests` the comparison holds one
    list of samples (`CommonFrames.samples`), not one a space (1.2 GB each at Aff-Wild2's 2.8 million frames)."""
    return {label: Manifest(m.path, m.settings, []) for label, m in manifests.items()}


def check_feature_files(manifests: dict[str, Manifest]) -> None:
    """Open every feature file of every space (its zip directory only) before the first unit trains: the features are
    read one space at a time, and a missing or truncated file of the last space must stop the command at once, not
    after hours of the other spaces' units."""
    for m in manifests.values():
        for path in dict.fromkeys(s["path"] for s in m.samples):
            check_feature_file(m.resolve({"path": path}), m.path)


# -- folds -------------------------------------------------------------------------------------------------------
def make_folds(samples: list[dict], group_by: str, folds: int, seed: int, repeats: int = 1,
               official: bool = False) -> dict:
    """The folds shared by every colour space and head: `{"group_by": clip or actor (what a fold keeps whole),
    "seed", "folds": repetition 0's partition, "repeats": [{"seed": seed + r, "folds": [[ids of fold 0], ...]}, ...]}`.

    `official` (Aff-Wild2, AffectNet): no cross-validation; one "fold", the dataset's official validation split, and
    every repetition trains on its official training split (`"train"`), with its own seed for the inner split,
    initialisation and order: `{"protocol": "official", ..., "repeats": [{"seed", "train": [ids], "folds": [[ids]]}]}`.
    """
    if not official:
        drawn = [{"seed": seed + r, "folds": assign_folds(samples, group_by, folds, seed + r)} for r in range(repeats)]
        return {"group_by": group_by, "seed": seed, "folds": drawn[0]["folds"], "repeats": drawn}
    train, validation = official_sides(samples, group_by)
    drawn = [{"seed": seed + r, "train": train, "folds": [validation]} for r in range(repeats)]
    return {"protocol": OFFICIAL, "group_by": group_by, "seed": seed, "folds": drawn[0]["folds"], "repeats": drawn}


def scored_samples(folds: dict, samples: list[dict]) -> list[dict]:
    """The samples a comparison scores: all of them under cross-validation, the official validation split's under the
    official protocol."""
    if folds.get("protocol") != OFFICIAL:
        return samples
    scored = set(folds["folds"][0])
    return [s for s in samples if sample_key(s, grouping(folds)) in scored]


def grouping(folds: dict) -> str:
    """What the folds keep whole (clip or actor); folds.json of earlier versions called it `unit`."""
    return folds.get("group_by") or folds["unit"]


def recorded_folds(output_dir: Path) -> dict:
    """The settings a finished comparison's folds.json holds ({} without one): folds (None under an official split:
    one fixed test set), split and seed."""
    path = output_dir / FOLDS_FILE
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    return {"folds": None if stored.get("protocol") == OFFICIAL else len(stored["folds"]), "split": grouping(stored),
            "seed": stored.get("seed")}


def claim_folds(output_dir: Path, folds: dict, write: bool) -> dict:
    """Write `folds.json`, or check that the one there is the same comparison: same unit, seed and partitions for
    the repetitions both hold. A larger --repeats extends it; the returned folds hold every repetition known."""
    path = output_dir / FOLDS_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        stored_repeats = stored.get("repeats") or [{"seed": stored.get("seed"), "folds": stored.get("folds")}]
        shared = min(len(stored_repeats), len(folds["repeats"]))
        if ((grouping(stored), stored.get("seed"), stored.get("folds")) != (grouping(folds), folds["seed"], folds["folds"])
                or stored_repeats[:shared] != folds["repeats"][:shared]):
            raise EmoNetError(f"{path} holds other folds (another frame list, --split, --folds or --seed): {output_dir} "
                              "belongs to another comparison; choose another --output_dir")
        if len(stored_repeats) >= len(folds["repeats"]):
            return {**folds, "repeats": stored_repeats}
    if write:
        write_json(path, folds)
    return folds


def unit_split(folds: dict, unit: Unit, inner_val_split: float) -> dict:
    """The split of a unit: the other folds of its repetition train (less the inner validation units)."""
    repetition = folds["repeats"][unit.repeat]
    if folds.get("protocol") == OFFICIAL:
        return split_with_inner(grouping(folds), repetition["seed"], repetition["train"], repetition["folds"][0],
                                inner_val_split, val_split=None, folds=1, fold=0, protocol=OFFICIAL)
    train = sorted(u for j, fold in enumerate(repetition["folds"]) if j != unit.fold for u in fold)
    return split_with_inner(grouping(folds), repetition["seed"], train, repetition["folds"][unit.fold], inner_val_split,
                            val_split=None, folds=len(repetition["folds"]), fold=unit.fold)


def unit_args(args, folds: dict, unit: Unit, names: tuple[str, ...]) -> SimpleNamespace:
    """The training flags of a unit, as the training script would hold them (its checkpoints resume there too)."""
    values = {n: getattr(args, n) for n in names if hasattr(args, n)}
    values.update(split=grouping(folds), val_split=None, folds=len(folds["folds"]), fold=unit.fold,
                  seed=args.seed + unit.repeat, head=unit.head, save_freq=args.save_freq,
                  keep_checkpoints=args.keep_checkpoints, no_progress=args.no_progress)
    if unit.head != "temporal":
        values["clips_per_batch"] = None
    return SimpleNamespace(**values)


def fingerprint(approach: str, unit: Unit, split: dict, training: SimpleNamespace, names, source: dict,
                head: dict) -> dict:
    return {"approach": approach, "space": unit.space, "head": head, "repeat": unit.repeat, "split": split,
            "training": {n: getattr(training, n) for n in names if hasattr(training, n)}, "input": source}


# What a refusal calls each part of a fingerprint, so that it says what changed in words.
FINGERPRINT_WORDS = {
    "input.frames_sha256": "the frames or their labels",
    "input.features.crop": "the features' crop",
    "input.features.precision": "the features' precision",
    "input.features.image_size": "the features' image size",
    "input.features.color_space": "the features' colour space",
    "input.features.pretrained_sha256": "the EmoNet checkpoint that made the features",
    "input.pretrained_sha256": "the EmoNet checkpoint",
    "input.processes": "the number of processes (the global batch)",
    "split": "the split (its folds or inner validation clips)",
    "head": "the head's configuration",
    "approach": "the approach",
    "space": "the colour space",
    "repeat": "the repetition",
}


def _words(key: str) -> str:
    if key.startswith("training."):
        return f"--{key.removeprefix('training.')}"
    return next((w for k, w in FINGERPRINT_WORDS.items() if key == k or key.startswith(k + ".")), key)


def _shown(value) -> str:
    text = repr(value)
    return text[:14] + "...'" if isinstance(value, str) and len(value) == 64 else text  # a sha256: its start


def differences(before: dict, after: dict, prefix: str = "") -> list[str]:
    """The parts of two fingerprints that differ, in words: `--learning_rate 0.001 -> 0.01`."""
    out = []
    for k in sorted(set(before) | set(after)):
        a, b = before.get(k), after.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            words = _words(prefix + k)
            out.append(f"{words} differs" if isinstance(a, (list, dict)) or isinstance(b, (list, dict))
                       else f"{words} {_shown(a)} -> {_shown(b)}")
    return list(dict.fromkeys(out))  # the split's sides each differ: say it once


def unit_state(folder: Path, expected: dict, model_type: str, epochs: int) -> tuple[str, dict | None]:
    """("done", None), ("predict", None) when training is complete but not its predictions, ("resume", ckpt)
    or ("new", None); refuses a unit made with other settings, naming them."""
    stored = read_fingerprint(folder)
    if stored is not None:
        check_same_settings(folder, stored, expected, "made")
        return "done", None
    last = folder / "last.pth"
    if not last.is_file():
        return "new", None
    ckpt = load_training_checkpoint(last, model_type)
    stored = ckpt.get("unit")
    if stored is None:
        raise EmoNetError(f"{last}: not a unit of a comparison (no fingerprint); use another --output_dir")
    stored = {**stored, "training": {**stored["training"], "epochs": epochs}}  # an interrupted unit may train longer
    check_same_settings(folder, stored, expected, "started")
    return ("predict", None) if int(ckpt["epoch"]) >= epochs else ("resume", ckpt)


def check_same_settings(folder: Path, stored: dict, expected: dict, verb: str) -> None:
    if "head" not in stored:
        raise EmoNetError(f"{folder}: this unit was {verb} by an earlier version of compare_color_spaces.py, which "
                          "recorded its input differently; use another --output_dir")
    if stored != expected:
        raise EmoNetError(f"{folder}: this unit was {verb} with other settings ({'; '.join(differences(stored, expected))}); "
                          "refusing to mix them. Use another --output_dir")


def _unit_record(folder: Path) -> dict | None:
    """A finished unit's unit.json (fingerprint, frames, source), None for an unfinished one."""
    marker = folder / UNIT_FILE
    return json.loads(marker.read_text()) if marker.is_file() else None


def read_fingerprint(folder: Path) -> dict | None:
    """The fingerprint of a finished unit, None for an unfinished one."""
    record = _unit_record(folder)
    return record["fingerprint"] if record else None


def unit_source(folder: Path) -> str | None:
    """Where a finished unit's input came from (a manifest's path, the dataset root), as it recorded it."""
    return _unit_record(folder).get("source")


def finished_units(output_dir: Path) -> list[tuple[Unit, dict]]:
    """Every finished unit of a comparison folder, as (unit, its unit.json), identified by what it recorded (its
    space, head, repetition and fold), in unit order."""
    found = []
    for marker in output_dir.rglob(UNIT_FILE) if output_dir.is_dir() else ():
        record = json.loads(marker.read_text())
        fp = record.get("fingerprint", {})
        if "head" not in fp:  # an earlier version's unit: refused, in words, when it is checked
            continue
        unit = Unit(fp["repeat"], fp["space"], fp["head"]["kind"], fp["split"]["fold"])
        if unit.folder(output_dir) == marker.parent:
            found.append((unit, record))
    return sorted(found, key=lambda pair: pair[0])


def _finish_unit(folder: Path, samples: list[dict], pred: np.ndarray, zero_shot: np.ndarray | None,
                 fp: dict, source_path: str | None) -> None:
    # `source` (the manifest's path, say) is for a reader, not part of the fingerprint.
    write_predictions(folder / UNIT_PREDICTIONS, folder / UNIT_FILE, samples, pred, zero_shot,
                      {"fingerprint": fp, "frames": len(samples), "source": source_path})


def write_predictions(table: Path, record_path: Path, samples: list[dict], pred: np.ndarray, zero_shot: np.ndarray | None,
                      record: dict) -> None:
    """A unit's predictions of `samples` (PREDICTION_COLUMNS, raw scale), then `record`, last: its presence means the
    predictions are complete."""
    zero = zero_shot if zero_shot is not None else np.full((len(samples), 2), np.nan)
    frame = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
                          "valence_pred": pred[:, 0], "arousal_pred": pred[:, 1],
                          "valence_zero_shot": zero[:, 0], "arousal_zero_shot": zero[:, 1]}, columns=PREDICTION_COLUMNS)
    write_text(table, frame.to_csv(index=False, float_format=lambda v: repr(float(v))))
    write_json(record_path, record)


def _done(state: str, best: dict, held_out: int) -> str:
    """One line on a unit: what was done, the epoch chosen on the inner split, the frames predicted."""
    action = {"new": "trained", "resume": "resumed and trained", "predict": "predicted"}[state]
    sigma = best["history"][best["best_epoch"] - 1].get("sigma")
    return (f"{action}: epoch {best['best_epoch']}{f' and sigma {sigma:g}' if sigma is not None else ''} chosen "
            f"(inner-validation mean CCC {number(best['best_metric'])}), {held_out} held-out frames predicted")


# -- head units --------------------------------------------------------------------------------------------------
@dataclass
class HeadComparison:
    """What every head unit of one command shares: folders, folds, flags, the frames, and the features of the one
    colour space whose units are being trained (`use`)."""

    output_dir: Path
    folds: dict
    args: object
    spaces: list[str]
    common: CommonFrames
    sources: dict[str, dict]  # space -> feature_identity
    manifests: dict[str, Manifest]  # paths and settings (`without_samples`)
    device: torch.device
    progress: bool = False
    datasets: dict[str, FeatureSet] = field(default_factory=dict)  # the space in memory

    def use(self, space: str) -> None:
        """Hold `space`'s features, in the comparison's frame order, and no other space's: memory is one space's (2.9 GB
        at Aff-Wild2's size), however many spaces are compared."""
        if space in self.datasets:
            return
        self.datasets.clear()
        self.datasets[space] = load_space(self.manifests[space].path, self.common, space, self.progress)

    def plan(self, unit: Unit) -> tuple[dict, SimpleNamespace, dict]:
        split = unit_split(self.folds, unit, self.args.inner_val_split)
        training = unit_args(self.args, self.folds, unit, (*HEAD_TRAINING_ARGS, "inner_val_split"))
        return split, training, fingerprint("head", unit, split, training, HEAD_TRAINING_ARGS, self.sources[unit.space],
                                            head_config(unit.head, training))

    def expected(self, unit: Unit) -> dict:
        return self.plan(unit)[2]

    def head_unit(self, unit: Unit, resumed: dict | None) -> HeadUnit:
        split, training, fp = self.plan(unit)
        manifest = self.manifests[unit.space]
        meta = {"model_type": MODEL_TYPES["head"], "args": vars(training), "split": split, "unit": fp,
                "head": head_config(unit.head, training), "model_args": model_args(unit.head, training),
                "settings": {**manifest.settings, "color_space": unit.space,
                             "manifest_file": str(manifest.path.resolve()),
                             "data_root": str(manifest.path.resolve().parent)}}
        return HeadUnit(unit.folder(self.output_dir), unit.head, self.spaces.index(unit.space),
                        split_indices(self.common.samples, split), training.seed, meta, resumed)

    def finish(self, unit: Unit, state: str) -> str:
        """Predict the held-out fold with the unit's chosen model; returns the unit's line."""
        folder = unit.folder(self.output_dir)
        split, _, fp = self.plan(unit)
        data = self.datasets[unit.space]
        indices = split_indices(data.samples, split)
        best = load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["head"])
        held_out = data.samples[indices.val]
        zero_shot = None if data.emonet_va is None else data.emonet_va[indices.val] * LABEL_SCALE
        with intra_op_threads(HEAD_THREADS):
            pred = HeadPredictor.from_checkpoint(best).predict(data.features[indices.val], held_out, self.device)
        _finish_unit(folder, held_out, pred, zero_shot, fp, str(self.manifests[unit.space].path.resolve()))
        return _done(state, best, len(held_out))


# The comparison a forked worker process inherits (set before the pool starts; never pickled).
_SHARED: HeadComparison | None = None


def _train_item(item: list[tuple[Unit, str, dict | None]], progress: bool = False) -> list[tuple[str, str]]:
    """Train and finish the units of one work item (a batch of frame/smooth units of one space, or one temporal unit)."""
    comparison = _SHARED
    training = [(u, s, c) for u, s, c in item if s in ("new", "resume")]
    if training:
        args = unit_args(comparison.args, comparison.folds, training[0][0], HEAD_TRAINING_ARGS)
        train_heads([comparison.head_unit(u, c) for u, _, c in training],
                    [comparison.datasets.get(s) for s in comparison.spaces], args, comparison.device, progress=progress)
    return [(u.label, comparison.finish(u, s)) for u, s, _ in item]


def _init_worker() -> None:
    # Ctrl-C is the main process's to handle: it ends the workers itself (see `_run_items`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(HEAD_THREADS)


def default_workers(dist: Distributed) -> int:
    """Worker processes for head units: every core of a plain CPU run (one per core: a head step runs on one
    thread), one under torchrun (its processes are the workers) or on a GPU."""
    if dist.is_distributed or dist.device.type != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_head_units(comparison: HeadComparison, units: list[Unit], workers: int, progress: bool) -> list[str]:
    """Train, select and predict `units`; returns one line per unit, in the order of `units`.

    One colour space at a time (its features loaded, the others' not): its frame and smooth units that need training
    are dealt into `workers` batches, its temporal units are one item each; with several workers the items run in
    forked processes (each with one intra-op thread), which share the space's features with the parent.
    """
    global _SHARED
    states = []
    for unit in units:
        state, resumed = unit_state(unit.folder(comparison.output_dir), comparison.expected(unit), MODEL_TYPES["head"],
                                    comparison.args.epochs)
        states.append((unit, state, resumed))
    lines = {u.label: "skipped (finished)" for u, s, _ in states if s == "done"}
    todo = [t for t in states if t[1] != "done"]
    _SHARED = comparison
    try:
        with tqdm(total=len(todo), unit="unit", desc="units", disable=not progress or workers <= 1) as bar:
            def finished(done: list[tuple[str, str]]) -> None:
                lines.update(done)
                bar.update(len(done))

            for space in dict.fromkeys(u.space for u, _, _ in todo):
                comparison.use(space)
                mine = [t for t in todo if t[0].space == space]
                stacked = [t for t in mine if t[0].head != "temporal"]
                items = [[stacked[i] for i in chunk]
                         for chunk in np.array_split(np.arange(len(stacked)), max(1, min(workers, len(stacked)))) if len(chunk)]
                items += [[t] for t in mine if t[0].head == "temporal"]
                if workers <= 1 or len(items) <= 1:
                    for item in items:
                        finished(_train_item(item, progress))
                else:
                    _run_items(items, min(workers, len(items)), finished)
    finally:
        _SHARED = None
    return [f"{u.label} {lines[u.label]}" for u in units]


def _run_items(items: list, workers: int, finished) -> None:
    """Train `items` in `workers` forked processes, calling `finished` with what `_train_item` returns for each item
    as it finishes.

    Ctrl-C: the first says so at once and ends the workers (the units in flight stop where they are: each resumes
    from its last.pth, and every finished unit is kept); a second, while they are being ended, kills them and exits.
    """
    context = multiprocessing.get_context("fork")  # the workers inherit the features instead of receiving a copy
    pool = context.Pool(workers, initializer=_init_worker)
    try:
        for done in pool.imap_unordered(_train_item, items):
            finished(done)
        pool.close()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            logger.warning("stopping: ending the units in flight (finished units are kept; a second Ctrl-C aborts at once)")
        previous = signal.signal(signal.SIGINT, _abort)
        try:
            pool.terminate()
        finally:
            signal.signal(signal.SIGINT, previous)
        raise
    finally:
        pool.join()


def _abort(signum, frame) -> None:
    """A second Ctrl-C while the workers are being ended: kill them and leave at once."""
    for child in multiprocessing.active_children():
        child.kill()
    os._exit(130)


# -- fine-tuning units -------------------------------------------------------------------------------------------
def finetune_source(frames: list[Frame], pretrained_sha256: str, processes: int) -> dict:
    return {"frames_sha256": frames_sha256([f.sample() for f in frames]), "pretrained_sha256": pretrained_sha256,
            "processes": processes}


def finetune_plan(unit: Unit, folds: dict, args, source: dict) -> tuple[dict, SimpleNamespace, dict]:
    split = unit_split(folds, unit, args.inner_val_split)
    training = unit_args(args, folds, unit, (*FINETUNE_TRAINING_ARGS, "inner_val_split", "pretrained_path", "num_workers"))
    training.color_space = unit.space
    return split, training, fingerprint("finetune", unit, split, training, FINETUNE_TRAINING_ARGS, source,
                                        {"kind": DEFAULT_HEAD})


def run_finetune_unit(output_dir: Path, unit: Unit, frames: list[Frame], source: dict, dataset_root: Path, folds: dict,
                      args, dist: Distributed) -> str:
    """Fine-tune, select and predict one unit of the fine-tuning comparison (every process of a torchrun job
    takes part; rank 0 writes); returns what was done."""
    folder = unit.folder(output_dir)
    split, training, fp = finetune_plan(unit, folds, args, source)
    state, resumed = unit_state(folder, fp, MODEL_TYPES["finetune"], args.epochs)
    if state == "done":
        return "skipped (finished)"
    samples = [f.sample() for f in frames]
    indices = split_indices(samples, split)
    if state in ("new", "resume"):
        meta = {"model_type": MODEL_TYPES["finetune"], "args": vars(training), "split": split, "unit": fp,
                "settings": {"color_space": unit.space, "crop": args.crop, "pretrained_path": args.pretrained_path,
                             "pretrained_sha256": source["pretrained_sha256"], "freeze_backbone": args.freeze_backbone,
                             "augment": args.augment, "dataset_root": str(dataset_root), "dataset": args.dataset},
                "world_size": dist.world_size, "global_batch_size": dist.world_size * args.batch_size}
        finetune_emonet(frames, indices, training, folder, meta, resumed, dist)
    dist.barrier()  # rank 0 has written best_model.pth
    held_out = [frames[i] for i in indices.val]
    pred, zero = (_predict_frames(path, held_out, unit.space, args, dist)
                  for path in (folder / "best_model.pth", Path(args.pretrained_path)))
    failed = np.isnan(pred).any(axis=1) | np.isnan(zero).any(axis=1)  # undecodable frames: left out, listed
    if dist.is_main:
        if failed.any():
            logger.warning("%s: %d held-out frames could not be decoded and are left out", folder, int(failed.sum()))
        kept = [samples[i] for i, bad in zip(indices.val, failed, strict=True) if not bad]
        _finish_unit(folder, kept, pred[~failed], zero[~failed], fp, str(dataset_root))
    return _done(state, load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["finetune"]), len(held_out))


def _predict_frames(weights: Path, frames: list[Frame], space: str, args, dist: Distributed) -> np.ndarray:
    model, _ = load_emonet(weights, dist.device)
    pred, _ = predict_frames(model, frames, space, args.crop, dist.device, args.batch_size, args.num_workers, args.amp,
                             args.flip_tta, progress=not args.no_progress and dist.is_main, dist=dist)
    return pred * LABEL_SCALE


# -- collecting the units ------------------------------------------------------------------------------------------
def prediction_column(space: str, head: str) -> str:
    """The prefix of a (space, head)'s columns in oof_predictions.csv: <space> for the frame head, else <space>_<head>."""
    return space if head == DEFAULT_HEAD else f"{space}_{head}"


def collect_predictions(output_dir: Path, units: list[Unit], folds: dict, samples: list[dict],
                        repeats: int) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The out-of-fold predictions of every unit: one frame per repetition with columns clip, frame, fold,
    valence_true, arousal_true, then <column>_valence, <column>_arousal per (space, head); and EmoNet's
    zero-shot output per space (repetition 0's units, from which every repetition's is the same)."""
    missing = [u.label for u in units if not (u.folder(output_dir) / UNIT_FILE).is_file()]
    if missing:
        raise EmoNetError(f"{len(missing)} units are not finished ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}); "
                          "run them (--only UNIT, or without --report_only) before the report")
    base = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples],
                         "valence_true": [float(s["valence"]) for s in samples],
                         "arousal_true": [float(s["arousal"]) for s in samples]})
    unit_key = [sample_key(s, grouping(folds)) for s in samples]
    model = []
    for r in range(repeats):
        fold_of = {u: k for k, fold in enumerate(folds["repeats"][r]["folds"]) for u in fold}
        frame = base.copy()
        frame.insert(2, "fold", [fold_of[k] for k in unit_key])
        model.append(frame)
    zero = model[0].copy()
    for (r, space, head), group in unit_groups(units).items():
        table = pd.concat([pd.read_csv(u.folder(output_dir) / UNIT_PREDICTIONS, dtype={"clip": str, "frame": str})
                           for u in group])
        table = base[["clip", "frame"]].merge(table, on=["clip", "frame"], how="left", validate="one_to_one")
        column = prediction_column(space, head)
        for dim in ("valence", "arousal"):
            model[r][f"{column}_{dim}"] = table[f"{dim}_pred"].to_numpy()
            if r == 0 and head == units[0].head:
                zero[f"{space}_{dim}"] = table[f"{dim}_zero_shot"].to_numpy()
    return model, zero


def group_indices(samples: list[dict], group_by: str) -> np.ndarray:
    """The bootstrap unit of each sample: the index of its clip (or actor) among the sorted ones."""
    ids = {k: i for i, k in enumerate(sorted({sample_key(s, group_by) for s in samples}))}
    return np.array([ids[sample_key(s, group_by)] for s in samples], dtype=np.int64)


def unit_groups(units: list[Unit]) -> dict[tuple[int, str, str], list[Unit]]:
    """The units of each (repetition, space, head), in the order of `units`."""
    groups: dict[tuple[int, str, str], list[Unit]] = {}
    for u in units:
        groups.setdefault((u.repeat, u.space, u.head), []).append(u)
    return groups
