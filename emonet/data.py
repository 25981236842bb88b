"""From an AFEW-VA frame to EmoNet's input tensor: decode, crop, colour conversion (and augmentation).

Extraction, fine-tuning and evaluation all go through `FrameDataset`, so features and fine-tuning see
identical input. Decoding errors do not stop a DataLoader: the sample comes back with `error` set, and a
warning naming the file is logged at once (image libraries print their own messages, such as libpng's
"Read Error", without the file's name: the warning that follows names it).
"""
import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .afew_va import Frame
from .colour import convert_colour
from .constants import IMAGE_SIZE, LABEL_SCALE
from .crop import crop_face, flip_landmarks
from .errors import MediaError

logger = logging.getLogger(__name__)

# Decoding workers feeding a GPU when --num_workers is not given: enough to keep a card busy at EmoNet's size.
GPU_LOADER_WORKERS = 4


def read_rgb(path) -> np.ndarray:
    """Decode an image file to RGB uint8; MediaError naming the file when it cannot be decoded."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError(f"{path}: cannot decode image (missing, corrupt or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 float32 -> 3 x H x W tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


@dataclass(frozen=True)
class Augment:
    """EmoNet-style training augmentation of the crop box, applied before cropping.

    Horizontal flip with probability `flip` (frame mirrored, landmarks mirrored with the 68-point flip
    order), box scale in [1 - scale, 1 + scale], rotation in [-rotation, rotation] degrees, shift in
    [-shift, shift] x side, and optional brightness/contrast/saturation jitter on the RGB crop before the
    colour-space conversion.
    """

    flip: float = 0.5
    scale: float = 0.1
    rotation: float = 10.0
    shift: float = 0.05
    colour_jitter: float = 0.0

    def __call__(self, rgb: np.ndarray, landmarks: np.ndarray | None, crop: str, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.flip:
            rgb, landmarks = flip_frame(rgb, landmarks)
        out = crop_face(
            rgb, landmarks, crop,
            scale=1.0 + rng.uniform(-self.scale, self.scale),
            rotation_deg=rng.uniform(-self.rotation, self.rotation),
            shift=tuple(rng.uniform(-self.shift, self.shift, 2)),
        )
        if self.colour_jitter > 0:
            out = _jitter(out, self.colour_jitter, rng)
        return out


def flip_frame(rgb: np.ndarray, landmarks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The mirrored frame and its landmarks (None stays None: the whole-frame crop has none)."""
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    return mirrored, None if landmarks is None else flip_landmarks(landmarks, rgb.shape[1])


def _jitter(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    brightness, contrast, saturation = 1.0 + rng.uniform(-strength, strength, 3)
    x = rgb.astype(np.float32) * brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * saturation + grey
    return np.clip(x, 0, 255).astype(np.uint8)


class FrameDataset(Dataset):
    """AFEW-VA frames as EmoNet input: `image` (3 x 256 x 256 float32 in [0, 1], in `color_space`),
    `target` (valence, arousal) / 10, `index` into `frames`, and `error` ("" when the frame was read).

    `flip=True` returns the mirrored frame (for flip test-time augmentation). `augment` applies random
    training augmentation; each worker draws from its own generator seeded by `seed`, the epoch and the index,
    so a run is reproducible whatever the number of workers.
    """

    def __init__(self, frames: list[Frame], color_space: str, crop: str, augment: Augment | None = None,
                 flip: bool = False, seed: int = 0):
        self.frames = frames
        self.color_space = color_space
        self.crop = crop
        self.augment = augment
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict:
        frame = self.frames[index]
        target = torch.tensor([frame.valence, frame.arousal], dtype=torch.float32) / LABEL_SCALE
        try:
            rgb, landmarks = read_rgb(frame.image_path), frame.landmarks
            if self.flip:
                rgb, landmarks = flip_frame(rgb, landmarks)
            if self.augment is not None:
                rng = np.random.default_rng((self.seed, self.epoch, index))
                crop = self.augment(rgb, landmarks, self.crop, rng)
            else:
                crop = crop_face(rgb, landmarks, self.crop)
            image, error = to_tensor(convert_colour(crop, self.color_space)), ""
        except ValueError as exc:
            image, error = torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE), str(exc)
            logger.warning("%s", error)
        return {"image": image, "target": target, "index": index, "error": error}


def loader_workers(num_workers: int | None, device: torch.device) -> int:
    """Worker processes for frames bound to `device`: `num_workers` when given, else 0 on the CPU and
    GPU_LOADER_WORKERS (at most one per core) on CUDA.

    On the CPU the model's intra-op threads already use every core, so a worker can only overlap the
    loader's own share: decoding, crop and colour take 7 ms a frame (9 ms for Lab) against about 100 ms for
    EmoNet's bf16 forward and 200 ms in float32 (2-core AMD EPYC, AVX-512 BF16). Measured end to end in bf16,
    averaged over six sweeps of 32 to 192 frames: 8.3, 8.2 and 8.2 frames/s with 0, 1 and 2 workers, single
    sweeps ranging from 7.6 to 8.9 in no consistent order (`benchmarks/bench_extract.py --workers_sweep`). 0
    then costs nothing and saves the workers' start-up and memory.
    """
    if num_workers is not None:
        return num_workers
    return 0 if device.type == "cpu" else min(GPU_LOADER_WORKERS, os.cpu_count() or 1)


def frame_loader(dataset: FrameDataset, batch_size: int, num_workers: int | None, device: torch.device,
                 sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
    """Batches of `dataset` in order (or in the order of `sampler`), decoded in `loader_workers` processes."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=loader_workers(num_workers, device), pin_memory=device.type == "cuda")


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on `device` in channels_last, the layout the model is kept in."""
    return images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def split_failures(batch: dict) -> tuple[list[int], dict[int, str]]:
    """Positions of a batch's decoded samples, and {frame index: reason} for those that failed."""
    good = [i for i, e in enumerate(batch["error"]) if not e]
    failed = {int(batch["index"][i]): e for i, e in enumerate(batch["error"]) if e}
    return good, failed
