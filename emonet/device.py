"""Device choice and mixed precision, shared by every script that runs EmoNet."""
import logging

import torch

from .errors import EmoNetError

logger = logging.getLogger(__name__)

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str) -> torch.device:
    """`auto` -> the first GPU when there is one, else the CPU; `cuda*` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EmoNetError(f"--device {name!r}: not a device; use {DEVICE_CHOICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmoNetError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise EmoNetError(f"--device {name}: unsupported; use {DEVICE_CHOICES}")
    return device


def amp_enabled(device: torch.device, amp: bool) -> bool:
    """Whether bf16 autocast applies: requested and on CUDA (on the CPU it is ignored, with a warning)."""
    if amp and device.type != "cuda":
        logger.warning("--amp applies to CUDA only; running in float32 on %s", device)
    return amp and device.type == "cuda"


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast context for `device` (a no-op when not enabled)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
