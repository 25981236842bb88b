"""Valence and arousal on one's own videos and images, with the models this project trains (`predict.py`).

Models (`load_model`):
- EmoNet zero-shot (`--pretrained_path` alone): its valence and arousal on the AFEW-VA scale [-10, 10] (x 10,
  as the zero-shot evaluation scores them) and its expression probabilities;
- a head of train_emonet_features.py (`--model_path`): EmoNet's features of each face, in the colour space,
  crop and precision its features were extracted with, then the head; smooth and temporal heads run along
  each input's sequence of frames (frames without a face are gaps, placed by frame number);
- a fine-tuned EmoNet of train_emonet_hsv.py (`--model_path`): the network itself, in its colour space and
  crop.

Per frame: the face the sequence follows (`faces.FaceTracker`), then the crop the model was trained with
(`crop`): `landmarks`, EmoNet's crop from 68 points that EmoNet's own heatmaps give on a first square around
the detector's box (`alignment.py`; the AFEW-VA training crop used the dataset's annotated points);
`resize`, the whole frame; `box`, that first square itself (as EmoNet's own video demo crops).

Outputs in the run folder: `predictions.csv` (one row per frame of every input), `predictions.json` (the
model, its record and the detector, and per input its frames, faces, fps and any error), per input a PNG of
valence and arousal over time and, with `render`, an annotated MP4 of each video. Each input's files are
written atomically and its `inputs/<name>.json` last: a rerun skips finished inputs. `prediction_run.json`
records the model the folder was made with; another model is refused there.
"""
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .alignment import landmarks_in_frame
from .checkpoint import load_emonet
from .colour import DEFAULT_COLOR_SPACE, convert_colour
from .constants import LABEL_MAX, LABEL_MIN, LABEL_SCALE
from .crop import DEFAULT_CROP, crop_face, crop_square, face_box, square_from_box
from .data import to_tensor
from .device import amp_enabled
from .errors import CheckpointError, EmoNetError
from .faces import DETECTOR_NAME, FaceDetector, FaceTracker, detector_version
from .heads import HeadPredictor, head_record
from .inference import COMPILED_SUFFIX, compile_model, infer, prepare
from .io import save_figure, sha256_file, write_json, write_text
from .media import Source, video_writer
from .runs import check_kind
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)

# The expression classes of the released checkpoints, in the order of their logits (AffectNet's labels; the
# 5-class model keeps AffectNet's classes 0, 1, 2, 3 and 6).
EXPRESSIONS = {8: ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
               5: ("neutral", "happy", "sad", "surprise", "anger")}
CROPS = ("model", "landmarks", "box", "resize")
RUN_FILE = "prediction_run.json"
SUMMARY_FILE = "predictions.json"
CSV_FILE = "predictions.csv"
INPUTS_DIR = "inputs"
BASE_COLUMNS = ("source", "frame", "time_s", "face", "score", "x1", "y1", "x2", "y2", "valence", "arousal")
# A landmark square is implausible outside these multiples of the detector box's square (`landmark_square`).
LANDMARK_SIDE_RATIO = (0.5, 2.0)
# Stages timed per input (`SourceResult.seconds`), for benchmarks/bench_predict.py.
STAGES = ("decode", "detect", "landmarks", "crop", "emonet", "head")


@dataclass
class PredictionModel:
    """What predicts: the network run on each face crop, the one whose heatmaps give landmarks, an optional
    head on the features, and how the input is made (colour space, crop, precision)."""

    kind: str  # zero_shot, feature_head or emonet (fine-tuned)
    network: torch.nn.Module
    aligner: torch.nn.Module
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
    pretrained_sha = sha256_file(pretrained_path) if Path(pretrained_path).is_file() else None
    aligner, _ = load_emonet(pretrained_path, device)
    ckpt = load_training_checkpoint(model_path, None) if model_path else None
    settings = (ckpt or {}).get("settings", {})
    if ckpt is None:
        kind, network, head, record_precision = "zero_shot", aligner, None, None
        recorded = {"color_space": DEFAULT_COLOR_SPACE, "crop": DEFAULT_CROP}
    elif ckpt["model_type"] == "feature_head":
        kind, network, head = "feature_head", aligner, HeadPredictor.from_checkpoint(ckpt)
        record_precision = settings.get("precision")
        recorded = {"color_space": settings.get("color_space"), "crop": settings.get("crop")}
    else:
        kind, head = "emonet", None
        network, _ = load_emonet(model_path, device)
        record_precision = "bf16" if (ckpt.get("args") or {}).get("amp") else "fp32"
        recorded = {"color_space": settings.get("color_space"), "crop": settings.get("crop")}
    trained_from = settings.get("pretrained_sha256")
    if trained_from and trained_from != pretrained_sha:
        raise CheckpointError(f"{model_path} was made with the EmoNet checkpoint sha256 {trained_from[:12]}..., but "
                              f"--pretrained_path {pretrained_path} is {pretrained_sha[:12]}...; pass the checkpoint it "
                              "was made with")
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
    shared = aligner is network  # zero-shot and heads: one network gives both the landmarks and the outputs
    network = prepare(network)
    aligner = network if shared else prepare(aligner)
    if use_compile:
        network = compile_model(network, device, use_amp, 1)[0]
        aligner = network if shared else compile_model(aligner, device, use_amp, 1)[0]
    precision = ("bf16" if use_amp else "fp32") + (COMPILED_SUFFIX if use_compile else "")
    identity = {"model": kind, "model_path": str(Path(model_path).resolve()) if model_path else None,
                "model_sha256": sha256_file(model_path) if model_path else None,
                "pretrained_path": str(Path(pretrained_path).resolve()), "pretrained_sha256": pretrained_sha,
                "color_space": recorded["color_space"], "crop": chosen_crop, "precision": precision,
                "head": head_record(ckpt) if head else None,
                "detector": {"name": DETECTOR_NAME, "version": detector_version()}}
    return PredictionModel(kind, network, aligner, head, recorded["color_space"], chosen_crop, use_amp, identity)


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


# -- one input ----------------------------------------------------------------------------------------------------
@dataclass
class SourceResult:
    """What one input gave: one row per frame, and where the time went."""

    rows: pd.DataFrame
    fps: float | None
    frames: int
    faces: int
    unreadable: list[str]
    box_crops: int  # landmark crop: frames whose landmarks did not fit the face (cropped around the box instead)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


class Predictor:
    """Runs a `PredictionModel` over inputs, one face per frame."""

    def __init__(self, model: PredictionModel, device: torch.device, batch_size: int, progress: bool):
        self.model, self.device, self.batch_size, self.progress = model, device, batch_size, progress
        self.detector = FaceDetector(device)

    def run(self, source: Source) -> SourceResult:
        sequence = source.open()
        tracker = FaceTracker(sequence.fps)
        seconds = dict.fromkeys(STAGES, 0.0)
        records, unreadable = [], []
        frames = _timed(sequence.frames(), seconds, "decode")
        with torch.inference_mode(), tqdm(total=sequence.expected, unit="frame", desc=source.path.name,
                                          disable=not self.progress) as bar:
            while chunk := list(islice(frames, self.batch_size)):
                records += self._chunk(chunk, tracker, seconds, unreadable)
                bar.update(len(chunk))
        rows = self._rows(source, records, seconds)
        replaced = sum(bool(r.get("box_crop")) for r in records)
        if replaced:
            logger.warning("%s: in %d of %d frames with a face, EmoNet's landmarks did not fit the detected face and the "
                           "box's square was cropped instead", source.path, replaced, int(rows["face"].sum()))
        return SourceResult(rows, sequence.fps, len(records), int(rows["face"].sum()), unreadable, replaced, seconds)

    def _chunk(self, chunk, tracker: FaceTracker, seconds: dict, unreadable: list[str]) -> list[dict]:
        records = []
        for frame in chunk:
            if frame.rgb is None:
                unreadable.append(frame.error)
                logger.warning("%s", frame.error)
                records.append({"frame": frame, "face": None})
                continue
            start = time.perf_counter()
            face = tracker.follow(self.detector(frame.rgb))
            seconds["detect"] += time.perf_counter() - start
            records.append({"frame": frame, "face": face})
        found = [r for r in records if r["face"] is not None]
        if found:
            crops = self._crops(found, seconds)
            start = time.perf_counter()
            out = infer(self.model.network, crops, self.device, self.model.amp)
            seconds["emonet"] += time.perf_counter() - start
            for i, record in enumerate(found):
                record["outputs"] = {k: v[i].numpy() for k, v in out.items()}
        for record in records:  # the frames' pixels are not kept: a long video holds only its outputs
            record["frame"] = (record["frame"].index, record["frame"].time_s)
        return records

    def _crops(self, found: list[dict], seconds: dict) -> torch.Tensor:
        """The model's input for each face: its crop (landmarks, box or resize), in its colour space."""
        crop = self.model.crop
        start = time.perf_counter()
        squares = [square_from_box(*r["face"].box) for r in found]
        if crop == "landmarks":
            first = torch.stack([to_tensor(convert_colour(crop_square(r["frame"].rgb, *sq), "rgb"))
                                 for r, sq in zip(found, squares, strict=True)])
            seconds["crop"] += time.perf_counter() - start
            start = time.perf_counter()
            heatmaps = infer(self.model.aligner, first, self.device, self.model.amp, keys=("heatmap",))["heatmap"].numpy()
            squares = [landmark_square(landmarks_in_frame(h, *sq), sq) for sq, h in zip(squares, heatmaps, strict=True)]
            seconds["landmarks"] += time.perf_counter() - start
            start = time.perf_counter()
            for r, sq in zip(found, squares, strict=True):
                r["box_crop"] = sq is None  # implausible landmarks: the box's square instead
            images = [crop_square(r["frame"].rgb, *(sq or square_from_box(*r["face"].box)))
                      for r, sq in zip(found, squares, strict=True)]
        elif crop == "box":
            images = [crop_square(r["frame"].rgb, *sq) for r, sq in zip(found, squares, strict=True)]
        else:
            images = [crop_face(r["frame"].rgb, None, "resize") for r in found]
        batch = torch.stack([to_tensor(convert_colour(image, self.model.color_space)) for image in images])
        seconds["crop"] += time.perf_counter() - start
        return batch

    def _rows(self, source: Source, records: list[dict], seconds: dict) -> pd.DataFrame:
        """One row per frame (BASE_COLUMNS, the smooth head's raw values, expression probabilities)."""
        model = self.model
        rows = pd.DataFrame({"source": str(source.path), "frame": [r["frame"][0] for r in records],
                             "time_s": [r["frame"][1] for r in records],
                             "face": [int(r["face"] is not None) for r in records]})
        found = [i for i, r in enumerate(records) if r["face"] is not None]
        boxes = np.full((len(records), 5), np.nan)
        for i in found:
            boxes[i] = [records[i]["face"].score, *records[i]["face"].box]
        for j, name in enumerate(("score", "x1", "y1", "x2", "y2")):
            rows[name] = boxes[:, j]
        values = np.full((len(records), 2), np.nan)
        raw = None
        if found:
            out = {k: np.stack([records[i]["outputs"][k] for i in found]) for k in records[found[0]]["outputs"]}
            start = time.perf_counter()
            if model.head is not None:
                samples = [{"clip": source.name, "frame": str(records[i]["frame"][0])} for i in found]
                raw = model.head.raw(out["features"], samples, torch.device("cpu"))
                values[found] = model.head.predict(out["features"], samples, torch.device("cpu"))
            else:
                values[found] = np.stack([out["valence"], out["arousal"]], axis=1) * LABEL_SCALE
            seconds["head"] += time.perf_counter() - start
        rows["valence"], rows["arousal"] = values[:, 0], values[:, 1]
        if model.head is not None and model.head.kind == "smooth":
            unsmoothed = np.full((len(records), 2), np.nan)
            if raw is not None:
                unsmoothed[found] = raw
            rows["valence_raw"], rows["arousal_raw"] = unsmoothed[:, 0], unsmoothed[:, 1]
        if model.expressions:
            probabilities = np.full((len(records), len(model.expressions)), np.nan)
            if found:
                logits = torch.from_numpy(np.stack([records[i]["outputs"]["expression"] for i in found]))
                probabilities[found] = torch.softmax(logits, dim=1).numpy()
            for j, name in enumerate(model.expressions):
                rows[f"p_{name}"] = probabilities[:, j]
        return rows


def landmark_square(landmarks: np.ndarray, box_square: tuple[float, float, float]) -> tuple[float, float, float] | None:
    """EmoNet's crop square from the 68 landmarks, or None when they cannot be those of the detected face: the
    square's side outside [0.5, 2] times the box's, or its centre more than half the box's side away (EmoNet's
    heatmaps on a face too small, turned away or occluded). The caller then crops around the box."""
    square = face_box(landmarks)
    ratio = square[2] / box_square[2]
    offset = float(np.hypot(square[0] - box_square[0], square[1] - box_square[1]))
    return square if LANDMARK_SIDE_RATIO[0] <= ratio <= LANDMARK_SIDE_RATIO[1] and offset <= box_square[2] / 2 else None


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
    """Claim `output_dir` for this model: refuse a folder made with another model (or another kind of run)."""
    check_kind(output_dir, "prediction")
    path = output_dir / RUN_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [f"{k} {before.get(k)!r} -> {identity.get(k)!r}" for k in identity if before.get(k) != identity.get(k)]
        if changed and not overwrite:
            raise EmoNetError(f"{output_dir} holds predictions of another model ({'; '.join(changed)}); choose another "
                              "--output_dir, or pass --overwrite to replace them")
        if changed:
            for stale in (output_dir / INPUTS_DIR).glob("*"):
                stale.unlink()
    write_json(path, identity)


def input_files(output_dir: Path, source: Source) -> dict[str, Path]:
    return {"csv": output_dir / INPUTS_DIR / f"{source.name}.csv", "done": output_dir / INPUTS_DIR / f"{source.name}.json",
            "png": output_dir / f"{source.name}.png", "mp4": output_dir / f"{source.name}.mp4"}


def finished(output_dir: Path, source: Source, render: bool) -> dict | None:
    """The summary of an input a former run finished (None when it must be predicted, or rendered, again)."""
    files = input_files(output_dir, source)
    if not files["done"].is_file():
        return None
    entry = json.loads(files["done"].read_text())
    if render and source.kind == "video" and not files["mp4"].is_file():
        return None
    return entry


def write_input(output_dir: Path, source: Source, result: SourceResult, model: PredictionModel, render: bool) -> dict:
    """Every file of one input; its summary last (the input is then finished)."""
    files = input_files(output_dir, source)
    write_text(files["csv"], result.rows.to_csv(index=False, float_format=lambda v: repr(float(v))))
    made = ["csv"]
    if result.frames > 1:
        plot_sequence(result.rows, model, source, files["png"])
        made.append("png")
    if render and source.kind == "video":
        render_video(source, result.rows, result.fps, files["mp4"])
        made.append("mp4")
    outputs = {k: files[k].relative_to(output_dir).as_posix() for k in made}  # relative: the folder may move
    entry = {"input": str(source.path), "name": source.name, "kind": source.kind, "frames": result.frames,
             "faces": result.faces, "fps": result.fps, "unreadable_frames": result.unreadable,
             "box_crops_for_implausible_landmarks": result.box_crops, "error": None,
             "seconds": result.seconds, "outputs": outputs}
    write_json(files["done"], entry)
    return entry


def write_summary(output_dir: Path, identity: dict, entries: list[dict]) -> None:
    """predictions.csv (every finished input's rows, in input order) and predictions.json."""
    tables = [pd.read_csv(output_dir / e["outputs"]["csv"]) for e in entries if not e["error"]]
    if tables:
        combined = pd.concat(tables, ignore_index=True)
        write_text(output_dir / CSV_FILE, combined.to_csv(index=False, float_format=lambda v: repr(float(v))))
    write_json(output_dir / SUMMARY_FILE, {**identity, "inputs": entries})


# -- what a person looks at ---------------------------------------------------------------------------------------
def plot_sequence(rows: pd.DataFrame, model: PredictionModel, source: Source, path: Path) -> None:
    """Valence and arousal over time (or frame), frames without a face shaded and left as gaps; a smooth head's
    values before smoothing as a thin line under the smoothed one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = bool(rows["time_s"].notna().all())
    x, xlabel = (rows["time_s"], "time (s)") if timed else (rows["frame"], "frame")
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, layout="constrained")
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    missing = rows["face"].to_numpy() == 0
    for ax, dim, colour in zip(axes, ("valence", "arousal"), ("tab:blue", "tab:red"), strict=True):
        if f"{dim}_raw" in rows:
            ax.plot(x, rows[f"{dim}_raw"], color=colour, lw=0.8, alpha=0.45, label="frame head (before smoothing)")
            label = f"smoothed along the video (sigma {model.head.sigma:g} frames)"
        else:
            label = dim
        ax.plot(x, rows[dim], color=colour, lw=1.8, marker="o" if len(x) <= 60 else None, ms=3, label=label)
        for start, stop in _runs(missing):
            ax.axvspan(x.iloc[start] - step / 2, x.iloc[stop - 1] + step / 2, color="0.85", lw=0, zorder=0)
        ax.axhline(0, color="k", lw=0.6)
        ax.set(ylabel=dim, ylim=(min(LABEL_MIN, np.nanmin(rows[dim], initial=0)) - 0.5,
                                  max(LABEL_MAX, np.nanmax(rows[dim], initial=0)) + 0.5))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[-1].set_xlabel(xlabel + " (grey: no face found)")
    what = {"zero_shot": "EmoNet zero-shot", "feature_head": f"{model.head.kind if model.head else ''} head",
            "emonet": "fine-tuned EmoNet"}[model.kind]
    fig.suptitle(f"{source.path.name}: {what}, {model.color_space} input, {model.crop} crop; "
                 f"face in {int(rows['face'].sum())} of {len(rows)} frames", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


# A video whose header gives no frame rate is rendered at this one.
DEFAULT_RENDER_FPS = 25.0
# The valence-arousal plane drawn in a corner of a rendered frame, in pixels.
PLANE_SIZE = 120
PLANE_MARGIN = 12


def annotate(rgb: np.ndarray, row: pd.Series) -> np.ndarray:
    """One rendered frame: the face's box and values, and a marker on the valence-arousal plane."""
    out = rgb.copy()
    h, w = out.shape[:2]
    x0, y0 = w - PLANE_SIZE - PLANE_MARGIN, PLANE_MARGIN
    centre = (x0 + PLANE_SIZE // 2, y0 + PLANE_SIZE // 2)
    panel = out[y0 : y0 + PLANE_SIZE, x0 : x0 + PLANE_SIZE]
    panel[:] = (panel * 0.35).astype(out.dtype)  # darkened, so that axes and marker read on any background
    cv2.rectangle(out, (x0, y0), (x0 + PLANE_SIZE, y0 + PLANE_SIZE), (255, 255, 255), 1)
    cv2.line(out, (x0, centre[1]), (x0 + PLANE_SIZE, centre[1]), (200, 200, 200), 1)
    cv2.line(out, (centre[0], y0), (centre[0], y0 + PLANE_SIZE), (200, 200, 200), 1)
    cv2.putText(out, "valence", (x0 + PLANE_SIZE - 46, centre[1] + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                cv2.LINE_AA)
    cv2.putText(out, "arousal", (centre[0] + 4, y0 + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    if row["face"]:
        box = [int(round(row[k])) for k in ("x1", "y1", "x2", "y2")]
        cv2.rectangle(out, box[:2], box[2:], (0, 255, 0), 2)
        _caption(out, f"valence {row['valence']:+.1f}   arousal {row['arousal']:+.1f}", (255, 255, 0))
        v, a = (np.clip(row[d] / LABEL_MAX, -1, 1) for d in ("valence", "arousal"))
        marker = (int(centre[0] + v * PLANE_SIZE / 2), int(centre[1] - a * PLANE_SIZE / 2))
        cv2.circle(out, marker, 5, (255, 60, 60), -1, cv2.LINE_AA)
    else:
        _caption(out, "no face found", (255, 120, 120))
    return out


def _caption(image: np.ndarray, text: str, colour: tuple[int, int, int]) -> None:
    """`text` at the frame's bottom left, on a dark band so that it reads on any background."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    x, y = PLANE_MARGIN, image.shape[0] - PLANE_MARGIN
    cv2.rectangle(image, (x - 4, y - height - 6), (x + width + 4, y + baseline + 2), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 1, cv2.LINE_AA)


def render_video(source: Source, rows: pd.DataFrame, fps: float | None, path: Path) -> None:
    """The video again, each frame annotated (`annotate`), as an MP4 at the video's frame rate."""
    frames = source.open().frames()
    first = next(frames)
    with video_writer(path, fps or DEFAULT_RENDER_FPS, (first.rgb.shape[1], first.rgb.shape[0])) as write:
        for frame, (_, row) in zip(chain([first], frames), rows.iterrows(), strict=False):
            write(annotate(frame.rgb, row))
