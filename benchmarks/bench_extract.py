"""Feature-extraction throughput (frames/s), every way measured in one run on the same frames:

(a) the seed's way: one frame at a time, decoding not overlapped, whole frame resized, its OpenCV HSV
    (`hsv_opencv`), EmoNet in float32 NCHW under no_grad;
(b) EmoNet's forward alone on tensors already in memory, in float32 and (where the device computes it
    natively) bf16 autocast, NCHW and channels_last, at micro-batches 1, 2 and 4 on the CPU or --batch_size
    on CUDA; the best configuration of each precision is the ceiling for (c);
(c) this project's extraction end to end (`emonet.extraction` with the scripts' defaults: landmark crop,
    HSV, micro-batches and loader workers as `emonet.inference` and `emonet.data` choose them), in float32
    and with --amp; with --workers_sweep also at 0, 1 and 2 loader workers.

Targets on the 2-core CPU: (c) fp32 >= 1.4x (a) and >= 90 % of the best (b) fp32; (c) --amp >= 2.4x (a).

    python benchmarks/bench_extract.py                       # CPU
    python benchmarks/bench_extract.py --workers_sweep       # and the loader-worker choice
    python benchmarks/bench_extract.py --device cuda --batch_size 64 --clips 32 --frames_per_clip 64

Uses a synthetic AFEW-VA tree (720 x 576 PNG frames) and deterministic weights of the real size.
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
from emonet.device import autocast, cpu_has_bf16, describe_machine, resolve_device  # noqa: E402
from emonet.extraction import ExtractionConfig, extract_features  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.testing import write_synthetic_dataset  # noqa: E402

CPU_MICRO_BATCHES = (1, 2, 4)
TARGETS = {"c_fp32_over_a": 1.4, "c_fp32_over_best_b_fp32": 0.9, "c_amp_over_a": 2.4}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=6, help="synthetic clips (default: 6)")
    parser.add_argument("--frames_per_clip", type=int, default=16, help="frames per clip (default: 16)")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="loader batch of (c), and the model batch of (b) on CUDA (default: 32, the scripts')")
    parser.add_argument("--model_frames", type=int, default=24, help="frames timed per configuration of (b) (default: 24)")
    parser.add_argument("--workers_sweep", action="store_true", help="also time (c) at 0, 1, 2 loader workers (default: off)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seed_way(frames, model, device) -> float:
    model = model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        model(torch.rand(1, 3, 256, 256, device=device))  # warm-up
        start = time.perf_counter()
        for frame in frames:
            image = convert_colour(crop_face(read_rgb(frame.image_path), None, "resize"), "hsv_opencv")
            model(to_tensor(image)[None].to(device))["features"].cpu()
    return len(frames) / (time.perf_counter() - start)


def model_only(model, device, layout, batch, bf16, n_frames) -> float:
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(batch, 3, 256, 256, device=device).contiguous(memory_format=fmt)
    with torch.inference_mode(), autocast(device, bf16):
        model(x)  # warm-up
        _sync(device)
        start, done = time.perf_counter(), 0
        while done < n_frames:
            model(x)["features"].float().cpu()
            done += batch
    return done / (time.perf_counter() - start)


def end_to_end(root, ckpt, folder, device, args, amp, num_workers=None) -> float:
    config = ExtractionConfig(str(root), str(folder), str(folder) + "_manifest.json", str(ckpt), batch_size=args.batch_size,
                              num_workers=num_workers, device=str(device), amp=amp, progress=False)
    start = time.perf_counter()
    result = extract_features(config)
    return result.extracted / (time.perf_counter() - start)


def main(args):
    device = resolve_device(args.device)
    bf16 = device.type == "cuda" or cpu_has_bf16()
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    configs = ([(layout, b) for layout in ("nchw", "channels_last") for b in CPU_MICRO_BATCHES] if device.type == "cpu"
               else [("channels_last", args.batch_size)])
    results = {"machine": describe_machine(device), "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, ckpt = write_synthetic_dataset(tmp, args.clips, args.frames_per_clip)
        frames, _ = read_afew_va(root)
        results["frames"] = len(frames)
        model, _ = load_emonet(ckpt, device)
        results["a_seed_way"] = seed_way(frames, model, device)
        results["b_model_only"] = {f"{p} {layout} batch {b}": model_only(model, device, layout, b, p == "bf16", args.model_frames)
                                   for p in precisions for layout, b in configs if p == "fp32" or layout == "channels_last"}
        for p in precisions:
            best = max((k for k in results["b_model_only"] if k.startswith(p)), key=results["b_model_only"].get)
            results[f"b_best_{p}"] = {"configuration": best, "frames_per_s": results["b_model_only"][best]}
        results["c_end_to_end_fp32"] = end_to_end(root, ckpt, tmp / "fp32", device, args, amp=False)
        if bf16:
            results["c_end_to_end_amp"] = end_to_end(root, ckpt, tmp / "amp", device, args, amp=True)
        if args.workers_sweep:
            precision = "amp" if bf16 else "fp32"  # the faster model shows the loader's cost most
            results[f"c_{precision}_by_loader_workers"] = {
                w: end_to_end(root, ckpt, tmp / f"workers{w}", device, args, amp=bf16, num_workers=w) for w in (0, 1, 2)}
    a = results["a_seed_way"]
    results["ratios"] = {"c_fp32_over_a": results["c_end_to_end_fp32"] / a,
                         "c_fp32_over_best_b_fp32": results["c_end_to_end_fp32"] / results["b_best_fp32"]["frames_per_s"]}
    if bf16:
        results["ratios"]["c_amp_over_a"] = results["c_end_to_end_amp"] / a
        results["ratios"]["c_amp_over_best_b_bf16"] = results["c_end_to_end_amp"] / results["b_best_bf16"]["frames_per_s"]
    results["targets_met"] = {k: results["ratios"][k] >= v for k, v in TARGETS.items() if k in results["ratios"]}
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
