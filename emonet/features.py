"""Extracted features in memory, and the regression head trained on them.

All feature files are read once, in one pass, into one array: a training step then indexes memory,
never the disk (the seed read one `.npz` per sample per step). Files of this project hold the key
`features`; the seed's hold `feature` (256 values, shape (256,) or (1, 256)) and nothing else: both are read.
"""
import contextlib
import logging
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .constants import FEATURE_DIM, LABEL_SCALE
from .errors import DatasetError
from .losses import get_loss
from .manifest import Manifest
from .splits import SplitIndices
from .training import TrainingRun, epoch_generator, fit, make_optimizer, va_ccc

logger = logging.getLogger(__name__)

HEAD_HIDDEN = (128, 64)
# Parsing an .npz is Python work (zip directory, array headers) that holds the GIL: threads make it slower
# (27 s instead of 15 s for 30,051 files on 2 cores), processes scale (8.7 s with 2). Below this many
# files, starting processes costs more than it saves.
PARALLEL_LOAD_MIN_FILES = 4000
LOAD_CHUNK = 256
# Keys that hold the feature vector: this project's files, then the seed's.
FEATURE_KEYS = ("features", "feature")
# The head is too small to gain from a second intra-op thread (measured: 1.69 ms a step with one or two);
# training it on one thread also makes its floats independent of the machine's core count.
HEAD_THREADS = 1
PREDICT_BATCH = 4096
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
        raise DatasetError(f"{exc}; it is listed in the manifest {manifest.path}") from None
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


def load_head(ckpt: dict) -> FeatureHead:
    """The head stored in a checkpoint of `train_feature_head`, in eval mode on the CPU."""
    head = FeatureHead(**ckpt["model_args"])
    head.load_state_dict(ckpt["model"])
    return head.eval()


def predict_head(head: FeatureHead, features: np.ndarray, device: torch.device) -> np.ndarray:
    """(valence, arousal) on the raw scale [-10, 10] for each row of `features`, N x 2."""
    head = head.to(device).eval()
    with torch.no_grad():
        x = torch.from_numpy(features)
        pred = [head(x[i : i + PREDICT_BATCH].to(device)).cpu() for i in range(0, len(x), PREDICT_BATCH)]
    return torch.cat(pred).numpy() * LABEL_SCALE if pred else np.zeros((0, 2), np.float32)


@contextlib.contextmanager
def intra_op_threads(n: int):
    """Run the block with `n` intra-op threads, restoring the previous number after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_feature_head(data: FeatureSet, indices: SplitIndices, args, output_dir: Path, meta: dict,
                       resumed: dict | None, device: torch.device) -> TrainingRun:
    """Train a FeatureHead on `indices.train` for `args.epochs`, choosing the best epoch on `indices.selection`.

    `args` carries the optimisation flags of `cli.add_optimisation_arguments` and `dropout`; `meta` (split,
    settings, args) goes into every checkpoint in `output_dir`. The one function behind
    train_emonet_features.py and each unit of compare_color_spaces.py.
    """
    torch.manual_seed(args.seed)
    model_args = resumed["model_args"] if resumed else {"dropout": args.dropout}
    model = FeatureHead(**model_args)
    model.set_normalisation(data.features[indices.train])  # statistics of the training side only
    model.to(device)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.learning_rate, args.weight_decay)
    loss_fn = get_loss(args.loss_function)
    x = torch.from_numpy(data.features).to(device)
    y = torch.from_numpy(data.labels / np.float32(LABEL_SCALE)).to(device)
    train_t, select_t = (torch.from_numpy(i).to(device) for i in (indices.train, indices.selection))

    def train_epoch(epoch: int) -> float:
        order = train_t[torch.randperm(len(train_t), generator=epoch_generator(args.seed, epoch)).to(device)]
        return train_head_epoch(model, optimizer, loss_fn, x, y, order, args.batch_size)

    def validate() -> dict:
        model.eval()
        with torch.no_grad():
            pred = model(x[select_t])
            loss = loss_fn(pred, y[select_t]).item()
        v, a = va_ccc(pred.cpu().numpy(), y[select_t].cpu().numpy())
        return {"loss": loss, "valence_CCC": v, "arousal_CCC": a}

    run = TrainingRun(output_dir, model, optimizer, args.epochs, args.seed, args.save_freq,
                      {**meta, "model_args": model_args})
    with intra_op_threads(HEAD_THREADS):
        fit(run, train_epoch, validate, resumed)
    return run


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
