"""Feature-head training speed on 30,051 feature files with the real AFEW-VA labels and clip structure.

Reports (1) the time to load every file into memory (`emonet.features.load_feature_set`), (2) the time
for --epochs epochs at --batch_size on those in-memory features (the loop of train_emonet_features.py),
and (3) the per-step-from-disk way of the seed (a Dataset that opens one .npz per sample per step),
timed over --disk_steps steps and extrapolated to the same number of epochs.

    python benchmarks/bench_train_features.py --labels ../shared/reference/afew_va_labels.json
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emonet.constants import LABEL_SCALE  # noqa: E402
from emonet.device import describe_machine  # noqa: E402
from emonet.features import FeatureHead, load_feature_set, train_head_epoch  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.losses import ccc_loss  # noqa: E402
from emonet.manifest import read_manifest  # noqa: E402
from emonet.testing import write_feature_set  # noqa: E402
from emonet.training import epoch_generator, make_optimizer  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def train_in_memory(features, labels, epochs, batch_size):
    torch.manual_seed(0)
    model = FeatureHead()
    model.set_normalisation(features)
    optimizer = make_optimizer("adam", model.parameters(), 1e-3, 0.0)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_head_epoch(model, optimizer, ccc_loss, x, y, torch.randperm(len(x), generator=epoch_generator(0, epoch)), batch_size)
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
        targets = data.labels / np.float32(LABEL_SCALE)
        memory_s = train_in_memory(data.features, targets, args.epochs, args.batch_size)
        paths = [manifest.resolve(s) for s in manifest.samples]
        per_step_s = train_from_disk(paths, targets, args.disk_steps, args.batch_size)
    steps_per_epoch = -(-len(paths) // args.batch_size)
    disk_s = per_step_s * steps_per_epoch * args.epochs
    results = {
        "machine": describe_machine(torch.device("cpu")), "files": len(paths), "epochs": args.epochs,
        "batch_size": args.batch_size,
        "write_files_s": write_s, "load_s": load_s, "train_in_memory_s": memory_s,
        "train_from_disk_s_extrapolated": disk_s, "speedup": disk_s / memory_s,
        "in_memory_plus_load_speedup": disk_s / (memory_s + load_s),
    }
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
