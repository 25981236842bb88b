"""Valence and arousal on your own videos and images, with EmoNet zero-shot or a model this project trained.

    python predict.py --inputs interview.mp4 --pretrained_path pretrained/emonet_8.pth --render
    python predict.py --inputs clips/ faces/ portrait.jpg --model_path hsv_temporal_features_training/best_model.pth \\
        --output_dir predictions_hsv_temporal
    python predict.py --inputs interview.mp4 --model_path hsv_full_training/best_model.pth --device cuda

--inputs: video files (mp4, avi, mov, mkv, ... whatever OpenCV's FFmpeg backend reads), images (png, jpg, ...)
and folders of images (sorted by name, one sequence each). Without --model_path, EmoNet's own valence,
arousal (on AFEW-VA's scale [-10, 10]) and expression probabilities; with it, a head of
train_emonet_features.py (frame, smooth or temporal: the latter two run along each input's frames) or a
network of train_emonet_hsv.py, each in the colour space, crop and precision of its own record. One face a
sequence (MTCNN, offline: the largest where a face first appears, then followed). Writes predictions.csv (a
row per frame, empty values where no face was found), predictions.json (model, detector, per input its frames,
faces, fps and any error), a PNG per video or image sequence and, with --render, an annotated MP4 per video.
A rerun into the same folder skips finished inputs; a folder made with another model is refused. An input
that cannot be read is named and listed, the others are predicted, and the exit status is 1.
"""
import argparse
import logging
import sys
from pathlib import Path

from emonet.cli import run
from emonet.constants import DEFAULT_PRETRAINED_PATH
from emonet.device import DEVICE_CHOICES, resolve_device
from emonet.errors import EmoNetError
from emonet.media import discover
from emonet.prediction import CROPS, Predictor, check_run_folder, finished, load_model, write_input, write_summary

logger = logging.getLogger("emonet")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a misspelt or shortened flag is an error, never another flag
    parser.add_argument("--inputs", nargs="+", required=True, metavar="PATH",
                        help="videos, images and folders of images (each folder: one sequence, sorted by name)")
    parser.add_argument("--model_path", default=None,
                        help="a checkpoint of train_emonet_features.py (any head) or train_emonet_hsv.py "
                             "(default: none, EmoNet zero-shot)")
    parser.add_argument("--pretrained_path", default=DEFAULT_PRETRAINED_PATH,
                        help=f"the released EmoNet weights: the network itself (zero-shot), the feature extractor of a "
                             f"head (it must be the checkpoint its features were extracted with), and the landmarks "
                             f"(default: {DEFAULT_PRETRAINED_PATH})")
    parser.add_argument("--crop", choices=CROPS, default="model",
                        help="model: the crop the model was trained with (landmarks: EmoNet's crop from 68 points of its "
                             "own heatmaps; resize: the whole frame); box: a square around the detector's box; "
                             "zero-shot's is landmarks (default: model)")
    parser.add_argument("--output_dir", default="predictions", help="where the outputs go (default: predictions)")
    parser.add_argument("--render", action="store_true",
                        help="also write each video annotated (box, values, valence-arousal plane) as MP4 (default: off)")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="frames decoded and cropped together; on the CPU EmoNet still runs one at a time (default: 8)")
    parser.add_argument("--amp", action="store_true", default=None,
                        help="bf16 autocast (CUDA, or a CPU with AVX-512 BF16 or AMX); for a head, its features' "
                             "precision decides and this must agree (default: the model's record; off for zero-shot)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="run EmoNet through torch.compile, as extraction's --compile; for a head, as its features "
                             "were made (default: the model's record; off for zero-shot)")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the predictions of another model in --output_dir (default: refuse)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")
    return parser


def main(args) -> int:
    if args.batch_size < 1:
        raise EmoNetError(f"--batch_size {args.batch_size}: at least 1")
    device = resolve_device(args.device)
    sources = discover(args.inputs)
    model = load_model(args.model_path, args.pretrained_path, args.crop, args.amp, args.compile, device)
    output_dir = Path(args.output_dir)
    check_run_folder(output_dir, model.identity, args.overwrite)
    predictor = Predictor(model, device, args.batch_size, progress=not args.no_progress)
    entries = []
    for source in sources:
        entry = finished(output_dir, source, args.render)
        if entry is not None:
            print(f"{source.path}: skipped (finished: {entry['faces']} of {entry['frames']} frames with a face)")
        else:
            try:
                result = predictor.run(source)
            except (EmoNetError, OSError, ValueError) as exc:  # named, listed, and the other inputs go on
                logger.error("%s", exc)
                entries.append({"input": str(source.path), "name": source.name, "kind": source.kind, "error": str(exc)})
                continue
            entry = write_input(output_dir, source, result, model, args.render)
            print(f"{source.path}: a face in {entry['faces']} of {entry['frames']} frames -> {output_dir}/")
        entries.append(entry)
    write_summary(output_dir, model.identity, entries)
    failed = [e for e in entries if e["error"]]
    print(f"{len(entries) - len(failed)} of {len(entries)} inputs predicted; predictions.csv and predictions.json in "
          f"{output_dir}/" + (f"; {len(failed)} could not be read (listed in predictions.json)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
