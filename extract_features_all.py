"""Stage 2: EmoNet features of every AFEW-VA frame, RGB input by default.

    python extract_features_all.py --dataset_root $AFEW_VA_ROOT

writes features/<clip>/<frame>.npz (features, labels, EmoNet's own valence/arousal/expression), the manifest
features_manifest.json and features/extraction_errors.json, then one summary line. A rerun skips frames already
extracted (a killed run resumes); other settings for an existing output folder are refused.
"""
import argparse
import sys

from emonet.cli import add_extraction_arguments, run
from emonet.extraction import ExtractionConfig, extract_features


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_arguments(parser, color_space="rgb", output_dir="features", manifest_file="features_manifest.json")
    return parser


def main(args) -> int:
    result = extract_features(ExtractionConfig.from_args(args))
    print(result.summary())
    return 1 if args.strict and result.failed else 0


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
