"""Reading AffectNet's manually annotated images (Mollahosseini et al. 2017), the data EmoNet was trained on.

Layout under the dataset's top folder (`--dataset_root`): `training.csv` and `validation.csv`, at the top or in
`Manually_Annotated_file_lists/`, with the columns `subDirectory_filePath, face_x, face_y, face_width,
face_height, facial_landmarks, expression, valence, arousal`; image paths relative to
`Manually_Annotated_Images/`. `facial_landmarks` holds 136 numbers separated by `;` (x1;y1;x2;y2;...: the 68
iBUG points, as AFEW-VA's), from which EmoNet's landmark crop is taken. Valence and arousal are on [-1, 1]; -2
marks an image whose values are uncertain or that shows no face, which is skipped (counted). `expression` (0-7
the eight emotions, 8 none, 9 uncertain, 10 no face) is kept in each sample, for EmoNet's 8-class test subset.

Each image is its own clip (no time): `clip` is its path without suffix, `/` written `-` (one feature folder an
image), frame `00000`. Problems name the file and line: a missing column, a line that cannot be read, a value
outside [-1, 1], landmarks that are not 136 numbers (where the crop needs them), an image that is not there.
"""
import csv
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .afew_va import Frame, Problem
from .constants import NUM_LANDMARKS
from .errors import DatasetError

logger = logging.getLogger(__name__)

SPLIT_FILES = {"training.csv": "train", "validation.csv": "validation"}
LIST_FOLDERS = ("", "Manually_Annotated_file_lists")
IMAGES_FOLDER = "Manually_Annotated_Images"
COLUMNS = ("subDirectory_filePath", "facial_landmarks", "valence", "arousal")
NOT_RATED = -2.0
LABEL_LIMIT = 1.0


def list_files(root: Path) -> list[tuple[Path, str]]:
    found = [(root / folder / name, split) for name, split in SPLIT_FILES.items() for folder in LIST_FOLDERS
             if (root / folder / name).is_file()]
    if not found:
        raise DatasetError(f"{root}: this is not an AffectNet folder: no training.csv or validation.csv at its top or in "
                           f"Manually_Annotated_file_lists/ (images under {IMAGES_FOLDER}/); pass that folder as "
                           "--dataset_root")
    return found


def read_affectnet(root: Path, limit: int | None = None,
                   need_landmarks: bool = True) -> tuple[list[Frame], list[Problem], Counter]:
    """(frames, problems, skipped counts) of the listed images (the first `limit` of each list)."""
    frames, problems, skipped = [], [], Counter()
    for path, split in list_files(root):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                   f"(found {', '.join(reader.fieldnames or []) or 'nothing'})")
            for count, row in enumerate(reader):
                if limit is not None and count >= limit:
                    break
                frame, problem = _read_row(root, row, split, need_landmarks, f"{path}:{reader.line_num}", skipped)
                if frame is not None:
                    frames.append(frame)
                elif problem is not None:
                    problems.append(problem)
    logger.info("%s: %d usable images, %d not rated (-2), %d problems", root, len(frames), skipped["not_rated"],
                len(problems))
    return frames, problems, skipped


def _read_row(root: Path, row: dict, split: str, need_landmarks: bool, where: str,
              skipped: Counter) -> tuple[Frame | None, Problem | None]:
    try:
        valence, arousal = float(row["valence"]), float(row["arousal"])
    except (TypeError, ValueError):
        return None, Problem(where, "unreadable_annotation", f"valence/arousal {row['valence']!r}, {row['arousal']!r}")
    if NOT_RATED in (valence, arousal):
        skipped["not_rated"] += 1
        return None, None
    if not all(math.isfinite(v) and -LABEL_LIMIT <= v <= LABEL_LIMIT for v in (valence, arousal)):
        return None, Problem(where, "bad_label", f"valence, arousal = {valence}, {arousal} outside [-1, 1]")
    landmarks = None
    try:
        points = np.array([float(v) for v in (row["facial_landmarks"] or "").split(";") if v.strip()], np.float32)
    except ValueError:
        points = np.zeros(0, np.float32)
    if points.size == 2 * NUM_LANDMARKS and np.isfinite(points).all():
        landmarks = points.reshape(NUM_LANDMARKS, 2)
    elif need_landmarks:
        return None, Problem(where, "bad_landmarks", f"facial_landmarks holds {points.size} numbers, expected "
                                                     f"{2 * NUM_LANDMARKS}")
    relative = (row["subDirectory_filePath"] or "").strip()
    image = root / IMAGES_FOLDER / relative
    if not relative or not image.is_file():
        return None, Problem(str(image), "missing_image", f"listed at {where}, image not found")
    try:
        expression = int(float(row.get("expression") or ""))
    except ValueError:
        expression = None  # the column is not needed for valence and arousal; the 8-class subset leaves it out
    clip = str(Path(relative).with_suffix("")).replace("/", "-").replace("\\", "-")
    return Frame(clip, "00000", "", image, valence, arousal, landmarks, split, expression), None
