"""The datasets extraction reads, one reader each (`afew_va.py`, `aff_wild2.py`, `affectnet.py`) behind one
interface: `read_dataset(name, root)` gives the usable frames (`afew_va.Frame`, labels on the dataset's own
scale, each with its official split where the dataset has one), the problems (each naming the file, and the line
where there is one) and what was skipped by the dataset's own rules (counted).

Scales: AFEW-VA's labels are integers on [-10, 10]; Aff-Wild2's and AffectNet's are on [-1, 1]. Manifests keep
each dataset's scale and record it (`label_scale`, the half-range); training, evaluation and comparisons put every
dataset on AFEW-VA's [-10, 10] (`features.load_feature_set`), so that a model trained on one corpus is scored on
another on one scale. CCC and PCC do not change with the scale; RMSE and MSE do (their `normalized` block is on
[-1, 1], EmoNet's own scale).
"""
from dataclasses import dataclass
from pathlib import Path

from .aff_wild2 import read_aff_wild2
from .affectnet import read_affectnet
from .afew_va import Frame, Problem, read_afew_va, resolve_dataset_root
from .constants import DEFAULT_DATASET, LABEL_SCALE
from .errors import DatasetError, EmoNetError


@dataclass(frozen=True)
class DatasetInfo:
    title: str
    label_scale: float  # labels lie on [-label_scale, label_scale]
    has_time: bool  # frames of videos (smooth and temporal heads apply) or single images
    official_split: bool  # the dataset's own training / validation split, recorded per sample
    crops: tuple[str, ...]  # the crops its frames allow (landmarks: it has 68 points per frame)
    caveat: str = ""  # what every result on it must say


DATASETS = {
    "afew_va": DatasetInfo("AFEW-VA", LABEL_SCALE, True, False, ("landmarks", "resize")),
    "aff_wild2": DatasetInfo("Aff-Wild2 (VA track)", 1.0, True, True, ("resize",)),
    "affectnet": DatasetInfo("AffectNet (manually annotated)", 1.0, False, True, ("landmarks", "resize"),
                             caveat="EmoNet was trained on AffectNet's training images: their features come from faces "
                                    "EmoNet itself fitted (a head trained on them learns from better features than unseen "
                                    "faces give), and its validation images are EmoNet's own test set (published: valence "
                                    "CCC 0.82, arousal 0.75 on its cleaned 8-class set)"),
}


@dataclass
class DatasetRead:
    root: Path
    frames: list[Frame]
    problems: list[Problem]
    skipped: dict[str, int]  # frames the dataset's own rules leave out (not annotated, no face), by reason


def dataset_crop(name: str, crop: str | None) -> str:
    """The crop a run takes: `crop` when given (refused where the dataset cannot give it), else the dataset's own (its
    first: landmarks for AFEW-VA and AffectNet, resize for Aff-Wild2, whose frames are aligned crops already)."""
    if crop is None:
        return DATASETS[name].crops[0]
    check_crop(name, crop)
    return crop


def check_crop(name: str, crop: str) -> None:
    """Refuse a crop the dataset's frames cannot give (one line, before any work)."""
    info = DATASETS[name]
    if crop not in info.crops:
        why = ("its cropped_aligned frames are faces already cropped and aligned, without landmarks"
               if name == "aff_wild2" else "it has no landmarks")
        raise EmoNetError(f"--crop {crop} cannot be used with --dataset {name}: {why}; use --crop "
                          f"{' or '.join(info.crops)}")


def read_dataset(name: str, root, limit: int | None = None, need_landmarks: bool = True) -> DatasetRead:
    """Read dataset `name` under `root` (`limit`: the first N clips or videos; for AffectNet the first N images of
    each list)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if name == DEFAULT_DATASET:
        root = resolve_dataset_root(root)
        frames, problems = read_afew_va(root, limit, need_landmarks)
        return DatasetRead(root, frames, problems, {})
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    if name == "aff_wild2":
        frames, problems, skipped = read_aff_wild2(root, limit)
    else:
        frames, problems, skipped = read_affectnet(root, limit, need_landmarks)
    return DatasetRead(root, frames, problems, dict(sorted(skipped.items())))


def dataset_settings(name: str) -> dict:
    """What a manifest records of its dataset."""
    info = DATASETS[name]
    return {"dataset": name, "label_scale": info.label_scale, "has_time": info.has_time}
