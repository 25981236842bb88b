"""Stage 4: fine-tune EmoNet's valence/arousal outputs on AFEW-VA frames (or Aff-Wild2's, AffectNet's: --dataset),
colour-converted on the fly.

    python train_emonet_hsv.py --dataset_root $AFEW_VA_ROOT --pretrained_path pretrained/emonet_8.pth \\
        --freeze_backbone --inner_val_split 0.1 --batch_size 32 --epochs 10 --learning_rate 1e-4
    torchrun --nproc_per_node 4 train_emonet_hsv.py --device cuda ...    # one GPU per process (DDP)
    python train_emonet_hsv.py --dataset aff_wild2 --dataset_root /data/Aff-Wild2 --crop resize --official_split \\
        --split actor --inner_val_split 0.1 --freeze_backbone

Frames are read from --dataset_root (default $AFEW_VA_ROOT, then --data_root), cropped and converted with
the same code as feature extraction. --freeze_backbone keeps the face-alignment network exactly as
loaded (no gradient, BatchNorm statistics fixed) and trains the emotion branch only. Splits by clip by
default; outputs as train_emonet_features.py (best_model.pth by mean CCC on the selection side, last.pth,
...) in --output_dir (default <color space>_full_training). Under torchrun, --batch_size is per process.
"""
import argparse
import sys
from pathlib import Path

from emonet.cli import (add_finetune_arguments, add_frame_arguments, add_training_arguments, check_finetune_args,
                        check_official_split, check_training_args, dataset_root_for, resume_hint, run)
from emonet.constants import AFEW_VA_ROOT_ENV
from emonet.distributed import init_distributed
from emonet.finetune import FINETUNE_DEFAULTS, FINETUNE_FIXED_ARGS, finetune_emonet, load_frames_for
from emonet.io import sha256_file
from emonet.splits import make_split, official_split, split_indices
from emonet.training import (RESUME_FIXED_ARGS, check_output_dir, check_resume, load_training_checkpoint,
                             resume_changes)

MODEL_TYPE = "emonet"
OUTPUT_KIND = "full_training"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    add_frame_arguments(parser, color_space="hsv")
    parser.add_argument("--data_root", default=None,
                        help="the seed's flag: a folder holding AFEW-VA/ (or the clip folders), used when neither "
                             f"--dataset_root nor ${AFEW_VA_ROOT_ENV} is set")
    add_finetune_arguments(parser)
    add_training_arguments(parser, FINETUNE_DEFAULTS, OUTPUT_KIND)
    return parser


def main(args):
    dist = init_distributed(args.device)
    try:
        check_training_args(args)
        check_finetune_args(args, dist)
        check_official_split(args, args.dataset, f"--dataset {args.dataset}")
        train(args, dist)
    finally:
        dist.close()


def train(args, dist) -> None:
    args.output_dir = str(args.output_dir or f"{args.color_space}_{OUTPUT_KIND}")
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.resume, args.overwrite)
    resumed = load_training_checkpoint(args.resume, MODEL_TYPE) if args.resume else None
    settings = {
        "color_space": args.color_space, "crop": args.crop, "pretrained_path": args.pretrained_path,
        "pretrained_sha256": sha256_file(args.pretrained_path), "freeze_backbone": args.freeze_backbone,
        "augment": args.augment, "dataset": args.dataset,
    }
    if resumed:
        check_resume(args.resume, resumed, args.epochs,
                     resume_changes(resumed["args"], vars(args), (*RESUME_FIXED_ARGS, *FINETUNE_FIXED_ARGS))
                     + resume_changes(resumed["settings"], settings, ("pretrained_sha256",))
                     + resume_changes({"processes": resumed.get("world_size", 1)}, {"processes": dist.world_size},
                                      ("processes",)))
    dataset_root = Path(dataset_root_for(args.dataset, args.dataset_root, args.data_root)).resolve()
    frames = load_frames_for(dataset_root, args.limit, args.crop, args.dataset)
    samples = [f.sample() for f in frames]
    if resumed:
        split = resumed["split"]
    elif args.official_split:
        split = official_split(samples, args.split, args.seed, args.inner_val_split)
    else:
        split = make_split(samples, args.split, args.val_split, args.seed, args.folds, args.fold, args.inner_val_split)
    indices = split_indices(samples, split)
    meta = {"model_type": MODEL_TYPE, "args": vars(args), "split": split,
            "settings": {**settings, "dataset_root": str(dataset_root)},
            "world_size": dist.world_size, "global_batch_size": dist.world_size * args.batch_size}
    if dist.is_main:
        print(f"{len(indices.train)} training, {len(indices.inner_val)} inner validation and {len(indices.val)} "
              f"validation frames, split by {split['mode']}; "
              f"{'emotion branch only' if args.freeze_backbone else 'whole network'} trains; "
              f"{dist.world_size} process(es) x batch {args.batch_size} = global batch {meta['global_batch_size']}; "
              f"outputs in {output_dir}/")
    finetune_emonet(frames, indices, args, output_dir, meta, resumed, dist)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args(), interrupted=resume_hint))
