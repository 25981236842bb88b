"""What one input's prediction run holds between frames, and its checkpoint in `inputs/<name>.parts/`: the rows not yet
written, who is where (`following.Following`), the heads' streams, thumbnails and counts.

A checkpoint is a JSON file of numbers (floats survive JSON exactly) and an .npz of arrays in their own dtype (boxes
float64, features and values float32, as computed), so that a resumed input writes the bytes an uninterrupted run
writes. The JSON is written last and names its arrays: a run killed between the two finds the previous pair.
"""
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import atomic_open, write_json

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class Row:
    """One row of an input's predictions: a face of a frame (its tracklet, then its person once decided), or a frame
    without one (`status` says why). Values are on the model's scale; `raw` is the smooth head's before smoothing;
    `expression`, zero-shot's logits; `identity_distance`, see `people.PeopleTracker.take_distance`."""

    frame: int
    time_s: float | None
    file: str
    shot: int
    tracklet: int | None
    status: str
    score: float = float("nan")
    box: np.ndarray | None = None
    person: int | None = None
    identity_distance: float | None = None
    features: np.ndarray | None = None
    values: np.ndarray | None = None
    raw: np.ndarray | None = None
    expression: np.ndarray | None = None
    released: bool = False  # its person is final

    @property
    def complete(self) -> bool:
        return self.released and (self.tracklet is None or self.values is not None)


ROW_NUMBERS = ("frame", "time_s", "shot", "tracklet", "score", "person", "identity_distance")
ROW_TEXTS = ("file", "status")
ROW_ARRAYS = {"box": np.float64, "features": np.float32, "values": np.float32, "raw": np.float32,
              "expression": np.float32}


def rows_to_arrays(rows: list[Row], prefix: str) -> dict[str, np.ndarray]:
    """Rows as columns (`rows_from_arrays` reads them back exactly)."""
    out = {f"{prefix}{k}": np.array([getattr(r, k) if getattr(r, k) is not None else np.nan for r in rows],
                                    dtype=np.float64) for k in ROW_NUMBERS}
    out |= {f"{prefix}{k}": np.array([getattr(r, k) for r in rows], dtype=str) for k in ROW_TEXTS}
    out[f"{prefix}released"] = np.array([r.released for r in rows], dtype=bool)
    for k, dtype in ROW_ARRAYS.items():
        present = [getattr(r, k) for r in rows if getattr(r, k) is not None]
        column = np.full((len(rows), len(present[0]) if present else 0), np.nan, dtype=dtype)
        for i, r in enumerate(rows):
            if getattr(r, k) is not None:
                column[i] = getattr(r, k)
        out[f"{prefix}{k}"], out[f"{prefix}{k}_set"] = column, np.array([getattr(r, k) is not None for r in rows])
    return out


def rows_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> list[Row]:
    def number(k: str, i: int, cast=float):
        value = float(arrays[f"{prefix}{k}"][i])
        return None if np.isnan(value) else cast(value)

    rows = []
    for i in range(len(arrays[f"{prefix}frame"])):
        rows.append(Row(frame=number("frame", i, int), time_s=number("time_s", i), file=str(arrays[f"{prefix}file"][i]),
                        shot=number("shot", i, int), tracklet=number("tracklet", i, int),
                        status=str(arrays[f"{prefix}status"][i]), score=float(arrays[f"{prefix}score"][i]),
                        person=number("person", i, int), identity_distance=number("identity_distance", i),
                        released=bool(arrays[f"{prefix}released"][i]),
                        **{k: arrays[f"{prefix}{k}"][i].copy() if arrays[f"{prefix}{k}_set"][i] else None
                           for k in ROW_ARRAYS}))
    return rows


@dataclass
class InputState:
    """Everything one input's run holds between checkpoints besides who is where and the heads' streams."""

    next_frame: int = 0  # every frame before it has been read
    analysed: int = 0
    parts: int = 0  # part files written
    faces: int = 0  # face rows
    box_crops: int = 0  # landmark crop: faces whose landmarks did not fit (cropped around the box instead)
    unreadable: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)  # not yet written, in frame order
    # Best face so far as a thumbnail, per tracklet until its person is decided, then per person: key -> (score, area).
    best: dict[str, tuple[float, float]] = field(default_factory=dict)
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)


# InputState's fields kept in the JSON (the others are arrays).
_NUMBERS = ("next_frame", "analysed", "parts", "faces", "box_crops", "unreadable", "seconds")


def checkpoint_frame(parts_dir: Path) -> int | None:
    """The frame an input's checkpoint continues from, None when it has none."""
    path = parts_dir / STATE_FILE
    return json.loads(path.read_text())["state"]["next_frame"] if path.is_file() else None


class InputCheckpoint:
    """The checkpoint of one input in `parts_dir`: `save` after each part file, `load` to continue."""

    def __init__(self, parts_dir: Path, fingerprint: dict, options: dict):
        self.parts_dir, self.identity = parts_dir, {"source": fingerprint, "options": options}

    def load(self) -> tuple[InputState, dict, dict[str, np.ndarray]] | None:
        """(state, the other numbers, arrays) of the checkpoint, or None when there is none for this input and these
        options (a stale one is removed); part files written after it are removed too (they are written again)."""
        path = self.parts_dir / STATE_FILE
        if not path.is_file():
            self.clear()
            return None
        numbers = json.loads(path.read_text())
        if {k: numbers.get(k) for k in self.identity} != self.identity:
            logger.warning("%s: the input or --faces/--sample_fps/--batch_size changed since the interrupted run; "
                           "starting it again", self.identity["source"]["path"])
            self.clear()
            return None
        with np.load(self.parts_dir / numbers["arrays"]) as data:
            arrays = {k: data[k] for k in data.files}
        for stale in self.parts_dir.glob("part_*.csv"):
            if int(stale.stem.split("_")[1]) >= numbers["state"]["parts"]:
                stale.unlink()
        best = {k: tuple(v) for k, v in numbers["best"].items()}
        thumbnails = {k.removeprefix("thumbnail_"): v for k, v in arrays.items() if k.startswith("thumbnail_")}
        state = InputState(**numbers["state"], rows=rows_from_arrays(arrays, "row_"), best=best, thumbnails=thumbnails)
        return state, numbers["more"], arrays

    def save(self, state: InputState, more: dict, arrays: dict[str, np.ndarray]) -> None:
        """Save `state` with `more` numbers and arrays (who is where, the streams)."""
        arrays = arrays | rows_to_arrays(state.rows, "row_") | {f"thumbnail_{k}": v for k, v in state.thumbnails.items()}
        name = f"state_{state.parts}.npz"
        with atomic_open(self.parts_dir / name) as f:
            np.savez(f, **arrays)
        numbers = {k: getattr(state, k) for k in _NUMBERS}
        write_json(self.parts_dir / STATE_FILE, self.identity | {"state": numbers, "more": more, "arrays": name,
                                                                   "best": {k: list(v) for k, v in state.best.items()}})
        for stale in self.parts_dir.glob("state_*.npz"):
            if stale.name != name:
                stale.unlink()

    def clear(self) -> None:
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)
        self.parts_dir.mkdir(parents=True)
