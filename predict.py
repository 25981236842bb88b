"""Valence and arousal of every person in your own videos and images, with EmoNet zero-shot or a model this project
trained.

    python predict.py --inputs interview.mp4 --pretrained_path pretrained/emonet_8.pth --render
    python predict.py --inputs clips/ faces/ portrait.jpg --model_path hsv_temporal_features_training/best_model.pth \\
        --output_dir predictions_hsv_temporal
    python predict.py --inputs lecture.mp4 --faces largest --sample_fps 5 --device cuda

--inputs: video files (mp4, avi, mov, mkv, ... whatever OpenCV's FFmpeg backend reads), images (png, jpg, ...)
and folders of images (sorted by name, one sequence each). Without --model_path, EmoNet's own valence,
arousal (on AFEW-VA's scale [-10, 10]) and expression probabilities; with it, a head of
train_emonet_features.py (frame, smooth or temporal: the latter two run along each person's frames) or a
network of train_emonet_hsv.py, each in the colour space, crop and precision of its own record.

--faces all (default): every face gets a person id (1, 2, ... in order of first appearance) that holds through
crossings, exits and re-entries and shot cuts (motion within a shot, a face-identity descriptor across gaps and
cuts); --faces largest: one face followed, one row per frame, for one-person footage.

Writes predictions.csv (a row per frame and person; a frame without anybody keeps one row), people.csv (per input
and person: time on screen, mean, median, SD, min, max, quadrant shares), a thumbnail of each person, a PNG of
valence and arousal over time per input, predictions.json, report.html and, with --render, annotated videos and
images. Long videos stream (memory stays flat) and an interrupted input continues where it stopped; a rerun skips
finished inputs; a folder made with another model or other options is refused. An input that cannot be read is
named and listed, the others are predicted, and the exit status is 1.
"""
import argparse
import logging
import sys
from pathlib import Path

from emonet.cli import add_engine_arguments, run
from emonet.constants import DEFAULT_PRETRAINED_PATH
from emonet.device import DEVICE_CHOICES, resolve_device
from emonet.errors import CheckpointError, EmoNetError, MediaError
from emonet.io import check_writable
from emonet.media import discover
from emonet.following import FACE_MODES
from emonet.prediction import (CHECKPOINT_FRAMES, CHECKPOINT_SECONDS, CROPS, PredictOptions, Predictor, check_run_folder,
                               load_model)
from emonet.prediction_outputs import (earlier_inputs, finish_input, finished, input_files, remove_input, write_rows,
                                       write_summary)
from emonet.prediction_state import checkpoint_frame
from emonet.text import plural

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
                        help=f"the released EmoNet weights: the network itself (zero-shot) and the feature extractor of "
                             f"a head (it must be the checkpoint its features were extracted with) "
                             f"(default: {DEFAULT_PRETRAINED_PATH})")
    parser.add_argument("--faces", choices=FACE_MODES, default="all",
                        help="all: every face, each with a person id that holds through the input; largest: one face "
                             "followed (the largest where one first appears), one row per frame (default: all)")
    parser.add_argument("--sample_fps", type=float, default=None,
                        help="analyse this many frames a second of each video; the others are neither detected nor "
                             "predicted and get no row (time_s stays true); videos only (default: every frame)")
    parser.add_argument("--crop", choices=CROPS, default="model",
                        help="model: the crop the model was trained with (landmarks: EmoNet's crop from 68 points of "
                             "dlib's landmark predictor; resize: the whole frame); box: a square around the detector's "
                             "box; zero-shot's is landmarks (default: model)")
    parser.add_argument("--output_dir", default="predictions", help="where the outputs go (default: predictions)")
    parser.add_argument("--render", action="store_true",
                        help="also write each input annotated (each person's box, id and values, the valence-arousal "
                             "plane): videos as MP4 and WebM, images as JPEG (default: off)")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="frames decoded and cropped together; on CUDA their faces go through EmoNet together, on "
                             "the CPU EmoNet runs one face at a time (default: 8)")
    parser.add_argument("--amp", action="store_true", default=None,
                        help="bf16 autocast (CUDA, or a CPU with AVX-512 BF16 or AMX); for a head, its features' "
                             "precision decides and this must agree (default: the model's record; off for zero-shot)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="run EmoNet through torch.compile, as extraction's --compile; for a head, as its features "
                             "were made (default: the model's record; off for zero-shot)")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")
    add_engine_arguments(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the predictions of another model or other options in --output_dir (default: refuse)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars (default: shown)")
    return parser


def check_args(args, sources) -> None:
    """Refuse, before any work, what cannot work or would be ignored."""
    if args.batch_size < 1:
        raise EmoNetError(f"--batch_size {args.batch_size}: at least 1")
    missing = [str(s.path) for s in sources if not s.path.exists()]
    if missing:
        raise MediaError(f"--inputs: {', '.join(missing)}: not found")
    if args.sample_fps is not None:
        if not args.sample_fps > 0:
            raise EmoNetError(f"--sample_fps {args.sample_fps}: a number of frames a second above 0")
        stills = [s for s in sources if s.kind != "video"]
        if stills:
            raise EmoNetError(f"--sample_fps applies to videos; {stills[0].path} is {'a folder of images' if stills[0].kind == 'folder' else 'an image'}"
                              ": predict it in a run of its own")
    if args.model_path and not Path(args.model_path).is_file():
        raise CheckpointError(f"--model_path {args.model_path}: file not found")


def main(args) -> int:
    sources = discover(args.inputs)
    check_args(args, sources)
    check_writable(args.output_dir)
    device = resolve_device(args.device)
    model = load_model(args.model_path, args.pretrained_path, args.crop, args.amp, args.compile, device, args.backend,
                       args.threads)
    options = PredictOptions(args.faces, args.sample_fps, args.batch_size, progress=not args.no_progress)
    record = {"faces": args.faces, "sample_fps": args.sample_fps}
    output_dir = Path(args.output_dir)
    check_run_folder(output_dir, {**model.identity, "options": record}, args.overwrite)
    others = earlier_inputs(output_dir, sources)
    if others:
        names = ", ".join(Path(e["input"]).name for e in others)
        if args.overwrite:
            for entry in others:
                remove_input(output_dir, entry)
            print(f"--overwrite: removed the results of {plural(len(others), 'input')} finished earlier in {output_dir}/ "
                  f"that this command does not name ({names})")
            others = []
        else:
            print(f"{output_dir}/ also holds {plural(len(others), 'input')} finished earlier that this command does not "
                  f"name ({names}): the combined outputs keep them (--overwrite removes them)")
    if model.head is not None and model.head.kind == "temporal" and args.sample_fps:
        logger.warning("--sample_fps with a temporal head: it was trained on consecutive frames, and sees a sampled "
                       "sequence with most of its positions empty (see the guide)")
    predictor = Predictor(model, device, options)
    entries, skipped = [], 0
    for source in sources:
        entry = finished(output_dir, source, args.render)
        if entry is not None:
            print(f"{source.path}: skipped (finished earlier: {described(entry)})")
            entries.append(entry)
            skipped += 1
            continue
        try:
            files = input_files(output_dir, source)
            result = predictor.run(source, files["parts"],
                                   lambda path, rows, source=source: write_rows(path, rows, model, source))
            entry = finish_input(output_dir, source, result, model, args.render)
        except (EmoNetError, OSError) as exc:  # a bad input: named, listed, and the other inputs go on
            logger.error("%s", exc)
            entries.append({"input": str(source.path), "name": source.name, "kind": source.kind, "error": str(exc)})
            continue
        except KeyboardInterrupt:
            write_summary(output_dir, model.identity | model.notes, record, entries + others)
            raise KeyboardInterrupt(interrupted_at(output_dir, source, len([e for e in entries + others
                                                                             if not e["error"]]))) from None
        print(f"{source.path}: {described(entry)} -> {output_dir}/")
        entries.append(entry)
    write_summary(output_dir, model.identity | model.notes, record, entries + others)
    failed = [e for e in entries if e["error"]]
    said = [f"{predicted} predicted" if (predicted := len(entries) - len(failed) - skipped) else "",
            f"{skipped} finished earlier" if skipped else "", f"{len(failed)} could not be read" if failed else "",
            f"{plural(len(others), 'earlier input')} kept" if others else ""]
    print(f"{plural(len(entries), 'input')}: {', '.join(w for w in said if w)}; predictions.csv, people.csv, "
          f"predictions.json and report.html in {output_dir}/" + (" (the unread ones listed in predictions.json)"
                                                                  if failed else ""))
    return 1 if failed else 0


def described(entry: dict) -> str:
    warned = f" ({'; '.join(entry['warnings'])})" if entry["warnings"] else ""
    return (f"{plural(len(entry['people']), 'person', 'people')} in {plural(entry['analysed_frames'], 'analysed frame')}"
            f"{warned}")


def interrupted_at(output_dir: Path, source, finished_inputs: int) -> str:
    """What is true when Ctrl-C lands during `source`: which inputs are in the combined outputs, and where the same
    command takes up `source` again."""
    held = (f"predictions.csv and predictions.json in {output_dir}/ hold the {plural(finished_inputs, 'input')} finished"
            if finished_inputs else "no input had finished, so there is no predictions.csv yet")
    state = checkpoint_frame(input_files(output_dir, source)["parts"])
    where = (f"continues {source.path.name} from frame {state} (its last checkpoint)" if state is not None else
             f"starts {source.path.name} again (its first checkpoint comes after {CHECKPOINT_FRAMES} analysed frames or "
             f"{CHECKPOINT_SECONDS:.0f} s)")
    return f"{held}; the same command {where} and skips the inputs already finished"


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
