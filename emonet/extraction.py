"""EmoNet features of every frame of a dataset (AFEW-VA, Aff-Wild2, AffectNet: `datasets.py`): one file a clip,
`<output_dir>/<clip>.npz` (`feature_store.py`), plus a manifest.

Each frame has `features` (float32, 256), its labels `valence` and `arousal` (the dataset's scale), and EmoNet's
own outputs from the same pass (`emonet_valence`, `emonet_arousal` on [-1, 1], `emonet_expression` logits) so
that the pretrained model can be evaluated zero-shot later.

Resumable: while it runs, each frame is written to `<output_dir>/<clip>/<frame>.npz` under a temporary name and
renamed, so a file under its final name is complete; at the end every clip is packed into its clip file and its
per-frame files removed. A rerun skips frames found in a clip file or a complete per-frame file and extracts the
rest. Under torchrun each process extracts
its own whole clips; a rerun with another number of processes resumes the same folder. The settings that define the
features (colour space, crop, checkpoint, precision, with `-compiled` after it for --compile) are pinned in
`<output_dir>/extraction_settings.json` before the first file is written; a run with other settings for the
same folder is refused.
"""
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .afew_va import Frame, Problem, no_usable_frame
from .checkpoint import load_emonet, require_file
from .constants import DEFAULT_DATASET, FEATURE_DIM, IMAGE_SIZE
from .data import FrameDataset, frame_loader, split_failures
from .datasets import dataset_settings, read_dataset
from .device import amp_enabled
from .distributed import Distributed, init_distributed, shard_clips
from .engine import calibration_id, choose_backend, int8_precision
from .errors import DatasetError
from .feature_store import FRAME_KEYS, clip_file, clip_frames, frame_file, pack_clip
from .inference import COMPILED_SUFFIX, infer, make_runner
from .io import TMP_SUFFIX, check_writable, save_npz, sha256_file, write_json
from .manifest import FEATURE_IDENTITY_KEYS, write_manifest
from .runs import check_kind
from .settings import ExtractionConfig

logger = logging.getLogger(__name__)

SETTINGS_FILE = "extraction_settings.json"
ERRORS_FILE = "extraction_errors.json"


@dataclass
class ExtractionResult:
    to_extract: int  # frames this run set out to extract
    extracted: int
    undecodable: int  # of `to_extract`: images that could not be decoded
    skipped: int  # frames already extracted by an earlier run
    dataset_problems: int  # frames or clips the reader could not use (labels, landmarks, JSON, missing images)
    manifest_path: Path
    errors_path: Path
    compile_seconds: float = 0.0  # rank 0's, with --compile

    @property
    def failed(self) -> int:
        """Everything recorded in the errors file (what --strict turns into exit 1)."""
        return self.undecodable + self.dataset_problems

    def summary(self) -> str:
        compiled = f" (after compiling for {self.compile_seconds:.0f} s)" if self.compile_seconds else ""
        return (f"extracted {self.extracted} of {self.to_extract}{compiled} ({self.undecodable} could not be decoded), "
                f"skipped {self.skipped} (already done), {self.dataset_problems} problems in the dataset; "
                f"manifest: {self.manifest_path}; errors: {self.errors_path}")


def feature_file_ok(path: Path) -> bool:
    """True when `path` is a complete per-frame feature file (all keys, 256 finite features)."""
    try:
        with np.load(path) as data:
            return set(FRAME_KEYS) <= set(data.files) and data["features"].shape == (FEATURE_DIM,) and bool(
                np.isfinite(data["features"]).all())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return False


def _check_settings(output_dir: Path, identity: dict) -> None:
    """Pin the feature-defining settings of `output_dir`, refusing a folder whose features were made with
    other settings. A folder without feature files is (re)pinned: it holds nothing to mix with, e.g. after a
    run that failed before its first frame."""
    check_kind(output_dir, "extraction")
    path = output_dir / SETTINGS_FILE
    has_features = output_dir.is_dir() and (any(output_dir.glob("*.npz")) or any(output_dir.glob("*/*.npz")))
    if has_features and path.is_file():
        pinned = json.loads(path.read_text())
        pinned.setdefault("dataset", DEFAULT_DATASET)  # folders pinned before other datasets were read: AFEW-VA's
        changed = [f"{k}: {pinned.get(k)!r} -> {identity[k]!r}" for k in (*FEATURE_IDENTITY_KEYS, "dataset")
                   if pinned.get(k) != identity[k]]
        if changed:
            raise DatasetError(
                f"{output_dir} holds features made with other settings ({'; '.join(changed)}); refusing to mix "
                "them. Use another --output_dir (and --manifest_file), or delete that folder."
            )
    elif has_features:
        raise DatasetError(f"{output_dir} holds feature files but no {SETTINGS_FILE}; refusing to mix features. "
                           "Use another --output_dir, or delete that folder.")
    else:
        write_json(path, identity)


def _pending(frames: list[Frame], output_dir: Path, overwrite: bool) -> list[int]:
    """Indices of the frames still to extract: neither in their clip's file nor in a complete per-frame file of a
    run that was stopped before packing. Removes temp files of killed runs."""
    packed = {}
    for clip in {f.clip for f in frames}:
        for stale in chain((output_dir / clip).glob(f".*{TMP_SUFFIX}*"), output_dir.glob(f".{clip}.npz*{TMP_SUFFIX}*")):
            stale.unlink(missing_ok=True)  # .<name>.<random>.tmp<suffix>
        packed[clip] = set() if overwrite else clip_frames(clip_file(output_dir, clip))
    return [i for i, f in enumerate(frames) if overwrite or not (
        f.frame in packed[f.clip] or feature_file_ok(frame_file(output_dir, f.clip, f.frame)))]


def _prepare_folder(output_dir: Path, identity: dict, frames: list[Frame], overwrite: bool,
                    dist: Distributed) -> list[int]:
    """Rank 0 pins the settings (before any rank writes) and finds the pending frames; every rank gets them."""
    error, pending = None, None
    if dist.is_main:
        try:
            _check_settings(output_dir, identity)
            pending = _pending(frames, output_dir, overwrite)
        except DatasetError as exc:
            error = exc
    dist.agree(error)
    return dist.broadcast(pending)


def _my_frames(frames: list[Frame], dist: Distributed) -> list[Frame]:
    """This rank's share of `frames`: whole clips, balanced by frame count (all of them without torchrun)."""
    if not dist.is_distributed:
        return frames
    sizes: dict[str, int] = {}
    for f in frames:
        sizes[f.clip] = sizes.get(f.clip, 0) + 1
    mine = shard_clips(list(sizes), list(sizes.values()), dist.rank, dist.world_size)
    return [f for f in frames if f.clip in mine]


def extract_features(config: ExtractionConfig) -> ExtractionResult | None:
    """Extract the features of every usable frame not yet done; returns the totals on rank 0 (None elsewhere).

    Under torchrun, each rank extracts its own clips and rank 0 writes the manifest and the error file with
    every rank's problems.
    """
    config = config.checked()  # the dataset's crop, the default folders, $AFEW_VA_ROOT
    dist = init_distributed(config.device)
    try:
        return _extract(config, dist)
    finally:
        dist.close()


def _extract(config: ExtractionConfig, dist: Distributed) -> ExtractionResult | None:
    device = dist.device
    amp = amp_enabled(device, config.amp)
    choice = choose_backend(config.backend, device, amp, config.compile, config.int8_calibration is not None,
                            config.threads)
    output_dir, manifest_path = Path(config.output_dir), Path(config.manifest_file)
    require_file(config.pretrained_path)  # before anything slow: what is missing or cannot be written is said at once
    if dist.is_main:
        check_writable(output_dir, manifest_path.parent)
    read = read_dataset(config.dataset, config.dataset_root, config.limit, need_landmarks=config.crop == "landmarks")
    dataset_root, frames, problems = read.root, read.frames, read.problems
    model, _ = load_emonet(config.pretrained_path, device)
    pretrained_sha256 = sha256_file(config.pretrained_path)
    calibration = _calibration(frames, config) if config.int8_calibration else None
    identity = {
        "color_space": config.color_space,
        "crop": config.crop,
        "image_size": IMAGE_SIZE,
        "pretrained_sha256": pretrained_sha256,
        "precision": (int8_precision(calibration[1]) if calibration else
                      ("bf16" if amp else "fp32") + (COMPILED_SUFFIX if config.compile else "")),
        "dataset": config.dataset,
    }
    errors_path = output_dir / ERRORS_FILE
    if not frames:
        if dist.is_main:  # the problems, listed for the user to fix, and the message names the first ones
            _write_errors(errors_path, problems)
        raise no_usable_frame(dataset_root, problems)
    pending = [frames[i] for i in _prepare_folder(output_dir, identity, frames, config.overwrite, dist)]
    logger.info("%d usable frames: %d to extract, %d already done", len(frames), len(pending), len(frames) - len(pending))
    mine = _my_frames(pending, dist)

    failed: list[Problem] = []
    compile_seconds = 0.0
    if mine:
        runner, compile_seconds = make_runner(model, device, choice, amp, config.compile, config.batch_size,
                                              pretrained_sha256, *(calibration or (None, None)))
        loader = frame_loader(FrameDataset(mine, config.color_space, config.crop), config.batch_size,
                              config.num_workers, device)
        with torch.inference_mode(), tqdm(total=len(mine), unit="frame", disable=not (config.progress and dist.is_main)) as bar:
            for batch in loader:
                good, batch_failed = split_failures(batch)
                failed += [Problem(str(mine[index].image_path), "unreadable_image", error)
                           for index, error in batch_failed.items()]
                bar.update(len(batch_failed))
                if good:
                    out = {k: v.numpy() for k, v in infer(runner, batch["image"][good], device, amp, done=bar.update).items()}
                    for j, i in enumerate(good):
                        frame = mine[batch["index"][i]]
                        save_npz(
                            frame_file(output_dir, frame.clip, frame.frame),
                            features=out["features"][j],
                            valence=np.float32(frame.valence),
                            arousal=np.float32(frame.arousal),
                            emonet_valence=out["valence"][j],
                            emonet_arousal=out["arousal"][j],
                            emonet_expression=out["expression"][j],
                        )

    failed = [p for rank_failed in dist.gather(failed) for p in rank_failed]  # every rank's, in rank order
    if not dist.is_main:
        return None
    problems = problems + failed
    failed_paths = {p.path for p in failed}
    done = [f for f in frames if str(f.image_path) not in failed_paths]
    manifest_dir = manifest_path.resolve().parent
    settings = {
        **identity,
        **dataset_settings(config.dataset),
        "skipped_by_dataset_rules": read.skipped,
        "pretrained_path": str(config.pretrained_path),
        "n_expression": model.n_expression,
        "dataset_root": str(dataset_root.resolve()),
        "output_dir": str(output_dir),
        "feature_dim": FEATURE_DIM,
        "torch_version": torch.__version__,
        "backend": choice.record(),
        "stand_in_weights": model.stand_in,
    }
    by_clip: dict[str, list[Frame]] = {}
    for f in done:
        by_clip.setdefault(f.clip, []).append(f)
    samples = []
    for clip, clip_frames_done in tqdm(by_clip.items(), unit="clip", desc="packing clips", disable=not config.progress):
        pack_clip(output_dir, clip, [f.frame for f in clip_frames_done])
        path = Path(os.path.relpath(clip_file(output_dir, clip).resolve(), manifest_dir)).as_posix()
        samples += [{"path": path, **f.sample()} for f in clip_frames_done]
    _write_errors(errors_path, problems)
    write_manifest(manifest_path, settings, samples)
    return ExtractionResult(len(pending), len(pending) - len(failed), len(failed), len(frames) - len(pending),
                            len(problems) - len(failed), manifest_path, errors_path, compile_seconds)


def _calibration(frames: list[Frame], config: ExtractionConfig):
    """(batches of model input to calibrate int8 on, their id): `int8_calibration` frames drawn evenly over the dataset
    (all its usable frames, so that a resumed run draws the same), prepared exactly as they are extracted."""
    count = min(config.int8_calibration, len(frames))
    chosen = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    ident = calibration_id([config.crop, config.color_space, *(str(f.image_path) for f in chosen)])

    def batches():
        loader = frame_loader(FrameDataset(chosen, config.color_space, config.crop), config.batch_size, 0,
                              torch.device("cpu"))
        for batch in loader:
            good, _ = split_failures(batch)
            if good:
                yield batch["image"][good].numpy()

    return batches, ident


def _write_errors(path: Path, problems: list[Problem]) -> None:
    write_json(path, {"count": len(problems), "errors": [p.as_dict() for p in problems]})
