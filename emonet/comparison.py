"""The colour-space comparison's protocol: what makes its numbers defensible.

- Every colour space is scored on the same frames (manifests that differ are refused, or, with common_frames,
  restricted to the frames all of them have) and the same folds: group K-fold over clips (or actors), drawn from the
  frame list and the seed (`folds.json`); repetition r draws its own folds, inner splits, initialisations and orders
  from seed + r. A dataset with an official split is scored on it instead: one "fold", every repetition trained on
  the official training split.
- A unit is one (repetition, colour space, head, fold). It trains on the other folds, chooses its epoch (and the
  smooth head's sigma) on an inner split of its training clips, and predicts the held-out fold once. Its settings
  (`unit_training`) and input make its fingerprint: a rerun skips, resumes or refuses a unit by it
  (`comparison_records.py`, which owns the unit folders' files).

How the units are trained: `comparison_heads.py` (heads on features), `comparison_finetune.py` (EmoNet fine-tuned);
the run as a whole: `comparison_run.py`; the report: `comparison_report.py`.
"""
import hashlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .constants import DEFAULT_HEAD, LABEL_SCALE, OFFICIAL
from .errors import EmoNetError
from .feature_store import check_feature_file
from .features import FeatureSet, load_feature_set
from .finetune import FINETUNE_FIXED_ARGS
from .manifest import FEATURE_IDENTITY_KEYS, Manifest, SampleColumns, read_manifest, standard_manifests
from .settings import FinetuneConfig, HeadConfig
from .splits import assign_folds, official_sides, sample_key, split_with_inner
from .training import RESUME_FIXED_ARGS

logger = logging.getLogger(__name__)

MODEL_TYPES = {"head": "feature_head", "finetune": "emonet"}
# The settings of a unit's training run; with the split, the head, the input and the approach they make its
# fingerprint. `clips_per_batch` is the temporal head's (None for the others).
HEAD_TRAINING_ARGS = (*RESUME_FIXED_ARGS, "epochs", "dropout", "clips_per_batch")
FINETUNE_TRAINING_ARGS = (*RESUME_FIXED_ARGS, *FINETUNE_FIXED_ARGS, "epochs", "flip_tta")
# The settings a report takes from its units (with --report_only, those not given are read from them).
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
def comparison_manifests(pairs: dict[str, str] | None, folder: Path, several_heads: bool,
                         flag: str = "--manifests") -> dict[str, Path]:
    """The manifests compared, {label: path} (`settings.manifest_pairs`); without any, the standard manifest of every
    colour space found in `folder`. A comparison needs two colour spaces, or one with several heads (each compared with
    the frame head)."""
    what = "two colour spaces or more, or one colour space with several heads (--heads frame smooth temporal)"
    if not pairs:
        found = standard_manifests(folder)
        if len(found) < (1 if several_heads else 2):
            raise EmoNetError(f"--manifests: a comparison needs {what}; found {', '.join(found) or 'none'} of the "
                              f"standard manifests in {folder} (features_manifest.json, features_hsv_manifest.json, ...); "
                              "extract the features of each space first, or pass LABEL=PATH pairs")
        logger.info("no --manifests: comparing the standard manifests found in %s: %s", folder,
                    ", ".join(f"{s}={p.name}" for s, p in found.items()))
        return found
    for label, path in pairs.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", label):
            raise EmoNetError(f"{flag} {label}={path}: a label is letters, digits, - and _ (it names folders and columns)")
    if len(pairs) < 2 and not several_heads:
        raise EmoNetError(f"--manifests: a comparison needs {what}: add another space's manifest (e.g. "
                          f"hsv=features_hsv_manifest.json), or compare heads on {next(iter(pairs))} with --heads frame "
                          "smooth temporal")
    return {label: Path(path) for label, path in pairs.items()}


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


def check_heads(manifests: dict[str, Manifest], heads) -> None:
    """Refuse a head that runs along time on any manifest of single images (`Manifest.check_head`)."""
    for m in manifests.values():
        for head in heads:
            m.check_head(head)


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


def unit_split(folds: dict, unit: Unit, inner_val_split: float) -> dict:
    """The split of a unit: the other folds of its repetition train (less the inner validation units)."""
    repetition = folds["repeats"][unit.repeat]
    if folds.get("protocol") == OFFICIAL:
        return split_with_inner(grouping(folds), repetition["seed"], repetition["train"], repetition["folds"][0],
                                inner_val_split, val_split=None, folds=1, fold=0, protocol=OFFICIAL)
    train = sorted(u for j, fold in enumerate(repetition["folds"]) if j != unit.fold for u in fold)
    return split_with_inner(grouping(folds), repetition["seed"], train, repetition["folds"][unit.fold], inner_val_split,
                            val_split=None, folds=len(repetition["folds"]), fold=unit.fold)


def unit_training(base: HeadConfig | FinetuneConfig, folds: dict, unit: Unit) -> HeadConfig | FinetuneConfig:
    """A unit's training settings, as the training script would hold them (its checkpoints resume there too): the
    comparison's, with its repetition's seed and its fold; a head unit's head (the batch flag of its kind only), a
    fine-tuning unit's colour space."""
    own = ({"head": unit.head, "clips_per_batch": base.clips_per_batch if unit.head == "temporal" else None}
           if isinstance(base, HeadConfig) else {"color_space": unit.space})
    return replace(base, split=grouping(folds), val_split=None, folds=len(folds["folds"]), fold=unit.fold,
                   seed=base.seed + unit.repeat, **own)


def fingerprint(approach: str, unit: Unit, split: dict, training: HeadConfig | FinetuneConfig, names, source: dict,
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


def check_same_settings(folder: Path, stored: dict, expected: dict, verb: str) -> None:
    if "head" not in stored:
        raise EmoNetError(f"{folder}: this unit was {verb} by an earlier version of compare_color_spaces.py, which "
                          "recorded its input differently; use another --output_dir")
    if stored != expected:
        raise EmoNetError(f"{folder}: this unit was {verb} with other settings ({'; '.join(differences(stored, expected))}); "
                          "refusing to mix them. Use another --output_dir")


# -- collecting the units ------------------------------------------------------------------------------------------
def prediction_column(space: str, head: str) -> str:
    """The prefix of a (space, head)'s columns in oof_predictions.csv: <space> for the frame head, else <space>_<head>."""
    return space if head == DEFAULT_HEAD else f"{space}_{head}"


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
