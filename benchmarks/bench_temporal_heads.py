"""Which sequence model for the temporal head: accuracy and training time of candidates, side by side in one run.

On AFEW-VA-sized data: the 600 clips' real labels and clip structure (30,051 frames), synthetic 256-d
features that carry the labels linearly under per-frame noise (--noise, in units of the signal) and a
per-clip offset (`emonet.testing.write_feature_set`'s recipe, built in memory). One split: clips 80/20, the
best epoch chosen on an inner 10 % of the training clips, every candidate trained by the same loop
(`head_training.train_temporal_unit`, or `train_heads` for the frame and smooth heads) for --epochs epochs,
then scored on the held-out clips. Candidates:

- frame: the frame head (the reference), smooth: the frame head + Gaussian along the clip;
- tcn48: the temporal head as shipped (`heads.TemporalHead`: 4 levels of 48 channels, kernel 5, dilations
  1-8, receptive field 61 frames, about 60 k parameters);
- tcn64, tcn128: the same with 64 (about 100 k parameters) and 128 channels (about 360 k), the latter the size
  of open challenge systems;
- bigru: a bidirectional GRU of 64 units a direction over the projected features (about 67 k parameters).

Every candidate trains on one intra-op thread, as the heads do in the project (`head_training.HEAD_THREADS`).

The features are synthetic: their noise is independent from frame to frame, so the figures say how well
each architecture averages noise along a clip and what it costs, not how it fares on EmoNet's real
features. Writes nothing but the JSON (--output).

    python benchmarks/bench_temporal_heads.py --noise 4 --epochs 50
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
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emonet.device import describe_machine  # noqa: E402
from emonet.features import FeatureSet  # noqa: E402
from emonet.head_training import (HEAD_THREADS, HeadUnit, head_config, intra_op_threads, model_args,  # noqa: E402
                                  train_heads, train_temporal_unit)
from emonet.heads import HeadPredictor, TemporalHead, set_normalisation  # noqa: E402
from emonet.io import write_json  # noqa: E402
from emonet.metrics import ccc  # noqa: E402
from emonet.splits import make_split, split_indices  # noqa: E402
from emonet.training import load_training_checkpoint  # noqa: E402

CANDIDATES = ("frame", "smooth", "tcn48", "tcn64", "tcn128", "bigru")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--labels", default=str(ROOT.parent / "shared/reference/afew_va_labels.json"),
                        help="afew_va_labels.json (default: ../shared/reference/afew_va_labels.json)")
    parser.add_argument("--noise", type=float, default=4.0, help="per-frame noise sd, signal = 1 (default: 4)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=list(CANDIDATES),
                        help="what to train (default: all)")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    return parser


class BiGRUHead(nn.Module):
    """A bidirectional GRU over a clip's standardised, projected features (padding packed away)."""

    # Frames on each side an output depends on (`heads.temporal_predictions` passes them around each window): a
    # recurrent network sees the whole clip, so every window is passed with its whole clip.
    radius = sys.maxsize

    def __init__(self, in_dim: int = 256, channels: int = 64, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.input = nn.Linear(in_dim, channels)
        self.gru = nn.GRU(channels, channels, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(2 * channels, 2)

    def set_normalisation(self, features: np.ndarray, rows: np.ndarray) -> None:
        set_normalisation(self, features, rows)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.input((x - self.feature_mean) / self.feature_std)) * mask[..., None]
        lengths = (mask.int() * torch.arange(1, mask.shape[1] + 1)).amax(1).clamp_min(1)  # up to the last frame
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=mask.shape[1])
        return self.output(self.dropout(out))


def feature_set(labels: dict, noise: float, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((2, 256)).astype(np.float32)
    samples, features, targets = [], [], []
    for clip in sorted(labels):
        va = np.stack([labels[clip]["valence"], labels[clip]["arousal"]], axis=1).astype(np.float32)
        offset = rng.standard_normal(256).astype(np.float32)
        features.append(va / 10 @ mixing + offset + noise * rng.standard_normal((len(va), 256)).astype(np.float32))
        targets.append(va)
        samples += [{"clip": clip, "frame": f"{i:05d}", "actor": "", "valence": float(v), "arousal": float(a)}
                    for i, (v, a) in enumerate(va)]
    return FeatureSet(samples, np.concatenate(features), np.concatenate(targets), None)


def main(args):
    labels = json.loads(Path(args.labels).read_text())["clips"]
    data = feature_set(labels, args.noise)
    indices = split_indices(data.samples, make_split(data.samples, "clip", 0.2, 0, inner_val_split=0.1))
    held_out = [data.samples[i] for i in indices.val]
    truth = data.labels[indices.val]
    results = {"machine": describe_machine(torch.device("cpu")), "frames": len(data.samples), "noise": args.noise,
               "epochs": args.epochs, "candidates": {}}
    train_args = SimpleNamespace(batch_size=64, epochs=args.epochs, learning_rate=1e-3, weight_decay=0.0,
                                 optimizer="adam", loss_function="ccc", dropout=0.2, save_freq=0, clips_per_batch=8)
    networks = {"tcn48": lambda: TemporalHead(channels=48), "tcn64": lambda: TemporalHead(channels=64),
                "tcn128": lambda: TemporalHead(channels=128),
                "bigru": lambda: BiGRUHead()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.candidates:
            kind = name if name in ("frame", "smooth") else "temporal"
            meta = {"model_type": "feature_head", "args": vars(train_args), "split": {"inner_val": ["x"]},
                    "head": head_config(kind, train_args), "model_args": model_args(kind, train_args), "settings": {}}
            unit = HeadUnit(Path(tmp) / name, kind, 0, indices, 0, meta)
            start = time.perf_counter()
            if kind == "temporal":
                torch.manual_seed(0)
                network = networks[name]()
                with intra_op_threads(HEAD_THREADS):
                    train_temporal_unit(unit, data, train_args, torch.device("cpu"), network)
                seconds = time.perf_counter() - start
                best = load_training_checkpoint(unit.output_dir / "best_model.pth", None)
                network.load_state_dict(best["model"])
                predictor = HeadPredictor("temporal", network)
            else:
                train_heads([unit], [data], train_args, torch.device("cpu"))
                seconds = time.perf_counter() - start
                best = load_training_checkpoint(unit.output_dir / "best_model.pth", None)
                predictor = HeadPredictor.from_checkpoint(best)
            pred = predictor.predict(data.features[indices.val], held_out, torch.device("cpu"))
            results["candidates"][name] = {
                "parameters": sum(p.numel() for p in predictor.network.parameters()), "train_s": seconds,
                "best_epoch": best["best_epoch"], "valence_CCC": ccc(truth[:, 0], pred[:, 0]),
                "arousal_CCC": ccc(truth[:, 1], pred[:, 1]), "sigma": predictor.sigma if kind == "smooth" else None}
            print(name, json.dumps(results["candidates"][name]), flush=True)
    print(json.dumps(results, indent=2))
    if args.output:
        write_json(args.output, results)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
