"""The feature store at Aff-Wild2's size: 2.8 million frames of 594 videos, written directly (no images), one
clip file a video (`emonet/feature_store.py`), against the per-frame files of earlier extractions.

Reports, each in its own process (peak memory: the largest sum of the proportional set sizes of the process and its
children, sampled every 0.2 s):
1. writing the synthetic store (two colour spaces, labels a random walk on AFEW-VA's scale, AFEW-VA-type manifests
   so that the comparison cross-validates: 5 units a space, where Aff-Wild2's official split would train one);
2. loading one colour space (`load_feature_set`), time and peak memory (target: under 60 s on 2 cores);
3. the per-frame layout: --per_frame_files files written and loaded, and that rate projected to 2.8 million;
4. one frame-head and one temporal-head epoch of train_emonet_features.py (the difference of a 2-epoch and a
   1-epoch run, so that loading and start-up cancel);
5. the colour-space comparison of the two spaces, frame head, one epoch a unit: wall time and peak memory of
   the whole process tree (target: under 8 GB);
6. at AFEW-VA's size (30,051 frames of 600 clips, two spaces), a comparison of the three heads with 3 repetitions
   (one epoch a unit), then its `--report_only` rerun, timed (target: under 10 s).
Projections of the full extraction and comparison on GPUs and a Slurm job array are written from these figures
and the extraction rates in the guide (see its "Other datasets").

    python benchmarks/bench_feature_store.py --output /tmp/bench_store.json            # 2.8 M frames, ~6 GB of disk
    python benchmarks/bench_feature_store.py --frames 300000 --videos 64               # a quicker look
"""
import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.constants import FEATURE_DIM, IMAGE_SIZE  # noqa: E402
from emonet.io import save_npz, write_json  # noqa: E402
from emonet.manifest import write_manifest  # noqa: E402

AFF_WILD2_FRAMES = 2_800_000
AFF_WILD2_VIDEOS = 594
SAMPLE_SECONDS = 0.2
LOAD_TARGET_S = 60.0
MEMORY_TARGET_GB = 8.0
PARTS = ("load", "per_frame", "heads", "comparison", "report_only")
AFEW_VA_FRAMES, AFEW_VA_CLIPS = 30_051, 600
REPORT_ONLY_TARGET_S = 10.0


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=AFF_WILD2_FRAMES, help=f"frames (default: {AFF_WILD2_FRAMES:,})")
    parser.add_argument("--videos", type=int, default=AFF_WILD2_VIDEOS, help=f"videos (default: {AFF_WILD2_VIDEOS})")
    parser.add_argument("--per_frame_files", type=int, default=30_000,
                        help="per-frame files written and loaded for the old layout's rate (default: 30,000)")
    parser.add_argument("--folder", default=None, help="where the store goes (default: a temporary folder, removed); "
                        "a store already written there is used as it is")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help=f"what to measure (default: all: {' '.join(PARTS)})")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def write_store(folder: Path, frames: int, videos: int, space: str, seed: int = 0) -> Path:
    """Clip files and a manifest of `frames` frames over `videos` videos (one colour space)."""
    rng, labels_rng = np.random.default_rng(seed), np.random.default_rng(0)  # features per space, labels shared
    lengths = np.full(videos, frames // videos)
    lengths[: frames % videos] += 1
    store = folder / f"features_{space}"
    store.mkdir(parents=True, exist_ok=True)
    samples = []
    for v, n in enumerate(lengths):
        clip = f"video{v:04d}"
        ids = [f"{i:05d}" for i in range(1, n + 1)]
        walk = np.clip(np.cumsum(labels_rng.normal(0, 0.3, (n, 2)), 0), -10, 10).round()
        emonet = np.tanh(rng.standard_normal((n, 2))).astype(np.float32)
        save_npz(store / f"{clip}.npz", frames=np.array(ids), features=rng.standard_normal((n, FEATURE_DIM), np.float32),
                 valence=walk[:, 0].astype(np.float32), arousal=walk[:, 1].astype(np.float32), emonet_valence=emonet[:, 0],
                 emonet_arousal=emonet[:, 1], emonet_expression=np.zeros((n, 8), np.float32))
        path = f"features_{space}/{clip}.npz"
        samples += [{"path": path, "clip": clip, "frame": f, "actor": clip, "valence": float(va[0]), "arousal": float(va[1])}
                    for f, va in zip(ids, walk, strict=True)]
    manifest = folder / f"features_{space}_manifest.json"
    write_manifest(manifest, {"color_space": space, "crop": "resize", "image_size": IMAGE_SIZE, "pretrained_sha256": "0" * 64,
                              "precision": "fp32"}, samples)
    return manifest


def write_per_frame(folder: Path, files: int) -> Path:
    rng = np.random.default_rng(1)
    samples = []
    for i in range(files):
        clip, frame = f"video{i // 1000:04d}", f"{i % 1000:05d}"
        (folder / "per_frame" / clip).mkdir(parents=True, exist_ok=True)
        np.savez(folder / "per_frame" / clip / f"{frame}.npz", features=rng.standard_normal(FEATURE_DIM, np.float32),
                 valence=np.float32(0), arousal=np.float32(0), emonet_valence=np.float32(0), emonet_arousal=np.float32(0),
                 emonet_expression=np.zeros(8, np.float32))
        samples.append({"path": f"per_frame/{clip}/{frame}.npz", "clip": clip, "frame": frame, "actor": clip,
                        "valence": 0.0, "arousal": 0.0})
    manifest = folder / "per_frame_manifest.json"
    write_manifest(manifest, {"color_space": "rgb", "crop": "resize", "image_size": IMAGE_SIZE}, samples)
    return manifest


def _tree_pss_mb(pid: int) -> float:
    """Memory of a process and all its descendants: the sum of their proportional set sizes (a page shared by n
    processes, as forked workers share the parent's, counts 1/n in each), from /proc."""
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(rollup.split("\nPss:")[1].split()[0]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, IndexError, ProcessLookupError, PermissionError):
            continue
    return total


def measured(command: list[str], cwd: Path, events: list | None = None) -> tuple[float, float]:
    """(wall seconds, peak MB of the process tree) of a command; it must succeed. `events`, when given, receives
    [seconds, line] for each line the command logs, and ["peak", seconds, MB] when the peak was sampled: where in the
    run the peak falls."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend([time.perf_counter() - start, line.rstrip()]
                                                          for line in process.stderr), daemon=True)
    reader.start()
    peak, peak_at = 0.0, 0.0
    while process.poll() is None:
        now = _tree_pss_mb(process.pid)
        if now > peak:
            peak, peak_at = now, time.perf_counter() - start
        time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - start
    reader.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {' '.join(line for _, line in lines)[-2000:]}")
    if events is not None:
        events += sorted([*lines, ["peak", peak_at, peak]], key=lambda e: e[-2] if e[0] == "peak" else e[0])
    return seconds, peak


def load_command(manifest: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from emonet.features import load_feature_set; "
            "from emonet.manifest import read_manifest; load_feature_set(read_manifest(sys.argv[2]), progress=False)",
            str(ROOT), str(manifest)]


def train_command(manifest: Path, out: Path, head: str, epochs: int) -> list[str]:
    return [sys.executable, str(ROOT / "train_emonet_features.py"), "--manifest_file", str(manifest), "--head", head,
            "--epochs", str(epochs), "--output_dir", str(out), "--split", "actor", "--device", "cpu", "--no_progress",
            *(["--batch_size", "4096"] if head == "frame" else [])]  # the temporal head takes whole clips (8 a step)


def main(args) -> dict:
    import torch

    from emonet.device import describe_machine

    result = {"machine": describe_machine(torch.device("cpu")), "frames": args.frames, "videos": args.videos}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        manifests = {space: folder / f"features_{space}_manifest.json" for space in ("rgb", "hsv")}
        if set(args.parts) - {"report_only"} and not all(p.is_file() for p in manifests.values()):
            start = time.perf_counter()
            manifests = {space: write_store(folder, args.frames, args.videos, space, seed) for seed, space in
                         enumerate(("rgb", "hsv"))}
            result["write_two_spaces_s"] = time.perf_counter() - start
        if manifests["rgb"].is_file():
            result["store_gb_per_space"] = sum(p.stat().st_size for p in (folder / "features_rgb").glob("*.npz")) / 1e9
            result["manifest_mb"] = manifests["rgb"].stat().st_size / 1e6
        if "load" in args.parts:
            seconds, peak = measured(load_command(manifests["rgb"]), folder)
            result["load_one_space"] = {"s": seconds, "peak_mb": peak, "target_s": LOAD_TARGET_S,
                                        "met": seconds < LOAD_TARGET_S}
            print(f"load one space: {seconds:.1f} s, peak {peak:.0f} MB", file=sys.stderr)
        if "per_frame" in args.parts:
            per_frame = write_per_frame(folder, args.per_frame_files)
            seconds, _ = measured(load_command(per_frame), folder)
            result["per_frame_layout"] = {"files": args.per_frame_files, "load_s": seconds,
                                          "projected_load_s": seconds / args.per_frame_files * args.frames}
            print(f"per-frame files: {args.per_frame_files} in {seconds:.1f} s", file=sys.stderr)
        for head in ("frame", "temporal") if "heads" in args.parts else ():
            one, peak = measured(train_command(manifests["rgb"], folder / f"{head}1", head, 1), folder)
            two, _ = measured(train_command(manifests["rgb"], folder / f"{head}2", head, 2), folder)
            result[f"{head}_head_epoch_s"] = two - one
            result[f"{head}_head_run_peak_mb"] = peak
            print(f"{head} head: one epoch {two - one:.1f} s (runs of 1 and 2 epochs: {one:.1f}, {two:.1f} s)",
                  file=sys.stderr)
        if "comparison" in args.parts:
            command = compare_command(manifests, folder / "comparison", "--heads", "frame", "--batch_size", "4096")
            events: list = []
            seconds, peak = measured(command, folder, events)
            result["comparison_two_spaces"] = {"s": seconds, "peak_mb": peak, "target_gb": MEMORY_TARGET_GB,
                                               "met": peak / 1024 < MEMORY_TARGET_GB, "log_and_peak": events}
            print(f"comparison of two spaces: {seconds:.0f} s, peak {peak:.0f} MB", file=sys.stderr)
        if "report_only" in args.parts:
            small = folder / "afew_va_size"
            afew = {space: write_store(small, AFEW_VA_FRAMES, AFEW_VA_CLIPS, space, seed)
                    for seed, space in enumerate(("rgb", "hsv"))}
            flags = ["--heads", "frame", "smooth", "temporal", "--repeats", "3"]
            measured(compare_command(afew, small / "comparison", *flags), small)
            seconds, peak = measured(compare_command(afew, small / "comparison", *flags, "--report_only"), small)
            result["afew_va_report_only"] = {"s": seconds, "peak_mb": peak, "units": 2 * 3 * 5 * 3,
                                             "target_s": REPORT_ONLY_TARGET_S, "met": seconds < REPORT_ONLY_TARGET_S}
            print(f"AFEW-VA-sized report-only rerun: {seconds:.1f} s", file=sys.stderr)
    return _report(result, args)


def compare_command(manifests: dict[str, Path], output: Path, *flags: str) -> list[str]:
    """compare_color_spaces.py on the two spaces, one epoch a unit."""
    return [sys.executable, str(ROOT / "compare_color_spaces.py"), "--manifests",
            *(f"{space}={path}" for space, path in manifests.items()), "--epochs", "1", "--output_dir", str(output),
            "--device", "cpu", "--no_progress", *flags]


def _report(result: dict, args) -> dict:
    print(json.dumps(result, indent=2))
    if args.output:
        write_json(Path(args.output), result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
