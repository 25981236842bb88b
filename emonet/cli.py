"""What the scripts share on the command line: the parser factory, the flags several scripts take with one meaning,
logging and the exit status (`run`), and the command that continues an interrupted run. Light: a script's --help
imports nothing heavy. Settings are checked where they are typed (`settings.py`), never here.
"""
import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from .constants import (AFEW_VA_ROOT_ENV, BACKENDS, COLOR_SPACES, CROP_MODES, DEFAULT_COLOR_SPACE, DEFAULT_CROP,
                        DEFAULT_DATASET, DEFAULT_PRETRAINED_PATH, DEFAULT_VAL_SPLIT, DEVICE_CHOICES, LOSS_NAMES, OPTIMIZERS,
                        SPLIT_MODES)
from .dataset_info import DATASETS
from .errors import EmoNetError

logger = logging.getLogger("emonet")


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser: its docstring as the description, layout kept, and no abbreviated flags (a misspelt or
    shortened flag is an error, never another flag)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)


class _Messages(logging.Formatter):
    """What a user reads: a run's progress as plain lines, warnings and errors named as such."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno == logging.INFO else f"{record.levelname} {text}"


def run(main, args, interrupted: Callable[[object], str] | None = None) -> int:
    """Run `main(args)` and return its exit code; a user-fixable error becomes one line on stderr and 1.

    Under torchrun (RANK set) only rank 0 logs information; the other ranks log errors alone, so a job
    prints one set of messages however many processes it has. On Ctrl-C, `interrupted(args)` says how to go
    on (by default: a rerun of the same command continues).
    """
    rank = int(os.environ.get("RANK", "0"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Messages("%(message)s"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.ERROR, handlers=[handler])
    try:
        return main(args) or 0
    except (EmoNetError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt as exc:
        logger.error("interrupted; %s", str(exc) or (interrupted(args) if interrupted else
                     "files already written are complete and a rerun of the same command continues"))
        return 130


def resume_hint(output_dir: str | os.PathLike) -> str:
    """The exact command that continues an interrupted training run in `output_dir` (its last.pth), or starts it again
    when no epoch had finished."""
    argv, skip = [], False
    for arg in sys.argv[1:]:  # the command as typed, without --resume X and --overwrite
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not (arg.startswith("--resume=") or arg == "--overwrite"):
            argv.append(arg)
    last = Path(output_dir) / "last.pth"
    what, extra = (("continue it with", ["--resume", str(last)]) if last.is_file()
                   else ("no epoch had finished; start it again with", ["--overwrite"]))
    if "WORLD_SIZE" in os.environ:
        return f"{what} the same torchrun command plus {shlex.join(extra)}"
    return f"{what}: {shlex.join(['python', sys.argv[0], *argv, *extra])}"


def add_frame_arguments(parser, color_space: str | None = "hsv", one_space: bool = True) -> None:
    """Where frames come from and how they become EmoNet input (extraction, fine-tuning, evaluation).

    `color_space=None` leaves --color_space and --crop unset, for a script in which a checkpoint or a
    manifest decides them: a value given there is then checked against theirs, never silently ignored.
    `one_space=False` leaves --color_space out (for a script that takes several).
    """
    parser.add_argument("--dataset_root", default=None,
                        help=f"AFEW-VA folder holding 001/ ... 600/ (default: ${AFEW_VA_ROOT_ENV})")
    parser.add_argument("--pretrained_path", default=DEFAULT_PRETRAINED_PATH,
                        help=f"released EmoNet weights (default: {DEFAULT_PRETRAINED_PATH})")
    decided = "the checkpoint's or manifest's; without one, {}"
    if one_space:
        parser.add_argument("--color_space", choices=COLOR_SPACES, default=color_space,
                            help=f"colour space fed to EmoNet (default: {color_space or decided.format(DEFAULT_COLOR_SPACE)})")
    parser.add_argument("--crop", choices=CROP_MODES, default=None,
                        help="landmarks: EmoNet's face crop; resize: whole frame resized, as the seed did (default: "
                             + ("the dataset's own: landmarks for AFEW-VA and AffectNet, resize for Aff-Wild2)"
                                if color_space else decided.format(DEFAULT_CROP) + ")"))


def add_loader_arguments(parser) -> None:
    """Decoding in worker processes and mixed precision: every script that runs EmoNet on frames."""
    parser.add_argument("--num_workers", type=int, default=None,
                        help="DataLoader worker processes that decode, crop and convert frames (default: 0 on the CPU, "
                             "where a worker would take a core from the model, min(4, CPUs) on CUDA)")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast: on CUDA, or on a CPU with bf16 instructions (AVX-512 BF16 or AMX); "
                             "refused on other CPUs, where it is slower than float32 (default: off)")


def add_engine_arguments(parser) -> None:
    """How EmoNet runs for predictions (extraction, evaluation on frames, predict.py)."""
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: ONNX Runtime on the CPU (the same fp32 features, faster), PyTorch on CUDA and with "
                             "--amp or --compile; torch; onnxruntime (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads EmoNet runs on, on the CPU (default: every core)")


def add_runtime_arguments(parser, batch_size: int) -> None:
    parser.add_argument("--batch_size", type=int, default=batch_size,
                        help=f"frames per loader batch; on the CPU the model runs them one at a time, its fastest "
                             f"way there (default: {batch_size})")
    add_loader_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")


def add_dataset_argument(parser) -> None:
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=DEFAULT_DATASET,
                        help="which dataset --dataset_root holds: afew_va (001/ ... 600/), aff_wild2 (VA_Set/ and "
                             "cropped_aligned/; --crop resize), affectnet (training.csv, validation.csv and "
                             f"Manually_Annotated_Images/) (default: {DEFAULT_DATASET})")


def add_extraction_arguments(parser, color_space: str) -> None:
    """The flags of both extraction scripts, which differ only in the default colour space."""
    add_frame_arguments(parser, color_space)
    add_dataset_argument(parser)
    add_runtime_arguments(parser, batch_size=32)
    parser.add_argument("--output_dir", default=None,
                        help="feature folder (default: features_<color space>/, features/ for rgb)")
    parser.add_argument("--manifest_file", default=None,
                        help="manifest to write (default: features_<color space>_manifest.json, "
                             "features_manifest.json for rgb)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips (Aff-Wild2: videos; AffectNet: "
                        "images of each list), for a quick try (default: all)")
    parser.add_argument("--compile", action="store_true",
                        help="run EmoNet through torch.compile (Inductor, frozen weights): on a 2-core AVX-512 CPU "
                             "about 10 %% faster end to end in float32 and 17 %% with --amp, after 12-50 s of compiling "
                             "per process; needs a C++ compiler (Triton on CUDA). Features differ from the eager "
                             "network's by float rounding and are recorded as precision fp32-compiled or bf16-compiled "
                             "(default: off)")
    parser.add_argument("--int8_calibration", type=int, default=None, metavar="N",
                        help="int8 features (ONNX Runtime, post-training static quantisation), calibrated on N frames "
                             "drawn evenly over the dataset and prepared as they are extracted: about 2.4x faster than "
                             "fp32 on a 2-core AVX-512 CPU, and another feature set (precision int8-<calibration>), never "
                             "mixed with fp32 ones; see the guide for its error (default: off, fp32)")
    parser.add_argument("--overwrite", action="store_true", help="re-extract frames already done (default: skip them)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any frame or clip failed (default: exit 0)")


def add_optimisation_arguments(parser, defaults: dict | None, save_freq: int = 10) -> None:
    """How a model is optimised: the training scripts and the colour-space comparison give them one meaning.

    `defaults`: batch_size, epochs and learning_rate (`features.HEAD_DEFAULTS`, `finetune.FINETUNE_DEFAULTS`);
    None leaves them unset, for a script whose approach decides them.
    """
    def default(name: str):
        return defaults[name] if defaults else None

    def note(name: str) -> str:
        return f"{defaults[name]:g}" if defaults else "that of the approach's training script"

    parser.add_argument("--batch_size", type=int, default=default("batch_size"), help=f"batch size (default: {note('batch_size')})")
    parser.add_argument("--epochs", type=int, default=default("epochs"), help=f"epochs (default: {note('epochs')})")
    parser.add_argument("--learning_rate", type=float, default=default("learning_rate"),
                        help=f"learning rate (default: {note('learning_rate')})")
    parser.add_argument("--weight_decay", type=float, default=0.0, help="weight decay (default: 0)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer (default: adam)")
    parser.add_argument("--loss_function", choices=LOSS_NAMES, default="ccc",
                        help="ccc: 1 - CCC over the batch, averaged over valence and arousal (default: ccc)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling (default: 0)")
    parser.add_argument("--save_freq", type=int, default=save_freq,
                        help=f"write checkpoint_epoch_N.pth and the curves every N epochs; 0: only at the end "
                             f"(default: {save_freq})")
    parser.add_argument("--keep_checkpoints", type=int, default=3,
                        help="keep the K latest checkpoint_epoch_N.pth, removing older ones; 0 keeps every one (default: 3)")


def add_finetune_arguments(parser) -> None:
    """What fine-tuning EmoNet on frames takes besides the frames and the optimisation flags."""
    parser.add_argument("--n_expression", type=int, default=None,
                        help="expression classes; must match the checkpoint (default: inferred from it)")
    parser.add_argument("--freeze_backbone", action="store_true",
                        help="train the emotion branch only; the face-alignment part stays as loaded (default: off)")
    parser.add_argument("--augment", dest="augment", action="store_true", default=True,
                        help="flip, scale, rotation and shift of the crop box for training (default: on)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train on the plain crops")
    parser.add_argument("--colour_jitter", type=float, default=0.0,
                        help="brightness/contrast/saturation jitter before colour conversion, with --augment (default: 0)")
    parser.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm to this (default: off)")
    parser.add_argument("--sync_bn", action="store_true",
                        help="under torchrun on GPUs: SyncBatchNorm for the trainable BatchNorm layers (default: off)")
    add_loader_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips, for a quick try (default: all)")
    add_dataset_argument(parser)


def add_training_arguments(parser, defaults: dict, output_kind: str) -> None:
    """Optimisation, split and checkpointing flags shared by both training scripts."""
    add_optimisation_arguments(parser, defaults)
    parser.add_argument("--split", choices=SPLIT_MODES, default="clip",
                        help="unit kept whole on one side: clip, actor, or frame (leaks: neighbouring frames "
                             "of a clip end up on both sides; only to reproduce the seed) (default: clip)")
    parser.add_argument("--val_split", type=float, default=None,
                        help=f"fraction of clips/actors/frames held out, without --folds (default: {DEFAULT_VAL_SPLIT})")
    parser.add_argument("--folds", type=int, default=None, help="K for group K-fold over clips or actors (default: holdout)")
    parser.add_argument("--fold", type=int, default=None, help="which fold (0..K-1) is held out; needs --folds")
    parser.add_argument("--official_split", action="store_true",
                        help="train on the dataset's official training split and hold out its validation split "
                             "(Aff-Wild2, AffectNet), keeping --split's clips or actors whole; --inner_val_split chooses "
                             "the epoch inside the training split (default: off: a --val_split holdout or --folds)")
    parser.add_argument("--inner_val_split", type=float, default=None,
                        help="choose the best epoch on this fraction of the training clips/actors, so that the "
                             "held-out side stays untouched until evaluation (default: off, the best epoch is "
                             "chosen on the held-out side and evaluation says so)")
    parser.add_argument("--resume", default=None, help="continue from this checkpoint (e.g. OUTPUT_DIR/last.pth)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --output_dir (default: refuse to touch it)")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")
    parser.add_argument("--output_dir", default=None,
                        help=f"where checkpoints, logs and plots go (default: <color space>_{output_kind}, "
                             f"e.g. hsv_{output_kind})")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")


def extraction_parser(doc: str, color_space: str) -> argparse.ArgumentParser:
    """The parser of an extraction script: they differ only in their default colour space."""
    parser = make_parser(doc)
    add_extraction_arguments(parser, color_space)
    return parser


def extraction_main(args, say: Callable[[str], object]) -> int:
    """An extraction script's run (`emonet.extract`): its summary line (rank 0's, under torchrun) said with `say` (the
    script's print: its result on standard output), and exit 1 with --strict when anything failed."""
    from .extraction import extract_features  # here: torch is imported after the flags are parsed
    from .settings import ExtractionConfig

    config = ExtractionConfig.from_args(args)
    result = extract_features(config)
    if result is not None:
        say(result.summary())
    return 1 if config.strict and result is not None and result.failed else 0
