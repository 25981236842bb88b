"""EmoNet on frames: batched predictions (with flip test-time augmentation) and the fine-tuning epoch.

Frames are decoded, cropped and colour-converted in DataLoader workers by `data.FrameDataset`, the same
code path as feature extraction.
"""
import logging
import os

import numpy as np
import torch
from tqdm import tqdm

from .afew_va import Frame, read_afew_va
from .data import FrameDataset, frame_loader, split_failures, to_model_input
from .device import autocast
from .errors import DatasetError
from .model import EmoNet
from .training import epoch_generator

logger = logging.getLogger(__name__)


def load_frames_for(dataset_root: str | os.PathLike, limit: int | None = None) -> list[Frame]:
    """The usable frames of an AFEW-VA tree; problems are logged (the extraction scripts record them)."""
    frames, problems = read_afew_va(dataset_root, limit)
    for problem in problems:
        logger.warning("skipped %s: %s", problem.path, problem.reason)
    if not frames:
        raise DatasetError(f"{dataset_root}: no usable frame ({len(problems)} problems)")
    return frames


def predict_frames(model: EmoNet, frames: list[Frame], color_space: str, crop: str, device: torch.device,
                   batch_size: int, num_workers: int, amp: bool, flip_tta: bool,
                   progress: bool = True) -> tuple[np.ndarray, dict[int, str]]:
    """EmoNet's (valence, arousal) on [-1, 1] for each frame, N x 2; with `flip_tta` the mean of the frame's
    and its mirror's predictions (the mirror flips the frame and its landmarks, see `crop.flip_landmarks`).

    Also returns the frames that could not be decoded ({index: reason}); their rows are NaN, and the
    caller must leave them out and say so.
    """
    model = model.to(memory_format=torch.channels_last).eval()
    passes, failed = [], {}
    for flip in (False, True) if flip_tta else (False,):
        loader = frame_loader(FrameDataset(frames, color_space, crop, flip=flip), batch_size, num_workers, device)
        out = np.full((len(frames), 2), np.nan, dtype=np.float32)
        desc = "predicting (mirrored)" if flip else "predicting"
        with torch.inference_mode(), tqdm(total=len(frames), unit="frame", desc=desc, disable=not progress) as bar:
            for batch in loader:
                good, batch_failed = split_failures(batch)
                failed.update(batch_failed)
                bar.update(len(batch["index"]))
                if not good:
                    continue
                with autocast(device, amp):
                    result = model(to_model_input(batch["image"][good], device))
                rows = batch["index"][good].numpy()
                out[rows] = torch.stack([result["valence"], result["arousal"]], 1).float().cpu().numpy()
        passes.append(out)
    for reason in failed.values():
        logger.warning("left out of the predictions: %s", reason)
    return np.mean(passes, axis=0), failed


def train_epoch(model: EmoNet, dataset: FrameDataset, optimizer: torch.optim.Optimizer, loss_fn, device: torch.device,
                epoch: int, seed: int, batch_size: int, num_workers: int, amp: bool, grad_clip: float | None,
                progress: bool = True) -> float:
    """One epoch of fine-tuning EmoNet's valence/arousal outputs against labels / 10; returns the mean loss.

    Frames that fail to decode are left out of their batch (and logged).
    """
    model.train()
    dataset.epoch = epoch  # augmentation draws depend on (seed, epoch, index)
    loader = frame_loader(dataset, batch_size, num_workers, device, generator=epoch_generator(seed, epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    total, seen = 0.0, 0
    with tqdm(total=len(dataset), unit="frame", desc=f"epoch {epoch}", disable=not progress) as bar:
        for batch in loader:
            keep, failed = split_failures(batch)
            for reason in failed.values():
                logger.warning("skipped: %s", reason)
            bar.update(len(batch["index"]))
            if len(keep) < 2:  # a CCC over fewer than two samples is undefined
                continue
            with autocast(device, amp):
                out = model(to_model_input(batch["image"][keep], device))
            pred = torch.stack([out["valence"], out["arousal"]], 1).float()
            loss = loss_fn(pred, batch["target"][keep].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            total += loss.item() * len(keep)
            seen += len(keep)
    return total / max(seen, 1)
