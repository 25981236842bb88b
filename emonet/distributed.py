"""torch.distributed under torchrun: one process per device, nccl on CUDA and gloo on the CPU.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain `python script.py`) there is one
process, no process group, and every helper here is a no-op.

What the pipeline shares among processes is decided here: which frames a process works on (whole
clips, balanced by frame count, for extraction; every world_size-th position for predictions), and how
results come back together (`gather`, to every process, in rank order).
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as torch_dist

from .device import resolve_device
from .errors import EmoNetError

logger = logging.getLogger(__name__)


@dataclass
class Distributed:
    """This process's place in the job: rank, number of processes, and the device it runs on."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    _owns_group: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints; the other ranks only compute."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.is_distributed:
            torch_dist.barrier()

    def gather(self, obj) -> list:
        """`obj` of every process, in rank order, on every process (`[obj]` without torchrun)."""
        if not self.is_distributed:
            return [obj]
        out = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's `obj`, on every process."""
        if not self.is_distributed:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics). DistributedDataParallel broadcasts them
        at the start of each forward, so after an epoch's last step every process holds its own: the model
        then validated (and saved by rank 0) must be the same everywhere."""
        if self.is_distributed:
            for buffer in module.buffers():
                torch_dist.broadcast(buffer, src=0)

    def agree(self, error: EmoNetError | None) -> None:
        """Raise on every process when rank 0 found a problem (`error`), so no process waits for the others:
        rank 0 raises `error` itself, the other ranks an EmoNetError with its message."""
        message = self.broadcast(str(error) if error else None)
        if error:
            raise error
        if message:
            raise EmoNetError(message)

    def close(self) -> None:
        if self._owns_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
            self._owns_group = False


def init_distributed(device_name: str) -> Distributed:
    """This process's `Distributed`: under torchrun, joins the process group (nccl on CUDA, gloo on the CPU)
    with device cuda:LOCAL_RANK or the CPU; otherwise a single process on `resolve_device(device_name)`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size == 1:
        return Distributed(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if device.index is not None:
            raise EmoNetError(f"--device {device_name} under torchrun: each process takes cuda:LOCAL_RANK; "
                              "pass --device cuda (or auto)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not torch_dist.is_initialized()
    if owns:
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    logger.info("torchrun: %d processes, %s on rank 0", world_size, device)
    return Distributed(device, rank, world_size, local_rank, owns)


def shard_clips(clips: list[str], sizes: list[int], rank: int, world_size: int) -> set[str]:
    """The clips of one rank: largest first, each to the rank with the fewest frames so far (ties: lower rank)."""
    load = np.zeros(world_size)
    mine = set()
    for clip, size in sorted(zip(clips, sizes, strict=True), key=lambda cs: (-cs[1], cs[0])):
        r = int(np.argmin(load))
        load[r] += size
        if r == rank:
            mine.add(clip)
    return mine


def shard_positions(n: int, rank: int, world_size: int) -> list[int]:
    """Every world_size-th position from `rank`: disjoint shards that together hold 0..n-1 once."""
    return list(range(rank, n, world_size))
