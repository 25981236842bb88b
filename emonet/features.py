"""Extracted features in memory.

All feature files are read once, in one pass, into one array: a training step then indexes memory,
never the disk (the seed read one `.npz` per sample per step). Files of this project are clip files
(`feature_store.py`) or, from earlier extractions, one file a frame with the key `features`; the seed's hold
`feature` (256 values, shape (256,) or (1, 256)) and nothing else: all are read.
"""
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .constants import FEATURE_DIM, LABEL_SCALE
from .errors import DatasetError
from .feature_store import read_feature_file
from .manifest import Manifest

logger = logging.getLogger(__name__)

# Parsing an .npz is Python work (zip directory, array headers) that holds the GIL: threads make it slower
# (27 s instead of 15 s for 30,051 files on 2 cores), processes scale (8.7 s with 2). Below this many
# files, starting processes costs more than it saves.
PARALLEL_LOAD_MIN_FILES = 4000
LOAD_CHUNK = 256
# Optimisation defaults of train_emonet_features.py (and of the head comparison).


@dataclass
class FeatureSet:
    samples: list[dict]  # manifest entries, in order
    features: np.ndarray  # N x 256 float32
    labels: np.ndarray  # N x 2 float32 (valence, arousal) on AFEW-VA's scale [-10, 10], whatever the dataset
    emonet_va: np.ndarray | None  # N x 2 float32, EmoNet's own valence/arousal on [-1, 1], None if absent


def load_feature_set(manifest: Manifest, data_root: str | os.PathLike | None = None, progress: bool = True) -> FeatureSet:
    """Read every feature file of `manifest` (resolved against `data_root`, default the manifest's folder): clip files
    (`feature_store.py`), each read once for all its samples, and per-frame files."""
    rows_of: dict[str, list[int]] = {}  # by the path as written: 2.8 million samples name a few hundred clip files
    for i, sample in enumerate(manifest.samples):
        rows_of.setdefault(sample["path"], []).append(i)
    files = [manifest.resolve({"path": p}, data_root) for p in rows_of]
    features = np.empty((len(manifest.samples), FEATURE_DIM), dtype=np.float32)
    emonet = np.empty((len(manifest.samples), 2), dtype=np.float32)
    has_emonet = True
    workers = os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(files) >= PARALLEL_LOAD_MIN_FILES else None
    try:
        results = pool.map(read_feature_file, files, chunksize=LOAD_CHUNK) if pool else map(read_feature_file, files)
        for path, indices, (frames, f, e) in zip(files, rows_of.values(),
                                                 tqdm(results, total=len(files), unit="file", desc="loading features",
                                                      disable=not progress), strict=True):
            rows = [0] if frames is None else _rows(path, frames, [manifest.samples[i]["frame"] for i in indices])
            features[indices] = f[rows]
            if e is None:
                has_emonet = False
            else:
                emonet[indices] = e[rows]
    except DatasetError as exc:
        raise DatasetError(f"{exc}; it is listed in the manifest {manifest.path}. Rerunning the extraction command "
                           "that wrote it repairs it (extraction redoes every frame it cannot read)") from None
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    # Every dataset on AFEW-VA's scale [-10, 10] (`datasets.py`): Aff-Wild2's and AffectNet's [-1, 1] labels x 10.
    raw = np.array([[s["valence"], s["arousal"]] for s in manifest.samples], dtype=np.float64)
    samples = manifest.samples
    if manifest.label_scale != LABEL_SCALE:  # the samples' labels too, for whatever reads them from the samples
        raw *= LABEL_SCALE / manifest.label_scale
        samples = [{**s, "valence": float(v), "arousal": float(a)} for s, (v, a) in zip(samples, raw, strict=True)]
    labels = raw.astype(np.float32)
    logger.info("loaded %d feature vectors (%d files) from %s", len(samples), len(files), manifest.path)
    return FeatureSet(samples, features, labels, emonet if has_emonet else None)


def _rows(path, frames: list[str], wanted: list[str]) -> list[int]:
    """Rows of a clip file for the manifest's frames of it; a frame it lacks is named."""
    position = {f: k for k, f in enumerate(frames)}
    missing = [f for f in wanted if f not in position]
    if missing:
        raise DatasetError(f"{path}: the clip file lacks frame{'s' if len(missing) > 1 else ''} {', '.join(missing[:3])}"
                           f"{', ...' if len(missing) > 3 else ''}")
    return [position[f] for f in wanted]
