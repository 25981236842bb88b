"""Valence and arousal on one's own videos and images (`predict.py`): which model predicts, and how one input runs
through it, frame by frame, streamed and resumable.

Models (`load_model`): EmoNet zero-shot (x 10, the AFEW-VA scale, with its expression probabilities); a head of
train_emonet_features.py on EmoNet's features in the colour space, crop and precision they were extracted with (smooth
and temporal heads along each person's own frames); a fine-tuned EmoNet of train_emonet_hsv.py.

One input (`Predictor.run`): who is where (`following.py`), the model's own crop (`landmarks`: EmoNet's crop from dlib's
68 points in the detector's box, as extraction takes it from AFEW-VA's points; `resize`; `box`), then the model. A
face's row waits until its person is decided, so memory does not grow with the video; every CHECKPOINT_FRAMES analysed
frames or CHECKPOINT_SECONDS the rows so far and the run's state are saved (`prediction_state.py`), and an
interrupted input continues to the uninterrupted run's outputs (byte for byte on the CPU)."""
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_emonet
from .constants import DEFAULT_COLOR_SPACE, DEFAULT_CROP, FEATURE_DIM, LABEL_SCALE
from .colour import convert_colour
from .crop import crop_face, crop_square, face_box, square_from_box
from .data import to_tensor
from .device import amp_enabled
from .dlib_models import DESCRIPTOR_FILE, LANDMARKS_FILE, MODELS_PACKAGE, Landmarks68
from .engine import INT8_PREFIX, cached_int8, choose_backend
from .errors import CheckpointError, EmoNetError
from .faces import DETECTOR_NAME, MIN_SCORE, detector_version
from .following import STAGES as FOLLOWING_STAGES
from .following import AnalysedFrame, FaceModels, Following, chunks, sampling_step
from .heads import HeadPredictor, SequenceStream, head_record
from .inference import COMPILED_SUFFIX, infer, make_runner
from .io import sha256_file, write_json
from .media import Source
from .people import NO_FACE, NOT_FOLLOWED
from .prediction_state import InputCheckpoint, InputState, Row
from .runs import check_kind
from .timing import StageTimer
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)

# The expression classes of the released checkpoints, in the order of their logits (AffectNet's labels; the
# 5-class model keeps AffectNet's classes 0, 1, 2, 3 and 6).
EXPRESSIONS = {8: ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
               5: ("neutral", "happy", "sad", "surprise", "anger")}
RUN_FILE = "prediction_run.json"
SUMMARY_FILE = "predictions.json"
INPUTS_DIR = "inputs"
# What a row says of its frame.
FACE, UNREADABLE = "face", "unreadable"
# A landmark square is implausible outside these multiples of the detector box's square (`landmark_square`).
LANDMARK_SIDE_RATIO = (0.5, 2.0)
# Stages timed per input (`InputResult.seconds`), for benchmarks/bench_predict.py.
STAGES = ("decode", *FOLLOWING_STAGES, "crop", "emonet", "head", "write")
# An input's checkpoint (a part file and the state to resume from) comes after this many analysed frames or this many
# seconds, whichever is first: on a slow CPU an interruption loses at most a minute.
CHECKPOINT_FRAMES = 100
CHECKPOINT_SECONDS = 60.0


@dataclass
class PredictionModel:
    """What predicts: the network run on each face crop, an optional head on its features, and how the input is made
    (colour space, crop, precision)."""

    kind: str  # zero_shot, feature_head or emonet (fine-tuned)
    network: Callable  # the torch network or the ONNX Runtime engine (`inference.make_runner`)
    head: HeadPredictor | None
    color_space: str
    crop: str
    amp: bool
    identity: dict  # what the run folder records; another model is refused there
    notes: dict  # recorded beside it: how EmoNet runs (every fp32 backend gives the same values), stand-in weights

    @property
    def expressions(self) -> tuple[str, ...]:
        """Expression classes reported: EmoNet's own, zero-shot only (fine-tuning trains valence and arousal alone,
        and moves the layers the expression logits share with them)."""
        return EXPRESSIONS.get(self.network.n_expression, ()) if self.kind == "zero_shot" else ()


def load_model(model_path: str | None, pretrained_path: str, crop: str, amp: bool | None, compile_: bool | None,
               device: torch.device, backend: str = "auto", threads: int | None = None) -> PredictionModel:
    """The model of a prediction run, its input settings from its own record (see the module docstring).

    `amp` and `compile_` None take the record's precision; a value that contradicts the record is refused. `backend`
    and `threads`: how EmoNet runs (`engine.choose_backend`); a head trained on int8 features runs on the very engine
    that made them.
    """
    if model_path and not Path(model_path).is_file():
        raise CheckpointError(f"--model_path {model_path}: file not found")
    pretrained_sha = sha256_file(pretrained_path) if Path(pretrained_path).is_file() else None
    model_sha = sha256_file(model_path) if model_path else None
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
    weights = model_path if kind == "emonet" else pretrained_path
    network, _ = load_emonet(weights, device)
    stand_in = network.stand_in
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
    int8 = bool(record_precision and record_precision.startswith(INT8_PREFIX))
    choice = choose_backend(backend, device, use_amp, use_compile, int8, threads)
    weights_sha = model_sha if kind == "emonet" else pretrained_sha  # the file just loaded, hashed once
    if int8:
        network = cached_int8(weights_sha, record_precision, network.n_expression, choice.threads)
        precision = record_precision
    else:
        network = make_runner(network, device, choice, use_amp, use_compile, 1, weights_sha)[0]
        precision = ("bf16" if use_amp else "fp32") + (COMPILED_SUFFIX if use_compile else "")
    identity = {"model": kind, "model_path": str(Path(model_path).resolve()) if model_path else None,
                "model_sha256": model_sha,
                "pretrained_path": str(Path(pretrained_path).resolve()), "pretrained_sha256": pretrained_sha,
                "color_space": recorded["color_space"], "crop": chosen_crop, "precision": precision,
                "head": head_record(ckpt) if head else None,
                "detector": {"name": DETECTOR_NAME, "version": detector_version(), "min_score": MIN_SCORE},
                "landmarks": f"dlib 68-point shape predictor ({MODELS_PACKAGE}/{LANDMARKS_FILE})",
                "identity_descriptor": f"dlib ResNet 128-d ({MODELS_PACKAGE}/{DESCRIPTOR_FILE})"}
    return PredictionModel(kind, network, head, recorded["color_space"], chosen_crop, use_amp, identity,
                           {"engine": choice.record(), "stand_in_weights": stand_in})


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


# -- one input --------------------------------------------------------------------------------------------------------
@dataclass
class PredictOptions:
    """How inputs are run: which faces, how many frames a second (None: every frame), frames a chunk, and how often an
    input is checkpointed."""

    faces: str = "all"
    sample_fps: float | None = None
    batch_size: int = 8
    checkpoint_frames: int = field(default_factory=lambda: CHECKPOINT_FRAMES)  # read when made: tests lower them
    checkpoint_seconds: float = field(default_factory=lambda: CHECKPOINT_SECONDS)
    progress: bool = True

    def record(self) -> dict:
        """What a resumed input must share with the run it continues."""
        return {"faces": self.faces, "sample_fps": self.sample_fps, "batch_size": self.batch_size}


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
    identities: dict[int, dict]  # per person: tracklets, shots, weakest link, nearest other person
    parts: list[Path]


# Side of a person's thumbnail, in pixels.
THUMBNAIL_SIZE = 128


class Predictor:
    """Runs a `PredictionModel` over inputs (see the module docstring)."""

    def __init__(self, model: PredictionModel, device: torch.device, options: PredictOptions):
        self.model, self.device, self.options = model, device, options
        self.face_models = FaceModels(device)

    def run(self, source: Source, parts_dir: Path, writer: Callable[[Path, list[Row]], None]) -> InputResult:
        """Predict `source`, continuing from the checkpoint in `parts_dir` if an earlier run left one. `writer(path, rows)`
        writes a part file (`prediction_outputs.write_rows`)."""
        sequence = source.open()
        step = sampling_step(sequence.fps, self.options.sample_fps)
        checkpoint = InputCheckpoint(parts_dir, _fingerprint(source), self.options.record())
        state, following, streams = self._start(checkpoint, source, sequence.fps, step)
        timer = following.timer
        hold = following.hold_frames()
        expected = None if sequence.expected is None else int(np.ceil(sequence.expected / step))
        frames = timer.iterate(sequence.frames(state.next_frame), "decode")
        saved = (time.monotonic(), state.analysed)
        with torch.inference_mode(), tqdm(total=expected, initial=state.analysed, unit="frame", desc=source.path.name,
                                          disable=not self.options.progress) as bar:
            for chunk in chunks(frames, self.options.batch_size, step):
                looked_at = following.chunk(chunk, step)
                state.rows += self._rows(looked_at, state, following)
                state.next_frame = chunk[-1].index + 1
                state.analysed += len(looked_at)
                self._release(state, following, streams, boundary=state.next_frame - hold)
                bar.update(len(looked_at))
                if (state.analysed - saved[1] >= self.options.checkpoint_frames
                        or time.monotonic() - saved[0] >= self.options.checkpoint_seconds):
                    self._checkpoint(checkpoint, state, following, streams, writer)
                    saved = (time.monotonic(), state.analysed)
        following.finish()
        self._release(state, following, streams, boundary=None)
        self._write_part(parts_dir, state, writer, timer)
        thumbnails = {int(k[1:]): v for k, v in state.thumbnails.items() if k.startswith("p")}
        return InputResult(sequence.decoded, state.analysed, state.faces, sequence.fps,
                           self.options.sample_fps if step != 1 else None, state.unreadable, state.box_crops,
                           following.shots.shot + 1, following.tracker.descriptions, sequence.truncated, timer.seconds,
                           thumbnails, following.tracker.summary(), [parts_dir / part_name(k) for k in range(state.parts)])

    def _start(self, checkpoint: InputCheckpoint, source: Source, fps: float | None, step: float):
        """(state, who is where, the heads' streams): from the checkpoint an earlier run left, or fresh."""
        loaded = checkpoint.load()
        if loaded is None:
            timer = StageTimer(STAGES)
            state = InputState(seconds=timer.seconds)
            return state, Following(self.face_models, self.options.faces, fps, step, timer), {}
        state, more, arrays = loaded
        timer = StageTimer(STAGES, state.seconds)
        state.seconds = timer.seconds
        following = Following.restore(self.face_models, self.options.faces, timer, more["following"], arrays)
        streams = {int(person): SequenceStream(self.model.head, s["origin"], s["block"],
                                               [int(f) for f in arrays[f"stream_{person}_frames"]],
                                               list(arrays[f"stream_{person}_features"]))
                   for person, s in more["streams"].items()}
        logger.info("%s: continuing from frame %d (%d frames analysed before)", source.path, state.next_frame, state.analysed)
        return state, following, streams

    def _rows(self, looked_at: list[AnalysedFrame], state: InputState, following: Following) -> list[Row]:
        """The rows of a chunk's analysed frames, then the model on every followed face."""
        rows, faces = [], []
        for seen in looked_at:
            frame = seen.frame
            if frame.rgb is None:
                state.unreadable.append(frame.error)
                logger.warning("%s", frame.error)
                rows.append(Row(frame.index, frame.time_s, frame.file, seen.shot, None, UNREADABLE))
                continue
            followed = [(i, t) for i, t in enumerate(seen.tracklets) if t is not None]
            if not followed:
                rows.append(Row(frame.index, frame.time_s, frame.file, seen.shot, None, NOT_FOLLOWED if seen.faces else NO_FACE))
            for i, tracklet in followed:
                face = seen.faces[i]
                rows.append(Row(frame.index, frame.time_s, frame.file, seen.shot, tracklet, FACE, face.score, face.box.copy()))
                faces.append((seen, i))
        if faces:
            out = self._infer(faces, state, following.timer)
            for j, row in enumerate(r for r in rows if r.status == FACE):
                row.features = out["features"][j] if self.model.head is not None else None
                if self.model.head is None:
                    row.values = np.array([out["valence"][j], out["arousal"][j]], dtype=np.float32) * LABEL_SCALE
                if self.model.expressions:
                    row.expression = out["expression"][j]
                person = following.tracker.person_of(row.tracklet)
                _keep_best(state, f"p{person}" if person is not None else f"t{row.tracklet}", row, faces[j][0].frame.rgb)
                state.faces += 1
        return rows

    def _infer(self, faces: list[tuple[AnalysedFrame, int]], state: InputState, timer: StageTimer) -> dict[str, np.ndarray]:
        """EmoNet's outputs for every face of a chunk (on CUDA all of them together)."""
        crop = self.model.crop
        images = []
        for seen, i in faces:
            rgb, box_square = seen.frame.rgb, square_from_box(*seen.faces[i].box)
            square = box_square
            if crop == "landmarks":
                square = landmark_square(Landmarks68.points(seen.shape(i)), box_square)
                state.box_crops += square is None
            with timer("crop"):
                if crop == "resize":
                    images.append(crop_face(rgb, None, "resize"))
                else:
                    images.append(crop_square(rgb, *(square or box_square)))
        with timer("crop"):
            batch = torch.stack([to_tensor(convert_colour(image, self.model.color_space)) for image in images])
        with timer("emonet"):
            out = infer(self.model.network, batch, self.device, self.model.amp)
        return {k: v.numpy() for k, v in out.items()}

    # - the rows' way out: decided, head, written in order -
    def _release(self, state: InputState, following: Following, streams: dict[int, SequenceStream],
                 boundary: int | None) -> None:
        """Release the rows of frames before `boundary` (None: all) whose people are decided (a frame's rows wait for
        the earliest undecided one), give them to the head, and fill in what the head gives."""
        tracker, head = following.tracker, self.model.head
        with following.timer("head"):
            waiting = [r.frame for r in state.rows if r.tracklet is not None and tracker.person_of(r.tracklet) is None]
            limit = min([*waiting, *([] if boundary is None else [boundary])], default=None)
            released = [r for r in state.rows if not r.released and (limit is None or r.frame < limit)]
            for row in released:
                row.released = True
                if row.tracklet is not None:
                    row.person = tracker.person_of(row.tracklet)
                    row.identity_distance = tracker.take_distance(row.tracklet, row.frame)
                    _fold_thumbnail(state, row.tracklet, row.person)
            with_person = [r for r in released if r.person is not None]
            if head is not None and head.context == 0:
                for row in with_person:  # one at a time: a face's values never depend on which others share its batch
                    value = head.predict(row.features[None], [{"clip": "x", "frame": str(row.frame)}], torch.device("cpu"))[0]
                    row.values = value.astype(np.float32)
                    row.raw = row.values if head.kind == "smooth" else None  # a smooth head that chose sigma 0
            elif head is not None:
                for row in with_person:
                    streams.setdefault(row.person, SequenceStream(head)).push(row.frame, row.features)
                pending = {(r.frame, r.person): r for r in state.rows if r.person is not None and r.values is None}
                for person, stream in streams.items():
                    for frame, value, raw in stream.ready(limit):
                        row = pending[frame, person]
                        row.values, row.raw = value.astype(np.float32), raw.astype(np.float32)

    def _write_part(self, parts_dir: Path, state: InputState, writer, timer: StageTimer) -> None:
        """Write the complete rows at the front of the queue (frames all of whose rows are known) as the next part."""
        with timer("write"):
            done = 0
            while done < len(state.rows) and state.rows[done].complete:
                done += 1
            while done and done < len(state.rows) and state.rows[done].frame == state.rows[done - 1].frame:
                done -= 1  # a frame's rows go out together
            if done:
                writer(parts_dir / part_name(state.parts), state.rows[:done])
                state.rows = state.rows[done:]
                state.parts += 1

    def _checkpoint(self, checkpoint: InputCheckpoint, state: InputState, following: Following,
                    streams: dict[int, SequenceStream], writer) -> None:
        self._write_part(checkpoint.parts_dir, state, writer, following.timer)
        numbers, arrays = following.state()
        for person, stream in streams.items():
            arrays[f"stream_{person}_frames"] = np.array(stream.frames, dtype=np.int64)
            arrays[f"stream_{person}_features"] = (np.stack(stream.features).astype(np.float32) if stream.features
                                                   else np.zeros((0, FEATURE_DIM), np.float32))
        more = {"following": numbers, "streams": {str(p): {"origin": s.origin, "block": s.block} for p, s in streams.items()}}
        checkpoint.save(state, more, arrays)


def _keep_best(state: InputState, key: str, row: Row, rgb: np.ndarray) -> None:
    """Keep the best-scored face (the larger among equal scores) of a tracklet or person as its thumbnail."""
    score = (round(row.score, 4), float((row.box[2] - row.box[0]) * (row.box[3] - row.box[1])))
    if score > state.best.get(key, (-1.0, 0.0)):
        state.best[key] = score
        state.thumbnails[key] = crop_square(rgb, *square_from_box(*row.box), size=THUMBNAIL_SIZE)


def _fold_thumbnail(state: InputState, tracklet: int, person: int) -> None:
    """A decided tracklet's thumbnail becomes its person's if it is better."""
    key = f"t{tracklet}"
    if key in state.best:
        score, image = state.best.pop(key), state.thumbnails.pop(key)
        if score > state.best.get(f"p{person}", (-1.0, 0.0)):
            state.best[f"p{person}"], state.thumbnails[f"p{person}"] = score, image


def part_name(k: int) -> str:
    return f"part_{k:05d}.csv"


def _fingerprint(source: Source) -> dict:
    """What identifies an input's content for resuming: its path, size and modification time."""
    stat = source.path.stat()
    return {"path": str(source.path), "size": stat.st_size if source.path.is_file() else None,
            "mtime_ns": stat.st_mtime_ns}


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

