"""Shared fixtures: a small AFEW-VA tree and a released-format EmoNet checkpoint, both deterministic."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from emonet.engine import CACHE_ENV
from emonet.io import sha256_file
from emonet.manifest import LIST_FORMAT, read_manifest
from emonet.testing import synthetic_labels, write_afew_va_tree, write_feature_set, write_released_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"
LABELS_PATH = ROOT.parent / "shared" / "reference" / "afew_va_labels.json"
NO_LABELS_REASON = f"needs the real AFEW-VA labels at {LABELS_PATH} (present in CI, absent in a bare clone)"

FIXTURE_CLIPS = 6
FIXTURE_FRAMES = 4
QUIET_CPU = ("--no_progress", "--device", "cpu")  # the flags every script run in a test takes

# One intra-op thread per test process when pytest-xdist runs several, so that they share the cores.
torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory):
    """The engine's exported networks go to a folder of the test session, not the user's cache."""
    folder = tmp_path_factory.mktemp("engine_cache")
    os.environ[CACHE_ENV] = str(folder)
    return folder


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


def trained_temporal_head(folder: Path, released_checkpoint: Path, crop: str) -> Path:
    """A temporal head (one epoch) on synthetic features whose manifest says they were made with `crop` and the
    released checkpoint in fp32: what predict.py accepts with that checkpoint."""
    import train_emonet_features

    manifest = write_feature_set(folder, clip_labels(6))
    content = json.loads(manifest.read_text())
    content["settings"].update(crop=crop, pretrained_sha256=sha256_file(released_checkpoint), precision="fp32")
    manifest.write_text(json.dumps(content))
    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(manifest), "--head", "temporal", "--epochs", "1", "--output_dir", str(folder / "run"),
         "--no_progress", "--device", "cpu"]))
    return folder / "run" / "best_model.pth"


def run_script(script, *argv) -> int:
    """`script`'s main() on `argv`, as its command line runs it."""
    return script.main(script.get_args_parser().parse_args([str(a) for a in argv]))


def manifest_as_list(path: Path) -> dict:
    """A manifest as format 1's JSON object (settings and a list of samples), for a test to edit and write back as
    JSON: extraction writes format 2 (columns), and both are read."""
    manifest = read_manifest(path)
    return {"format": LIST_FORMAT, "settings": manifest.settings, "samples": manifest.samples}
