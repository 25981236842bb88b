"""Stage 4: fine-tune EmoNet's valence/arousal outputs on AFEW-VA frames, colour-converted on the fly.

    python train_emonet_hsv.py --data_root . --pretrained_path pretrained/emonet_8.pth --freeze_backbone \
        --batch_size 32 --epochs 10 --learning_rate 1e-4 --loss_function ccc --output_dir hsv_full_training

Frames are read from --dataset_root (default $AFEW_VA_ROOT, then --data_root), cropped and converted with
the same code as feature extraction. --freeze_backbone keeps the face-alignment network exactly as
loaded (no gradient, BatchNorm statistics fixed) and trains the emotion branch only. Splits by clip by
default; outputs as train_emonet_features.py (best_model.pth by mean validation CCC, last.pth, ...).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from emonet.checkpoint import load_emonet
from emonet.cli import add_frame_arguments, add_loader_arguments, add_training_arguments, dataset_root_or_env, run
from emonet.constants import AFEW_VA_ROOT_ENV, LABEL_SCALE
from emonet.data import Augment, FrameDataset
from emonet.device import amp_enabled, resolve_device
from emonet.errors import EmoNetError
from emonet.finetune import load_frames_for, predict_frames, train_epoch
from emonet.io import sha256_file
from emonet.losses import get_loss
from emonet.splits import make_split, split_indices
from emonet.training import TrainingRun, fit, load_training_checkpoint, make_optimizer, va_ccc

MODEL_TYPE = "emonet"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_frame_arguments(parser, color_space="hsv")
    parser.add_argument("--data_root", default=None,
                        help="the seed's flag: a folder holding AFEW-VA/ (or the clip folders), used when neither "
                             f"--dataset_root nor ${AFEW_VA_ROOT_ENV} is set")
    parser.add_argument("--n_expression", type=int, default=None,
                        help="expression classes; must match the checkpoint (default: inferred from it)")
    parser.add_argument("--freeze_backbone", action="store_true",
                        help="train the emotion branch only; the face-alignment part stays as loaded (default: off)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="flip, scale, rotation and shift of the crop box for training (default: on)")
    parser.add_argument("--colour_jitter", type=float, default=0.0,
                        help="brightness/contrast/saturation jitter before colour conversion, with --augment (default: 0)")
    parser.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm to this (default: off)")
    add_loader_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips, for a quick try (default: all)")
    add_training_arguments(parser, batch_size=32, epochs=10, learning_rate=1e-4, output_dir="hsv_full_training")
    return parser


def main(args):
    device = resolve_device(args.device)
    amp = amp_enabled(device, args.amp)
    resumed = load_training_checkpoint(args.resume, MODEL_TYPE) if args.resume else None
    for key in ("color_space", "crop", "freeze_backbone"):
        if resumed and resumed["settings"][key] != getattr(args, key):
            raise EmoNetError(f"--resume {args.resume}: trained with {key} {resumed['settings'][key]!r}, "
                              f"this run asks for {getattr(args, key)!r}")
    dataset_root = Path(dataset_root_or_env(args.dataset_root, args.data_root)).resolve()
    frames = load_frames_for(dataset_root, args.limit)
    samples = [f.sample() for f in frames]
    split = resumed["split"] if resumed else make_split(samples, args.split, args.val_split, args.seed, args.folds, args.fold)
    train_idx, val_idx = split_indices(samples, split)

    torch.manual_seed(args.seed)
    model, _ = load_emonet(args.pretrained_path)
    if args.n_expression is not None and args.n_expression != model.n_expression:
        raise EmoNetError(f"--n_expression {args.n_expression}, but {args.pretrained_path} has {model.n_expression} classes")
    if args.freeze_backbone:
        model.freeze_backbone()
    model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(args.optimizer, [p for p in model.parameters() if p.requires_grad],
                               args.learning_rate, args.weight_decay)
    loss_fn = get_loss(args.loss_function)
    augment = Augment(colour_jitter=args.colour_jitter) if args.augment else None
    train_set = FrameDataset([frames[i] for i in train_idx], args.color_space, args.crop, augment, seed=args.seed)
    val_frames = [frames[i] for i in val_idx]
    val_target = np.array([[f.valence, f.arousal] for f in val_frames], dtype=np.float32) / LABEL_SCALE

    def one_epoch(epoch: int) -> float:
        return train_epoch(model, train_set, optimizer, loss_fn, device, epoch, args.seed, args.batch_size,
                           args.num_workers, amp, args.grad_clip, progress=not args.no_progress)

    def validate() -> dict:
        pred, failed = predict_frames(model, val_frames, args.color_space, args.crop, device, args.batch_size,
                                      args.num_workers, amp, flip_tta=False, progress=not args.no_progress)
        ok = np.array([i not in failed for i in range(len(val_frames))])  # undecodable frames are left out
        loss = loss_fn(torch.from_numpy(pred[ok]), torch.from_numpy(val_target[ok])).item()
        v, a = va_ccc(pred[ok], val_target[ok])
        return {"loss": loss, "valence_CCC": v, "arousal_CCC": a}

    settings = {
        "color_space": args.color_space, "crop": args.crop, "dataset_root": str(dataset_root),
        "pretrained_path": args.pretrained_path, "pretrained_sha256": sha256_file(args.pretrained_path),
        "freeze_backbone": args.freeze_backbone, "augment": args.augment,
    }
    meta = {"model_type": MODEL_TYPE, "model_args": {"n_expression": model.n_expression}, "args": vars(args),
            "split": split, "settings": settings}
    training = TrainingRun(Path(args.output_dir), model, optimizer, args.epochs, args.seed, args.save_freq, meta)
    print(f"{len(train_idx)} training and {len(val_idx)} validation frames, split by {split['mode']} "
          f"({len(split['train'])} / {len(split['val'])} {split['mode']}s); "
          f"{'emotion branch only' if args.freeze_backbone else 'whole network'} trains")
    fit(training, one_epoch, validate, resumed)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
