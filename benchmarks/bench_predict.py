"""predict.py's speed on 640 x 480 videos, side by side in one run: this checkout against another (--baseline, a
checkout of the commit to compare with, e.g. `git worktree add ../before <commit>`) with one face at default
settings, this checkout with EmoNet through PyTorch eager (--backend torch) and through the engine (the default on the
CPU), and this checkout with 1, 2 and 3 faces; plus where a frame's time goes.

Each way runs predict.py as a user does (a subprocess, default settings: zero-shot, fp32, the landmark crop) on
two videos of --frames and 2 x --frames frames; frames/s is --frames over the difference of their wall times, so
that start-up (imports, loading the models) and the first frame's warm-up cancel. The ways alternate over
--rounds rounds and each is reported as its median. The faces: the astronaut of scikit-image and, for 2 and 3
faces, the people of ../shared/faces/ (when present, else mirrored astronauts), each moving across its own band.
Targets: this checkout (the engine) at least 1.5x the baseline's frames/s with one face (the baseline being
a checkout without the engine); the cost grows no faster than the number of faces.

    python benchmarks/bench_predict.py --baseline ../before       # the CPU, fp32
    python benchmarks/bench_predict.py --device cuda               # on a GPU (no baseline needed)
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine, resolve_device  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.testing import face_image, shared_face_crops, write_face_video, write_released_checkpoint  # noqa: E402

FACES_DIR = ROOT.parent / "shared" / "faces"
TARGET_RATIO = 1.5


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--frames", type=int, default=24, help="frames of the shorter video (default: 24)")
    parser.add_argument("--face", type=int, default=150, help="face size in pixels (default: 150)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, medians reported (default: 3)")
    parser.add_argument("--baseline", default=None, help="a checkout to compare with, one face (default: none)")
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 2, 3], help="faces of this checkout's videos "
                        "(default: 1 2 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def run_predict(root: Path, video: Path, checkpoint: Path, out: Path, device: str, extra: list[str]) -> tuple[float, dict]:
    """Wall seconds of predict.py from `root` on `video` (with `extra` flags), and its summary of the input."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(root / "predict.py"), "--inputs", str(video), "--pretrained_path",
                             str(checkpoint), "--output_dir", str(out), "--no_progress", "--device", device, *extra],
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{root}/predict.py failed: {result.stderr[-2000:]}")
    return seconds, json.loads((out / "predictions.json").read_text())["inputs"][0]


def main(args):
    device = resolve_device(args.device)
    faces = [face_image()] + (shared_face_crops(FACES_DIR) if FACES_DIR.is_dir() else [face_image()[:, ::-1]] * 2)
    ways = {f"this checkout, {k} face{'s' if k > 1 else ''}": (ROOT, k, []) for k in args.faces}
    if device.type == "cpu":
        ways["this checkout, 1 face, --backend torch"] = (ROOT, 1, ["--backend", "torch"])
    if args.baseline:
        ways = {"baseline, 1 face": (Path(args.baseline).resolve(), 1, [])} | ways
    results = {"machine": describe_machine(device), "frames": [args.frames, 2 * args.frames], "size": [640, 480],
               "face": args.face, "rounds": args.rounds, "ways": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = write_released_checkpoint(tmp / "emonet_8.pth")
        videos = {(n, k): write_face_video(tmp / f"v{n}_{k}.mp4", n, 0, size=(640, 480), face_size=args.face,
                                           faces=faces[:k])
                  for n in (args.frames, 2 * args.frames) for k in {k for _, k, _ in ways.values()}}
        rates, stages = {name: [] for name in ways}, {name: [] for name in ways}
        for r in range(args.rounds):
            for w, (name, (root, k, extra)) in enumerate(ways.items()):
                (short, _), (long, summary) = (run_predict(root, videos[n, k], checkpoint, tmp / f"out{r}_{w}_{n}",
                                                           args.device, extra)
                                               for n in (args.frames, 2 * args.frames))
                rates[name].append(args.frames / (long - short))
                total = sum(summary["seconds"].values())
                stages[name].append({s: v / total for s, v in summary["seconds"].items()})
                print(f"round {r}: {name}: {rates[name][-1]:.2f} frames/s", file=sys.stderr)
    for name, values in rates.items():
        shares = {s: statistics.median(x[s] for x in stages[name]) for s in stages[name][0]}
        results["ways"][name] = {"frames_per_s": statistics.median(values), "rounds": values,
                                 "share_of_frame_time": shares}
    if args.baseline:
        base = results["ways"]["baseline, 1 face"]["frames_per_s"]
        ours = results["ways"]["this checkout, 1 face"]["frames_per_s"]
        results["ratio_to_baseline"] = ours / base
        results["target_met"] = ours / base >= TARGET_RATIO
    if "this checkout, 1 face, --backend torch" in results["ways"]:
        results["engine_over_torch"] = (results["ways"]["this checkout, 1 face"]["frames_per_s"]
                                        / results["ways"]["this checkout, 1 face, --backend torch"]["frames_per_s"])
    ones = {k: results["ways"][f"this checkout, {k} face{'s' if k > 1 else ''}"]["frames_per_s"] for k in args.faces}
    if 1 in ones:
        results["time_per_frame_over_one_face"] = {k: ones[1] / v for k, v in ones.items()}
        results["cost_grows_no_faster_than_faces"] = bool(np.all([ones[1] / v <= k * 1.05 for k, v in ones.items()]))
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
