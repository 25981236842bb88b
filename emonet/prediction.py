"""Valence and arousal on one's own videos and images, with the models this project trains (`predict.py`): which
model predicts, and how one input is run through it, frame by frame, streamed and resumable.

Models (`load_model`):
- EmoNet zero-shot (`--pretrained_path` alone): its valence and arousal on the AFEW-VA scale [-10, 10] (x 10,
  as the zero-shot evaluation scores them) and its expression probabilities;
- a head of train_emonet_features.py (`--model_path`): EmoNet's features of each face, in the colour space,
  crop and precision its features were extracted with, then the head; smooth and temporal heads run along
  each person's own frames (their gaps placed by frame number, never across two people);
- a fine-tuned EmoNet of train_emonet_hsv.py (`--model_path`): the network itself, in its colour space and
  crop.

One input (`Predictor.run`): each analysed frame's faces (`faces.FaceDetector`), who each is (`people.py`:
every face a person id with --faces all; the one face followed with --faces largest), shot cuts (`shots.py`),
then the crop the model was trained with (`crop`): `landmarks`, EmoNet's crop from the 68 points of dlib's
predictor (`dlib_models.Landmarks68`) in the detector's box, as extraction takes it from AFEW-VA's annotated
points; `resize`, the whole frame; `box`, a square around the detector's box (as EmoNet's own video demo crops).

Streamed: rows are held HOLD_SECONDS (a person new within it may turn out to be a known one and is relabelled),
then go to the head (a smooth or temporal head per person, `heads.SequenceStream`), and are written in frame
order as their values are known; memory does not grow with the video's length. Every CHECKPOINT_FRAMES analysed
frames, the rows written so far go to a part file and everything the run holds (people, shots, rows not yet
written, the heads' streams) to a state file in `inputs/<name>.parts/`: an interrupted input continues from there,
and its outputs equal an uninterrupted run's (on the CPU, bit for bit). What is written per input and per run:
`prediction_outputs.py`.
"""
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_emonet
from .colour import DEFAULT_COLOR_SPACE, convert_colour
from .constants import FEATURE_DIM, LABEL_SCALE
from .crop import DEFAULT_CROP, crop_face, crop_square, face_box, square_from_box
from .data import to_tensor
from .device import amp_enabled
from .dlib_models import DESCRIPTOR_FILE, LANDMARKS_FILE, MODELS_PACKAGE, FaceDescriptor, Landmarks68
from .errors import CheckpointError, EmoNetError
from .faces import DETECTOR_NAME, MIN_SCORE, FaceDetector, detector_version
from .heads import HeadPredictor, SequenceStream, head_record
from .inference import COMPILED_SUFFIX, compile_model, infer, prepare
from .io import atomic_open, sha256_file, write_json
from .media import Sequence, Source
from .people import DEFAULT_FPS, NO_FACE, LargestFaceFollower, PeopleTracker
from .runs import check_kind
from .shots import MIN_SHOT_FRAMES, ShotDetector
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)

# The expression classes of the released checkpoints, in the order of their logits (AffectNet's labels; the
# 5-class model keeps AffectNet's classes 0, 1, 2, 3 and 6).
EXPRESSIONS = {8: ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
               5: ("neutral", "happy", "sad", "surprise", "anger")}
CROPS = ("model", "landmarks", "box", "resize")
FACE_MODES = ("all", "largest")
RUN_FILE = "prediction_run.json"
INPUTS_DIR = "inputs"
# What a row says of its frame.
FACE, UNREADABLE = "face", "unreadable"
# A landmark square is implausible outside these multiples of the detector box's square (`landmark_square`).
LANDMARK_SIDE_RATIO = (0.5, 2.0)
# Stages timed per input (`InputResult.seconds`), for benchmarks/bench_predict.py.
STAGES = ("decode", "detect", "people", "landmarks", "crop", "emonet", "head", "write")
# Rows wait this long before their person is final (a new person may turn out to be a known one).
HOLD_SECONDS = 1.0
# Analysed frames between two checkpoints of an input (a part file and the state to resume from).
CHECKPOINT_FRAMES = 100
# Shot cuts: no two closer than this (PySceneDetect's 15 frames at 25 fps).
MIN_SHOT_SECONDS = MIN_SHOT_FRAMES / DEFAULT_FPS


@dataclass
class PredictionModel:
    """What predicts: the network run on each face crop, an optional head on its features, and how the input is made
    (colour space, crop, precision)."""

    kind: str  # zero_shot, feature_head or emonet (fine-tuned)
    network: torch.nn.Module
    head: HeadPredictor | None
    color_space: str
    crop: str
    amp: bool
    identity: dict  # what the run folder records; another model is refused there

    @property
    def expressions(self) -> tuple[str, ...]:
        """Expression classes reported: EmoNet's own, zero-shot only (fine-tuning trains valence and arousal alone,
        and moves the layers the expression logits share with them)."""
        return EXPRESSIONS.get(self.network.n_expression, ()) if self.kind == "zero_shot" else ()


def load_model(model_path: str | None, pretrained_path: str, crop: str, amp: bool | None, compile_: bool | None,
               device: torch.device) -> PredictionModel:
    """The model of a prediction run, its input settings from its own record (see the module docstring).

    `amp` and `compile_` None take the record's precision; a value that contradicts the record is refused.
    """
    if model_path and not Path(model_path).is_file():
        raise CheckpointError(f"--model_path {model_path}: file not found")
    pretrained_sha = sha256_file(pretrained_path) if Path(pretrained_path).is_file() else None
    ckpt = load_training_checkpoint(model_path, None) if model_path else None
    settings = (ckpt or {}).get("settings", {})
    trained_from = settings.get("pretrained_sha256")
    if trained_from and pretrained_sha and trained_from != pretrained_sha:
        raise CheckpointError(f"{model_path} was made with the EmoNet checkpoint sha256 {trained_from[:12]}..., but "
                              f"--pretrained_path {pretrained_path} is {pretrained_sha[:12]}...; pass the checkpoint it "
                              "was made with")
    if ckpt is None:
        kind, head, record_precision = "zero_shot", None, None
        recorded = {"color_space": DEFAULT_COLOR_SPACE, "crop": DEFAULT_CROP}
    elif ckpt["model_type"] == "feature_head":
        kind, head = "feature_head", HeadPredictor.from_checkpoint(ckpt)
        record_precision = settings.get("precision")
        recorded = {"color_space": settings.get("color_space"), "crop": settings.get("crop")}
    else:
        kind, head = "emonet", None
        record_precision = "bf16" if (ckpt.get("args") or {}).get("amp") else "fp32"
        recorded = {"color_space": settings.get("color_space"), "crop": settings.get("crop")}
    network, _ = load_emonet(model_path if kind == "emonet" else pretrained_path, device)
    if ckpt is not None and not trained_from:
        logger.warning("%s records no EmoNet checkpoint (the seed's manifest format): its features are assumed to come "
                       "from %s", model_path, pretrained_path)
    if not recorded["color_space"]:
        raise EmoNetError(f"{model_path}: its record holds no colour space; it cannot be applied to new footage")
    chosen_crop = recorded["crop"] if crop == "model" else crop
    if chosen_crop is None:
        raise EmoNetError(f"{model_path}: its record holds no crop (the seed's manifest format): pass --crop landmarks "
                          "or --crop resize, the one its features were extracted with")
    if recorded["crop"] and chosen_crop != recorded["crop"]:
        logger.warning("the model was trained on %s crops; --crop %s gives it input unlike what it learned from",
                       recorded["crop"], chosen_crop)
    use_amp, use_compile = _precision(record_precision, amp, compile_, device)
    network = prepare(network)
    if use_compile:
        network = compile_model(network, device, use_amp, 1)[0]
    precision = ("bf16" if use_amp else "fp32") + (COMPILED_SUFFIX if use_compile else "")
    identity = {"model": kind, "model_path": str(Path(model_path).resolve()) if model_path else None,
                "model_sha256": sha256_file(model_path) if model_path else None,
                "pretrained_path": str(Path(pretrained_path).resolve()), "pretrained_sha256": pretrained_sha,
                "color_space": recorded["color_space"], "crop": chosen_crop, "precision": precision,
                "head": head_record(ckpt) if head else None,
                "detector": {"name": DETECTOR_NAME, "version": detector_version(), "min_score": MIN_SCORE},
                "landmarks": f"dlib 68-point shape predictor ({MODELS_PACKAGE}/{LANDMARKS_FILE})",
                "identity_descriptor": f"dlib ResNet 128-d ({MODELS_PACKAGE}/{DESCRIPTOR_FILE})"}
    return PredictionModel(kind, network, head, recorded["color_space"], chosen_crop, use_amp, identity)


def _precision(recorded: str | None, amp: bool | None, compile_: bool | None, device: torch.device) -> tuple[bool, bool]:
    """(bf16, compiled): the model's record decides; a flag that contradicts it is refused."""
    if recorded is not None:
        record_amp, record_compile = recorded.startswith("bf16"), recorded.endswith(COMPILED_SUFFIX)
        for flag, given, kept in (("--amp", amp, record_amp), ("--compile", compile_, record_compile)):
            if given is not None and given != kept:
                raise EmoNetError(f"{flag}: the model was made {'with' if kept else 'without'} it (its record says "
                                  f"precision {recorded}); drop the flag, the record decides")
        amp, compile_ = record_amp, record_compile
    return amp_enabled(device, bool(amp)), bool(compile_)


def landmark_square(landmarks: np.ndarray, box_square: tuple[float, float, float]) -> tuple[float, float, float] | None:
    """EmoNet's crop square from the 68 landmarks, or None when they cannot be those of the detected face: the
    square's side outside [0.5, 2] times the box's, or its centre more than half the box's side away. The caller
    then crops around the box."""
    square = face_box(landmarks)
    ratio = square[2] / box_square[2]
    offset = float(np.hypot(square[0] - box_square[0], square[1] - box_square[1]))
    return square if LANDMARK_SIDE_RATIO[0] <= ratio <= LANDMARK_SIDE_RATIO[1] and offset <= box_square[2] / 2 else None


# -- rows ---------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One row of an input's predictions: a face of a frame (with its person), or a frame without one (`status` says
    why). Values are on the model's scale; `raw` is the smooth head's before smoothing; `expression`, zero-shot's
    logits."""

    frame: int
    time_s: float | None
    file: str
    shot: int
    person: int | None
    status: str
    score: float = float("nan")
    box: np.ndarray | None = None
    features: np.ndarray | None = None
    values: np.ndarray | None = None
    raw: np.ndarray | None = None
    expression: np.ndarray | None = None
    released: bool = False  # out of the hold: its person is final

    @property
    def complete(self) -> bool:
        return self.released and (self.person is None or self.values is not None)


ROW_NUMBERS = ("frame", "time_s", "shot", "person", "score")
ROW_TEXTS = ("file", "status")
ROW_ARRAYS = {"box": 4, "features": None, "values": 2, "raw": 2, "expression": None}


def rows_to_arrays(rows: list[Row], prefix: str) -> dict[str, np.ndarray]:
    """Rows as columns for a state file (`rows_from_arrays` reads them back)."""
    out = {f"{prefix}{k}": np.array([getattr(r, k) if getattr(r, k) is not None else np.nan for r in rows],
                                    dtype=np.float64) for k in ROW_NUMBERS}
    out |= {f"{prefix}{k}": np.array([getattr(r, k) for r in rows], dtype=str) for k in ROW_TEXTS}
    out[f"{prefix}released"] = np.array([r.released for r in rows], dtype=bool)
    for k in ROW_ARRAYS:
        present = [getattr(r, k) for r in rows if getattr(r, k) is not None]
        width = len(present[0]) if present else 0
        column = np.full((len(rows), width), np.nan, dtype=np.float32)
        for i, r in enumerate(rows):
            if getattr(r, k) is not None:
                column[i] = getattr(r, k)
        out[f"{prefix}{k}"], out[f"{prefix}{k}_set"] = column, np.array([getattr(r, k) is not None for r in rows])
    return out


def rows_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> list[Row]:
    rows = []
    for i in range(len(arrays[f"{prefix}frame"])):
        numbers = {k: float(arrays[f"{prefix}{k}"][i]) for k in ROW_NUMBERS}
        rows.append(Row(int(numbers["frame"]), None if np.isnan(numbers["time_s"]) else numbers["time_s"],
                        str(arrays[f"{prefix}file"][i]), int(numbers["shot"]),
                        None if np.isnan(numbers["person"]) else int(numbers["person"]), str(arrays[f"{prefix}status"][i]),
                        numbers["score"],
                        **{k: arrays[f"{prefix}{k}"][i].copy() if arrays[f"{prefix}{k}_set"][i] else None for k in ROW_ARRAYS},
                        released=bool(arrays[f"{prefix}released"][i])))
    return rows


# -- one input --------------------------------------------------------------------------------------------------------
@dataclass
class PredictOptions:
    """How inputs are run: which faces, how many frames a second (None: every frame), frames a chunk."""

    faces: str = "all"
    sample_fps: float | None = None
    batch_size: int = 8
    checkpoint_frames: int = field(default_factory=lambda: CHECKPOINT_FRAMES)
    progress: bool = True


@dataclass
class InputState:
    """Everything one input's run holds between checkpoints (see the module docstring)."""

    next_frame: int = 0  # every frame before it has been read
    analysed: int = 0
    parts: int = 0  # part files written
    faces: int = 0  # face rows
    box_crops: int = 0  # landmark crop: faces whose landmarks did not fit (cropped around the box instead)
    unreadable: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    rows: list[Row] = field(default_factory=list)  # not yet written, in frame order
    best: dict[int, tuple[float, float]] = field(default_factory=dict)  # person -> (score, area) of the thumbnail
    thumbnails: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class InputResult:
    """What one input gave, for its summary (`prediction_outputs.finish_input`)."""

    frames: int
    analysed: int
    faces: int
    fps: float | None
    sample_fps: float | None
    unreadable: list[str]
    box_crops: int
    shots: int
    descriptions: int
    truncated: str | None
    seconds: dict[str, float]
    thumbnails: dict[int, np.ndarray]
    parts: list[Path]


# Side of a person's thumbnail, in pixels.
THUMBNAIL_SIZE = 128


class Predictor:
    """Runs a `PredictionModel` over inputs (see the module docstring)."""

    def __init__(self, model: PredictionModel, device: torch.device, options: PredictOptions):
        self.model, self.device, self.options = model, device, options
        self.detector = FaceDetector(device)
        self.landmarks = Landmarks68()
        self.descriptor = FaceDescriptor()

    # - the run of one input -
    def run(self, source: Source, parts_dir: Path, writer) -> InputResult:
        """Predict `source`, continuing from the state in `parts_dir` if an earlier run left one. `writer(path, rows)`
        writes a part file (`prediction_outputs.write_rows`)."""
        sequence = source.open()
        step = 1.0 if not (self.options.sample_fps and sequence.fps) else sequence.fps / self.options.sample_fps
        state, people, shots, streams = self._resume(parts_dir, source, sequence, step)
        hold = 0 if self.options.faces == "largest" else round(HOLD_SECONDS * (sequence.fps or DEFAULT_FPS))
        expected = None if sequence.expected is None else int(np.ceil(sequence.expected / step))
        frames = _timed(sequence.frames(state.next_frame, keep=lambda i: _analysed(i, step)), state.seconds, "decode")
        with torch.inference_mode(), tqdm(total=expected, initial=state.analysed, unit="frame", desc=source.path.name,
                                          disable=not self.options.progress) as bar:
            since_checkpoint = 0
            for chunk in _chunks(frames, self.options.batch_size):
                analysed = [f for f in chunk if f.rgb is not None or f.error]
                state.rows += self._chunk(analysed, state, people, shots)
                state.next_frame = chunk[-1].index + 1
                state.analysed += len(analysed)
                self._release(state, streams, boundary=state.next_frame - hold)
                bar.update(len(analysed))
                since_checkpoint += len(analysed)
                if since_checkpoint >= self.options.checkpoint_frames:
                    self._checkpoint(parts_dir, source, state, people, shots, streams, writer)
                    since_checkpoint = 0
        self._release(state, streams, boundary=None)
        self._write_part(parts_dir, state, writer)
        return InputResult(sequence.decoded, state.analysed, state.faces, sequence.fps, self.options.sample_fps if step != 1
                           else None, state.unreadable, state.box_crops, shots.shot + 1,
                           getattr(people, "descriptions", 0), sequence.truncated, state.seconds, state.thumbnails,
                           [parts_dir / part_name(k) for k in range(state.parts)])

    def _chunk(self, frames, state: InputState, people, shots: ShotDetector) -> list[Row]:
        """The rows of a chunk of analysed frames: their faces (one batch), who is where (in frame order), then the model
        on every face."""
        rows, faces_of = [], []
        start = time.perf_counter()
        readable = [f for f in frames if f.rgb is not None]
        detected = dict(zip((f.index for f in readable), self.detector.detect([f.rgb for f in readable]) if readable else [],
                            strict=True))
        state.seconds["detect"] += time.perf_counter() - start
        for frame in frames:
            if frame.rgb is None:
                state.unreadable.append(frame.error)
                logger.warning("%s", frame.error)
                rows.append(Row(frame.index, frame.time_s, frame.file, shots.shot, None, UNREADABLE))
                continue
            faces = detected[frame.index]
            start = time.perf_counter()
            cut = shots.update(frame.rgb)
            shapes: dict[int, object] = {}

            def shape(i: int, rgb=frame.rgb, faces=faces, shapes=shapes):
                if i not in shapes:
                    shapes[i] = self.landmarks.shape(rgb, faces[i].box)
                return shapes[i]

            if self.options.faces == "all":
                ids = people.update(frame.index, faces, lambda i, rgb=frame.rgb: self.descriptor(rgb, shape(i)), cut)
                if people.merged:
                    _relabel(state, people.merged)
                followed = list(zip(ids, range(len(faces)), strict=True))
                status = NO_FACE
            else:
                face, status = people.follow(faces)
                followed = [(1, faces.index(face))] if face is not None else []
            state.seconds["people"] += time.perf_counter() - start
            if not followed:
                rows.append(Row(frame.index, frame.time_s, frame.file, shots.shot, None, status))
            for person, i in followed:
                rows.append(Row(frame.index, frame.time_s, frame.file, shots.shot, person, FACE, faces[i].score,
                                faces[i].box.copy()))
                faces_of.append((frame, faces[i], lambda i=i, shape=shape: shape(i)))
        if faces_of:
            out = self._infer([(f, face, s) for f, face, s in faces_of], state)
            face_rows = [r for r in rows if r.status == FACE]
            for j, row in enumerate(face_rows):
                row.features = out["features"][j] if self.model.head is not None else None
                if self.model.head is None:
                    row.values = np.array([out["valence"][j], out["arousal"][j]], dtype=np.float32) * LABEL_SCALE
                if self.model.expressions:
                    row.expression = out["expression"][j]
                self._thumbnail(state, row, faces_of[j][0].rgb)
            state.faces += len(face_rows)
        return rows

    def _infer(self, faces_of, state: InputState) -> dict[str, np.ndarray]:
        """EmoNet's outputs for every face of a chunk (on CUDA all of them together)."""
        crop = self.model.crop
        images = []
        for frame, face, shape in faces_of:
            box_square = square_from_box(*face.box)
            if crop == "landmarks":
                start = time.perf_counter()
                square = landmark_square(Landmarks68.points(shape()), box_square)
                state.seconds["landmarks"] += time.perf_counter() - start
                state.box_crops += square is None
                start = time.perf_counter()
                images.append(crop_square(frame.rgb, *(square or box_square)))
            else:
                start = time.perf_counter()
                images.append(crop_square(frame.rgb, *box_square) if crop == "box" else crop_face(frame.rgb, None, "resize"))
            state.seconds["crop"] += time.perf_counter() - start
        start = time.perf_counter()
        batch = torch.stack([to_tensor(convert_colour(image, self.model.color_space)) for image in images])
        state.seconds["crop"] += time.perf_counter() - start
        start = time.perf_counter()
        out = infer(self.model.network, batch, self.device, self.model.amp)
        state.seconds["emonet"] += time.perf_counter() - start
        return {k: v.numpy() for k, v in out.items()}

    def _thumbnail(self, state: InputState, row: Row, rgb: np.ndarray) -> None:
        """Keep each person's best-scored face (the larger among equal scores) as their thumbnail."""
        key = (round(row.score, 4), float((row.box[2] - row.box[0]) * (row.box[3] - row.box[1])))
        if key > state.best.get(row.person, (-1.0, 0.0)):
            state.best[row.person] = key
            state.thumbnails[row.person] = crop_square(rgb, *square_from_box(*row.box), size=THUMBNAIL_SIZE)

    # - the rows' way out: hold, head, written in order -
    def _release(self, state: InputState, streams: dict[int, SequenceStream], boundary: int | None) -> None:
        """Release the rows of frames before `boundary` (None: all) to the head, and fill in what the head gives."""
        head = self.model.head
        start = time.perf_counter()
        released = [r for r in state.rows if not r.released and (boundary is None or r.frame < boundary)]
        for row in released:
            row.released = True
        with_person = [r for r in released if r.person is not None]
        if head is not None and head.context == 0:
            for row in with_person:  # one at a time: a face's values never depend on which others share its batch
                value = head.predict(row.features[None], [{"clip": "x", "frame": str(row.frame)}], torch.device("cpu"))[0]
                row.values = value.astype(np.float32)
                row.raw = row.values if head.kind == "smooth" else None  # a smooth head that chose sigma 0
        elif head is not None:
            for row in with_person:
                streams.setdefault(row.person, SequenceStream(head)).push(row.frame, row.features)
            waiting = {(r.frame, r.person): r for r in state.rows if r.person is not None and r.values is None}
            for person, stream in streams.items():
                for frame, value, raw in stream.ready(boundary):
                    row = waiting[frame, person]
                    row.values, row.raw = value.astype(np.float32), raw.astype(np.float32)
        state.seconds["head"] += time.perf_counter() - start

    def _write_part(self, parts_dir: Path, state: InputState, writer) -> None:
        """Write the complete rows at the front of the queue (frames all of whose rows are known) as the next part."""
        start = time.perf_counter()
        done = 0
        while done < len(state.rows) and state.rows[done].complete:
            done += 1
        while done and done < len(state.rows) and state.rows[done].frame == state.rows[done - 1].frame:
            done -= 1  # a frame's rows go out together
        if done:
            writer(parts_dir / part_name(state.parts), state.rows[:done])
            state.rows = state.rows[done:]
            state.parts += 1
        state.seconds["write"] += time.perf_counter() - start

    # - checkpoints -
    def _checkpoint(self, parts_dir: Path, source: Source, state: InputState, people, shots: ShotDetector,
                    streams: dict[int, SequenceStream], writer) -> None:
        self._write_part(parts_dir, state, writer)
        arrays = rows_to_arrays(state.rows, "row_")
        people_numbers, people_arrays = people.state()
        shot_numbers, shot_arrays = shots.state()
        arrays |= people_arrays | shot_arrays
        for person, image in state.thumbnails.items():
            arrays[f"thumbnail_{person}"] = image
        for person, stream in streams.items():
            arrays[f"stream_{person}_frames"] = np.array(stream.frames, dtype=np.int64)
            arrays[f"stream_{person}_features"] = (np.stack(stream.features).astype(np.float32) if stream.features
                                                   else np.zeros((0, FEATURE_DIM), np.float32))
        numbers = {"source": _fingerprint(source), "options": self._options_record(), "next_frame": state.next_frame,
                   "analysed": state.analysed, "parts": state.parts, "faces": state.faces, "box_crops": state.box_crops,
                   "unreadable": state.unreadable, "seconds": state.seconds,
                   "best": {str(p): list(v) for p, v in state.best.items()}, "people": people_numbers,
                   "shots": shot_numbers,
                   "streams": {str(p): {"origin": s.origin, "block": s.block} for p, s in streams.items()}}
        with atomic_open(parts_dir / f"state_{state.parts}.npz") as f:
            np.savez(f, **arrays)
        write_json(parts_dir / STATE_FILE, numbers | {"arrays": f"state_{state.parts}.npz"})
        for stale in parts_dir.glob("state_*.npz"):
            if stale.name != f"state_{state.parts}.npz":
                stale.unlink()

    def _options_record(self) -> dict:
        return {"faces": self.options.faces, "sample_fps": self.options.sample_fps, "batch_size": self.options.batch_size}

    def _resume(self, parts_dir: Path, source: Source, sequence: Sequence, step: float):
        """The state to start from: an earlier run's checkpoint of this input, or a fresh one."""
        fps = sequence.fps
        fresh = (InputState(),
                 PeopleTracker(fps, step, hold=round(HOLD_SECONDS * (fps or DEFAULT_FPS)))
                 if self.options.faces == "all" else LargestFaceFollower(fps, step),
                 ShotDetector(max(1, round(MIN_SHOT_SECONDS * (fps or DEFAULT_FPS) / step))), {})
        path = parts_dir / STATE_FILE
        if not path.is_file():
            if parts_dir.exists():
                shutil.rmtree(parts_dir)
            parts_dir.mkdir(parents=True)
            return fresh
        numbers = json.loads(path.read_text())
        if numbers["source"] != _fingerprint(source) or numbers["options"] != self._options_record():
            logger.warning("%s: the input or --faces/--sample_fps changed since the interrupted run; starting it again",
                           source.path)
            shutil.rmtree(parts_dir)
            parts_dir.mkdir(parents=True)
            return fresh
        with np.load(parts_dir / numbers["arrays"]) as data:
            arrays = {k: data[k] for k in data.files}
        for stale in parts_dir.glob("part_*.csv"):
            if int(stale.stem.split("_")[1]) >= numbers["parts"]:
                stale.unlink()  # written after the last checkpoint: written again
        state = InputState(numbers["next_frame"], numbers["analysed"], numbers["parts"], numbers["faces"],
                           numbers["box_crops"], numbers["unreadable"], numbers["seconds"], rows_from_arrays(arrays, "row_"),
                           {int(p): tuple(v) for p, v in numbers["best"].items()},
                           {int(k.split("_")[1]): v for k, v in arrays.items() if k.startswith("thumbnail_")})
        people = (PeopleTracker if self.options.faces == "all" else LargestFaceFollower).restore(numbers["people"], arrays)
        shots = ShotDetector.restore(numbers["shots"], arrays)
        streams = {}
        for person, s in numbers["streams"].items():
            frames = arrays[f"stream_{person}_frames"]
            streams[int(person)] = SequenceStream(self.model.head, s["origin"], s["block"], [int(f) for f in frames],
                                                  list(arrays[f"stream_{person}_features"]))
        logger.info("%s: continuing from frame %d (%d frames analysed before)", source.path, state.next_frame, state.analysed)
        return state, people, shots, streams


STATE_FILE = "state.json"


def part_name(k: int) -> str:
    return f"part_{k:05d}.csv"


def _fingerprint(source: Source) -> dict:
    """What identifies an input's content for resuming: its path, size and modification time."""
    stat = source.path.stat()
    return {"path": str(source.path), "size": stat.st_size if source.path.is_file() else None,
            "mtime_ns": stat.st_mtime_ns}


def _relabel(state: InputState, merged: dict[int, int]) -> None:
    """Rows and thumbnails of a person merged into another (`people.PeopleTracker.merged`) become the other's."""
    for row in state.rows:
        if row.person in merged:
            row.person = merged[row.person]
    for new, known in merged.items():
        if new in state.best:
            score, image = state.best.pop(new), state.thumbnails.pop(new)
            if score > state.best.get(known, (-1.0, 0.0)):
                state.best[known], state.thumbnails[known] = score, image


def _analysed(index: int, step: float) -> bool:
    """Whether frame `index` is analysed when one frame in `step` is (the first frame at or after each k * step)."""
    return step == 1.0 or int(np.ceil(index / step)) != int(np.ceil((index + 1) / step))


def _chunks(frames: Iterator, size: int) -> Iterator[list]:
    """The frames in lists of `size` analysed frames (with the frames left out between them)."""
    while True:
        chunk, analysed = [], 0
        for frame in frames:
            chunk.append(frame)
            analysed += frame.rgb is not None or bool(frame.error)
            if analysed == size:
                break
        if not chunk:
            return
        yield chunk


def _timed(frames: Iterator, seconds: dict, stage: str) -> Iterator:
    """`frames`, with the time spent producing them added to seconds[stage]."""
    while True:
        start = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        seconds[stage] += time.perf_counter() - start
        yield frame


# -- the run folder ---------------------------------------------------------------------------------------------------
def check_run_folder(output_dir: Path, identity: dict, overwrite: bool) -> None:
    """Claim `output_dir` for this model and these options: refuse a folder made with others (or another kind of
    run)."""
    check_kind(output_dir, "prediction")
    path = output_dir / RUN_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [f"{k} {before.get(k)!r} -> {identity.get(k)!r}" for k in identity if before.get(k) != identity.get(k)]
        if changed and not overwrite:
            raise EmoNetError(f"{output_dir} holds predictions of another model or other options ({'; '.join(changed)}); "
                              "choose another --output_dir, or pass --overwrite to replace them")
        if changed:
            shutil.rmtree(output_dir / INPUTS_DIR, ignore_errors=True)
    write_json(path, identity)

