"""Reading AFEW-VA: `<root>/<clip>/<clip>.json` with per-frame labels and landmarks, `<root>/<clip>/<frame>.png`
(or `.jpg`: some copies of the dataset, and the seed's own annotations, store JPEG frames).

The JSON of a clip is `{"actor": str, "video_id": "NNN", "frames": {"00000": {"valence": v,
"arousal": a, "landmarks": [[x, y] x 68]}, ...}}`, labels on [-10, 10]. Problems (a clip without JSON,
unparsable JSON, a bad or missing label, bad landmarks, a missing or unlabelled image, a clip that mixes
image formats) are collected, never fatal: `read_afew_va` returns the good frames and the list of problems.

A clip folder is one that holds its labels `<clip>/<clip>.json` or frames named by number (`00000.png`);
any other folder beside the clips (an output folder, a `__MACOSX` folder from a zip, a folder of plots)
is not a clip and is passed over.
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

# Frame image formats, by file suffix (lower case); a clip's frames are all of one format.
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
LABEL_KEYS = ("valence", "arousal")


@dataclass(frozen=True)
class Frame:
    clip: str
    frame: str
    actor: str
    image_path: Path
    valence: float  # on its dataset's own scale: AFEW-VA [-10, 10], Aff-Wild2 and AffectNet [-1, 1]
    arousal: float
    landmarks: np.ndarray | None  # 68 x 2, pixel coordinates (may lie outside the frame); None when not read
    split: str = ""  # a dataset's official split ("train", "validation"); AFEW-VA has none
    expression: int | None = None  # AffectNet's expression label (0-7 the eight emotions, 8-10 none/uncertain/no face)

    def sample(self) -> dict:
        """The frame as a manifest/split sample (see `manifest.py`, `splits.py`); labels on its dataset's scale."""
        sample = {"clip": self.clip, "frame": self.frame, "actor": self.actor, "valence": self.valence,
                  "arousal": self.arousal}
        sample |= {"split": self.split} if self.split else {}
        return sample | ({"expression": self.expression} if self.expression is not None else {})


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
    "mixed_image_formats",
    "unreadable_image",
    "unreadable_annotation",  # Aff-Wild2 / AffectNet: a line that cannot be read (file:line named)
)


def resolve_dataset_root(root: str | os.PathLike) -> Path:
    """The folder holding the clip folders: `root` itself, or `root/AFEW-VA` (the Kaggle download's layout)
    when `root` holds no clip folder of its own (whatever else sits beside AFEW-VA/: outputs, __MACOSX)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    nested = root / AFEW_VA_FOLDER
    if nested.is_dir() and not _clip_dirs(root):
        return nested
    return root


def _frame_images(folder: Path) -> dict[str, Path]:
    """{frame id: image} of the files in `folder` named by a number with an image suffix (00000.png)."""
    return {p.stem: p for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_FORMATS and p.stem.isdigit() and not p.name.startswith(".")}


def _looks_like_clip(folder: Path) -> bool:
    """A clip folder holds its labels `<clip>.json` or frames named by number."""
    return (folder / f"{folder.name}.json").is_file() or bool(_frame_images(folder))


def _clip_dirs(root: Path) -> list[Path]:
    folders = (p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(p for p in folders if _looks_like_clip(p))


def read_afew_va(root: str | os.PathLike, limit: int | None = None,
                 need_landmarks: bool = True) -> tuple[list[Frame], list[Problem]]:
    """Read every clip under `root` (or the first `limit` clips, in sorted order).

    `need_landmarks=False` (a crop that does not use them) reads frames whose landmarks are missing or
    malformed, with `landmarks` None; with True such a frame is a problem.
    """
    root = resolve_dataset_root(root)
    clip_dirs = _clip_dirs(root)
    if not clip_dirs:
        raise DatasetError(
            f"{root}: this is not an AFEW-VA folder: none of its sub-folders is a clip folder. An AFEW-VA folder "
            f"holds 001/ ... 600/, each with its labels (001/001.json) and frames (001/00000.png, ...); pass that "
            f"folder as --dataset_root or set {AFEW_VA_ROOT_ENV} to it")
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                    and p not in clip_dirs)
    if others:
        logger.info("%s: %d folders are not clips and are passed over (%s%s)", root, len(others),
                    ", ".join(others[:3]), ", ..." if len(others) > 3 else "")
    if limit is not None:
        clip_dirs = clip_dirs[:limit]
    frames, problems = [], []
    for clip_dir in clip_dirs:
        clip_frames, clip_problems = _read_clip(clip_dir, need_landmarks)
        frames += clip_frames
        problems += clip_problems
    formats = Counter(f.image_path.suffix.lower() for f in frames)
    logger.info("%s: %d clips, %d usable frames (%s), %d problems", root, len(clip_dirs), len(frames),
                ", ".join(f"{n} {suffix}" for suffix, n in sorted(formats.items())) or "no image", len(problems))
    return frames, problems


def _read_clip(clip_dir: Path, need_landmarks: bool) -> tuple[list[Frame], list[Problem]]:
    clip = clip_dir.name
    json_path = clip_dir / f"{clip}.json"
    images = _frame_images(clip_dir)
    if not json_path.is_file():
        return [], [Problem(str(clip_dir), "missing_json", f"no {json_path.name} in the clip folder")]
    formats = Counter(IMAGE_FORMATS[p.suffix.lower()] for p in images.values())
    suffixes = Counter(p.suffix for p in images.values())
    if len(formats) > 1 or len(suffixes) > 1:
        found = ", ".join(f"{n} {suffix}" for suffix, n in sorted(suffixes.items()))
        return [], [Problem(str(clip_dir), "mixed_image_formats",
                            f"the clip's frames are stored in several formats ({found}); keep one format per clip")]
    try:
        meta = json.loads(json_path.read_text())
        entries = meta["frames"]
        if not isinstance(entries, dict):
            raise TypeError("'frames' is not an object")
        actor = str(meta.get("actor", ""))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        reason = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        return [], [Problem(str(json_path), "unreadable_json", reason)]

    suffix = next(iter(suffixes), ".png")  # the clip's format (a clip without any image: named as .png)
    frames, problems = [], []
    for name, entry in sorted(entries.items()):
        where = f"{json_path}#{name}"
        problem, landmarks = _check_entry(entry, need_landmarks)
        if problem is not None:
            problems.append(Problem(where, *problem))
        elif name not in images:
            problems.append(Problem(str(clip_dir / f"{name}{suffix}"), "missing_image",
                                    "listed in the JSON, image not found"))
        else:
            frames.append(Frame(clip, name, actor, images[name], float(entry["valence"]), float(entry["arousal"]),
                                landmarks))
    for name in sorted(set(images) - set(entries)):
        problems.append(Problem(str(images[name]), "unlabelled_image", "image has no entry in the JSON"))
    return frames, problems


def _check_entry(entry, need_landmarks: bool) -> tuple[tuple[str, str] | None, np.ndarray | None]:
    """((kind, reason) of the first problem with a frame's JSON entry, or None when it is usable; its
    landmarks, or None where they are not needed and not usable)."""
    if not isinstance(entry, dict):
        return ("unreadable_json", "frame entry is not an object"), None
    for key in LABEL_KEYS:
        if key not in entry:
            return ("bad_label", f"no {key}"), None
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ("bad_label", f"{key} is {value!r}, not a number"), None
        if not math.isfinite(value) or not LABEL_MIN <= value <= LABEL_MAX:
            return ("bad_label", f"{key} = {value} outside [{LABEL_MIN:g}, {LABEL_MAX:g}]"), None
    landmarks, reason = _landmarks(entry)
    if reason is None:
        return None, landmarks
    return (("bad_landmarks", reason) if need_landmarks else None), None


def _landmarks(entry: dict) -> tuple[np.ndarray | None, str | None]:
    """(68 x 2 float32 landmarks, None), or (None, why they cannot be used)."""
    if entry.get("landmarks") is None:
        return None, "no landmarks"
    try:
        landmarks = np.asarray(entry["landmarks"], dtype=np.float64)
    except (TypeError, ValueError):
        return None, "landmarks are not numbers"
    if landmarks.shape != (NUM_LANDMARKS, 2):
        return None, f"landmarks have shape {landmarks.shape}, expected ({NUM_LANDMARKS}, 2)"
    if not np.isfinite(landmarks).all():
        return None, "landmarks contain NaN or infinity"
    return landmarks.astype(np.float32), None


def no_usable_frame(root: str | os.PathLike, problems: list[Problem], shown: int = 3) -> DatasetError:
    """The error for a tree in which no frame can be used, naming its first problems."""
    listed = "; ".join(f"{p.path}: {p.reason}" for p in problems[:shown])
    more = f"; ... ({len(problems) - shown} more)" if len(problems) > shown else ""
    return DatasetError(f"{root}: no usable frame ({len(problems)} problems: {listed}{more})")


def _is_frame_problem(problem: Problem) -> bool:
    """Whether a problem concerns one labelled frame (`<json>#<frame>`, or its missing image), not a whole clip
    or an image without a label."""
    return "#" in problem.path or problem.kind == "missing_image"


def summarize(frames: list[Frame], problems: list[Problem]) -> dict:
    """Counts for a one-screen verification summary: `labelled_frames` are the frames the JSON files list,
    `usable_frames` those of them with valid labels, landmarks and an image."""
    counts = Counter(p.kind for p in problems)
    return {
        "clips": len({f.clip for f in frames}),
        "actors": len({f.actor for f in frames}),
        "labelled_frames": len(frames) + sum(1 for p in problems if _is_frame_problem(p)),
        "usable_frames": len(frames),
        "image_formats": dict(sorted(Counter(f.image_path.suffix.lower() for f in frames).items())),
        **{kind: counts.get(kind, 0) for kind in PROBLEM_KINDS},
    }
