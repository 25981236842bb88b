"""Running EmoNet for predictions, decided in one place: the batch the model runs in, its memory layout and its
precision. Extraction, evaluation on frames and zero-shot prediction go through `infer`; training does not.

On the CPU the network runs one frame at a time, channels_last, whatever the loader's batch: larger batches gain
little (a single 256 x 256 image already overflows the caches; the guide's "Extraction" benchmark), and at batch 1 a
frame's features never depend on which frame shares its batch, so a resumed run, a torchrun shard and any
--batch_size write the same files. On CUDA the loader's batch is used as it is. `compile_model` (--compile) runs the
network through torch.compile; its outputs differ by float rounding, so compiled features are pinned as a precision
of their own (`COMPILED_SUFFIX`). `make_runner` chooses between this and the ONNX Runtime engine (`engine.py`)."""
import logging
import time
from collections.abc import Callable

import torch

from .constants import IMAGE_SIZE
from .data import to_model_input
from .device import autocast
from .engine import ENGINE, load_engine
from .errors import EmoNetError
from .model import EmoNet

logger = logging.getLogger(__name__)

CPU_MICRO_BATCH = 1
COMPILED_SUFFIX = "-compiled"  # appended to the recorded precision of features from `compile_model`
# The outputs kept from a pass (the 68 heatmaps, 1.1 MB a frame, are not needed downstream).
OUTPUT_KEYS = ("features", "valence", "arousal", "expression")


def micro_batch(device: torch.device, batch_size: int) -> int:
    """How many frames the model runs at once on `device` for a loader batch of `batch_size`."""
    return CPU_MICRO_BATCH if device.type == "cpu" else batch_size


def prepare(model: EmoNet) -> EmoNet:
    """The model as `infer` runs it: eval mode, channels_last (faster on both the CPU and CUDA)."""
    return model.to(memory_format=torch.channels_last).eval()


def compile_model(model: EmoNet, device: torch.device, amp: bool, batch_size: int) -> tuple[EmoNet, float]:
    """`model` (from `prepare`) compiled for `infer` with loader batches of `batch_size`, and the seconds it took.

    Compiles now, on a blank batch of the shape and precision `infer` will use, so that a machine where
    Inductor cannot build (no C++ compiler on the CPU, no Triton on CUDA) fails before any frame is done.
    On CUDA the first batch of another size (the last one, or one with undecodable frames) compiles once
    more, with the batch size left symbolic (dynamo's automatic dynamic shapes), so that no size ever falls
    back to the eager network in a run pinned as compiled.
    """
    start = time.perf_counter()
    from torch._inductor import config as inductor_config  # here: importing Inductor adds 1.3 s to every start

    # Freezing is process-wide Inductor configuration: passed as torch.compile(options=...) it was measured to
    # have no effect (compiled as fast as eager), and a recompile (CUDA's last batch) must freeze as well.
    inductor_config.freezing = True
    compiled = torch.compile(model)
    blank = torch.zeros(micro_batch(device, batch_size), 3, IMAGE_SIZE, IMAGE_SIZE)
    try:
        with torch.inference_mode(), autocast(device, amp):
            compiled(to_model_input(blank, device))
    except Exception as exc:  # Inductor fails in many ways (compiler missing, unsupported op); all mean the same here
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EmoNetError(f"--compile: torch.compile cannot build EmoNet on this machine ({reason}); "
                          "run without --compile") from exc
    seconds = time.perf_counter() - start
    logger.info("EmoNet compiled in %.0f s", seconds)
    return compiled, seconds


def make_runner(network: EmoNet, device: torch.device, choice, amp: bool, compile_: bool, batch_size: int,
                checkpoint_sha256: str, calibration=None, calibration_id: str | None = None):
    """(what `infer` runs, seconds spent compiling): the ONNX Runtime engine (`engine.load_engine`), or the torch network
    prepared, on `choice.threads` threads, and compiled with `compile_`."""
    if choice.backend == ENGINE:
        return load_engine(network, checkpoint_sha256, choice, calibration, calibration_id), 0.0
    if device.type == "cpu":
        torch.set_num_threads(choice.threads)
    network = prepare(network)
    return compile_model(network, device, amp, batch_size) if compile_ else (network, 0.0)


def infer(model: EmoNet, images: torch.Tensor, device: torch.device, amp: bool,
          keys: tuple[str, ...] = OUTPUT_KEYS, done: Callable[[int], object] | None = None) -> dict[str, torch.Tensor]:
    """EmoNet's outputs `keys` (by default OUTPUT_KEYS; "heatmap" for the landmarks) for a batch of images
    (N x 3 x 256 x 256), float32 on the CPU.

    Call under `torch.inference_mode()` with a runner from `make_runner` (the torch network or the engine).
    `done(n)` is called after each micro-batch of n frames (a progress bar that moves per frame on the CPU, where a
    loader batch of 32 takes seconds).
    """
    outputs = []
    for chunk in images.split(micro_batch(device, len(images))):
        with autocast(device, amp):
            out = model(to_model_input(chunk, device))
        outputs.append({k: out[k].float().cpu() for k in keys})
        if done is not None:
            done(len(chunk))
    return {k: torch.cat([o[k] for o in outputs]) for k in keys}
