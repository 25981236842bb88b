"""Reading one's own footage for `predict.py`: videos (whatever OpenCV's FFmpeg backend reads), single images
and folders of images (sorted by name, one sequence), frame by frame; and writing an MP4.
"""
import contextlib
import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .data import read_rgb
from .errors import MediaError
from .io import atomic_path

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# MP4 as OpenCV's FFmpeg backend writes it without extra codecs.
VIDEO_FOURCC = "mp4v"


# FFmpeg's own log level in OpenCV's backend, read once, when FFmpeg is first used in the process. Its raw lines
# ("moov atom not found") would come before, and say less than, the message naming the file; -8 is AV_LOG_QUIET. A
# user who wants them sets OPENCV_FFMPEG_LOGLEVEL (16: errors) before the run.
FFMPEG_LOG_ENV = "OPENCV_FFMPEG_LOGLEVEL"
FFMPEG_QUIET = "-8"


def quiet_ffmpeg() -> None:
    """Silence FFmpeg's raw messages for this process, unless the user set its level (see FFMPEG_LOG_ENV)."""
    os.environ.setdefault(FFMPEG_LOG_ENV, FFMPEG_QUIET)


@dataclass(frozen=True)
class Frame:
    index: int
    time_s: float | None  # None for images
    rgb: np.ndarray | None  # None: this frame could not be decoded (`error` says why)
    error: str = ""
    file: str = ""  # the image's file name (images and folders)


@dataclass(frozen=True)
class Source:
    """One input: a video, an image, or a folder of images, with the name its outputs get."""

    path: Path
    kind: str  # "video", "image", "folder", or "unknown" (refused when read)
    name: str

    def open(self) -> "Sequence":
        if not self.path.exists():
            raise MediaError(f"{self.path}: not found")
        if self.kind == "video":
            return VideoSequence(self.path)
        if self.kind in ("image", "folder"):
            return ImageSequence(self.path, self.kind)
        raise MediaError(f"{self.path}: neither a video ({', '.join(VIDEO_SUFFIXES)}), an image "
                         f"({', '.join(IMAGE_SUFFIXES)}) nor a folder of images")


class Sequence:
    fps: float | None = None
    expected: int | None = None  # frames announced (a video's header), None when unknown
    decoded: int = 0  # frames read so far, the skipped ones of a resumed run included
    truncated: str | None = None  # why decoding stopped before the frames announced, once it has

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames `start`, `start` + 1, ... in order, each with its pixels (a frame that cannot be decoded: rgb None and
        `error` saying why). Every frame is decoded, also those --sample_fps leaves out: shot cuts are measured on all."""
        raise NotImplementedError


class VideoSequence(Sequence):
    def __init__(self, path: Path):
        self.path = path
        quiet_ffmpeg()
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise MediaError(f"{path}: cannot open the video (corrupt, empty, or a format OpenCV's FFmpeg cannot read)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.expected = count if count > 0 else None
        capture.release()

    def frames(self, start: int = 0) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        index = 0
        try:
            while True:
                ok = capture.grab()  # demux and decode; the pixels are converted only from `start` on
                if ok and index >= start:
                    ok, bgr = capture.retrieve()
                if not ok:
                    break
                self.decoded = index + 1
                if index >= start:
                    yield Frame(index, index / self.fps if self.fps else None, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise MediaError(f"{self.path}: no frame could be decoded")
        if self.expected and index < self.expected:
            self.truncated = f"decoding stopped after {index} of the {self.expected} frames its header announces"
            logger.warning("%s: %s", self.path, self.truncated)


class ImageSequence(Sequence):
    def __init__(self, path: Path, kind: str):
        if kind == "image":
            self.paths = [path]
        else:
            self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not self.paths:
                raise MediaError(f"{path}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
        self.expected = len(self.paths)
        self.kind = kind

    def frames(self, start: int = 0) -> Iterator[Frame]:
        for index in range(start, len(self.paths)):
            path = self.paths[index]
            self.decoded = index + 1
            try:
                rgb = read_rgb(path)
            except MediaError as exc:
                if self.kind == "image":
                    raise
                yield Frame(index, None, None, str(exc), file=path.name)
                continue
            yield Frame(index, None, rgb, file=path.name)


def discover(paths: list[str]) -> list[Source]:
    """The inputs in the order given (each once), each with a name unique in the run: the file's stem (letters,
    digits, -, _ and .) and 8 hex digits of its absolute path's hash, so that two inputs never share outputs."""
    out, seen = [], set()
    for value in paths:
        path = Path(value).expanduser().resolve()
        if path in seen:
            continue
        seen.add(path)
        suffix = path.suffix.lower()
        kind = ("folder" if path.is_dir() else "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES
                else "unknown")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem if kind != "folder" else path.name)[:60] or "input"
        out.append(Source(path, kind, f"{stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"))
    return out


@contextlib.contextmanager
def _stderr_silenced():
    """The process's standard error (the file descriptor, which C libraries write to) sent nowhere for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def video_writer(path: Path, fps: float, size: tuple[int, int], fourcc: str = VIDEO_FOURCC):
    """Write a video frame by frame (MP4 by default; the container follows the name): yields a function taking an RGB
    frame; the file appears under its name only once complete."""
    quiet_ffmpeg()
    with atomic_path(path) as tmp:
        with _stderr_silenced():  # OpenCV's FFmpeg backend prints a line for every WebM ("tag ... is not supported")
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not writer.isOpened():
            raise MediaError(f"{path}: OpenCV cannot write {fourcc} video here (no FFmpeg backend?)")
        try:
            yield lambda rgb: writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
