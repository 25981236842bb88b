"""Stage 3: a regression head (256 -> 128 -> 64 -> 2) on extracted EmoNet features.

    python train_emonet_features.py --data_root . --manifest_file features_hsv_manifest.json \
        --batch_size 64 --epochs 50 --learning_rate 1e-3 --loss_function ccc --output_dir hsv_features_training

Splits by clip by default (whole clips on one side; see README_HSV_PIPELINE.md for why). Writes
best_model.pth (best mean validation CCC), last.pth, checkpoint_epoch_N.pth, training_log.txt,
training_curves.png, args.json and split.json into --output_dir; --resume OUTPUT_DIR/last.pth continues.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from emonet.cli import add_training_arguments, run
from emonet.constants import LABEL_SCALE
from emonet.device import resolve_device
from emonet.features import FeatureHead, load_feature_set, train_head_epoch
from emonet.losses import get_loss
from emonet.manifest import read_manifest
from emonet.splits import make_split, split_indices
from emonet.training import TrainingRun, epoch_generator, fit, load_training_checkpoint, make_optimizer, va_ccc

MODEL_TYPE = "feature_head"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest_file", default="features_hsv_manifest.json",
                        help="manifest written by extraction (default: features_hsv_manifest.json)")
    parser.add_argument("--data_root", default=None,
                        help="folder the manifest's paths are relative to (default: the manifest's folder)")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout after each hidden layer (default: 0.2)")
    add_training_arguments(parser, batch_size=64, epochs=50, learning_rate=1e-3, output_dir="hsv_features_training")
    return parser


def main(args):
    device = resolve_device(args.device)
    manifest = read_manifest(args.manifest_file)
    data_root = Path(args.data_root) if args.data_root else manifest.path.parent
    resumed = load_training_checkpoint(args.resume, MODEL_TYPE) if args.resume else None
    data = load_feature_set(manifest, data_root, progress=not args.no_progress)
    split = resumed["split"] if resumed else make_split(data.samples, args.split, args.val_split, args.seed, args.folds, args.fold)
    train_idx, val_idx = split_indices(data.samples, split)

    torch.manual_seed(args.seed)
    model_args = resumed["model_args"] if resumed else {"dropout": args.dropout}
    model = FeatureHead(**model_args)
    model.set_normalisation(data.features[train_idx])  # statistics of the training side only
    model.to(device)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.learning_rate, args.weight_decay)
    loss_fn = get_loss(args.loss_function)
    x = torch.from_numpy(data.features).to(device)
    y = torch.from_numpy(data.labels / np.float32(LABEL_SCALE)).to(device)
    train_t, val_t = torch.from_numpy(train_idx).to(device), torch.from_numpy(val_idx).to(device)

    def train_epoch(epoch: int) -> float:
        order = train_t[torch.randperm(len(train_t), generator=epoch_generator(args.seed, epoch)).to(device)]
        return train_head_epoch(model, optimizer, loss_fn, x, y, order, args.batch_size)

    def validate() -> dict:
        model.eval()
        with torch.no_grad():
            pred = model(x[val_t])
            loss = loss_fn(pred, y[val_t]).item()
        v, a = va_ccc(pred.cpu().numpy(), y[val_t].cpu().numpy())
        return {"loss": loss, "valence_CCC": v, "arousal_CCC": a}

    meta = {
        "model_type": MODEL_TYPE, "model_args": model_args, "args": vars(args), "split": split,
        "settings": {**manifest.settings, "manifest_file": str(manifest.path.resolve()), "data_root": str(data_root.resolve())},
    }
    training = TrainingRun(Path(args.output_dir), model, optimizer, args.epochs, args.seed, args.save_freq, meta)
    print(f"{len(train_idx)} training and {len(val_idx)} validation frames, split by {split['mode']} "
          f"({len(split['train'])} / {len(split['val'])} {split['mode']}s)")
    fit(training, train_epoch, validate, resumed)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
