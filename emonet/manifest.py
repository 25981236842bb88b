"""The feature manifest: the hand-over between extraction and training/evaluation.

Format `emonet-features/1`: `{"format", "settings": {color_space, crop, image_size, pretrained_path,
pretrained_sha256, dataset_root, ...}, "samples": [{"path", "clip", "frame", "actor", "valence",
"arousal"}, ...]}`. `path` is relative to the manifest's folder; labels are raw ([-10, 10]).

The seed's older manifest, `{"features_hsv/001/00000.npz": {"valence": v, "arousal": a}, ...}`, is read
too: its clip is the path's parent folder, its frame the file name, its actor unknown ("").
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .colour import COLOR_SPACES
from .constants import MANIFEST_FORMAT
from .errors import DatasetError
from .io import write_json

SAMPLE_KEYS = ("path", "clip", "frame", "actor", "valence", "arousal")
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

    def resolve(self, sample: dict, data_root: str | os.PathLike | None = None) -> Path:
        """Absolute path of a sample's feature file: relative to `data_root`, by default the manifest's folder."""
        return Path(data_root if data_root is not None else self.path.parent) / sample["path"]


def write_manifest(path: str | os.PathLike, settings: dict, samples: list[dict]) -> None:
    write_json(path, {"format": MANIFEST_FORMAT, "settings": settings, "samples": samples}, indent=1)


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
        if data["format"] != MANIFEST_FORMAT:
            raise DatasetError(f"{path}: unknown manifest format {data['format']!r} (expected {MANIFEST_FORMAT})")
        samples = data.get("samples")
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
