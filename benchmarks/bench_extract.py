"""Feature-extraction throughput, three ways on the same frames in one run (frames/s):

(a) the seed's way: one frame at a time, whole frame resized, batch of 1, decoding not overlapped;
(b) the model's forward alone at --batch_size on tensors already in memory (the ceiling for (c));
(c) this project's extraction end to end (`emonet.extraction`: landmark crop, DataLoader workers,
    channels_last, inference_mode, .npz writes).

    python benchmarks/bench_extract.py --clips 4 --frames_per_clip 8 --batch_size 16

Uses a synthetic AFEW-VA tree and deterministic weights (same cost as the real ones).
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
from emonet.colour import convert_colour  # noqa: E402
from emonet.crop import crop_face  # noqa: E402
from emonet.data import read_rgb, to_tensor  # noqa: E402
from emonet.device import amp_enabled, autocast, resolve_device  # noqa: E402
from emonet.extraction import ExtractionConfig, extract_features  # noqa: E402
from emonet.testing import write_synthetic_dataset  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="synthetic clips (default: 4)")
    parser.add_argument("--frames_per_clip", type=int, default=8, help="frames per clip (default: 8)")
    parser.add_argument("--batch_size", type=int, default=16, help="batch size of (b) and (c) (default: 16)")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers of (c) (default: 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA for (b) and (c) (default: off)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def seed_way(frames, model, device) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for frame in frames:
            image = convert_colour(crop_face(read_rgb(frame.image_path), None, "resize"), "hsv")
            model(to_tensor(image)[None].to(device))["features"].cpu()
    return len(frames) / (time.perf_counter() - start)


def model_only(n, model, device, batch_size, amp) -> float:
    x = torch.rand(batch_size, 3, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, amp):
        model(x)  # warm-up
        _sync(device)
        start = time.perf_counter()
        done = 0
        while done < n:
            model(x)["features"].float().cpu()
            done += batch_size
    return done / (time.perf_counter() - start)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(args):
    device = resolve_device(args.device)
    amp = amp_enabled(device, args.amp)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, ckpt = write_synthetic_dataset(tmp, args.clips, args.frames_per_clip)
        frames, _ = read_afew_va(root)
        model, _ = load_emonet(ckpt, device)
        with torch.no_grad():  # warm-up for (a)
            model(torch.rand(1, 3, 256, 256, device=device))

        results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
                   "frames": len(frames), "batch_size": args.batch_size, "amp": amp}
        results["a_seed_frames_per_s"] = seed_way(frames, model, device)
        results["b_model_only_frames_per_s"] = model_only(len(frames), model, device, args.batch_size, amp)
        config = ExtractionConfig(str(root), str(tmp / "features"), str(tmp / "manifest.json"), str(ckpt),
                                  batch_size=args.batch_size, num_workers=args.num_workers, device=str(device),
                                  amp=args.amp, progress=False)
        start = time.perf_counter()
        extract_features(config)
        results["c_pipeline_frames_per_s"] = len(frames) / (time.perf_counter() - start)
    results["c_over_a"] = results["c_pipeline_frames_per_s"] / results["a_seed_frames_per_s"]
    results["c_over_b"] = results["c_pipeline_frames_per_s"] / results["b_model_only_frames_per_s"]
    print(json.dumps(results, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
