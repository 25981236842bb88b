"""Feature files: one `.npz` a clip (what extraction writes), and the per-frame files of earlier extractions and of
the seed (still read).

A clip file `<output_dir>/<clip>.npz` holds `frames` (the clip's frame ids, str), `features` (n x 256 float32),
the labels `valence`, `arousal` (n, the dataset's scale), and EmoNet's own `emonet_valence`, `emonet_arousal`
(n, [-1, 1]) and `emonet_expression` (n x classes logits). Every manifest sample of the clip names that file;
its `frame` picks the row.

Why one file a clip: at Aff-Wild2's 2.8 million frames a file a frame is 2.8 million files (inodes, directory
listings, one open and one zip parse a frame: loading them is bound by those, not by the 2.9 GB of features), and a
sharded array store would need a library this project does not have (zarr, HDF5) for what `np.load` of a few
hundred files does: `benchmarks/bench_feature_store.py` measures both layouts. A clip is also what every reader
needs whole (splits keep clips whole; the smooth and temporal heads run along one). Extraction still writes a file
a frame while it runs (a killed run loses at most a batch, and resumes frame by frame), then packs each clip into
its clip file and removes the per-frame files (`pack_clip`).
"""
import zipfile
from pathlib import Path

import numpy as np

from .constants import FEATURE_DIM
from .errors import DatasetError
from .io import save_npz

# The seed's per-frame files hold "feature"; this project's "features".
FEATURE_KEYS = ("features", "feature")
FRAME_KEYS = ("features", "valence", "arousal", "emonet_valence", "emonet_arousal", "emonet_expression")
CLIP_KEYS = ("frames", *FRAME_KEYS)


def clip_file(output_dir: Path, clip: str) -> Path:
    return output_dir / f"{clip}.npz"


def frame_file(output_dir: Path, clip: str, frame: str) -> Path:
    """Where extraction writes a frame's features while it runs (and where earlier extractions left them)."""
    return output_dir / clip / f"{frame}.npz"


def read_feature_file(path: Path) -> tuple[list[str] | None, np.ndarray, np.ndarray | None]:
    """(frame ids of a clip file, or None for a per-frame file; features n x 256; EmoNet's valence/arousal n x 2,
    or None where the file lacks them). Errors name the file."""
    try:
        with np.load(path) as data:
            key = next((k for k in FEATURE_KEYS if k in data.files), None)
            if key is None:
                raise DatasetError(f"{path}: no feature vector in the file (keys {', '.join(data.files) or 'none'}; "
                                   f"expected {' or '.join(FEATURE_KEYS)})")
            frames = [str(f) for f in data["frames"]] if "frames" in data.files else None
            features = data[key].astype(np.float32)
            if frames is None and features.size == FEATURE_DIM:
                features = features.reshape(1, FEATURE_DIM)  # a per-frame file: one vector, of whatever shape
            emonet = (np.stack([np.ravel(data["emonet_valence"]), np.ravel(data["emonet_arousal"])], 1).astype(np.float32)
                      if "emonet_valence" in data.files else None)
    except FileNotFoundError:
        raise DatasetError(f"{path}: feature file is missing") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: unreadable feature file ({exc})") from None
    rows = 1 if frames is None else len(frames)
    if features.shape != (rows, FEATURE_DIM) or not np.isfinite(features).all():
        raise DatasetError(f"{path}: features of shape {features.shape} (expected {rows} x {FEATURE_DIM} finite values)")
    return frames, features, emonet


def check_feature_file(path: Path, manifest: Path) -> None:
    """Refuse a feature file listed in `manifest` that is missing, is not a complete zip (a truncated file has no
    directory) or holds no feature array; only the zip's directory is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n.removesuffix(".npy") for n in archive.namelist()}
    except FileNotFoundError:
        raise DatasetError(f"{path}: feature file is missing; it is listed in the manifest {manifest}") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: unreadable feature file ({exc}); it is listed in the manifest {manifest}. Rerunning "
                           "the extraction command that wrote it repairs it") from None
    if not names & set(FEATURE_KEYS):
        raise DatasetError(f"{path}: no feature vector in the file (expected {' or '.join(FEATURE_KEYS)}); it is listed "
                           f"in the manifest {manifest}")


def clip_frames(path: Path) -> set[str]:
    """The frame ids of a clip file with every key (only its frame list is read); none when it is absent or cannot be
    opened (a truncated zip has no directory), and extraction then redoes them."""
    try:
        with np.load(path) as data:
            return {str(f) for f in data["frames"]} if set(CLIP_KEYS) <= set(data.files) else set()
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return set()


def pack_clip(output_dir: Path, clip: str, frames: list[str]) -> None:
    """Write `frames` of `clip` into its clip file, from the per-frame files this extraction wrote and, for the
    frames it did not redo, the clip file an earlier run packed; then remove the per-frame files. Atomic: a kill
    leaves either the old clip file and the per-frame files, or the new clip file."""
    folder = output_dir / clip
    path = clip_file(output_dir, clip)
    existing = clip_frames(path)  # none when it cannot be opened: extraction then redid all its frames
    if not (folder.is_dir() and any(folder.glob("*.npz"))) and sorted(existing) == sorted(frames):
        return  # packed by an earlier run, nothing new: a rerun does not rewrite the store
    packed, row_of = {}, {}
    if existing:
        with np.load(path) as data:
            packed = {k: data[k] for k in FRAME_KEYS}
            row_of = {str(f): i for i, f in enumerate(data["frames"])}
    rows = []
    for frame in frames:
        single = frame_file(output_dir, clip, frame)
        if single.is_file():
            with np.load(single) as data:
                rows.append({k: data[k] for k in FRAME_KEYS})
        else:
            rows.append({k: packed[k][row_of[frame]] for k in FRAME_KEYS})
    save_npz(path, frames=np.array(frames), **{k: np.stack([np.asarray(r[k]) for r in rows]) for k in FRAME_KEYS})
    if folder.is_dir():
        for single in folder.glob("*.npz"):
            single.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def frame_arrays(path: Path, frame: str) -> dict[str, np.ndarray]:
    """One frame's arrays (`FRAME_KEYS`, those the file has) from a clip file, or a per-frame file's arrays."""
    with np.load(path) as data:
        if "frames" not in data.files:
            return {k: data[k] for k in data.files}
        row = [str(f) for f in data["frames"]].index(frame)
        return {k: data[k][row] for k in FRAME_KEYS if k in data.files}
