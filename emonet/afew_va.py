"""Reading AFEW-VA: `<root>/<clip>/<clip>.json` with per-frame labels and landmarks, `<root>/<clip>/<frame>.png`.

The JSON of a clip is `{"actor": str, "video_id": "NNN", "frames": {"00000": {"valence": v,
"arousal": a, "landmarks": [[x, y] x 68]}, ...}}`, labels on [-10, 10]. Problems (a clip without JSON,
unparsable JSON, a bad label, bad landmarks, a missing or unlabelled image) are collected, never fatal:
`read_afew_va` returns the good frames and the list of problems.
"""
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import AFEW_VA_FOLDER, AFEW_VA_ROOT_ENV, LABEL_MAX, LABEL_MIN, NUM_LANDMARKS
from .errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_SUFFIX = ".png"


@dataclass(frozen=True)
class Frame:
    clip: str
    frame: str
    actor: str
    image_path: Path
    valence: float  # raw scale [-10, 10]
    arousal: float
    landmarks: np.ndarray  # 68 x 2, pixel coordinates (may lie outside the frame)

    def sample(self) -> dict:
        """The frame as a manifest/split sample (see `manifest.py`, `splits.py`)."""
        return {"clip": self.clip, "frame": self.frame, "actor": self.actor, "valence": self.valence,
                "arousal": self.arousal}


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # one of PROBLEM_KINDS
    reason: str

    def as_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


PROBLEM_KINDS = (
    "missing_json",
    "unreadable_json",
    "bad_label",
    "bad_landmarks",
    "missing_image",
    "unlabelled_image",
    "unreadable_image",
)


def resolve_dataset_root(root: str | os.PathLike) -> Path:
    """The folder holding the clip folders: `root` itself, or `root/AFEW-VA` (the Kaggle download's layout)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    nested = root / AFEW_VA_FOLDER
    if nested.is_dir() and not any(_clip_dirs(root, exclude=AFEW_VA_FOLDER)):
        return nested
    return root


def _clip_dirs(root: Path, exclude: str | None = None) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != exclude)


def _looks_like_clip(folder: Path) -> bool:
    """A clip folder holds its labels `<clip>.json` or at least one frame."""
    return (folder / f"{folder.name}.json").is_file() or any(folder.glob(f"*{IMAGE_SUFFIX}"))


def read_afew_va(root: str | os.PathLike, limit: int | None = None) -> tuple[list[Frame], list[Problem]]:
    """Read every clip under `root` (or the first `limit` clips, in sorted order)."""
    root = resolve_dataset_root(root)
    clip_dirs = _clip_dirs(root)
    if not any(_looks_like_clip(d) for d in clip_dirs):
        raise DatasetError(
            f"{root}: this is not an AFEW-VA folder: none of its sub-folders is a clip folder. An AFEW-VA folder "
            f"holds 001/ ... 600/, each with its labels (001/001.json) and frames (001/00000.png, ...); pass that "
            f"folder as --dataset_root or set {AFEW_VA_ROOT_ENV} to it")
    if limit is not None:
        clip_dirs = clip_dirs[:limit]
    frames, problems = [], []
    for clip_dir in clip_dirs:
        clip_frames, clip_problems = _read_clip(clip_dir)
        frames += clip_frames
        problems += clip_problems
    logger.info("%s: %d clips, %d usable frames, %d problems", root, len(clip_dirs), len(frames), len(problems))
    return frames, problems


def _read_clip(clip_dir: Path) -> tuple[list[Frame], list[Problem]]:
    clip = clip_dir.name
    json_path = clip_dir / f"{clip}.json"
    images = {p.stem for p in clip_dir.iterdir() if p.suffix.lower() == IMAGE_SUFFIX}
    if not json_path.is_file():
        return [], [Problem(str(clip_dir), "missing_json", f"no {json_path.name} in the clip folder")]
    try:
        meta = json.loads(json_path.read_text())
        entries = meta["frames"]
        if not isinstance(entries, dict):
            raise TypeError("'frames' is not an object")
        actor = str(meta.get("actor", ""))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        reason = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        return [], [Problem(str(json_path), "unreadable_json", reason)]

    frames, problems = [], []
    for name, entry in sorted(entries.items()):
        image_path = clip_dir / f"{name}{IMAGE_SUFFIX}"
        where = f"{json_path}#{name}"
        problem = _check_entry(entry)
        if problem is not None:
            problems.append(Problem(where, *problem))
        elif name not in images:
            problems.append(Problem(str(image_path), "missing_image", "listed in the JSON, image not found"))
        else:
            frames.append(
                Frame(clip, name, actor, image_path, float(entry["valence"]), float(entry["arousal"]),
                      np.asarray(entry["landmarks"], dtype=np.float32))
            )
    for name in sorted(images - set(entries)):
        problems.append(Problem(str(clip_dir / f"{name}{IMAGE_SUFFIX}"), "unlabelled_image", "image has no entry in the JSON"))
    return frames, problems


def _check_entry(entry) -> tuple[str, str] | None:
    """(kind, reason) of the first problem with a frame's JSON entry, or None when it is usable."""
    if not isinstance(entry, dict):
        return "unreadable_json", "frame entry is not an object"
    for key in ("valence", "arousal"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "bad_label", f"{key} is {value!r}, not a number"
        if not math.isfinite(value) or not LABEL_MIN <= value <= LABEL_MAX:
            return "bad_label", f"{key} = {value} outside [{LABEL_MIN:g}, {LABEL_MAX:g}]"
    try:
        landmarks = np.asarray(entry.get("landmarks"), dtype=np.float64)
    except (TypeError, ValueError):
        return "bad_landmarks", "landmarks are not numbers"
    if landmarks.shape != (NUM_LANDMARKS, 2):
        return "bad_landmarks", f"landmarks have shape {landmarks.shape}, expected ({NUM_LANDMARKS}, 2)"
    if not np.isfinite(landmarks).all():
        return "bad_landmarks", "landmarks contain NaN or infinity"
    return None


def summarize(frames: list[Frame], problems: list[Problem]) -> dict:
    """Counts for a one-screen verification summary."""
    counts = Counter(p.kind for p in problems)
    return {
        "clips": len({f.clip for f in frames}),
        "actors": len({f.actor for f in frames}),
        "labelled_frames": len(frames),
        **{kind: counts.get(kind, 0) for kind in PROBLEM_KINDS},
    }
