"""The head comparison end to end, as a user runs it: `python compare_color_spaces.py` over 4 colour spaces
x 5 folds x 50 epochs (batch 64, inner selection, bootstrap 1000), each space 30,051 feature files with the
real AFEW-VA labels and clip structure (synthetic features). Loading, training, selection, prediction,
bootstrap, report and plot are all inside the timed command. Target on the 2-core CPU: under 4 minutes.

    python benchmarks/bench_compare.py
    python benchmarks/bench_compare.py --processes 2    # also under torchrun with 2 CPU processes, same inputs

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
TARGET_S = 240


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default=str(ROOT.parent / "shared/reference/afew_va_labels.json"),
                        help="afew_va_labels.json (default: ../shared/reference/afew_va_labels.json)")
    parser.add_argument("--spaces", type=int, default=4, help="colour spaces, 2 to 4 (default: 4)")
    parser.add_argument("--folds", type=int, default=5, help="folds (default: 5)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
    parser.add_argument("--processes", type=int, default=1,
                        help="also time the same comparison under torchrun with this many CPU processes (default: 1, "
                             "one process only)")
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
        timings = {"one_process_s": timed([sys.executable, script, *flags, "--output_dir", "one"], tmp)}
        if args.processes > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes)]
            seconds = timed([*launcher, script, *flags, "--output_dir", "multi"], tmp)
            timings[f"torchrun_{args.processes}_processes_s"] = seconds
            results["speed_up"] = timings["one_process_s"] / seconds
            results["same_report"] = (tmp / "one" / "comparison.json").read_text() == (tmp / "multi" / "comparison.json").read_text()
    results |= {**timings, "target_s": TARGET_S, "target_met": {k: v < TARGET_S for k, v in timings.items()}}
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
