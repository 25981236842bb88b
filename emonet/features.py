"""Extracted features in memory, and the regression head trained on them.

All feature files are read once, in one pass, into one array: a training step then indexes memory,
never the disk (the seed read one `.npz` per sample per step).
"""
import logging
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .constants import FEATURE_DIM
from .errors import DatasetError
from .manifest import Manifest

logger = logging.getLogger(__name__)

HEAD_HIDDEN = (128, 64)
# Parsing an .npz is Python work (zip directory, array headers) that holds the GIL: threads make it slower
# (27 s instead of 15 s for 30,051 files on 2 cores), processes scale (8.7 s with 2). Below this many
# files, starting processes costs more than it saves.
PARALLEL_LOAD_MIN_FILES = 4000
LOAD_CHUNK = 256


@dataclass
class FeatureSet:
    samples: list[dict]  # manifest entries, in order
    features: np.ndarray  # N x 256 float32
    labels: np.ndarray  # N x 2 float32, raw scale [-10, 10] (valence, arousal)
    emonet_va: np.ndarray | None  # N x 2 float32, EmoNet's own valence/arousal on [-1, 1], None if absent


def _read_one(path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path) as data:
            features = data["features"].astype(np.float32)
            emonet = (np.array([data["emonet_valence"], data["emonet_arousal"]], dtype=np.float32).ravel()
                      if "emonet_valence" in data.files else None)
    except FileNotFoundError:
        raise DatasetError(f"{path}: feature file listed in the manifest is missing") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: unreadable feature file ({exc})") from None
    if features.shape != (FEATURE_DIM,) or not np.isfinite(features).all():
        raise DatasetError(f"{path}: features of shape {features.shape} (expected ({FEATURE_DIM},), finite)")
    return features, emonet


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
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    labels = np.array([[s["valence"], s["arousal"]] for s in manifest.samples], dtype=np.float32)
    logger.info("loaded %d feature vectors from %s", len(paths), manifest.path)
    return FeatureSet(manifest.samples, features, labels, emonet if has_emonet else None)


class FeatureHead(nn.Module):
    """256 -> 128 -> 64 -> 2 (valence, arousal on EmoNet's [-1, 1] scale).

    The input is standardised with the training split's per-dimension mean and standard deviation, kept
    as buffers so that the checkpoint carries them: EmoNet features are not unit-scaled.
    """

    def __init__(self, in_dim: int = FEATURE_DIM, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        h1, h2 = HEAD_HIDDEN
        self.net = nn.Sequential(
            nn.Linear(in_dim, h1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h1, h2), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h2, 2),
        )

    def set_normalisation(self, features: np.ndarray) -> None:
        self.feature_mean.copy_(torch.from_numpy(features.mean(axis=0)))
        self.feature_std.copy_(torch.from_numpy(features.std(axis=0)).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.feature_mean) / self.feature_std)


def train_head_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor,
                     order: torch.Tensor, batch_size: int) -> float:
    """One epoch over the rows `order` of the in-memory features `x` and targets `y`; returns the mean loss."""
    model.train()
    xs, ys = x[order], y[order]  # one gather per epoch, then contiguous slices
    total, seen = 0.0, 0
    for start in range(0, len(order), batch_size):
        xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
        if len(xb) < 2:  # a CCC over one sample is undefined
            continue
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
        seen += len(xb)
    return total / max(seen, 1)
