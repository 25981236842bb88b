"""Shared fixtures: a small AFEW-VA tree and a released-format EmoNet checkpoint, both deterministic."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from emonet.testing import synthetic_labels, write_afew_va_tree, write_feature_set, write_released_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"
LABELS_PATH = ROOT.parent / "shared" / "reference" / "afew_va_labels.json"
NO_LABELS_REASON = f"needs the real AFEW-VA labels at {LABELS_PATH} (present in CI, absent in a bare clone)"

FIXTURE_CLIPS = 6
FIXTURE_FRAMES = 4

# One intra-op thread per test process when pytest-xdist runs several, so that they share the cores.
torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def real_labels() -> dict | None:
    """The real per-frame labels of all 600 clips, or None outside this project's workspace."""
    if not LABELS_PATH.is_file():
        return None
    return json.loads(LABELS_PATH.read_text())["clips"]


def clip_labels(n_clips: int) -> dict:
    """Labels of the first `n_clips` clips: the real ones where available, else synthetic ones with their
    structure (clips of 10 to 80 frames of slowly drifting integers)."""
    labels = real_labels()
    if labels is not None:
        return {clip: labels[clip] for clip in sorted(labels)[:n_clips]}
    return synthetic_labels(n_clips, 10, 80)


def write_spaces(folder: Path, labels: dict, signals: tuple[float, float] = (1.0, 1.0), noise: float = 0.5) -> Path:
    """rgb and hsv feature sets of the same frames under their standard names in `folder` (features_manifest.json,
    features_hsv_manifest.json), carrying the labels with strength `signals` (rgb, hsv) under per-frame `noise`."""
    for (space, (feature_dir, manifest)), signal, seed in zip(
            (("rgb", ("features", "features_manifest.json")), ("hsv", ("features_hsv", "features_hsv_manifest.json"))),
            signals, (1, 2), strict=True):
        write_feature_set(folder, labels, manifest, feature_dir, color_space=space, signal=signal, seed=seed, noise=noise)
    return folder


@pytest.fixture(scope="session")
def afew_labels() -> dict:
    labels = real_labels()
    if labels is None:
        pytest.skip(NO_LABELS_REASON)
    return labels


def fixture_labels() -> dict:
    """Labels for the small tree: the real ones of the first clips when available, else a fixed sequence."""
    labels = real_labels()
    if labels is not None:
        return {clip: labels[clip] for clip in sorted(labels)[:FIXTURE_CLIPS]}
    rng = np.random.default_rng(1)
    return {f"{i:03d}": {"valence": rng.integers(-10, 11, FIXTURE_FRAMES).tolist(),
                         "arousal": rng.integers(-10, 11, FIXTURE_FRAMES).tolist()}
            for i in range(1, FIXTURE_CLIPS + 1)}


@pytest.fixture(scope="session")
def afew_tree(tmp_path_factory) -> Path:
    """A read-only AFEW-VA tree: 6 clips x 4 frames of 720 x 576 PNG with the astronaut's face.

    Tests that modify a tree copy it first (`shutil.copytree`).
    """
    return write_afew_va_tree(tmp_path_factory.mktemp("afew") / "AFEW-VA", fixture_labels(), FIXTURE_FRAMES)


@pytest.fixture(scope="session")
def released_checkpoint(tmp_path_factory) -> Path:
    """`emonet_8.pth` in the released format, with the deterministic reference weights."""
    return write_released_checkpoint(tmp_path_factory.mktemp("pretrained") / "emonet_8.pth")
