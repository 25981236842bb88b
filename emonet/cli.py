"""What the scripts share on the command line: logging set-up, error handling, and the flags that
several scripts take with the same meaning. The parsers themselves are built in the scripts."""
import logging
import os
import sys

import torch

from .colour import COLOR_SPACES
from .constants import AFEW_VA_ROOT_ENV, DEFAULT_PRETRAINED_PATH
from .crop import CROP_MODES
from .device import DEVICE_CHOICES
from .errors import EmoNetError
from .losses import LOSS_NAMES
from .splits import SPLIT_MODES
from .training import OPTIMIZERS

logger = logging.getLogger("emonet")


def run(main, args) -> int:
    """Run `main(args)` and return its exit code; a user-fixable error becomes one line on stderr and 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        return main(args) or 0
    except (EmoNetError, OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted; files already written are complete and a rerun continues")
        return 130


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def dataset_root_or_env(value: str | None, fallback: str | None = None) -> str:
    """--dataset_root, else $AFEW_VA_ROOT, else `fallback` (the seed's --data_root, where a script has it)."""
    root = value or os.environ.get(AFEW_VA_ROOT_ENV) or fallback
    if not root:
        raise EmoNetError(f"no dataset root: pass --dataset_root or set {AFEW_VA_ROOT_ENV} "
                          "(python download_afew_va.py prints the line to paste)")
    return root


def add_frame_arguments(parser, color_space: str = "hsv") -> None:
    """Where frames come from and how they become EmoNet input (extraction, fine-tuning, evaluation)."""
    parser.add_argument("--dataset_root", default=None,
                        help=f"AFEW-VA folder holding 001/ ... 600/ (default: ${AFEW_VA_ROOT_ENV})")
    parser.add_argument("--pretrained_path", default=DEFAULT_PRETRAINED_PATH,
                        help=f"released EmoNet weights (default: {DEFAULT_PRETRAINED_PATH})")
    parser.add_argument("--color_space", choices=COLOR_SPACES, default=color_space,
                        help=f"colour space fed to EmoNet (default: {color_space})")
    parser.add_argument("--crop", choices=CROP_MODES, default="landmarks",
                        help="landmarks: EmoNet's face crop; resize: whole frame resized, as the seed did "
                             "(default: landmarks)")


def add_loader_arguments(parser) -> None:
    """Decoding in worker processes and mixed precision: every script that runs EmoNet on frames."""
    parser.add_argument("--num_workers", type=int, default=default_workers(),
                        help=f"DataLoader worker processes (default: {default_workers()}, min(4, CPUs))")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (default: off)")


def add_runtime_arguments(parser, batch_size: int) -> None:
    parser.add_argument("--batch_size", type=int, default=batch_size, help=f"batch size (default: {batch_size})")
    add_loader_arguments(parser)
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")


def set_threads() -> None:
    """Use every core for intra-op parallelism on the CPU (the default can be lower in containers)."""
    torch.set_num_threads(os.cpu_count() or 1)


def add_extraction_arguments(parser, color_space: str, output_dir: str, manifest_file: str) -> None:
    """The flags of both extraction scripts, which differ only in these defaults."""
    add_frame_arguments(parser, color_space)
    add_runtime_arguments(parser, batch_size=32)
    parser.add_argument("--output_dir", default=output_dir, help=f"feature folder (default: {output_dir})")
    parser.add_argument("--manifest_file", default=manifest_file, help=f"manifest to write (default: {manifest_file})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips, for a quick try (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="re-extract frames already done (default: skip them)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any frame or clip failed (default: exit 0)")


def add_training_arguments(parser, batch_size: int, epochs: int, learning_rate: float, output_dir: str) -> None:
    """Optimisation, split and checkpointing flags shared by both training scripts."""
    parser.add_argument("--batch_size", type=int, default=batch_size, help=f"batch size (default: {batch_size})")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default: {epochs})")
    parser.add_argument("--learning_rate", type=float, default=learning_rate, help=f"learning rate (default: {learning_rate:g})")
    parser.add_argument("--weight_decay", type=float, default=0.0, help="weight decay (default: 0)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer (default: adam)")
    parser.add_argument("--loss_function", choices=LOSS_NAMES, default="ccc",
                        help="ccc: 1 - CCC over the batch, averaged over valence and arousal (default: ccc)")
    parser.add_argument("--split", choices=SPLIT_MODES, default="clip",
                        help="unit kept whole on one side: clip, actor, or frame (leaks: neighbouring frames "
                             "of a clip end up on both sides; only to reproduce the seed) (default: clip)")
    parser.add_argument("--val_split", type=float, default=0.2, help="fraction of clips/actors/frames held out (default: 0.2)")
    parser.add_argument("--folds", type=int, default=None, help="K for group K-fold over clips or actors (default: holdout)")
    parser.add_argument("--fold", type=int, default=None, help="which fold (0..K-1) is held out, with --folds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling (default: 0)")
    parser.add_argument("--save_freq", type=int, default=10, help="write checkpoint_epoch_N.pth every N epochs (default: 10)")
    parser.add_argument("--resume", default=None, help="continue from this checkpoint (e.g. OUTPUT_DIR/last.pth)")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")
    parser.add_argument("--output_dir", default=output_dir, help=f"where checkpoints, logs and plots go (default: {output_dir})")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")
