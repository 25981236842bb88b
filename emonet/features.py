"""Extracted features in memory.

All feature files are read once, in one pass, into one array: a training step then indexes memory,
never the disk (the seed read one `.npz` per sample per step). Files of this project hold the key
`features`; the seed's hold `feature` (256 values, shape (256,) or (1, 256)) and nothing else: both are read.
"""
import logging
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .constants import FEATURE_DIM
from .errors import DatasetError
from .manifest import Manifest

logger = logging.getLogger(__name__)

# Parsing an .npz is Python work (zip directory, array headers) that holds the GIL: threads make it slower
# (27 s instead of 15 s for 30,051 files on 2 cores), processes scale (8.7 s with 2). Below this many
# files, starting processes costs more than it saves.
PARALLEL_LOAD_MIN_FILES = 4000
LOAD_CHUNK = 256
# Keys that hold the feature vector: this project's files, then the seed's.
FEATURE_KEYS = ("features", "feature")
# Optimisation defaults of train_emonet_features.py (and of the head comparison).
HEAD_DEFAULTS = {"batch_size": 64, "epochs": 50, "learning_rate": 1e-3}


@dataclass
class FeatureSet:
    samples: list[dict]  # manifest entries, in order
    features: np.ndarray  # N x 256 float32
    labels: np.ndarray  # N x 2 float32, raw scale [-10, 10] (valence, arousal)
    emonet_va: np.ndarray | None  # N x 2 float32, EmoNet's own valence/arousal on [-1, 1], None if absent


def _read_one(path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path) as data:
            key = next((k for k in FEATURE_KEYS if k in data.files), None)
            if key is None:
                raise DatasetError(f"{path}: no feature vector in the file (keys {', '.join(data.files) or 'none'}; "
                                   f"expected {' or '.join(FEATURE_KEYS)})")
            features = data[key].astype(np.float32)
            emonet = (np.array([data["emonet_valence"], data["emonet_arousal"]], dtype=np.float32).ravel()
                      if "emonet_valence" in data.files else None)
    except FileNotFoundError:
        raise DatasetError(f"{path}: feature file is missing") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: unreadable feature file ({exc})") from None
    if features.size != FEATURE_DIM or not np.isfinite(features).all():
        raise DatasetError(f"{path}: features of shape {features.shape} (expected {FEATURE_DIM} finite values)")
    return features.reshape(FEATURE_DIM), emonet


def load_feature_set(manifest: Manifest, data_root: str | os.PathLike | None = None, progress: bool = True) -> FeatureSet:
    """Read every feature file of `manifest` (resolved against `data_root`, default the manifest's folder)."""
    paths = [manifest.resolve(s, data_root) for s in manifest.samples]
    features = np.empty((len(paths), FEATURE_DIM), dtype=np.float32)
    emonet = np.empty((len(paths), 2), dtype=np.float32)
    has_emonet = True
    workers = os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(paths) >= PARALLEL_LOAD_MIN_FILES else None
    try:
        results = pool.map(_read_one, paths, chunksize=LOAD_CHUNK) if pool else map(_read_one, paths)
        for i, (f, e) in enumerate(tqdm(results, total=len(paths), unit="file", desc="loading features", disable=not progress)):
            features[i] = f
            if e is None:
                has_emonet = False
            else:
                emonet[i] = e
    except DatasetError as exc:
        raise DatasetError(f"{exc}; it is listed in the manifest {manifest.path}. Rerunning the extraction command "
                           "that wrote it repairs it (extraction redoes every file that does not load)") from None
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    labels = np.array([[s["valence"], s["arousal"]] for s in manifest.samples], dtype=np.float32)
    logger.info("loaded %d feature vectors from %s", len(paths), manifest.path)
    return FeatureSet(manifest.samples, features, labels, emonet if has_emonet else None)
