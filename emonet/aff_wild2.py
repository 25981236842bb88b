"""Reading Aff-Wild2's valence-arousal track (Kollias & Zafeiriou; the ABAW challenges' VA set).

Layout under the dataset's top folder (`--dataset_root`):
- annotations `VA_Set/Training_Set/<video>.txt` and `VA_Set/Validation_Set/<video>.txt` (also found under
  `annotations/VA_Set/`): first line `valence,arousal`, then one line per frame of the video, values on [-1, 1];
  `-5` marks a frame that is not annotated, which is skipped;
- frames `cropped_aligned/<video>/<NNNNN>.jpg`, NNNNN the 1-based line number of the frame (line 2 of the file is
  frame 00001); a frame without a jpg (the organisers' face detector found no face there) is skipped.
Videos with two annotated people come as `<video>_left` and `<video>_right`: two clips, one actor (the video), so
that a split by actor keeps both people of one recording on one side.

The frames are already cropped and aligned faces (112 x 112 in the released set), with no landmarks: the crop
that applies is `resize` (the whole image to 256 x 256), not EmoNet's landmark crop.

Skipped (counted, not problems): frames marked -5 and frames without a jpg. Problems (each naming the file and
line): a header other than `valence,arousal`, a line that is not two numbers, a value outside [-1, 1], a video with
no frame folder; a jpg whose line the annotation file does not have is `unlabelled_image`.
"""
import logging
import math
from collections import Counter
from pathlib import Path

from .afew_va import Frame, Problem
from .errors import DatasetError

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {"Training_Set": "train", "Validation_Set": "validation"}
ANNOTATION_ROOTS = ("VA_Set", "annotations/VA_Set")
FRAMES_FOLDER = "cropped_aligned"
HEADER = "valence,arousal"
NOT_ANNOTATED = -5.0
LABEL_LIMIT = 1.0
PERSON_SUFFIXES = ("_left", "_right")


def annotation_folder(root: Path) -> Path:
    for name in ANNOTATION_ROOTS:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"{root}: this is not an Aff-Wild2 folder: no {' or '.join(ANNOTATION_ROOTS)}/ in it. Aff-Wild2's "
                       f"top folder holds VA_Set/Training_Set/<video>.txt, VA_Set/Validation_Set/<video>.txt and "
                       f"{FRAMES_FOLDER}/<video>/00001.jpg, ...; pass that folder as --dataset_root")


def actor_of(video: str) -> str:
    """The recording a clip comes from: `<video>_left` and `<video>_right` are two people of one video."""
    return next((video[: -len(s)] for s in PERSON_SUFFIXES if video.endswith(s)), video)


def read_aff_wild2(root: Path, limit: int | None = None) -> tuple[list[Frame], list[Problem], Counter]:
    """(frames, problems, skipped counts) of every annotated video (the first `limit` in sorted order)."""
    annotations = annotation_folder(root)
    files = [(path, split) for folder, split in SPLIT_FOLDERS.items() if (annotations / folder).is_dir()
             for path in sorted((annotations / folder).glob("*.txt"))]
    if not files:
        raise DatasetError(f"{annotations}: no annotation file in {' or '.join(SPLIT_FOLDERS)}/")
    files.sort(key=lambda item: item[0].stem)
    if limit is not None:
        files = files[:limit]
    frames, problems, skipped = [], [], Counter()
    for path, split in files:
        video_frames, video_problems = _read_video(root, path, split, skipped)
        frames += video_frames
        problems += video_problems
    logger.info("%s: %d videos, %d usable frames, %d not annotated (-5), %d without a face image, %d problems", root,
                len(files), len(frames), skipped["not_annotated"], skipped["no_face_image"], len(problems))
    return frames, problems, skipped


def _read_video(root: Path, path: Path, split: str, skipped: Counter) -> tuple[list[Frame], list[Problem]]:
    video = path.stem
    folder = root / FRAMES_FOLDER / video
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), "unreadable_annotation", str(exc))]
    if not lines or lines[0].strip().replace(" ", "").lower() != HEADER:
        found = repr(lines[0][:40]) if lines else "an empty file"
        return [], [Problem(f"{path}:1", "unreadable_annotation", f"the first line must be '{HEADER}', found {found}")]
    if not folder.is_dir():
        return [], [Problem(str(folder), "missing_image", f"no frame folder for {path.name}")]
    images = {int(p.stem): p for p in folder.glob("*.jpg") if p.stem.isdigit()}
    frames, problems = [], []
    for number, line in enumerate(lines[1:], start=1):
        where = f"{path}:{number + 1}"
        try:
            valence, arousal = (float(v) for v in line.split(","))
        except ValueError:
            problems.append(Problem(where, "unreadable_annotation", f"expected two numbers, found {line[:40]!r}"))
            continue
        if NOT_ANNOTATED in (valence, arousal):
            skipped["not_annotated"] += 1
            continue
        if not all(math.isfinite(v) and -LABEL_LIMIT <= v <= LABEL_LIMIT for v in (valence, arousal)):
            problems.append(Problem(where, "bad_label", f"valence, arousal = {valence}, {arousal} outside [-1, 1]"))
            continue
        if number not in images:
            skipped["no_face_image"] += 1
            continue
        frames.append(Frame(video, f"{number:05d}", actor_of(video), images[number], valence, arousal, None, split))
    for number in sorted(set(images) - set(range(1, len(lines)))):
        problems.append(Problem(str(images[number]), "unlabelled_image", f"{path.name} has no line for frame {number}"))
    return frames, problems
