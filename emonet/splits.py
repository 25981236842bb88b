"""Train/validation splits of AFEW-VA frames, and the audit that shows when a split leaks.

AFEW-VA is video: neighbouring frames of a clip are nearly identical and carry nearly the same labels.
A random frame-level split puts copies of validation frames into training; on the real labels, copying
the label of the nearest training frame of the same clip then scores PCC 0.996. Splits are therefore
made by clip (default) or by actor; `frame` exists to reproduce the seed's protocol, and its leak is
measured and reported by `leakage_check`.

A sample is a dict with at least `clip`, `frame` and (for actor splits) `actor`.
"""
import logging

import numpy as np

from .errors import DatasetError
from .metrics import ccc, pcc

logger = logging.getLogger(__name__)

SPLIT_MODES = ("clip", "actor", "frame")


def sample_key(sample: dict, mode: str) -> str:
    """The unit a split assigns to one side: the clip, the actor, or the frame itself."""
    if mode == "clip":
        return sample["clip"]
    if mode == "actor":
        return sample["actor"]
    if mode == "frame":
        return f"{sample['clip']}/{sample['frame']}"
    raise ValueError(f"unknown split mode {mode!r}; choose one of {', '.join(SPLIT_MODES)}")


def make_split(samples: list[dict], mode: str = "clip", val_split: float = 0.2, seed: int = 0,
               folds: int | None = None, fold: int | None = None) -> dict:
    """Assign whole clips (or actors, or frames) to train or val.

    Holdout: a seeded random `val_split` fraction of the units goes to val. K-fold (`folds`=K, `fold`=i):
    units are shuffled with the seed and dealt into K folds of about equal frame counts; fold i is val.
    Returns a JSON-ready dict: mode, seed, val_split, folds, fold, and the sorted `train`/`val` unit lists.
    """
    if mode == "actor" and not all(s.get("actor") for s in samples):
        raise DatasetError("--split actor needs every sample's actor; this manifest lacks them "
                           "(the seed's manifest format has no actors: re-extract, or split by clip)")
    counts: dict[str, int] = {}
    for s in samples:
        key = sample_key(s, mode)
        counts[key] = counts.get(key, 0) + 1
    units = sorted(counts)
    if len(units) < 2:
        raise DatasetError(f"cannot split {len(units)} {mode}(s) into train and validation")
    order = [units[i] for i in np.random.default_rng(seed).permutation(len(units))]
    if folds is not None:
        if fold is None or not 0 <= fold < folds or folds < 2 or folds > len(units):
            raise DatasetError(f"--folds {folds} --fold {fold}: need 2 <= K <= {len(units)} {mode}s and 0 <= i < K")
        load = np.zeros(folds)
        assignment = {}
        for unit in sorted(order, key=lambda u: -counts[u]):  # largest first, each to the lightest fold
            k = int(np.argmin(load))
            assignment[unit] = k
            load[k] += counts[unit]
        val = {u for u in units if assignment[u] == fold}
    else:
        if not 0 < val_split < 1:
            raise DatasetError(f"--val_split {val_split}: must be between 0 and 1")
        n_val = min(max(1, round(val_split * len(units))), len(units) - 1)
        val = set(order[:n_val])
    return {"mode": mode, "seed": seed, "val_split": val_split, "folds": folds, "fold": fold,
            "train": sorted(set(units) - val), "val": sorted(val)}


def split_indices(samples: list[dict], split: dict) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `samples` on the train and val sides of a split made by `make_split`.

    Samples whose unit is on neither side (clips left out by --limit when the split was made, say) belong
    to no side: they are left out, with a warning. A split that matches no sample at all is an error.
    """
    train, val = set(split["train"]), set(split["val"])
    keys = [sample_key(s, split["mode"]) for s in samples]
    unknown = sorted({k for k in keys if k not in train and k not in val})
    if unknown:
        logger.warning("%d %s(s) of the data are not in the stored split (e.g. %s); they are left out",
                       len(unknown), split["mode"], unknown[0])
    if len(unknown) == len(set(keys)):
        raise DatasetError(f"none of the data's {split['mode']}s is in the stored split: "
                           "the data differ from those the model was trained on")
    return (np.array([i for i, k in enumerate(keys) if k in train], dtype=np.int64),
            np.array([i for i, k in enumerate(keys) if k in val], dtype=np.int64))


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
