"""Running EmoNet for predictions, decided in one place: the batch the model runs in, its memory layout and
its precision. Extraction, evaluation on frames and zero-shot prediction go through `infer`; training
does not (it needs its batch for the loss and BatchNorm).

On the CPU the network runs one frame at a time whatever the loader's batch: the activations of a single
256 x 256 image through the hourglasses already overflow the caches, so larger batches are slower.
Measured on a 2-core AMD EPYC (Zen 3, AVX2), torch 2.14.1, frames/s: channels_last batch 1 3.5, batch 4
3.1, batch 16 2.6; NCHW batch 1 3.0 (`benchmarks/bench_extract.py`). A side effect: CPU features no longer
depend on --batch_size. On CUDA the loader's batch is used as it is.
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
