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
import sys

from emonet.cli import add_engine_arguments, make_parser, run
from emonet.constants import DEFAULT_PRETRAINED_PATH, DEVICE_CHOICES, FACE_MODES, PREDICT_CROPS
from emonet.settings import PredictConfig


def get_args_parser():
    parser = make_parser(__doc__)
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
    parser.add_argument("--crop", choices=PREDICT_CROPS, default="model",
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


def main(args) -> int:
    config = PredictConfig.from_args(args)
    from emonet.prediction_run import run_predictions  # torch and the models: after the flags are checked

    done = run_predictions(config)
    print(done.said())
    return 1 if done.failed else 0


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser().parse_args()))
