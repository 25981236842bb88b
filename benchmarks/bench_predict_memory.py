"""predict.py's memory on a long video: peak resident memory and its slope, to show that it stays flat however
long the input (results are streamed, not held until the video's end).

Writes a --minutes video of 640 x 480 at 25 fps with one face moving across it (the astronaut), runs predict.py on
it as a user does (a subprocess, zero-shot, fp32, the landmark crop, --sample_fps to keep the run short: the frames
left out are still decoded and grabbed, and every analysed frame makes a row as without it), and samples the
process's resident memory (VmRSS) every half second. Reported: the peak, and the slope of a straight line through
the samples of the second half of the run, in MB per 1,000 analysed frames (flat: near 0; holding ~3.5 KB a frame,
as predict.py did before, would be about 3.5).

    python benchmarks/bench_predict_memory.py --minutes 10 --sample_fps 2 --output /tmp/bench_memory.json
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.testing import write_face_video, write_released_checkpoint  # noqa: E402

FPS = 25.0
SAMPLE_SECONDS = 0.5


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the video (default: 10)")
    parser.add_argument("--sample_fps", type=float, default=2.0, help="predict.py's --sample_fps (default: 2)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def main(args) -> dict:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = int(args.minutes * 60 * FPS)
        video = write_face_video(tmp / "long.mp4", frames, 0, size=(640, 480), fps=FPS, face_size=150)
        checkpoint = write_released_checkpoint(tmp / "emonet_8.pth")
        command = [sys.executable, str(ROOT / "predict.py"), "--inputs", str(video), "--pretrained_path", str(checkpoint),
                   "--output_dir", str(tmp / "out"), "--sample_fps", str(args.sample_fps), "--no_progress",
                   "--device", "cpu"]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples = []
        while process.poll() is None:
            if (mb := rss_mb(process.pid)) is not None:
                samples.append((time.perf_counter() - start, mb))
            time.sleep(SAMPLE_SECONDS)
        if process.returncode:
            raise RuntimeError(f"predict.py failed: {process.stderr.read()[-2000:]}")
        summary = json.loads((tmp / "out" / "predictions.json").read_text())["inputs"][0]
    seconds = np.array([t for t, _ in samples])
    mb = np.array([m for _, m in samples])
    analysed = summary["analysed_frames"]
    second_half = seconds >= seconds[-1] / 2
    # Analysed frames go at a steady rate: time maps to frames by the run's mean rate.
    slope_per_s = np.polyfit(seconds[second_half], mb[second_half], 1)[0]
    per_1000 = slope_per_s * seconds[-1] / analysed * 1000
    result = {"machine": describe_machine(torch.device("cpu")), "video_frames": frames, "minutes": args.minutes,
              "sample_fps": args.sample_fps, "analysed_frames": analysed, "wall_s": float(seconds[-1]),
              "peak_rss_mb": float(mb.max()), "rss_mb_at_tenths": [round(float(mb[int(q / 10 * (len(mb) - 1))]))
                                                                   for q in range(1, 11)],
              "slope_mb_per_1000_analysed_frames": float(per_1000)}
    print(json.dumps(result, indent=2))
    if args.output:
        write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
