"""Fine-tuning throughput (training frames/s) of `emonet.finetune.train_epoch`, frozen and unfrozen backbone.

    python benchmarks/bench_finetune.py --frames 32 --batch_size 8
    python benchmarks/bench_finetune.py --device cuda --amp --frames 1024 --batch_size 32 --num_workers 8

Uses a synthetic AFEW-VA tree and deterministic weights; the first epoch is a warm-up and is not timed.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emonet.afew_va import read_afew_va  # noqa: E402
from emonet.checkpoint import load_emonet  # noqa: E402
from emonet.data import Augment, FrameDataset, loader_workers  # noqa: E402
from emonet.device import amp_enabled, describe_machine, resolve_device  # noqa: E402
from emonet.finetune import train_epoch  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.losses import ccc_loss  # noqa: E402
from emonet.testing import write_synthetic_dataset  # noqa: E402
from emonet.training import make_optimizer  # noqa: E402

FRAMES_PER_CLIP = 8


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--frames", type=int, default=32, help="training frames per timed epoch (default: 32)")
    parser.add_argument("--batch_size", type=int, default=8, help="batch size (default: 8)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="DataLoader workers (default: as the scripts, 0 on the CPU, min(4, CPUs) on CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast, on CUDA or a CPU with bf16 instructions (default: off)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def frames_per_second(frozen, dataset, ckpt, device, args, amp) -> float:
    model, _ = load_emonet(ckpt)
    if frozen:
        model.freeze_backbone()
    model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer("adam", [p for p in model.parameters() if p.requires_grad], 1e-4, 0.0)
    common = (model, dataset, optimizer, ccc_loss, device)
    train_epoch(*common, 0, 0, args.batch_size, args.num_workers, amp, None, progress=False)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_epoch(*common, 1, 0, args.batch_size, args.num_workers, amp, None, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(dataset) / (time.perf_counter() - start)


def main(args):
    device = resolve_device(args.device)
    amp = amp_enabled(device, args.amp)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, ckpt = write_synthetic_dataset(tmp, -(-args.frames // FRAMES_PER_CLIP), FRAMES_PER_CLIP)
        frames, _ = read_afew_va(root)
        dataset = FrameDataset(frames[: args.frames], "hsv", "landmarks", Augment())
        results = {"machine": describe_machine(device), "frames": len(dataset), "batch_size": args.batch_size, "amp": amp,
                   "num_workers": loader_workers(args.num_workers, device)}
        results["frozen_frames_per_s"] = frames_per_second(True, dataset, ckpt, device, args, amp)
        results["unfrozen_frames_per_s"] = frames_per_second(False, dataset, ckpt, device, args, amp)
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
