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
import sys
from dataclasses import asdict, replace
from pathlib import Path

from emonet.cli import add_finetune_arguments, add_frame_arguments, add_training_arguments, make_parser, resume_hint, run
from emonet.constants import AFEW_VA_ROOT_ENV, FINETUNE_DEFAULTS
from emonet.settings import FinetuneConfig, dataset_root_for

MODEL_TYPE = "emonet"
OUTPUT_KIND = "full_training"


def get_args_parser():
    parser = make_parser(__doc__)
    add_frame_arguments(parser, color_space="hsv")
    parser.add_argument("--data_root", default=None,
                        help="the seed's flag: a folder holding AFEW-VA/ (or the clip folders), used when neither "
                             f"--dataset_root nor ${AFEW_VA_ROOT_ENV} is set")
    add_finetune_arguments(parser)
    add_training_arguments(parser, FINETUNE_DEFAULTS, OUTPUT_KIND)
    return parser


def main(args):
    config = FinetuneConfig.from_args(args)
    from emonet.distributed import init_distributed  # after the flags: torch is slow to import
    from emonet.finetune import check_device

    dist = init_distributed(config.device)
    try:
        check_device(config, dist)
        train(replace(config, output_dir=config.output_dir or f"{config.color_space}_{OUTPUT_KIND}"), dist)
    finally:
        dist.close()


def train(config: FinetuneConfig, dist) -> None:
    from emonet.finetune import FINETUNE_FIXED_ARGS, finetune_emonet, load_frames_for
    from emonet.io import sha256_file
    from emonet.splits import make_split, official_split, split_indices
    from emonet.training import (RESUME_FIXED_ARGS, check_output_dir, check_resume, load_training_checkpoint,
                                 resume_changes)

    output_dir = Path(config.output_dir)
    check_output_dir(output_dir, config.resume, config.overwrite)
    resumed = load_training_checkpoint(config.resume, MODEL_TYPE) if config.resume else None
    settings = {
        "color_space": config.color_space, "crop": config.crop, "pretrained_path": config.pretrained_path,
        "pretrained_sha256": sha256_file(config.pretrained_path), "freeze_backbone": config.freeze_backbone,
        "augment": config.augment, "dataset": config.dataset,
    }
    if resumed:
        check_resume(config.resume, resumed, config.epochs,
                     resume_changes(resumed["args"], asdict(config), (*RESUME_FIXED_ARGS, *FINETUNE_FIXED_ARGS))
                     + resume_changes(resumed["settings"], settings, ("pretrained_sha256",))
                     + resume_changes({"processes": resumed.get("world_size", 1)}, {"processes": dist.world_size},
                                      ("processes",)))
    dataset_root = Path(dataset_root_for(config.dataset, config.dataset_root, config.data_root)).resolve()
    frames = load_frames_for(dataset_root, config.limit, config.crop, config.dataset)
    samples = [f.sample() for f in frames]
    if resumed:
        split = resumed["split"]
    elif config.official_split:
        split = official_split(samples, config.split, config.seed, config.inner_val_split)
    else:
        split = make_split(samples, config.split, config.val_split, config.seed, config.folds, config.fold,
                           config.inner_val_split)
    indices = split_indices(samples, split)
    meta = {"model_type": MODEL_TYPE, "args": asdict(config), "split": split,
            "settings": {**settings, "dataset_root": str(dataset_root)},
            "world_size": dist.world_size, "global_batch_size": dist.world_size * config.batch_size}
    if dist.is_main:
        print(f"{len(indices.train)} training, {len(indices.inner_val)} inner validation and {len(indices.val)} "
              f"validation frames, split by {split['mode']}; "
              f"{'emotion branch only' if config.freeze_backbone else 'whole network'} trains; "
              f"{dist.world_size} process(es) x batch {config.batch_size} = global batch {meta['global_batch_size']}; "
              f"outputs in {output_dir}/")
    finetune_emonet(frames, indices, config, output_dir, meta, resumed, dist)


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(run(main, args, interrupted=lambda args: resume_hint(args.output_dir or f"{args.color_space}_{OUTPUT_KIND}")))
