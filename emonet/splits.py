"""Train/validation splits of AFEW-VA frames, and the audit that shows when a split leaks.

AFEW-VA is video: neighbouring frames of a clip are nearly identical and carry nearly the same labels.
A random frame-level split puts copies of validation frames into training; on the real labels, copying
the label of the nearest training frame of the same clip then scores PCC 0.996. Splits are therefore
made by clip (default) or by actor; `frame` exists to reproduce the seed's protocol, and its leak is
measured and reported by `leakage_check`.

A sample is a dict with at least `clip`, `frame` and (for actor splits) `actor`.
"""
import logging
from dataclasses import dataclass

import numpy as np

from .constants import DEFAULT_VAL_SPLIT, OFFICIAL, SPLIT_MODES
from .errors import DatasetError
from .metrics import ccc, pcc

logger = logging.getLogger(__name__)

# A dataset's official split (Aff-Wild2, AffectNet), as the samples' "split" values: training and validation.
OFFICIAL_SIDES = ("train", "validation")
SIDES = ("train", "inner_val", "val")
# The inner split draws from its own stream of the seed, so that it does not disturb the outer split.
INNER_SPLIT_STREAM = 1


def sample_key(sample: dict, mode: str) -> str:
    """The unit a split assigns to one side: the clip, the actor, or the frame itself."""
    if mode == "clip":
        return sample["clip"]
    if mode == "actor":
        return sample["actor"]
    if mode == "frame":
        return f"{sample['clip']}/{sample['frame']}"
    raise ValueError(f"unknown split mode {mode!r}; choose one of {', '.join(SPLIT_MODES)}")


def unit_frame_counts(samples: list[dict], mode: str) -> dict[str, int]:
    """Frames per unit (clip, actor or frame) of `samples`."""
    counts: dict[str, int] = {}
    for s in samples:
        key = sample_key(s, mode)
        counts[key] = counts.get(key, 0) + 1
    return counts


def assign_folds(samples: list[dict], mode: str, folds: int, seed: int) -> list[list[str]]:
    """Group K-fold: units shuffled with `seed`, then dealt largest first to the fold with the fewest frames
    so far, so that folds hold about equal frame counts. Returns K sorted lists of unit ids."""
    counts = unit_frame_counts(samples, mode)
    units = sorted(counts)
    if not 2 <= folds <= len(units):
        raise DatasetError(f"--folds {folds}: need 2 <= K <= {len(units)} (the number of {mode}s)")
    order = [units[i] for i in np.random.default_rng(seed).permutation(len(units))]
    load = np.zeros(folds)
    assignment: list[list[str]] = [[] for _ in range(folds)]
    for unit in sorted(order, key=lambda u: -counts[u]):  # stable: ties keep the seeded order
        k = int(np.argmin(load))
        assignment[k].append(unit)
        load[k] += counts[unit]
    return [sorted(fold) for fold in assignment]


def _hold_out(units: list[str], fraction: float, rng: np.random.Generator) -> set[str]:
    """A seeded `fraction` of `units` (at least one, and at least one left over)."""
    n = min(max(1, round(fraction * len(units))), len(units) - 1)
    return {units[i] for i in rng.permutation(len(units))[:n]}


def make_split(samples: list[dict], mode: str = "clip", val_split: float | None = DEFAULT_VAL_SPLIT, seed: int = 0,
               folds: int | None = None, fold: int | None = None, inner_val_split: float | None = None) -> dict:
    """Assign whole clips (or actors, or frames) to train, inner_val or val.

    Holdout: a seeded random `val_split` fraction of the units goes to val. K-fold (`folds`=K, `fold`=i):
    see `assign_folds`; fold i is val. With `inner_val_split`, that fraction of the remaining units becomes
    `inner_val`, on which the best epoch is chosen; val is then untouched until evaluation.
    Returns a JSON-ready dict: mode, seed, val_split, folds, fold, inner_val_split and the sorted `train`,
    `inner_val` and `val` unit lists.
    """
    if mode == "actor" and not all(s.get("actor") for s in samples):
        raise DatasetError("--split actor needs every sample's actor; this manifest lacks them "
                           "(the seed's manifest format has no actors: re-extract, or split by clip)")
    units = sorted(unit_frame_counts(samples, mode))
    if len(units) < 2:
        raise DatasetError(f"cannot split {len(units)} {mode}(s) into train and validation")
    if folds is not None:
        if fold is None or not 0 <= fold < folds:
            raise DatasetError(f"--folds {folds} --fold {fold}: need 0 <= i < K")
        val = set(assign_folds(samples, mode, folds, seed)[fold])
        val_split = None
    else:
        val_split = DEFAULT_VAL_SPLIT if val_split is None else val_split
        if not 0 < val_split < 1:
            raise DatasetError(f"--val_split {val_split}: must be between 0 and 1")
        val = _hold_out(units, val_split, np.random.default_rng(seed))
    return split_with_inner(mode, seed, sorted(set(units) - val), sorted(val), inner_val_split,
                            val_split=val_split, folds=folds, fold=fold)


def official_sides(samples: list[dict], mode: str) -> tuple[list[str], list[str]]:
    """The units (clips or actors) of a dataset's official training and validation splits (the samples' `split`:
    `OFFICIAL_SIDES`); a unit with frames in both is refused."""
    if mode not in ("clip", "actor"):
        raise DatasetError(f"--split {mode}: the official split keeps clips or actors whole; use clip or actor")
    if mode == "actor" and not all(s.get("actor") for s in samples):
        raise DatasetError("--split actor: some frames have no actor (AffectNet's images have none); split by clip")
    train, val = (sorted({sample_key(s, mode) for s in samples if s.get("split") == side}) for side in OFFICIAL_SIDES)
    both = set(train) & set(val)
    if both:
        raise DatasetError(f"--split {mode}: {len(both)} {mode}s have frames in both official splits (e.g. "
                           f"{sorted(both)[0]}); split by clip")
    if not train or not val:
        raise DatasetError(f"the data hold {len(train)} {mode}s of the official training split and {len(val)} of its "
                           "validation split: training takes the one and scores the other; extract both")
    return train, val


def official_split(samples: list[dict], mode: str, seed: int, inner_val_split: float | None) -> dict:
    """The split of a dataset's official sides (`official_sides`), `inner_val` carved out of the training side."""
    return split_with_inner(mode, seed, *official_sides(samples, mode), inner_val_split, val_split=None, folds=None,
                            fold=None, protocol=OFFICIAL)


def split_with_inner(mode: str, seed: int, train: list[str], val: list[str], inner_val_split: float | None,
                     **record) -> dict:
    """The split dict for given train and val units, carving `inner_val` out of train when asked."""
    inner: set[str] = set()
    if inner_val_split is not None:
        if len(train) < 2:
            raise DatasetError(f"--inner_val_split needs at least 2 training {mode}s, found {len(train)}")
        inner = _hold_out(train, inner_val_split, np.random.default_rng([seed, INNER_SPLIT_STREAM]))
    return {"mode": mode, "seed": seed, **record, "inner_val_split": inner_val_split,
            "train": sorted(set(train) - inner), "inner_val": sorted(inner), "val": sorted(val)}


@dataclass(frozen=True)
class SplitIndices:
    """Sample indices of each side of a split. `selection` is where the best epoch is chosen."""

    train: np.ndarray
    inner_val: np.ndarray
    val: np.ndarray

    @property
    def selection(self) -> np.ndarray:
        return self.inner_val if len(self.inner_val) else self.val


def selection_side(split: dict) -> str:
    """The side of a stored split on which the best epoch was chosen."""
    return "inner_val" if split.get("inner_val") else "val"


def split_indices(samples: list[dict], split: dict) -> SplitIndices:
    """Indices of `samples` on each side of a split made by `make_split`.

    Samples whose unit is on no side (clips left out by --limit when the split was made, say) belong
    to none: they are left out, with a warning. A split that matches no sample at all is an error.
    """
    sides = {side: set(split.get(side, ())) for side in SIDES}
    keys = [sample_key(s, split["mode"]) for s in samples]
    known = set().union(*sides.values())
    unknown = sorted({k for k in keys if k not in known})
    if unknown:
        logger.warning("%d %s(s) of the data are not in the stored split (e.g. %s); they are left out",
                       len(unknown), split["mode"], unknown[0])
    if len(unknown) == len(set(keys)):
        raise DatasetError(f"none of the data's {split['mode']}s is in the stored split: "
                           "the data differ from those the model was trained on")
    return SplitIndices(*(np.array([i for i, k in enumerate(keys) if k in sides[side]], dtype=np.int64)
                          for side in SIDES))


def leakage_check(train: list[dict], evaluated: list[dict]) -> dict:
    """How much the evaluated frames could be predicted by recognising their clip from training.

    `nearest_frame_oracle` predicts each evaluated frame by the label of the nearest (in frame index)
    training frame of the same clip; it is computed over the evaluated frames whose clip was seen in
    training (`frames`) and is None when there are none.
    """
    by_clip: dict[str, list[tuple[int, float, float]]] = {}
    for s in train:
        by_clip.setdefault(s["clip"], []).append((int(s["frame"]), s["valence"], s["arousal"]))
    seen_clips = {s["clip"] for s in evaluated} & set(by_clip)
    train_actors = {s.get("actor") for s in train} - {"", None}
    eval_actors = {s.get("actor") for s in evaluated} - {"", None}
    result = {
        "leak_free": not seen_clips,
        "eval_clips_seen_in_training": len(seen_clips),
        "eval_actors_seen_in_training": len(eval_actors & train_actors) if eval_actors else None,
        "nearest_frame_oracle": None,
    }
    if not seen_clips:
        return result
    table = {clip: np.array(sorted(rows)) for clip, rows in by_clip.items() if clip in seen_clips}
    truth, guess = [], []
    for s in evaluated:
        rows = table.get(s["clip"])
        if rows is None:
            continue
        position = np.searchsorted(rows[:, 0], int(s["frame"]))
        candidates = [p for p in (position - 1, position) if 0 <= p < len(rows)]
        nearest = min(candidates, key=lambda p: abs(rows[p, 0] - int(s["frame"])))
        truth.append((s["valence"], s["arousal"]))
        guess.append(rows[nearest, 1:])
    truth, guess = np.asarray(truth, dtype=float), np.asarray(guess, dtype=float)
    result["nearest_frame_oracle"] = {
        "valence_PCC": pcc(truth[:, 0], guess[:, 0]), "arousal_PCC": pcc(truth[:, 1], guess[:, 1]),
        "valence_CCC": ccc(truth[:, 0], guess[:, 0]), "arousal_CCC": ccc(truth[:, 1], guess[:, 1]),
        "frames": len(truth),
    }
    return result
