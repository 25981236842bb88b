"""Stage 2: EmoNet features of every frame of AFEW-VA (or --dataset aff_wild2 / affectnet), HSV input by default.

    python extract_features_hsv_crop.py --dataset_root $AFEW_VA_ROOT
    torchrun --nproc_per_node 4 extract_features_hsv_crop.py --dataset_root $AFEW_VA_ROOT    # one GPU per process
    python extract_features_hsv_crop.py --dataset aff_wild2 --dataset_root /data/Aff-Wild2 --crop resize

writes one file a clip, features_hsv/<clip>.npz (features, labels, EmoNet's own valence/arousal/expression),
the manifest features_hsv_manifest.json and features_hsv/extraction_errors.json, then one summary line. Another --color_space
gets its own names (features_<space>/, features_<space>_manifest.json). A rerun skips frames already extracted
(a killed run resumes, with any number of processes); other settings for an existing output folder are refused.
"""
import sys

from emonet.cli import extraction_main, extraction_parser, run

COLOR_SPACE = "hsv"


def get_args_parser():
    return extraction_parser(__doc__, COLOR_SPACE)


def main(args) -> int:
    return extraction_main(args, print)


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
