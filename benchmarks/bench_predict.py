"""predict.py's speed on a 640 x 480 video: frames/s end to end against EmoNet alone on the same frames, in the
same run, and the share of a frame's time in decoding, detection, landmarks (EmoNet's first pass on the box
crop and the heatmap decoding), crop (and colour conversion), EmoNet and the head.

The video: --frames frames of the astronaut's face (--face pixels) moving across a noisy background
(`emonet.testing.write_face_video`), with the deterministic weights (as fast as the released ones). Each way
is timed in --rounds alternating rounds and reported as its median. Target (issue 18): decoding plus
detection at most 15 % of a frame's time on the CPU.

    python benchmarks/bench_predict.py                 # fp32, and bf16 where the CPU has bf16 instructions
    python benchmarks/bench_predict.py --device cuda   # on a GPU
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.crop import crop_square, square_from_box  # noqa: E402
from emonet.colour import convert_colour  # noqa: E402
from emonet.data import to_tensor  # noqa: E402
from emonet.device import cpu_has_bf16, describe_machine, resolve_device  # noqa: E402
from emonet.faces import FaceDetector  # noqa: E402
from emonet.inference import infer  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.media import discover  # noqa: E402
from emonet.prediction import STAGES, Predictor, load_model  # noqa: E402
from emonet.testing import write_face_video, write_released_checkpoint  # noqa: E402

TARGET_SHARE = 0.15


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--frames", type=int, default=48, help="frames of the video (default: 48)")
    parser.add_argument("--face", type=int, default=200, help="face size in pixels (default: 200)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, medians reported (default: 3)")
    parser.add_argument("--crops", nargs="+", default=["landmarks", "box"], help="crops timed (default: landmarks box)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--batch_size", type=int, default=8, help="predict.py's --batch_size (default: 8)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def emonet_alone(model, crops: torch.Tensor, device, amp: bool) -> float:
    """Frames/s of EmoNet's forward alone on `crops` (as predict.py runs it: `inference.infer`)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for chunk in crops.split(8):
            infer(model.network, chunk, device, amp)
    return len(crops) / (time.perf_counter() - start)


def main(args):
    device = resolve_device(args.device)
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_bf16() else [])
    results = {"machine": describe_machine(device), "frames": args.frames, "size": [640, 480], "face": args.face,
               "rounds": args.rounds, "ways": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = write_face_video(tmp / "walk.mp4", args.frames, 0, size=(640, 480), face_size=args.face)
        checkpoint = write_released_checkpoint(tmp / "emonet_8.pth")
        source = discover([str(video)])[0]
        frames = [f.rgb for f in source.open().frames()]
        detector = FaceDetector(device)
        boxes = [detector(rgb)[0].box for rgb in frames]
        crops = torch.stack([to_tensor(convert_colour(crop_square(rgb, *square_from_box(*b)), "rgb"))
                             for rgb, b in zip(frames, boxes, strict=True)])
        runs = {}
        for precision in precisions:
            for crop in args.crops:
                model = load_model(None, str(checkpoint), crop, precision == "bf16", False, device)
                runs[f"{precision} {crop}"] = (model, Predictor(model, device, args.batch_size, progress=False))
        timings = {name: [] for name in runs} | {f"{p} EmoNet alone": [] for p in precisions}
        stages = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (_, predictor) in runs.items():
                start = time.perf_counter()
                result = predictor.run(source)
                elapsed = time.perf_counter() - start
                timings[name].append(args.frames / elapsed)
                stages[name].append({s: result.seconds[s] / elapsed for s in STAGES})
            for precision in precisions:
                model = next(m for n, (m, _) in runs.items() if n.startswith(precision))
                timings[f"{precision} EmoNet alone"].append(emonet_alone(model, crops, device, precision == "bf16"))
    for name, values in timings.items():
        entry = {"frames_per_s": statistics.median(values), "rounds": values}
        if name in stages:
            shares = {s: statistics.median(r[s] for r in stages[name]) for s in STAGES}
            alone = statistics.median(timings[f"{name.split()[0]} EmoNet alone"])
            entry |= {"share": shares, "decode_plus_detect": shares["decode"] + shares["detect"],
                      "target_met": shares["decode"] + shares["detect"] <= TARGET_SHARE,
                      "over_emonet_alone": entry["frames_per_s"] / alone}
        results["ways"][name] = entry
    results["target_share"] = TARGET_SHARE
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
