"""Feature-extraction throughput (frames/s), every way measured in one run on the same frames, and the
ceiling this machine puts on them:

(a) the seed's way: one frame at a time, decoding not overlapped, whole frame resized, its OpenCV HSV
    (`hsv_opencv`), EmoNet in float32 NCHW under no_grad;
(b) EmoNet's forward alone on tensors already in memory, in float32 and (where the device computes it
    natively) bf16 autocast, NCHW and channels_last, at micro-batches 1, 2 and 4 on the CPU or --batch_size
    on CUDA; (c) is measured against the best configuration of each precision;
(c) this project's extraction end to end (`emonet.extraction` with the scripts' defaults: landmark crop,
    HSV, micro-batches and loader workers as `emonet.inference` and `emonet.data` choose them), in float32
    through PyTorch eager (`--backend torch`: what extraction did before the engine) and through ONNX Runtime (the
    default on the CPU since), int8 through ONNX Runtime, with --amp, and with --compile; with --workers_sweep also at
    0, 1 and 2 loader workers. A compiled run's frames/s leave out its one-time compile, which is reported beside them;
    (b) also times the engine's forward alone (fp32 and int8, batch 1);
(e) peak memory (maximum resident set) of extraction through each backend, each in a fresh process;
(d) the ceiling: every convolution of the network timed alone at its own input shape (per frame, the
    fastest of both layouts, the micro-batches of (b) and several calls), summed over one forward pass.
    Nothing that runs the network on this machine's convolution kernels beats 1 / that sum, however the
    rest (BatchNorm, ReLU, adds, concats, pooling: about 18 % of an eager pass) is fused or scheduled. Each
    way and each target is also given as a fraction of that ceiling: how much room a target leaves here.

Each way of (a), (b) and (c) is timed once per round, in --repeats rounds, and reported as its median, so
that a drift of the machine's speed hits every way alike and the best (b) is not the luckiest draw.

Targets on the 2-core CPU: (c) fp32 >= 1.4x (a) and >= 90 % of the best (b) fp32; (c) --amp >= 2.4x (a);
the first and last are also checked for (c) with --compile. The ONNX Runtime engine: its forward fp32 at batch 1 >= 1.5x
PyTorch eager fp32 at batch 1 (b), extraction through it >= 1.5x through PyTorch eager (c), its peak memory at most
300 MB above PyTorch's (e).

    python benchmarks/bench_extract.py                       # CPU
    python benchmarks/bench_extract.py --workers_sweep       # and the loader-worker choice
    python benchmarks/bench_extract.py --device cuda --batch_size 64 --clips 32 --frames_per_clip 64

Uses a synthetic AFEW-VA tree (720 x 576 PNG frames) and deterministic weights of the real size.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.afew_va import read_afew_va  # noqa: E402
from emonet.checkpoint import load_emonet  # noqa: E402
from emonet.colour import convert_colour  # noqa: E402
from emonet.crop import crop_face  # noqa: E402
from emonet.data import read_rgb, to_tensor  # noqa: E402
from emonet.data import FrameDataset  # noqa: E402
from emonet.device import autocast, cpu_has_bf16, describe_machine, resolve_device  # noqa: E402
from emonet.engine import calibration_id, choose_backend, load_engine  # noqa: E402
from emonet.extraction import extract_features  # noqa: E402
from emonet.settings import ExtractionConfig  # noqa: E402
from emonet.io import sha256_file  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.testing import write_synthetic_dataset  # noqa: E402

CPU_MICRO_BATCHES = (1, 2, 4)
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
TARGETS = {"c_fp32_over_a": 1.4, "c_fp32_over_best_b_fp32": 0.9, "c_amp_over_a": 2.4,
           "c_fp32_compiled_over_a": 1.4, "c_amp_compiled_over_a": 2.4,
           "b_engine_fp32_over_b_fp32_batch1": 1.5, "c_engine_fp32_over_c_fp32": 1.5}
ENGINE_MEMORY_MARGIN_MB = 300
INT8_CALIBRATION = 16  # frames of the synthetic dataset the int8 ways calibrate on
CONV_CALLS_TIMED = 5  # calls of each convolution in (d); the fastest counts, so the ceiling is generous


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--clips", type=int, default=6, help="synthetic clips (default: 6)")
    parser.add_argument("--frames_per_clip", type=int, default=16, help="frames per clip (default: 16)")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="loader batch of (c), and the model batch of (b) on CUDA (default: 32, the scripts')")
    parser.add_argument("--model_frames", type=int, default=24, help="frames timed per configuration of (b) (default: 24)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (a), (b) and (c), medians reported (default: 3)")
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
    model = model.to(memory_format=LAYOUTS[layout])
    x = torch.rand(batch, 3, 256, 256, device=device).contiguous(memory_format=LAYOUTS[layout])
    with torch.inference_mode(), autocast(device, bf16):
        model(x)  # warm-up
        _sync(device)
        start, done = time.perf_counter(), 0
        while done < n_frames:
            model(x)["features"].float().cpu()
            done += batch
    return done / (time.perf_counter() - start)


def engine_only(engine, n_frames) -> float:
    """(b) for the engine: its forward alone at batch 1, on one frame already in memory."""
    x = torch.rand(1, 3, 256, 256)
    engine(x)  # warm-up
    start = time.perf_counter()
    for _ in range(n_frames):
        engine(x)["features"]
    return n_frames / (time.perf_counter() - start)


def end_to_end(root, ckpt, folder, device, args, amp, num_workers=None, compile_seconds=None, backend="torch",
               int8_calibration=None) -> float:
    """frames/s of one extraction; with `compile_seconds` (a list) it runs with --compile, appends the compile's
    seconds there and leaves them out of the rate."""
    config = ExtractionConfig(str(root), str(folder), str(folder) + "_manifest.json", str(ckpt), batch_size=args.batch_size,
                              num_workers=num_workers, device=str(device), amp=amp, compile=compile_seconds is not None,
                              progress=False, backend=backend, int8_calibration=int8_calibration)
    start = time.perf_counter()
    result = extract_features(config)
    elapsed = time.perf_counter() - start
    if compile_seconds is not None:
        compile_seconds.append(result.compile_seconds)
    return result.extracted / (elapsed - result.compile_seconds)


def ceiling(model, device, bf16, micro_batches) -> dict:
    """(d): one forward pass's convolutions, each timed alone; their sum bounds the pass from below."""
    shapes = {}
    hooks = [m.register_forward_pre_hook(lambda m, inp: shapes.__setitem__(m, inp[0].shape[1:]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(torch.rand(1, 3, 256, 256, device=device))
    for hook in hooks:
        hook.remove()
    seconds = 0.0
    with torch.inference_mode(), autocast(device, bf16):
        for conv, shape in shapes.items():
            fastest = float("inf")  # per frame, over layouts and micro-batches
            for fmt in LAYOUTS.values():
                conv.to(memory_format=fmt)
                for batch in micro_batches:
                    x = torch.rand(batch, *shape, device=device).contiguous(memory_format=fmt)
                    conv(x)  # warm-up: oneDNN primitive creation
                    for _ in range(CONV_CALLS_TIMED):
                        _sync(device)
                        start = time.perf_counter()
                        conv(x)
                        _sync(device)
                        fastest = min(fastest, (time.perf_counter() - start) / batch)
            seconds += fastest
    model.to(memory_format=torch.contiguous_format)
    return {"convolutions": len(shapes), "gflop_per_frame": flops.get_total_flops() / 1e9,
            "conv_ms_per_frame": 1e3 * seconds, "frames_per_s": 1 / seconds}


def peak_memory_mb(root, ckpt, folder, device, backend) -> float:
    """(e) The peak resident set (VmHWM, which a new program starts afresh, where ru_maxrss keeps its parent's) of
    extract_features_all.py through `backend`, in a process of its own."""
    script = (f"import runpy, sys; sys.argv = ['extract_features_all.py', '--dataset_root', {str(root)!r}, "
              f"'--pretrained_path', {str(ckpt)!r}, '--output_dir', {str(folder)!r}, '--manifest_file', "
              f"{str(folder) + '.json'!r}, '--device', {str(device)!r}, '--backend', {backend!r}, '--no_progress']\n"
              "try:\n    runpy.run_path('extract_features_all.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
              "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(result.stdout.split()[-1]) / 1024


def main(args):
    device = resolve_device(args.device)
    bf16 = device.type == "cuda" or cpu_has_bf16()
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    configs = ([(layout, b) for layout in LAYOUTS for b in CPU_MICRO_BATCHES] if device.type == "cpu"
               else [("channels_last", args.batch_size)])
    results = {"machine": describe_machine(device), "batch_size": args.batch_size, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, ckpt = write_synthetic_dataset(tmp, args.clips, args.frames_per_clip)
        frames, _ = read_afew_va(root)
        results["frames"] = len(frames)
        model, _ = load_emonet(ckpt, device)
        results["d_ceiling"] = {p: ceiling(model, device, p == "bf16", sorted({b for _, b in configs})) for p in precisions}

        # Every way once per round, rounds repeated: the medians are then fair to each way. A way takes a
        # fresh output folder (used by (c) only).
        ways = {"a_seed_way": lambda out: seed_way(frames, model, device)}
        grid = [(p, layout, b) for p in precisions for layout, b in configs if p == "fp32" or layout == "channels_last"]
        for p, layout, b in grid:
            ways[f"b {p} {layout} batch {b}"] = lambda out, p=p, layout=layout, b=b: model_only(
                model, device, layout, b, p == "bf16", args.model_frames)
        if device.type == "cpu":  # the engine, beside PyTorch
            sha = sha256_file(ckpt)
            engines = {"fp32": load_engine(model.cpu().eval(), sha, choose_backend("onnxruntime", device, False, False,
                                                                                  False, None))}
            calibration = [FrameDataset(frames[:INT8_CALIBRATION], "hsv", "landmarks")[i]["image"][None].numpy()
                           for i in range(min(INT8_CALIBRATION, len(frames)))]
            engines["int8"] = load_engine(model.cpu().eval(), sha, choose_backend("onnxruntime", device, False, False,
                                                                                  True, None),
                                          lambda: iter(calibration), calibration_id(["bench", str(len(calibration))]))
            for p, engine in engines.items():
                ways[f"b engine {p} batch 1"] = lambda out, engine=engine: engine_only(engine, args.model_frames)
            ways["c_end_to_end_fp32_engine"] = lambda out: end_to_end(root, ckpt, out, device, args, amp=False,
                                                                      backend="onnxruntime")
            ways["c_end_to_end_int8_engine"] = lambda out: end_to_end(root, ckpt, out, device, args, amp=False,
                                                                      backend="onnxruntime",
                                                                      int8_calibration=INT8_CALIBRATION)
        compile_seconds = {p: [] for p in ("fp32", "amp")}
        for p in ("fp32", "amp") if bf16 else ("fp32",):
            ways[f"c_end_to_end_{p}"] = lambda out, p=p: end_to_end(root, ckpt, out, device, args, amp=p == "amp")
            ways[f"c_end_to_end_{p}_compiled"] = lambda out, p=p: end_to_end(root, ckpt, out, device, args, amp=p == "amp",
                                                                             compile_seconds=compile_seconds[p])
        if args.workers_sweep:
            for w in (0, 1, 2):  # with --amp where it exists: the faster model shows the loader's cost most
                ways[f"c_workers_{w}"] = lambda out, w=w: end_to_end(root, ckpt, out, device, args, amp=bf16, num_workers=w)
        runs = {name: [] for name in ways}
        for r in tqdm(range(args.repeats), desc="rounds"):
            for i, (name, way) in enumerate(ways.items()):
                runs[name].append(way(tmp / f"way{i}_round{r}"))
        if device.type == "cpu":
            results["e_peak_memory_mb"] = {b: peak_memory_mb(root, ckpt, tmp / f"memory_{b}", device, b)
                                           for b in ("torch", "onnxruntime")}
    results["runs"] = runs
    results["c_compile_seconds"] = {p: seconds for p, seconds in compile_seconds.items() if seconds}
    median = results["medians"] = {name: statistics.median(values) for name, values in runs.items()}
    best = {p: max((name for name in median if name.startswith(f"b {p} ")), key=median.get) for p in precisions}
    results["b_best"] = {p: {"configuration": name[2:], "frames_per_s": median[name]} for p, name in best.items()}

    a, c_fp32 = median["a_seed_way"], median["c_end_to_end_fp32"]
    ratios = {"c_fp32_over_a": c_fp32 / a, "c_fp32_over_best_b_fp32": c_fp32 / median[best["fp32"]],
              "c_fp32_compiled_over_a": median["c_end_to_end_fp32_compiled"] / a}
    needed = {"c_fp32_over_a": ("fp32", TARGETS["c_fp32_over_a"] * a)}  # frames/s a target asks for
    if bf16:
        ratios["c_amp_over_a"] = median["c_end_to_end_amp"] / a
        ratios["c_amp_over_best_b_bf16"] = median["c_end_to_end_amp"] / median[best["bf16"]]
        ratios["c_amp_compiled_over_a"] = median["c_end_to_end_amp_compiled"] / a
        needed["c_amp_over_a"] = ("bf16", TARGETS["c_amp_over_a"] * a)
    if device.type == "cpu":
        ratios["b_engine_fp32_over_b_fp32_batch1"] = median["b engine fp32 batch 1"] / median["b fp32 channels_last batch 1"]
        ratios["b_engine_int8_over_b_fp32_batch1"] = median["b engine int8 batch 1"] / median["b fp32 channels_last batch 1"]
        ratios["c_engine_fp32_over_c_fp32"] = median["c_end_to_end_fp32_engine"] / c_fp32
        ratios["c_engine_int8_over_c_fp32"] = median["c_end_to_end_int8_engine"] / c_fp32
        memory = results["e_peak_memory_mb"]
        results["e_engine_memory_within_margin"] = memory["onnxruntime"] <= memory["torch"] + ENGINE_MEMORY_MARGIN_MB
    results["ratios"] = ratios
    results["targets_met"] = {k: ratios[k] >= v for k, v in TARGETS.items() if k in ratios}
    # How close to this machine's ceiling each way runs, and how close each target would have to.
    top = {p: results["d_ceiling"][p]["frames_per_s"] for p in precisions}
    bf16_ways = [n for n in median if n.startswith(("b bf16", "c_end_to_end_amp")) or (bf16 and n.startswith("c_workers"))]
    results["fraction_of_ceiling"] = {n: fps / top["bf16" if n in bf16_ways else "fp32"] for n, fps in median.items()}
    results["targets_need_fraction_of_ceiling"] = {k: fps / top[p] for k, (p, fps) in needed.items()}
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
