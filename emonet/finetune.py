"""EmoNet on frames: batched predictions (with flip test-time augmentation), the fine-tuning epoch, and
the whole fine-tuning run behind train_emonet_hsv.py and the fine-tuning units of compare_color_spaces.py.

Frames are decoded, cropped and colour-converted in DataLoader workers by `data.FrameDataset`, the same
code path as feature extraction. Under torchrun (a `Distributed` with world_size > 1) predictions are
shared among the processes and gathered, and training is DistributedDataParallel over the trainable
parameters, each process drawing its own share of every epoch's seeded order.
"""
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler
from tqdm import tqdm

from .afew_va import Frame, no_usable_frame
from .checkpoint import load_emonet
from .constants import DEFAULT_CROP, DEFAULT_DATASET, LABEL_SCALE
from .data import Augment, FrameDataset, frame_loader, split_failures, to_model_input
from .dataset_info import DATASETS, check_crop
from .datasets import read_dataset
from .device import amp_enabled, autocast
from .distributed import Distributed, shard_positions
from .errors import EmoNetError
from .inference import infer, prepare
from .losses import get_loss
from .model import EMOTION_MODULES, EmoNet
from .settings import FinetuneConfig
from .splits import SplitIndices, selection_side
from .training import (TrainingRun, epoch_generator, fit, make_optimizer, module_state, reseed, va_ccc,
                       warn_constant_selection)

logger = logging.getLogger(__name__)

# Optimisation defaults of train_emonet_hsv.py (and of the fine-tuning comparison).
# Flags of a fine-tuning run that a resumed run must keep, besides training.RESUME_FIXED_ARGS.
FINETUNE_FIXED_ARGS = ("color_space", "crop", "freeze_backbone", "augment", "colour_jitter", "grad_clip", "limit",
                       "amp", "n_expression", "sync_bn")


def load_frames_for(dataset_root: str | os.PathLike, limit: int | None = None, crop: str = DEFAULT_CROP,
                    dataset: str = DEFAULT_DATASET) -> list[Frame]:
    """The usable frames of a dataset's tree (AFEW-VA by default) for `crop` (landmarks are required by the landmark
    crop only), labels on AFEW-VA's scale [-10, 10] whatever the dataset (as `features.load_feature_set` puts them, so
    that fine-tuning, its metrics and cross-corpus scores share one scale); problems are logged (the extraction
    scripts record them)."""
    check_crop(dataset, crop)
    read = read_dataset(dataset, dataset_root, limit, need_landmarks=crop == "landmarks")
    frames, problems = read.frames, read.problems
    for problem in problems:
        logger.warning("skipped %s: %s", problem.path, problem.reason)
    if not frames:
        raise no_usable_frame(dataset_root, problems)
    factor = LABEL_SCALE / DATASETS[dataset].label_scale
    return frames if factor == 1 else [replace(f, valence=f.valence * factor, arousal=f.arousal * factor) for f in frames]


def predict_frames(model: EmoNet, frames: list[Frame], color_space: str, crop: str, device: torch.device,
                   batch_size: int, num_workers: int, amp: bool, flip_tta: bool, progress: bool = True,
                   dist: Distributed | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """EmoNet's (valence, arousal) on [-1, 1] for each frame, N x 2; with `flip_tta` the mean of the frame's
    and its mirror's predictions (the mirror flips the frame and its landmarks, see `crop.flip_landmarks`).

    Also returns the frames that could not be decoded ({index: reason}); their rows are NaN, and the
    caller must leave them out and say so. Under torchrun each process predicts every world_size-th frame
    and every process gets all the predictions back, so metrics are computed over exactly these frames.
    """
    rank, world_size = (dist.rank, dist.world_size) if dist else (0, 1)
    positions = shard_positions(len(frames), rank, world_size)
    mine = [frames[p] for p in positions]
    model = prepare(model) if isinstance(model, EmoNet) else model  # or an engine (`inference.make_runner`)
    passes, failed = [], {}
    for flip in (False, True) if flip_tta else (False,):
        loader = frame_loader(FrameDataset(mine, color_space, crop, flip=flip), batch_size, num_workers, device)
        out = np.full((len(mine), 2), np.nan, dtype=np.float32)
        desc = "predicting (mirrored)" if flip else "predicting"
        with torch.inference_mode(), tqdm(total=len(mine), unit="frame", desc=desc, disable=not progress) as bar:
            for batch in loader:
                good, batch_failed = split_failures(batch)
                failed.update({positions[i]: reason for i, reason in batch_failed.items()})
                bar.update(len(batch["index"]))
                if good:
                    result = infer(model, batch["image"][good], device, amp)
                    out[batch["index"][good].numpy()] = torch.stack([result["valence"], result["arousal"]], 1).numpy()
        passes.append(out)
    mean = np.mean(passes, axis=0)
    if dist and dist.is_distributed:
        gathered = dist.gather((positions, mean, failed))
        mean, failed = np.full((len(frames), 2), np.nan, dtype=np.float32), {}
        for rank_positions, rank_pred, rank_failed in gathered:
            mean[rank_positions] = rank_pred
            failed.update(rank_failed)
    if failed:
        logger.warning("%d frames could not be decoded and are left out of the predictions", len(failed))
    return mean, failed


class EpochShard(Sampler):
    """One process's share of an epoch: the permutation drawn from (seed, epoch), every world_size-th frame
    from `rank`, cut to the same length on every process (DistributedDataParallel needs equal step counts;
    fewer than world_size frames sit out an epoch, others each epoch). One process: the whole permutation."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.epoch, self.rank, self.world_size = n, seed, epoch, rank, world_size

    def __len__(self) -> int:
        return self.n // self.world_size

    def __iter__(self):
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)).tolist()
        return iter(order[self.rank :: self.world_size][: len(self)])


def train_epoch(model: nn.Module, dataset: FrameDataset, optimizer: torch.optim.Optimizer, loss_fn, device: torch.device,
                epoch: int, seed: int, batch_size: int, num_workers: int, amp: bool, grad_clip: float | None,
                progress: bool = True, dist: Distributed | None = None) -> float:
    """One epoch of fine-tuning EmoNet's valence/arousal outputs against labels / 10; returns the mean loss
    (over every process's frames under torchrun). `model` may be wrapped in DistributedDataParallel.

    Frames that fail to decode are left out of their batch (and logged).
    """
    distributed = dist is not None and dist.is_distributed
    model.train()
    dataset.epoch = epoch  # augmentation draws depend on (seed, epoch, index)
    sampler = EpochShard(len(dataset), seed, epoch, *((dist.rank, dist.world_size) if distributed else ()))
    loader = frame_loader(dataset, batch_size, num_workers, device, sampler=sampler, drop_last=distributed)
    params = [p for p in model.parameters() if p.requires_grad]
    total, seen = 0.0, 0
    with tqdm(total=len(sampler), unit="frame", desc=f"epoch {epoch}", disable=not progress) as bar:
        for batch in loader:
            keep, _ = split_failures(batch)  # a frame that fails is logged where it is decoded, and left out here
            bar.update(len(batch["index"]))
            weight = 1.0
            if len(keep) < 2:  # a CCC over fewer than two samples is undefined
                if not distributed:
                    continue
                # Every process must join each step's gradient all-reduce: this one adds a zero gradient.
                keep, weight = list(range(len(batch["index"]))), 0.0
            with autocast(device, amp):
                out = model(to_model_input(batch["image"][keep], device))
            pred = torch.stack([out["valence"], out["arousal"]], 1).float()
            loss = loss_fn(pred, batch["target"][keep].to(device)) * weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if weight:
                total += loss.item() * len(keep)
                seen += len(keep)
    if distributed:
        dist.sync_buffers(model)
        total, seen = map(sum, zip(*dist.gather((total, seen)), strict=True))
    return total / max(seen, 1)


def _sync_batchnorm(model: EmoNet) -> None:
    """Turn the trainable BatchNorm layers (the emotion branch's when the backbone is frozen) into SyncBatchNorm."""
    names = EMOTION_MODULES if model.backbone_frozen else [name for name, _ in model.named_children()]
    for name in names:
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(getattr(model, name)))


def check_device(config: FinetuneConfig, dist: Distributed) -> None:
    """What fine-tuning asks of the machine (bf16, SyncBatchNorm), refused before any work."""
    amp_enabled(dist.device, config.amp)
    if config.sync_bn and not dist.is_distributed:
        raise EmoNetError("--sync_bn synchronises BatchNorm across processes: launch with torchrun --nproc_per_node N")
    if config.sync_bn and dist.device.type != "cuda":
        raise EmoNetError("--sync_bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only")


def finetune_emonet(frames: list[Frame], indices: SplitIndices, config: FinetuneConfig, output_dir: Path, meta: dict,
                    resumed: dict | None, dist: Distributed) -> TrainingRun:
    """Fine-tune --pretrained_path on `frames[indices.train]`, choosing the best epoch on `indices.selection`.

    `config` carries the flags of train_emonet_hsv.py; `meta` (split, settings, config) goes into every
    checkpoint. Under torchrun, DistributedDataParallel over the trainable parameters; only rank 0 writes.
    """
    device = dist.device
    amp = amp_enabled(device, config.amp)
    torch.manual_seed(config.seed)
    model, _ = load_emonet(config.pretrained_path)
    if config.n_expression is not None and config.n_expression != model.n_expression:
        raise EmoNetError(f"--n_expression {config.n_expression}, but {config.pretrained_path} has {model.n_expression} classes")
    if config.freeze_backbone:
        model.freeze_backbone()
    if config.sync_bn and dist.is_distributed:
        _sync_batchnorm(model)
    model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(config.optimizer, [p for p in model.parameters() if p.requires_grad],
                               config.learning_rate, config.weight_decay)
    # DDP all-reduces the gradients of the parameters that require them: a frozen backbone stays outside.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if dist.is_distributed else model
    loss_fn = get_loss(config.loss_function)
    augment = Augment(colour_jitter=config.colour_jitter) if config.augment else None
    train_set = FrameDataset([frames[i] for i in indices.train], config.color_space, config.crop, augment, seed=config.seed)
    select_frames = [frames[i] for i in indices.selection]
    select_target = np.array([[f.valence, f.arousal] for f in select_frames], dtype=np.float32) / LABEL_SCALE
    progress = config.progress and dist.is_main

    def one_epoch(epoch: int) -> float:
        reseed(config.seed, epoch)
        return train_epoch(net, train_set, optimizer, loss_fn, device, epoch, config.seed, config.batch_size,
                           config.num_workers, amp, config.grad_clip, progress=progress, dist=dist)

    def validate() -> dict:
        pred, failed = predict_frames(model, select_frames, config.color_space, config.crop, device, config.batch_size,
                                      config.num_workers, amp, flip_tta=False, progress=progress, dist=dist)
        ok = np.array([i not in failed for i in range(len(select_frames))])  # undecodable frames are left out
        loss = loss_fn(torch.from_numpy(pred[ok]), torch.from_numpy(select_target[ok])).item()
        v, a = va_ccc(pred[ok], select_target[ok])
        return {"loss": loss, "valence_CCC": v, "arousal_CCC": a}

    run = TrainingRun(output_dir, config.epochs, config.save_freq, {**meta, "model_args": {"n_expression": model.n_expression}},
                      *module_state(model, optimizer), is_main=dist.is_main, keep_checkpoints=config.keep_checkpoints)
    if dist.is_main:
        warn_constant_selection(select_target * LABEL_SCALE, str(output_dir), selection_side(meta["split"]))
    fit(run, one_epoch, validate, resumed)
    return run
