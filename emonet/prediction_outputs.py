"""What a prediction run writes (`predict.py`): per input its rows, people, thumbnails, time plot and rendered video
or images; per run predictions.csv, people.csv, predictions.json and report.html.

Per input `<name>` (the file's name and 8 hex digits of its path, `media.discover`):
- `inputs/<name>.csv`: its rows (`ROW_COLUMNS`, see `columns`), in frame order, one per (frame, person) and one per
  frame without anybody (empty person, `status` saying why: no face, face not followed, unreadable);
- `<name>_person<k>.jpg`: person k's best-scored face; `<name>.png`: valence and arousal over time, one line per
  person in the colour of their box in the rendered video;
- with --render: `<name>.mp4` (MPEG-4 Part 2, for video players) and `<name>.webm` (VP8, which browsers play, for
  report.html) for a video; `<name>_annotated.jpg` for an image, `<name>_annotated/` for a folder of images;
- `inputs/<name>.json`, written last: its summary (frames, people, files, time per stage); an input that has it
  is finished and a rerun skips it.
Per run: `predictions.csv` (every finished input's rows), `people.csv` (one row per input and person: time on
screen, mean, median, SD, min and max of valence and arousal, the share of their frames in each quadrant, and for
zero-shot the mean expression probabilities), `predictions.json` (the model, detector, options and every input's
summary) and `report.html` (per input the people with thumbnails, the time plot and the rendered video; it opens
from the folder, offline).
"""
import html
import json
import logging
import shutil
import textwrap
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .constants import LABEL_MAX, LABEL_MIN
from .io import atomic_open, atomic_path, save_figure, write_json, write_text
from .media import Source, video_writer
from .prediction import FACE, INPUTS_DIR, SUMMARY_FILE, InputResult, PredictionModel
from .prediction_state import Row
from .text import number, plural

logger = logging.getLogger(__name__)

CSV_FILE = "predictions.csv"
PEOPLE_FILE = "people.csv"
REPORT_FILE = "report.html"
ROW_COLUMNS = ("source", "file", "frame", "time_s", "shot", "person", "identity_distance", "status", "score", "x1", "y1",
               "x2", "y2", "valence", "arousal")
# How a person's id was made (people.PeopleTracker.summary), in people.csv.
IDENTITY_COLUMNS = ("tracklets", "shots", "weakest_link", "nearest_person", "nearest_person_distance")
DIMENSIONS = ("valence", "arousal")
# One colour per person (RGB), cycling: the same in the time plot, the rendered video and the report.
PERSON_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                  (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
# Quadrants of the valence-arousal plane: (name, valence >= 0, arousal >= 0); 0 counts as positive.
QUADRANTS = (("share_vpos_apos", True, True), ("share_vneg_apos", False, True), ("share_vneg_aneg", False, False),
             ("share_vpos_aneg", True, False))
# Beyond this many points per person a time plot shows means over equal time bins.
MAX_PLOT_POINTS = 4000
# A folder's plot names its images on the axis up to this many.
MAX_NAMED_STILLS = 30
# The panel beside a rendered frame with the valence-arousal plane, in pixels (its margin; markers beyond the scale
# are spread along the plane's edge this far apart); frame rate of a video without one.
PANEL_WIDTH = 180
PLANE_MARGIN = 12
CLAMPED_SPACING = 11
DEFAULT_RENDER_FPS = 25.0
BROWSER_FOURCC = "VP80"


def person_colour(person: int) -> tuple[int, int, int]:
    return PERSON_COLOURS[(int(person) - 1) % len(PERSON_COLOURS)]


def person_line(person: int) -> str:
    """The time plot's line style: people beyond the colours' number share a colour with someone, not a style."""
    return ("-", "--", ":", "-.")[(int(person) - 1) // len(PERSON_COLOURS) % 4]


def columns(model: PredictionModel) -> list[str]:
    """predictions.csv's columns for this model: the smooth head adds its values before smoothing, zero-shot its
    expression probabilities."""
    extra = ["valence_raw", "arousal_raw"] if model.head is not None and model.head.kind == "smooth" else []
    return [*ROW_COLUMNS, *extra, *(f"p_{e}" for e in model.expressions)]


def write_rows(path: Path, rows: list[Row], model: PredictionModel, source: Source) -> None:
    """One part of an input's rows (see `columns`)."""
    def value(row: Row, key: str, j: int) -> float:
        array = getattr(row, key)
        return float(array[j]) if array is not None else np.nan

    table = {"source": str(source.path), "file": [r.file for r in rows], "frame": [r.frame for r in rows],
             "time_s": [r.time_s for r in rows], "shot": [r.shot for r in rows],
             "person": pd.array([r.person for r in rows], dtype="Int64"),
             "identity_distance": [np.nan if r.identity_distance is None else r.identity_distance for r in rows],
             "status": [r.status for r in rows], "score": [r.score for r in rows]}
    for j, name in enumerate(("x1", "y1", "x2", "y2")):
        table[name] = [value(r, "box", j) for r in rows]
    for j, d in enumerate(DIMENSIONS):
        table[d] = [value(r, "values", j) for r in rows]
    if "valence_raw" in columns(model):
        for j, d in enumerate(DIMENSIONS):
            table[f"{d}_raw"] = [value(r, "raw", j) for r in rows]
    if model.expressions:
        logits = np.array([r.expression if r.expression is not None else np.full(len(model.expressions), np.nan)
                           for r in rows], dtype=np.float64)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        for j, e in enumerate(model.expressions):
            table[f"p_{e}"] = probabilities[:, j]
    write_text(path, pd.DataFrame(table, columns=columns(model)).to_csv(index=False, float_format=lambda v: repr(float(v))))


def read_rows(path: Path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"person": "Int64", "file": str, "status": str}, keep_default_na=False,
                       na_values=[""], **kwargs)


def input_files(output_dir: Path, source: Source) -> dict[str, Path]:
    name = source.name
    return {"csv": output_dir / INPUTS_DIR / f"{name}.csv", "done": output_dir / INPUTS_DIR / f"{name}.json",
            "parts": output_dir / INPUTS_DIR / f"{name}.parts", "png": output_dir / f"{name}.png",
            "mp4": output_dir / f"{name}.mp4", "webm": output_dir / f"{name}.webm",
            "image": output_dir / f"{name}_annotated.jpg", "folder": output_dir / f"{name}_annotated"}


def rendered(source: Source) -> tuple[str, ...]:
    """The files --render writes for an input."""
    return {"video": ("mp4", "webm"), "image": ("image",), "folder": ("folder",)}.get(source.kind, ())


def finished(output_dir: Path, source: Source, render: bool) -> dict | None:
    """The summary of an input a former run finished (None when it must be predicted, or rendered, again)."""
    files = input_files(output_dir, source)
    if not files["done"].is_file():
        return None
    entry = json.loads(files["done"].read_text())
    if render and any(not files[k].exists() for k in rendered(source)):
        return None
    return entry


def finish_input(output_dir: Path, source: Source, result: InputResult, model: PredictionModel, render: bool) -> dict:
    """Every file of one input from its parts; its summary last (the input is then finished)."""
    files = input_files(output_dir, source)
    with atomic_open(files["csv"], "wb") as out:  # the parts one after the other, each one's header once
        for k, part in enumerate(result.parts):
            with open(part, "rb") as f:
                header = f.readline()
                if k == 0:
                    out.write(header)
                shutil.copyfileobj(f, out)
    rows = read_rows(files["csv"])
    people = people_table(rows, result, model)
    thumbnails = {}
    for person, image in sorted(result.thumbnails.items()):
        path = output_dir / f"{source.name}_person{person}.jpg"
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        thumbnails[person] = path.name
    made = {"csv": files["csv"]}
    if result.analysed > 1:
        plot_people(rows, model, source, files["png"])
        made["png"] = files["png"]
    if render:
        made |= render_input(source, files, result)
    warnings = [result.truncated] if result.truncated else []
    outside = int(((rows[list(DIMENSIONS)].abs() > LABEL_MAX) & rows[list(DIMENSIONS)].notna()).any(axis=1).sum())
    if outside:
        warnings.append(f"{plural(outside, 'row')} with valence or arousal outside AFEW-VA's scale [{LABEL_MIN:g}, "
                        f"{LABEL_MAX:g}]" + (" (EmoNet's stand-in weights)" if model.notes.get("stand_in_weights") else ""))
        logger.warning("%s: %s", source.path, warnings[-1])
    entry = {"input": str(source.path), "name": source.name, "kind": source.kind, "frames": result.frames,
             "analysed_frames": result.analysed, "sample_fps": result.sample_fps, "faces": result.faces,
             "people": [dict(row, thumbnail=thumbnails.get(row["person"])) for row in people],
             "shots": result.shots, "fps": result.fps, "unreadable_frames": result.unreadable,
             "complete": result.truncated is None, "warnings": warnings, "values_outside_scale": outside,
             "box_crops_for_implausible_landmarks": result.box_crops, "identity_descriptions": result.descriptions,
             "error": None, "seconds": result.seconds,
             "outputs": {k: p.relative_to(output_dir).as_posix() for k, p in made.items()}}  # the folder may move
    write_json(files["done"], entry)
    shutil.rmtree(files["parts"], ignore_errors=True)
    return entry


# -- people ---------------------------------------------------------------------------------------------------------
def people_table(rows: pd.DataFrame, result: InputResult, model: PredictionModel) -> list[dict]:
    """One dict per person of an input (people.csv's rows, see the module docstring)."""
    faces = rows[rows["status"] == FACE]
    # An analysed frame stands for the time until the next: 1 / fps, or 1 / --sample_fps when fewer are analysed.
    frame_seconds = 1.0 / min(result.fps, result.sample_fps or result.fps) if result.fps else None
    out = []
    for person, own in faces.groupby("person", sort=True):
        identity = result.identities.get(int(person), {})
        entry = {"person": int(person), **{k: identity.get(k) for k in IDENTITY_COLUMNS}, "frames": len(own),
                 "seconds": None if frame_seconds is None else len(own) * frame_seconds,
                 "first_frame": int(own["frame"].min()), "last_frame": int(own["frame"].max()),
                 "first_s": _time(own["time_s"].min()), "last_s": _time(own["time_s"].max())}
        for d in DIMENSIONS:
            values = own[d].to_numpy(dtype=np.float64)
            entry |= {f"{d}_mean": float(values.mean()), f"{d}_median": float(np.median(values)),
                      f"{d}_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                      f"{d}_min": float(values.min()), f"{d}_max": float(values.max())}
        v, a = own["valence"].to_numpy() >= 0, own["arousal"].to_numpy() >= 0
        for name, v_pos, a_pos in QUADRANTS:
            entry[name] = float(np.mean((v == v_pos) & (a == a_pos)))
        for e in model.expressions:
            entry[f"mean_p_{e}"] = float(own[f"p_{e}"].mean())
        out.append(entry)
    return out


def _time(value) -> float | None:
    return None if pd.isna(value) else float(value)


# -- the time plot ------------------------------------------------------------------------------------------------------
def plot_people(rows: pd.DataFrame, model: PredictionModel, source: Source, path: Path):
    """Valence and arousal over time (or frame), one line per person in their colour, broken where they are not seen,
    shot cuts dashed; a folder's photos as points named by file; frames without anybody shaded; a smooth head's values
    before smoothing as a thin line under each. Returns the (closed) figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = bool(rows["time_s"].notna().all())
    stills = source.kind != "video"  # a folder's photos are separate pictures: points, no lines between them
    xname, xlabel = ("time_s", "time (s)") if timed else ("frame", "image" if stills else "frame")
    frames = rows.drop_duplicates("frame")
    x_all = frames[xname].to_numpy(dtype=np.float64)
    step = float(np.median(np.diff(x_all))) if len(x_all) > 1 else 1.0
    faces = rows[rows["status"] == FACE]
    cuts = frames[frames["shot"].diff() > 0][xname].to_numpy(dtype=np.float64) if not stills else np.array([])
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.8), sharex=True, layout="constrained")
    binned = False
    for ax, d in zip(axes, DIMENSIONS, strict=True):
        for person, own in faces.groupby("person", sort=True):
            x, y = own[xname].to_numpy(dtype=np.float64), own[d].to_numpy(dtype=np.float64)
            raw = own[f"{d}_raw"].to_numpy(dtype=np.float64) if f"{d}_raw" in own else None
            if len(x) > MAX_PLOT_POINTS:
                (x, y, raw), binned = _bin_means(x, y, raw), True
            colour = np.array(person_colour(person)) / 255
            gaps = np.flatnonzero(np.diff(x) > 1.5 * step * (len(own) / len(x))) + 1  # absent: the line breaks
            x, y = np.insert(x, gaps, np.nan), np.insert(y, gaps, np.nan)
            if raw is not None:
                ax.plot(x, np.insert(raw, gaps, np.nan), color=colour, lw=0.7, alpha=0.4)
            ax.plot(x, y, color=colour, lw=0 if stills else 1.6, marker="o" if stills or len(x) <= 60 else None,
                    ms=6 if stills else 3, label=f"person {person}", ls=person_line(person))
        for status, shade in (("no face", "0.88"), ("face not followed", "0.8"), ("unreadable", "mistyrose")):
            for start, stop in _runs((frames["status"] == status).to_numpy()):
                ax.axvspan(x_all[start] - step / 2, x_all[stop - 1] + step / 2, color=shade, lw=0, zorder=0)
        for k, cut in enumerate(cuts):
            ax.axvline(cut - step / 2, color="k", ls="--", lw=0.8, label="shot cut" if k == 0 else None)
        ax.axhline(0, color="k", lw=0.6)
        values = np.asarray(faces[d], dtype=float)
        values = values[np.isfinite(values)]  # none where nobody was found: the label scale alone
        lo = min(LABEL_MIN, float(np.min(values, initial=0)))
        hi = max(LABEL_MAX, float(np.max(values, initial=0)))
        pad = max(0.5, 0.04 * (hi - lo))  # no point on the frame's edge, whatever the range
        ax.set(ylabel=d, ylim=(lo - pad, hi + pad))
        ax.grid(alpha=0.3)
    if stills:  # whole images on the axis: each tick one picture, named where there are few
        axes[-1].set_xticks(frames["frame"].to_numpy())
        named = len(frames) <= MAX_NAMED_STILLS and frames["file"].astype(bool).all()
        axes[-1].set_xticklabels(frames["file"] if named else frames["frame"], rotation=30 if named else 0,
                                 ha="right" if named else "center", fontsize=8)
        axes[-1].set_xlim(x_all[0] - 0.5, x_all[-1] + 0.5)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    shaded = [name for name, status in (("grey: nobody", "no face"), ("dark grey: face not followed", "face not followed"),
                                        ("pink: unreadable", "unreadable")) if (frames["status"] == status).any()]
    axes[-1].set_xlabel(xlabel + (f" ({'; '.join(shaded)})" if shaded else "")
                        + ("; long lines: means over equal time bins" if binned else ""))
    what = {"zero_shot": "EmoNet zero-shot", "feature_head": f"{model.head.kind if model.head else ''} head",
            "emonet": "fine-tuned EmoNet"}[model.kind]
    smooth = (f", thin lines before smoothing (sigma {number(model.head.sigma, 1)} frames)"
              if model.head is not None and model.head.kind == "smooth" else "")
    fig.suptitle(textwrap.fill(f"{source.path.name}: {what}, {model.color_space} input, {model.crop} crop{smooth}; "
                 f"{plural(faces['person'].nunique(), 'person', 'people')} in "
                 f"{plural(len(frames), 'image' if stills else 'frame')}"
                 + ("; EmoNet's stand-in weights: the values say nothing about faces" if model.notes.get("stand_in_weights")
                    else ""), 120), fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def _bin_means(x: np.ndarray, y: np.ndarray, raw: np.ndarray | None):
    edges = np.linspace(x[0], x[-1], MAX_PLOT_POINTS + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, MAX_PLOT_POINTS - 1)
    counts = np.bincount(which, minlength=MAX_PLOT_POINTS)
    present = counts > 0

    def mean(v):
        return None if v is None else (np.bincount(which, weights=v, minlength=MAX_PLOT_POINTS)[present] / counts[present])

    return mean(x), mean(y), mean(raw)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


# -- rendering ----------------------------------------------------------------------------------------------------------
def annotate(rgb: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    """One rendered frame: the picture with each face's box in its person's colour and the person and values above it,
    and beside it (never over a face) a panel with the valence-arousal plane, a marker per person labelled with the
    person (a value beyond the scale is drawn hollow at the plane's edge, moved along it so that none hides another),
    and why a frame has nobody."""
    out = rgb.copy()
    h, w = out.shape[:2]
    faces = rows[rows["status"] == FACE]
    taken: list = []
    for _, row in faces.iterrows():
        colour = person_colour(row["person"])
        box = [int(round(row[k])) for k in ("x1", "y1", "x2", "y2")]
        cv2.rectangle(out, box[:2], box[2:], colour, 2)
        text = f"person {row['person']}"
        if not np.isnan(row["valence"]):
            text += f"  v {number(row['valence'], 1, sign=True)}  a {number(row['arousal'], 1, sign=True)}"
        _label(out, text, box, colour, taken)
    panel = np.full((h, PANEL_WIDTH, 3), 24, np.uint8)
    size = min(PANEL_WIDTH - 2 * PLANE_MARGIN, h - 2 * PLANE_MARGIN - 30)
    x0, y0 = (PANEL_WIDTH - size) // 2, PLANE_MARGIN + 14
    centre = (x0 + size // 2, y0 + size // 2)
    cv2.rectangle(panel, (x0, y0), (x0 + size, y0 + size), (255, 255, 255), 1)
    cv2.line(panel, (x0, centre[1]), (x0 + size, centre[1]), (150, 150, 150), 1)
    cv2.line(panel, (centre[0], y0), (centre[0], y0 + size), (150, 150, 150), 1)
    cv2.putText(panel, "valence", (x0 + size - 44, centre[1] + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                cv2.LINE_AA)
    cv2.putText(panel, "arousal", (centre[0] + 4, y0 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    clamped = 0
    for _, row in faces.iterrows():
        if np.isnan(row["valence"]):
            continue
        colour = person_colour(row["person"])
        v, a = (float(row[d]) / LABEL_MAX for d in DIMENSIONS)
        inside = abs(v) <= 1 and abs(a) <= 1
        point = np.array([centre[0] + np.clip(v, -1, 1) * size / 2, centre[1] - np.clip(a, -1, 1) * size / 2])
        if not inside:  # moved along the edge by the markers clamped before it
            along = np.array([0.0, 1.0]) if abs(v) > 1 else np.array([1.0, 0.0])
            point = np.clip(point + along * CLAMPED_SPACING * clamped, [x0, y0], [x0 + size, y0 + size])
            clamped += 1
        x, y = int(round(point[0])), int(round(point[1]))
        cv2.circle(panel, (x, y), 5, colour, -1 if inside else 2, cv2.LINE_AA)
        cv2.putText(panel, str(row["person"]), (x + 7, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    if clamped:
        cv2.putText(panel, "hollow: beyond the scale", (PLANE_MARGIN, y0 + size + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                    (200, 200, 200), 1, cv2.LINE_AA)
    if faces.empty and len(rows):
        cv2.putText(panel, rows["status"].iloc[0], (PLANE_MARGIN, min(h - 8, y0 + size + 34)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 120, 120), 1, cv2.LINE_AA)
    return np.concatenate([out, panel], axis=1)


def _label(image: np.ndarray, text: str, box: list[int], colour: tuple[int, int, int], taken: list) -> None:
    """`text` on a dark band just above `box` (x1, y1, x2, y2), or just below it where a label drawn before (`taken`,
    their bands) is in the way, inside the frame, so that it reads on any background and no label hides another."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    x = int(np.clip(box[0], 2, max(2, image.shape[1] - width - 6)))
    places = []
    for y in (box[1] - 6, box[3] + height + 6):
        y = int(np.clip(y, height + 4, image.shape[0] - baseline - 2))
        band = (x - 3, y - height - 4, x + width + 3, y + baseline + 1)
        places.append(band)
        if not any(b[0] < band[2] and band[0] < b[2] and b[1] < band[3] and band[1] < b[3] for b in taken):
            break
    band = places[-1]
    taken.append(band)
    cv2.rectangle(image, band[:2], band[2:], (0, 0, 0), -1)
    cv2.putText(image, text, (band[0] + 3, band[3] - baseline - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)


_NOBODY = pd.DataFrame(columns=["status"])  # before the first analysed frame: the panel alone


def _rows_by_frame(path: Path) -> Iterator[tuple[int, pd.DataFrame]]:
    """An input's rows grouped by frame, in order, read a chunk at a time."""
    held = None
    for chunk in read_rows(path, chunksize=5000):
        if held is not None:
            chunk = pd.concat([held, chunk])
        last = chunk["frame"].iloc[-1]
        held = chunk[chunk["frame"] == last]
        for frame, group in chunk[chunk["frame"] != last].groupby("frame", sort=True):
            yield int(frame), group
    if held is not None and len(held):
        yield int(held["frame"].iloc[0]), held


def render_input(source: Source, files: dict[str, Path], result: InputResult) -> dict[str, Path]:
    """The input again with every face annotated (`annotate`): a video as MP4 and WebM (frames between two analysed
    ones show the last analysed frame's annotations), images as annotated JPEG."""
    groups = _rows_by_frame(files["csv"])
    current, upcoming = None, next(groups, None)
    frames = source.open().frames()
    if source.kind != "video":
        folder = files["folder"] if source.kind == "folder" else None
        for frame in frames:
            while upcoming is not None and upcoming[0] <= frame.index:
                current, upcoming = upcoming, next(groups, None)
            if frame.rgb is None or current is None or current[0] != frame.index:
                continue
            target = files["image"] if folder is None else folder / f"{Path(frame.file).stem}.jpg"
            with atomic_path(target) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(annotate(frame.rgb, current[1]), cv2.COLOR_RGB2BGR))
        return {"image" if folder is None else "folder": folder or files["image"]}
    first = next(frames)
    size = (first.rgb.shape[1] + PANEL_WIDTH, first.rgb.shape[0])
    fps = result.fps or DEFAULT_RENDER_FPS
    with video_writer(files["mp4"], fps, size) as write_mp4, video_writer(files["webm"], fps, size, BROWSER_FOURCC) as write_webm:
        for frame in chain([first], frames):
            while upcoming is not None and upcoming[0] <= frame.index:
                current, upcoming = upcoming, next(groups, None)
            shown = annotate(frame.rgb, current[1] if current is not None else _NOBODY)
            write_mp4(shown)
            write_webm(shown)
    return {"mp4": files["mp4"], "webm": files["webm"]}


# -- the run's summary --------------------------------------------------------------------------------------------------
def earlier_inputs(output_dir: Path, sources: list[Source]) -> list[dict]:
    """The summaries of inputs finished in `output_dir` by earlier commands that `sources` do not name, in the order the
    folder's summary listed them (then by name): the combined outputs keep them."""
    named = {s.name for s in sources}
    found = {p.stem: p for p in (output_dir / INPUTS_DIR).glob("*.json") if p.stem not in named}
    order = []
    if (output_dir / SUMMARY_FILE).is_file():
        order = [e["name"] for e in json.loads((output_dir / SUMMARY_FILE).read_text()).get("inputs", [])]
    ranked = sorted(found, key=lambda name: (order.index(name) if name in order else len(order), name))
    return [json.loads(found[name].read_text()) for name in ranked]


def remove_input(output_dir: Path, entry: dict) -> None:
    """Every file of one finished input (`finish_input`'s outputs, its summary last of all)."""
    for path in output_dir.glob(f"{entry['name']}_person*.jpg"):
        path.unlink()
    for relative in entry["outputs"].values():
        path = output_dir / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    (output_dir / INPUTS_DIR / f"{entry['name']}.json").unlink(missing_ok=True)


def write_summary(output_dir: Path, identity: dict, options: dict, entries: list[dict]) -> None:
    """predictions.csv (every finished input's rows, in input order), people.csv, predictions.json and report.html."""
    finished_entries = [e for e in entries if not e["error"]]
    if finished_entries:
        with atomic_open(output_dir / CSV_FILE, "wb") as out:
            for k, entry in enumerate(finished_entries):
                with open(output_dir / entry["outputs"]["csv"], "rb") as f:
                    header = f.readline()
                    if k == 0:
                        out.write(header)
                    shutil.copyfileobj(f, out)
        people = [{"source": e["input"], **{k: v for k, v in p.items() if k != "thumbnail"}}
                  for e in finished_entries for p in e["people"]]
        write_text(output_dir / PEOPLE_FILE, pd.DataFrame(people).to_csv(index=False, float_format=lambda v: repr(float(v))))
    write_json(output_dir / SUMMARY_FILE, {**identity, "options": options, "inputs": entries})
    write_text(output_dir / REPORT_FILE, report_html(identity, options, entries))


def report_html(identity: dict, options: dict, entries: list[dict]) -> str:
    """report.html: per input the people table with thumbnails, the time plot and the rendered video (relative paths:
    it opens from the folder, offline)."""
    e = html.escape
    model = {"zero_shot": "EmoNet zero-shot", "feature_head": f"{(identity.get('head') or {}).get('kind', '')} head",
             "emonet": "fine-tuned EmoNet"}[identity["model"]]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Valence and arousal per person</title>',
             "<style>body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}td.l{text-align:left}"
             "img.t{width:64px;height:64px}img.plot{max-width:100%}.err{color:#b00}.sw{display:inline-block;width:12px;"
             "height:12px;margin-right:4px}section{margin-bottom:36px}</style></head><body>",
             "<h1>Valence and arousal per person</h1>",
             f"<p>{e(model)}, {e(identity['color_space'])} input, {e(identity['crop'])} crop, precision "
             f"{e(identity['precision'])}; faces: {e(str(options.get('faces')))}, frames analysed: "
             f"{e('every frame' if not options.get('sample_fps') else str(options['sample_fps']) + ' a second')}. "
             "Values on the AFEW-VA scale [-10, 10]; a person's id holds across the input (see the guide for what ids "
             "can and cannot do).</p>"]
    if identity.get("stand_in_weights"):
        parts.append('<p class="err">EmoNet ran with this project\'s stand-in weights (deterministic, untrained: the tests\' '
                     "and the demo's), not the released network: these values say nothing about the faces.</p>")
    for entry in entries:
        parts.append(f"<section><h2>{e(Path(entry['input']).name)}</h2>")
        if entry["error"]:
            parts.append(f'<p class="err">Not predicted: {e(entry["error"])}</p></section>')
            continue
        parts.append(f"<p>{e(entry['kind'])}, {plural(entry['frames'], 'frame')} ({entry['analysed_frames']} analysed), "
                     f"{plural(len(entry['people']), 'person', 'people')}, {plural(entry['shots'], 'shot')}"
                     + "".join(f'; <span class="err">{e(w)}</span>' for w in entry["warnings"]) + "</p>")
        if entry["people"]:
            head = ["", "person", "frames", "seconds", "first", "last", "valence mean", "median", "sd", "arousal mean",
                    "median", "sd"]
            parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
            for p in entry["people"]:
                colour = "#" + "".join(f"{c:02x}" for c in person_colour(p["person"]))
                thumb = f'<img class="t" src="{e(p["thumbnail"])}" alt="person {p["person"]}">' if p.get("thumbnail") else ""
                when = [p["first_s"], p["last_s"]] if p["first_s"] is not None else [p["first_frame"], p["last_frame"]]
                cells = [thumb, f'<span class="sw" style="background:{colour}"></span>{p["person"]}', str(p["frames"]),
                         "" if p["seconds"] is None else number(p["seconds"], 1), *(number(t, 2) for t in when),
                         *(number(p[f"{d}_{s}"], 2) for d in DIMENSIONS for s in ("mean", "median", "sd"))]
                parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            parts.append("</table>")
        outputs = entry["outputs"]
        if "png" in outputs:
            parts.append(f'<p><img class="plot" src="{e(outputs["png"])}" alt="valence and arousal over time"></p>')
        if "webm" in outputs:
            parts.append(f'<video controls width="640" src="{e(outputs["webm"])}"></video><p>Also as '
                         f'<a href="{e(outputs["mp4"])}">MP4</a> for video players.</p>')
        elif "image" in outputs:
            parts.append(f'<p><img class="plot" src="{e(outputs["image"])}" alt="annotated image"></p>')
        elif "folder" in outputs:
            parts.append(f'<p>Annotated images: <a href="{e(outputs["folder"])}/">{e(outputs["folder"])}/</a></p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
