"""The feature manifest: the hand-over between extraction and training/evaluation.

In memory a manifest is its settings and a list of samples, one a frame: `{"path", "clip", "frame", "actor",
"valence", "arousal"}`, plus `"split"` where the dataset has an official one and `"expression"` for AffectNet.
`path` is relative to the manifest's folder (one clip file for all frames of a clip, `feature_store.py`); labels
are on the dataset's own scale ([-10, 10] for AFEW-VA, [-1, 1] for Aff-Wild2 and AffectNet: `label_scale`).

On disk, format `emonet-features/2` (written): `{"format", "settings": {color_space, crop, image_size,
pretrained_path, pretrained_sha256, dataset_root, dataset, label_scale, has_time, ...}, "clips": {"path": [...],
"clip": [...], "actor": [...], "split": [...]}, "frames": {"clip_index": [...], "frame": [...], "valence": [...],
"arousal": [...], ...}}`: columns, the clip's fields once a clip. At Aff-Wild2's 2.8 million frames the list of
objects of format 1 was 445 MB of JSON and 2.6 GB of memory to read; columns make it a fraction of both, and the
samples of one clip share its strings. Format `emonet-features/1` (`"samples": [{...}, ...]`, earlier
extractions) is read too.

The seed's older manifest, `{"features_hsv/001/00000.npz": {"valence": v, "arousal": a}, ...}`, is read
too: its clip is the path's parent folder, its frame the file name, its actor unknown ("").
"""
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .constants import COLOR_SPACES, DEFAULT_DATASET, LABEL_SCALE, MANIFEST_FORMAT
from .errors import DatasetError
from .io import write_json

SAMPLE_KEYS = ("path", "clip", "frame", "actor", "valence", "arousal")
# A clip's fields, written once a clip in format 2 (None: a sample without it, e.g. no official split).
CLIP_FIELDS = ("path", "clip", "actor", "split")
# Rows turned into dicts at a time when SampleColumns is iterated.
SAMPLE_CHUNK = 65_536
# Format 1: a list of sample objects (earlier extractions).
LIST_FORMAT = "emonet-features/1"
# Settings that define the features: two feature sets that differ in one of these are different inputs.
FEATURE_IDENTITY_KEYS = ("color_space", "crop", "image_size", "pretrained_sha256", "precision")
# The seed's names for RGB features; every other colour space gets `features_<space>` (hsv: the seed's too).
RGB_FEATURE_DIR = "features"


def default_feature_paths(color_space: str) -> tuple[str, str]:
    """Default (feature folder, manifest file) of a colour space: features/ + features_manifest.json for rgb,
    features_<space>/ + features_<space>_manifest.json otherwise (features_hsv/, as the seed named it)."""
    folder = RGB_FEATURE_DIR if color_space == "rgb" else f"{RGB_FEATURE_DIR}_{color_space}"
    return folder, f"{folder}_manifest.json"


def standard_manifests(folder: str | os.PathLike) -> dict[str, Path]:
    """{colour space: path} of the standard manifests (`default_feature_paths`) present in `folder`."""
    found = {space: Path(folder) / default_feature_paths(space)[1] for space in COLOR_SPACES}
    return {space: path for space, path in found.items() if path.is_file()}


@dataclass
class Manifest:
    path: Path
    settings: dict  # {} for the seed's format
    samples: list[dict]

    @property
    def color_space(self) -> str | None:
        """The colour space in the settings; for the seed's manifest (no settings), the space whose default
        manifest name this file has (features_hsv_manifest.json: hsv), else None."""
        if "color_space" in self.settings:
            return self.settings["color_space"]
        return next((c for c in COLOR_SPACES if default_feature_paths(c)[1] == self.path.name), None)

    @property
    def described_settings(self) -> dict:
        """`settings`, with the colour space filled in from the name for the seed's manifest (see `color_space`):
        what a checkpoint records, so that resuming or evaluating on other features is refused for those too."""
        return {**self.settings, "color_space": self.color_space} if self.color_space else dict(self.settings)

    @property
    def dataset(self) -> str:
        """The dataset the features come from (manifests written before other datasets were read: AFEW-VA)."""
        return str(self.settings.get("dataset", DEFAULT_DATASET))

    @property
    def has_time(self) -> bool:
        """Whether its clips are videos (smooth and temporal heads apply) or single images (AffectNet)."""
        return bool(self.settings.get("has_time", True))

    def check_head(self, head: str) -> None:
        """Refuse a head that runs along clips on features of single images."""
        if head != "frame" and not self.has_time:
            raise DatasetError(f"{self.path}: {self.dataset}'s samples are single images, without time: the {head} head "
                               "runs along the frames of a video; use --head frame")

    @property
    def label_scale(self) -> float:
        """Half-range of the labels in this manifest: 1 for Aff-Wild2 and AffectNet, 10 for AFEW-VA (and for
        manifests written before other datasets were read, and the seed's)."""
        return float(self.settings.get("label_scale", LABEL_SCALE))

    def resolve(self, sample: dict, data_root: str | os.PathLike | None = None) -> Path:
        """Absolute path of a sample's feature file: relative to `data_root`, by default the manifest's folder."""
        return Path(data_root if data_root is not None else self.path.parent) / sample["path"]


class SampleColumns(Sequence):
    """Samples held as numpy columns, read as the list of dicts every consumer expects (each item a new dict).

    Why: at Aff-Wild2's 2.8 million frames a list of dicts is 1.2 GB of small Python objects, and a process forked
    from the one holding them (the comparison's workers) copies every page whose objects it merely reads, since
    reading changes their reference counts; 2.8 million dicts become 2.8 million private copies per worker. Columns
    are a few flat arrays (about 50 bytes a frame), which readers never write to. Text fields with few distinct
    values (clip, actor, split) are codes into a list of names; the frame id keeps its exact text.
    """

    CODED = ("clip", "actor", "split")

    def __init__(self, samples: list[dict], keys: tuple[str, ...] = ("clip", "frame", "actor", "valence", "arousal", "split")):
        self.keys = tuple(k for k in keys if samples and k in samples[0])
        self.columns: dict[str, np.ndarray] = {}
        self.names: dict[str, list[str]] = {}
        for key in self.keys:
            if key in self.CODED:
                index: dict[str, int] = {}
                codes = [index.setdefault(s.get(key, ""), len(index)) for s in samples]
                self.names[key], self.columns[key] = list(index), np.array(codes, dtype=np.int32)
                continue
            values = [s[key] for s in samples]
            if key in ("valence", "arousal"):
                self.columns[key] = np.array(values, dtype=np.float64)
            else:
                self.columns[key] = np.array(values, dtype=str)
        self.length = len(samples)

    def __len__(self) -> int:
        return self.length

    def _rows(self, index) -> list[dict]:
        values = {k: self.columns[k][index].tolist() for k in self.keys}
        for key, names in self.names.items():
            values[key] = [names[c] for c in values[key]]
        return [dict(zip(self.keys, row, strict=True)) for row in zip(*(values[k] for k in self.keys), strict=True)]

    def __getitem__(self, index):
        """A dict for an integer; a list of dicts for a slice or an array of indices."""
        if isinstance(index, (slice, np.ndarray, list)):
            return self._rows(index)
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return self._rows(slice(index, index + 1 if index != -1 else None))[0]

    def __iter__(self):
        for start in range(0, self.length, SAMPLE_CHUNK):
            yield from self._rows(slice(start, start + SAMPLE_CHUNK))


def take(samples: "Sequence[dict]", rows: np.ndarray) -> list[dict]:
    """The samples at `rows`, from a list or from SampleColumns (which reads them column by column)."""
    return samples[rows] if isinstance(samples, SampleColumns) else [samples[i] for i in rows]


def write_manifest(path: str | os.PathLike, settings: dict, samples: list[dict]) -> None:
    """Write format 2: a clip's fields (`CLIP_FIELDS`) once for each run of samples that share them, every other
    field a column of the frames (None where a sample lacks it)."""
    clips = {k: [] for k in CLIP_FIELDS}
    frame_keys = sorted({k for s in samples for k in s} - set(CLIP_FIELDS), key=lambda k: (k not in SAMPLE_KEYS, k))
    frames = {"clip_index": [], **{k: [] for k in frame_keys}}
    last = None
    for sample in samples:
        fields = tuple(sample.get(k) for k in CLIP_FIELDS)
        if fields != last:
            for k, v in zip(CLIP_FIELDS, fields, strict=True):
                clips[k].append(v)
            last = fields
        frames["clip_index"].append(len(clips["path"]) - 1)
        for k in frame_keys:
            frames[k].append(sample.get(k))
    write_json(path, {"format": MANIFEST_FORMAT, "settings": settings, "clips": clips, "frames": frames}, indent=None)


def _columns_samples(path: Path, data: dict) -> list[dict]:
    """The samples of a format-2 manifest; a sample of a clip shares its strings."""
    clips, frames = data.get("clips"), data.get("frames")
    try:
        clip_rows = [{k: v for k, v in zip(CLIP_FIELDS, values, strict=True) if v is not None}
                     for values in zip(*(clips[k] for k in CLIP_FIELDS), strict=True)]
        keys = [k for k in frames if k != "clip_index"]
        samples = [{**clip_rows[c], **{k: v for k, v in zip(keys, values, strict=True) if v is not None}}
                   for c, *values in zip(frames["clip_index"], *(frames[k] for k in keys), strict=True)]
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise DatasetError(f"{path}: malformed manifest columns ({type(exc).__name__}: {exc}); 'clips' must hold "
                           f"{', '.join(CLIP_FIELDS)} and 'frames' clip_index, frame, valence, arousal, of equal "
                           "lengths") from None
    if samples and not set(SAMPLE_KEYS) <= set(samples[0]):
        raise DatasetError(f"{path}: its samples lack {', '.join(sorted(set(SAMPLE_KEYS) - set(samples[0])))}")
    return samples


def read_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: manifest not found (run feature extraction first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a manifest is a JSON object, found {type(data).__name__}")
    if "format" in data:
        if data["format"] not in (MANIFEST_FORMAT, LIST_FORMAT):
            raise DatasetError(f"{path}: unknown manifest format {data['format']!r} (expected {MANIFEST_FORMAT} or "
                               f"{LIST_FORMAT})")
        samples = _columns_samples(path, data) if data["format"] == MANIFEST_FORMAT else data.get("samples")
        if not isinstance(samples, list) or not all(isinstance(s, dict) and set(SAMPLE_KEYS) <= set(s) for s in samples):
            raise DatasetError(f"{path}: 'samples' must be a list of objects with keys {', '.join(SAMPLE_KEYS)}")
        manifest = Manifest(path, dict(data.get("settings") or {}), samples)
    else:
        manifest = Manifest(path, {}, [_seed_sample(path, key, value) for key, value in data.items()])
    if not manifest.samples:
        raise DatasetError(f"{path}: the manifest lists no samples")
    return manifest


def _seed_sample(path: Path, key: str, value) -> dict:
    if not isinstance(value, dict) or not {"valence", "arousal"} <= set(value):
        raise DatasetError(f"{path}: entry {key!r} lacks valence/arousal")
    p = PurePosixPath(key.replace("\\", "/"))
    return {"path": key, "clip": p.parent.name, "frame": p.stem, "actor": "",
            "valence": float(value["valence"]), "arousal": float(value["arousal"])}
