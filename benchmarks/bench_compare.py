"""The head comparison end to end, as a user runs it: `python compare_color_spaces.py` over 4 colour spaces
x 5 folds x 50 epochs (batch 64, inner selection, bootstrap 1000), each space 30,051 feature files with the
real AFEW-VA labels and clip structure (synthetic features). Loading, training, selection, prediction,
bootstrap, report and plot are all inside each timed command, all timed in one run on the same inputs:

- one repetition in one process (`--workers 1`);
- `--repeats R` (default 5) with every core (the default `--workers`);
- with --baseline PATH, one repetition by another checkout's compare_color_spaces.py (e.g. a `git worktree`
  of the commit before this one: "today's" way), in one process;
- with --processes N, one repetition under torchrun with N CPU processes.

Target: R = 5 on every core in at most 2x the baseline's one repetition in one process.

    python benchmarks/bench_compare.py --baseline ../emonet-before
    python benchmarks/bench_compare.py --processes 2

Writes the feature sets (not timed) into a temporary folder, about 4 x 60 MB.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.manifest import default_feature_paths  # noqa: E402
from emonet.testing import write_feature_set  # noqa: E402

SPACES = ("rgb", "hsv", "lab", "yuv")
TARGET_RATIO = 2.0


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--labels", default=str(ROOT.parent / "shared/reference/afew_va_labels.json"),
                        help="afew_va_labels.json (default: ../shared/reference/afew_va_labels.json)")
    parser.add_argument("--spaces", type=int, default=4, help="colour spaces, 2 to 4 (default: 4)")
    parser.add_argument("--folds", type=int, default=5, help="folds (default: 5)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
    parser.add_argument("--repeats", type=int, default=5, help="R of the repeated run (default: 5)")
    parser.add_argument("--baseline", default=None,
                        help="a checkout whose compare_color_spaces.py is timed too, one repetition in one process "
                             "(default: none)")
    parser.add_argument("--processes", type=int, default=1,
                        help="also time one repetition under torchrun with this many CPU processes (default: 1: not)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main(args):
    labels = json.loads(Path(args.labels).read_text())["clips"]
    spaces = SPACES[: args.spaces]
    results = {"machine": describe_machine(torch.device("cpu")), "spaces": list(spaces), "folds": args.folds,
               "epochs": args.epochs, "batch_size": 64, "bootstrap": 1000}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifests = []
        for i, space in enumerate(spaces):
            folder, manifest = default_feature_paths(space)
            write_feature_set(tmp, labels, manifest, folder, color_space=space, signal=1.0 + i, seed=i)
            manifests.append(f"{space}={manifest}")
        results["frames_per_space"] = sum(len(c["valence"]) for c in labels.values())
        flags = ["--manifests", *manifests, "--folds", str(args.folds), "--epochs", str(args.epochs), "--batch_size", "64",
                 "--learning_rate", "1e-3", "--loss_function", "ccc", "--bootstrap", "1000", "--device", "cpu",
                 "--no_progress"]
        script = str(ROOT / "compare_color_spaces.py")
        timings = {"one_repetition_one_process_s": timed([sys.executable, script, *flags, "--workers", "1",
                                                          "--output_dir", "one"], tmp)}
        timings[f"repeats_{args.repeats}_all_cores_s"] = timed(
            [sys.executable, script, *flags, "--repeats", str(args.repeats), "--output_dir", "repeated"], tmp)
        repeated = json.loads((tmp / "repeated" / "comparison.json").read_text())
        one = json.loads((tmp / "one" / "comparison.json").read_text())
        results["repetition_0_same_as_one_repetition"] = all(
            repeated["color_spaces"][s]["pooled"] == one["color_spaces"][s]["pooled"] for s in spaces)
        if args.baseline:
            baseline = Path(args.baseline).resolve()
            timings["baseline_one_repetition_one_process_s"] = timed(
                [sys.executable, str(baseline / "compare_color_spaces.py"), *flags, "--output_dir", "baseline"], tmp)
            ratio = timings[f"repeats_{args.repeats}_all_cores_s"] / timings["baseline_one_repetition_one_process_s"]
            results |= {"baseline": str(baseline), "repeated_over_baseline": ratio, "target_ratio": TARGET_RATIO,
                        "target_met": ratio <= TARGET_RATIO}
        if args.processes > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes)]
            seconds = timed([*launcher, script, *flags, "--output_dir", "multi"], tmp)
            timings[f"torchrun_{args.processes}_processes_s"] = seconds
            results["same_report"] = (tmp / "one" / "comparison.json").read_text() == (tmp / "multi" / "comparison.json").read_text()
    results |= timings
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
