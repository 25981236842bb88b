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
from .constants import DEFAULT_DATASET
from .dataset_info import DATASETS
from .errors import DatasetError


@dataclass
class DatasetRead:
    root: Path
    frames: list[Frame]
    problems: list[Problem]
    skipped: dict[str, int]  # frames the dataset's own rules leave out (not annotated, no face), by reason


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
