"""Per-frame EmoNet features for AFEW-VA: `<output_dir>/<clip>/<frame>.npz` plus a manifest.

Each `.npz` holds `features` (float32, 256), the raw labels `valence` and `arousal`, and EmoNet's own
outputs from the same pass (`emonet_valence`, `emonet_arousal` on [-1, 1], `emonet_expression` logits)
so that the pretrained model can be evaluated zero-shot later.

Resumable: every file is written under a temporary name and renamed, so a file under its final name is
complete; a rerun skips frames whose file loads and extracts the rest. The settings that define the
features (colour space, crop, checkpoint, precision) are pinned in `<output_dir>/extraction_settings.json`
before the first file is written; a run with other settings for the same folder is refused.
"""
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .afew_va import Frame, Problem, read_afew_va, resolve_dataset_root
from .checkpoint import load_emonet
from .cli import dataset_root_or_env
from .constants import FEATURE_DIM, IMAGE_SIZE
from .data import FrameDataset, frame_loader, split_failures, to_model_input
from .device import amp_enabled, autocast, resolve_device
from .errors import DatasetError
from .io import TMP_SUFFIX, save_npz, sha256_file, write_json
from .manifest import write_manifest

logger = logging.getLogger(__name__)

SETTINGS_FILE = "extraction_settings.json"
ERRORS_FILE = "extraction_errors.json"
# Settings that change the features: a folder holds features of one combination only.
IDENTITY_KEYS = ("color_space", "crop", "image_size", "pretrained_sha256", "precision")
NPZ_KEYS = ("features", "valence", "arousal", "emonet_valence", "emonet_arousal", "emonet_expression")


@dataclass
class ExtractionConfig:
    dataset_root: str
    output_dir: str
    manifest_file: str
    pretrained_path: str
    color_space: str = "hsv"
    crop: str = "landmarks"
    batch_size: int = 32
    num_workers: int = 2
    device: str = "auto"
    amp: bool = False
    limit: int | None = None
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def from_args(cls, args) -> "ExtractionConfig":
        """From the extraction scripts' flags (see `cli.add_extraction_arguments`)."""
        return cls(
            dataset_root=dataset_root_or_env(args.dataset_root), output_dir=args.output_dir,
            manifest_file=args.manifest_file, pretrained_path=args.pretrained_path, color_space=args.color_space,
            crop=args.crop, batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
            amp=args.amp, limit=args.limit, overwrite=args.overwrite, progress=not args.no_progress,
        )


@dataclass
class ExtractionResult:
    extracted: int
    skipped: int
    failed: int
    manifest_path: Path
    errors_path: Path

    def summary(self) -> str:
        return (f"extracted {self.extracted}, skipped {self.skipped} (already done), failed {self.failed}; "
                f"manifest: {self.manifest_path}; errors: {self.errors_path}")


def feature_path(output_dir: Path, frame: Frame) -> Path:
    return output_dir / frame.clip / f"{frame.frame}.npz"


def feature_file_ok(path: Path) -> bool:
    """True when `path` is a complete feature file (all keys, 256 finite features)."""
    try:
        with np.load(path) as data:
            return set(NPZ_KEYS) <= set(data.files) and data["features"].shape == (FEATURE_DIM,) and bool(
                np.isfinite(data["features"]).all())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return False


def _check_settings(output_dir: Path, identity: dict) -> None:
    """Pin the feature-defining settings of `output_dir`, refusing a folder made with other settings."""
    path = output_dir / SETTINGS_FILE
    if path.is_file():
        pinned = json.loads(path.read_text())
        changed = [f"{k}: {pinned.get(k)!r} -> {identity[k]!r}" for k in IDENTITY_KEYS if pinned.get(k) != identity[k]]
        if changed:
            raise DatasetError(
                f"{output_dir} holds features made with other settings ({'; '.join(changed)}); refusing to mix "
                "them. Use another --output_dir (and --manifest_file), or delete that folder."
            )
    elif output_dir.is_dir() and any(output_dir.glob("*/*.npz")):
        raise DatasetError(f"{output_dir} holds feature files but no {SETTINGS_FILE}; refusing to mix features. "
                           "Use another --output_dir, or delete that folder.")
    else:
        write_json(path, identity)


def _pending(frames: list[Frame], output_dir: Path, overwrite: bool) -> tuple[list[Frame], int]:
    """Frames still to extract, and the number already done. Removes temp files of killed runs."""
    for clip in {f.clip for f in frames}:
        for stale in (output_dir / clip).glob(f".*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
    if overwrite:
        return frames, 0
    pending = [f for f in frames if not feature_file_ok(feature_path(output_dir, f))]
    return pending, len(frames) - len(pending)


def extract_features(config: ExtractionConfig) -> ExtractionResult:
    device = resolve_device(config.device)
    amp = amp_enabled(device, config.amp)
    dataset_root = resolve_dataset_root(config.dataset_root)
    output_dir, manifest_path = Path(config.output_dir), Path(config.manifest_file)
    model, _ = load_emonet(config.pretrained_path, device)
    identity = {
        "color_space": config.color_space,
        "crop": config.crop,
        "image_size": IMAGE_SIZE,
        "pretrained_sha256": sha256_file(config.pretrained_path),
        "precision": "bf16" if amp else "fp32",
    }
    frames, problems = read_afew_va(dataset_root, config.limit)
    if not frames:
        raise DatasetError(f"{dataset_root}: no usable frame ({len(problems)} problems)")
    _check_settings(output_dir, identity)
    pending, skipped = _pending(frames, output_dir, config.overwrite)
    logger.info("%d frames: %d to extract, %d already done", len(frames), len(pending), skipped)

    failed_paths = set()
    if pending:
        model = model.to(memory_format=torch.channels_last)
        loader = frame_loader(FrameDataset(pending, config.color_space, config.crop), config.batch_size,
                              config.num_workers, device)
        with torch.inference_mode(), tqdm(total=len(pending), unit="frame", disable=not config.progress) as bar:
            for batch in loader:
                good, failed = split_failures(batch)
                for index, error in failed.items():
                    problems.append(Problem(str(pending[index].image_path), "unreadable_image", error))
                    failed_paths.add(pending[index].image_path)
                if good:
                    with autocast(device, amp):
                        out = model(to_model_input(batch["image"][good], device))
                    out = {k: out[k].float().cpu().numpy() for k in ("features", "valence", "arousal", "expression")}
                    for j, i in enumerate(good):
                        frame = pending[batch["index"][i]]
                        save_npz(
                            feature_path(output_dir, frame),
                            features=out["features"][j],
                            valence=np.float32(frame.valence),
                            arousal=np.float32(frame.arousal),
                            emonet_valence=out["valence"][j],
                            emonet_arousal=out["arousal"][j],
                            emonet_expression=out["expression"][j],
                        )
                bar.update(len(batch["index"]))

    done = [f for f in frames if f.image_path not in failed_paths]
    manifest_dir = manifest_path.resolve().parent
    settings = {
        **identity,
        "pretrained_path": str(config.pretrained_path),
        "n_expression": model.n_expression,
        "dataset_root": str(dataset_root.resolve()),
        "output_dir": str(output_dir),
        "feature_dim": FEATURE_DIM,
        "torch_version": torch.__version__,
    }
    samples = [
        {"path": Path(os.path.relpath(feature_path(output_dir, f).resolve(), manifest_dir)).as_posix(), **f.sample()}
        for f in done
    ]
    errors_path = output_dir / ERRORS_FILE
    write_json(errors_path, {"count": len(problems), "errors": [p.as_dict() for p in problems]})
    write_manifest(manifest_path, settings, samples)
    return ExtractionResult(len(pending) - len(failed_paths), skipped, len(problems), manifest_path, errors_path)
