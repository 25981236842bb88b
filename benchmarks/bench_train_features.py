"""Head training speed on 30,051 feature files with the real AFEW-VA labels and clip structure.

Reports (1) the time to load every file into memory (`emonet.features.load_feature_set`), (2) the time of
train_emonet_features.py's training for --epochs epochs, frame head (batch --batch_size) and temporal head
(8 clips a step), side by side in one run on the same split (clips 80/20, best epoch on an inner 10 %),
validation and checkpoints included, with their ratio (target: the temporal head at most 2x the frame
head), and (3) the per-step-from-disk way of the seed (a Dataset that opens one .npz per sample per step),
timed over --disk_steps steps and extrapolated to the frame head's epochs.

    python benchmarks/bench_train_features.py --labels ../shared/reference/afew_va_labels.json
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emonet.constants import DEFAULT_CLIPS_PER_BATCH, LABEL_SCALE
from emonet.device import describe_machine  # noqa: E402
from emonet.features import load_feature_set  # noqa: E402
from emonet.head_training import HeadUnit, head_config, model_args, train_heads
from emonet.heads import FeatureHead  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.losses import ccc_loss  # noqa: E402
from emonet.manifest import read_manifest  # noqa: E402
from emonet.testing import write_feature_set  # noqa: E402
from emonet.splits import make_split, split_indices  # noqa: E402


HEADS = ("frame", "temporal")
TEMPORAL_TARGET = 2.0


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--labels", default=str(Path(__file__).resolve().parents[2] / "shared/reference/afew_va_labels.json"),
                        help="afew_va_labels.json (default: ../shared/reference/afew_va_labels.json)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--disk_steps", type=int, default=300, help="steps timed for the per-step-from-disk way (default: 300)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


class PerStepNpz(Dataset):
    """The seed's way: every access opens and parses one .npz file."""

    def __init__(self, paths, labels):
        self.paths, self.labels = paths, labels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with np.load(self.paths[i]) as data:
            return torch.from_numpy(data["features"]), torch.from_numpy(self.labels[i])


def train_head(kind: str, data, indices, epochs: int, batch_size: int, folder: Path) -> float:
    """Seconds of train_emonet_features.py's training (`head_training.train_heads`) of one head of `kind`."""
    args = SimpleNamespace(batch_size=batch_size, epochs=epochs, learning_rate=1e-3, weight_decay=0.0, optimizer="adam",
                           loss_function="ccc", dropout=0.2, save_freq=0, clips_per_batch=DEFAULT_CLIPS_PER_BATCH)
    meta = {"model_type": "feature_head", "args": vars(args), "split": {"inner_val": ["x"]},
            "head": head_config(kind, args), "model_args": model_args(kind, args), "settings": {}}
    start = time.perf_counter()
    train_heads([HeadUnit(folder / kind, kind, 0, indices, 0, meta)], [data], args, torch.device("cpu"))
    return time.perf_counter() - start


def train_from_disk(paths, labels, steps, batch_size):
    torch.manual_seed(0)
    model = FeatureHead()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PerStepNpz(paths, labels), batch_size=batch_size, shuffle=True)
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(loader):
        if step == steps:
            break
        loss = ccc_loss(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main(args):
    labels = json.loads(Path(args.labels).read_text())["clips"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        manifest_path = write_feature_set(tmp, labels)
        write_s = time.perf_counter() - start
        manifest = read_manifest(manifest_path)
        start = time.perf_counter()
        data = load_feature_set(manifest, progress=False)
        load_s = time.perf_counter() - start
        indices = split_indices(data.samples, make_split(data.samples, "clip", 0.2, 0, inner_val_split=0.1))
        seconds = {kind: train_head(kind, data, indices, args.epochs, args.batch_size, tmp / "runs") for kind in HEADS}
        targets = data.labels / np.float32(LABEL_SCALE)
        paths = [manifest.resolve(s) for s in manifest.samples]
        per_step_s = train_from_disk(paths, targets, args.disk_steps, args.batch_size)
    steps_per_epoch = -(-len(indices.train) // args.batch_size)
    disk_s = per_step_s * steps_per_epoch * args.epochs
    results = {
        "machine": describe_machine(torch.device("cpu")), "files": len(paths), "training_frames": len(indices.train),
        "epochs": args.epochs, "batch_size": args.batch_size, "write_files_s": write_s, "load_s": load_s,
        **{f"train_{kind}_head_s": s for kind, s in seconds.items()},
        "temporal_over_frame": seconds["temporal"] / seconds["frame"], "temporal_target": TEMPORAL_TARGET,
        "temporal_target_met": seconds["temporal"] / seconds["frame"] <= TEMPORAL_TARGET,
        "train_from_disk_s_extrapolated": disk_s, "speedup": disk_s / seconds["frame"],
        "in_memory_plus_load_speedup": disk_s / (seconds["frame"] + load_s),
    }
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
