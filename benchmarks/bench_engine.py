"""What the engine's options cost besides speed (benchmarks/bench_extract.py and bench_predict.py time them):

1. int8's error: on the demo's sample (faces whose brightness follows valence and whose colour warms with arousal,
   testing.write_demo_dataset; the demo's stand-in weights), fp32 and int8 features of every frame through ONNX
   Runtime (int8 calibrated on --calibration frames); the features' relative error and cosine; then a frame head
   trained on each set (same split, seed and flags) and scored on the same held-out clips: the CCC change int8 causes.
2. Two processes on two cores: EmoNet's forward (batch 1, two threads each) alone, then two copies at once, through
   PyTorch eager, ONNX Runtime as the project runs it (spinning threads off) and ONNX Runtime with spinning on; the
   slowdown of each beside its twin. Each way's rate is that of the process it measures.

    python benchmarks/bench_engine.py --output /tmp/bench_engine.json
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine  # noqa: E402
from emonet.extraction import extract_features  # noqa: E402
from emonet.settings import ExtractionConfig  # noqa: E402
from emonet.features import load_feature_set  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.manifest import read_manifest  # noqa: E402
from emonet.testing import write_demo_dataset  # noqa: E402

# One process's forward loop (argv: way, frames, checkpoint, cache folder); prints frames/s.
FORWARD = """
import os, sys, time, torch
sys.path.insert(0, {root!r})
os.environ["EMONET_CACHE"] = sys.argv[4]
from emonet.checkpoint import load_emonet
from emonet.engine import choose_backend, load_engine
from emonet.inference import prepare
way, frames = sys.argv[1], int(sys.argv[2])
network, _ = load_emonet(sys.argv[3])
torch.set_num_threads(2)
if way == "torch":
    run = prepare(network)
else:
    run = load_engine(network, "bench", choose_backend("onnxruntime", torch.device("cpu"), False, False, False, 2))
    if way == "onnxruntime, spinning":
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
        run.session = onnxruntime.InferenceSession(str(run.path), options, providers=["CPUExecutionProvider"])
x = torch.rand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    run(x)
    start = time.perf_counter()
    for _ in range(frames):
        run(x)
print(frames / (time.perf_counter() - start))
"""
WAYS = ("torch", "onnxruntime", "onnxruntime, spinning")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--clips", type=int, default=60, help="clips of the demo sample (default: 60)")
    parser.add_argument("--frames_per_clip", type=int, default=4, help="frames per clip (default: 4)")
    parser.add_argument("--calibration", type=int, default=32, help="int8 calibration frames (default: 32)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each head (default: 30)")
    parser.add_argument("--frames", type=int, default=20, help="forward passes timed per process in part 2 (default: 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of part 2, medians reported (default: 3)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def head_ccc(manifest: Path, folder: Path, epochs: int) -> dict:
    """A frame head on `manifest` (holdout by clip, epoch chosen on an inner split), scored on its held-out clips."""
    import evaluate_hsv_model
    import train_emonet_features

    train_emonet_features.main(train_emonet_features.get_args_parser().parse_args(
        ["--manifest_file", str(manifest), "--epochs", str(epochs), "--inner_val_split", "0.15", "--seed", "0",
         "--output_dir", str(folder / "head"), "--no_progress", "--device", "cpu"]))
    evaluate_hsv_model.main(evaluate_hsv_model.get_args_parser().parse_args(
        ["--model_type", "feature", "--model_path", str(folder / "head" / "best_model.pth"), "--manifest_file",
         str(manifest), "--subset", "val", "--output_dir", str(folder / "evaluation"), "--no_progress", "--device", "cpu"]))
    results = json.loads((folder / "evaluation" / "evaluation_results.json").read_text())
    return {d: results[f"{d}_metrics"]["CCC"] for d in ("valence", "arousal")}


def int8_quality(args, tmp: Path) -> dict:
    root, checkpoint = write_demo_dataset(tmp / "demo", args.clips, args.frames_per_clip)
    out = {}
    for name, calibration in (("fp32", None), ("int8", args.calibration)):
        folder = tmp / name
        extract_features(ExtractionConfig(str(root), str(folder / "features"), str(folder / "manifest.json"),
                                          str(checkpoint), color_space="rgb", device="cpu", progress=False,
                                          backend="onnxruntime", int8_calibration=calibration))
        out[name] = {"manifest": folder / "manifest.json", "ccc": head_ccc(folder / "manifest.json", folder, args.epochs)}
    fp32, int8 = (load_feature_set(read_manifest(out[n]["manifest"])).features for n in ("fp32", "int8"))
    cosine = (fp32 * int8).sum(axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    return {"frames": len(fp32), "calibration_frames": args.calibration,
            "feature_relative_error": float(np.abs(int8 - fp32).max() / np.abs(fp32).max()),
            "feature_cosine": {"min": float(cosine.min()), "median": float(np.median(cosine))},
            "head_ccc": {n: out[n]["ccc"] for n in ("fp32", "int8")},
            "ccc_change": {d: out["int8"]["ccc"][d] - out["fp32"]["ccc"][d] for d in ("valence", "arousal")}}


def two_processes(args, tmp: Path) -> dict:
    from emonet.testing import write_released_checkpoint

    checkpoint = write_released_checkpoint(tmp / "emonet_8.pth")
    script = FORWARD.format(root=str(ROOT))

    def start(way: str):
        return subprocess.Popen([sys.executable, "-c", script, way, str(args.frames), str(checkpoint), str(tmp / "cache")],
                                stdout=subprocess.PIPE, text=True)

    subprocess.run([sys.executable, "-c", script, "onnxruntime", "1", str(checkpoint), str(tmp / "cache")], check=True)
    alone, together = {w: [] for w in WAYS}, {w: [] for w in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            alone[way].append(float(start(way).communicate()[0]))
            pair = [start(way), start(way)]
            together[way].append(statistics.mean(float(p.communicate()[0]) for p in pair))
    return {w: {"alone_frames_per_s": statistics.median(alone[w]), "beside_its_twin_frames_per_s": statistics.median(together[w]),
                "slowdown": statistics.median(alone[w]) / statistics.median(together[w])} for w in WAYS}


def main(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        result = {"machine": describe_machine(torch.device("cpu")), "int8": int8_quality(args, tmp),
                  "two_processes": two_processes(args, tmp)}
        result["seconds"] = time.perf_counter() - start
    print(json.dumps(result, indent=2))
    if args.output:
        write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
