"""Running EmoNet for predictions, decided in one place: the batch the model runs in, its memory layout and
its precision. Extraction, evaluation on frames and zero-shot prediction go through `infer`; training
does not (it needs its batch for the loss and BatchNorm).

On the CPU the network runs one frame at a time whatever the loader's batch: the activations of a single
256 x 256 image through the hourglasses already overflow the caches, so larger batches gain nothing.
Measured on a 2-core AMD EPYC (AVX-512 with BF16), torch 2.14.1, model alone, frames/s (medians of 4
alternating runs; `benchmarks/bench_extract.py`): float32 channels_last batch 1 5.0, batch 2 4.8, batch 4
4.8; float32 NCHW batch 1 4.3; bf16 channels_last batch 1 9.2, batch 2 9.9. bf16 at batch 2 is about 7 %
faster, but batch 1 is kept for both precisions: then a frame's features do not depend on which frame
shares its batch, so a resumed run, a torchrun shard and any --batch_size write the same files. On CUDA
the loader's batch is used as it is.
"""
import torch

from .data import to_model_input
from .device import autocast
from .model import EmoNet

CPU_MICRO_BATCH = 1
# The outputs kept from a pass (the 68 heatmaps, 1.1 MB a frame, are not needed downstream).
OUTPUT_KEYS = ("features", "valence", "arousal", "expression")


def micro_batch(device: torch.device, batch_size: int) -> int:
    """How many frames the model runs at once on `device` for a loader batch of `batch_size`."""
    return CPU_MICRO_BATCH if device.type == "cpu" else batch_size


def prepare(model: EmoNet) -> EmoNet:
    """The model as `infer` runs it: eval mode, channels_last (faster on both the CPU and CUDA)."""
    return model.to(memory_format=torch.channels_last).eval()


def infer(model: EmoNet, images: torch.Tensor, device: torch.device, amp: bool) -> dict[str, torch.Tensor]:
    """EmoNet's outputs (OUTPUT_KEYS) for a batch of images (N x 3 x 256 x 256), float32 on the CPU.

    Call under `torch.inference_mode()` with a model from `prepare`.
    """
    outputs = []
    for chunk in images.split(micro_batch(device, len(images))):
        with autocast(device, amp):
            out = model(to_model_input(chunk, device))
        outputs.append({k: out[k].float().cpu() for k in OUTPUT_KEYS})
    return {k: torch.cat([o[k] for o in outputs]) for k in OUTPUT_KEYS}
