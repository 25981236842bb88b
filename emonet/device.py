"""Device choice and mixed precision, shared by every script that runs EmoNet."""
import logging
import os

import torch

from .constants import DEVICE_CHOICES
from .errors import EmoNetError

logger = logging.getLogger(__name__)


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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): only there does bf16 autocast pay off."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def amp_enabled(device: torch.device, amp: bool) -> bool:
    """Whether bf16 autocast applies: requested, and on CUDA or a CPU with bf16 instructions.

    Elsewhere --amp is refused rather than ignored: without those instructions PyTorch emulates bf16, which
    was measured 7x slower than float32 for EmoNet (AMD EPYC, AVX2).
    """
    if amp and device.type == "cpu" and not cpu_has_bf16():
        raise EmoNetError("--amp: this CPU has no bf16 instructions (AVX-512 BF16 or AMX), so bf16 autocast would be "
                          "several times slower than float32 here; run without --amp")
    return amp


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast context for `device` (a no-op when not enabled)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# The CPU features that decide EmoNet's speed on the CPU, reported next to every benchmark figure.
CPU_FLAGS_REPORTED = ("avx2", "avx512_f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def describe_machine(device: torch.device) -> dict:
    """What a throughput figure depends on: CPU model, cores, the relevant instruction sets, intra-op
    threads, PyTorch version and, on CUDA, the card."""
    caps = torch.cpu.get_capabilities()
    return {"cpu": caps.get("cpu_name") or "unknown", "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_flags": [f for f in CPU_FLAGS_REPORTED if caps.get(f)], "bf16_instructions": cpu_has_bf16(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
