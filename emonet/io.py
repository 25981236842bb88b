"""Atomic file writes: a run killed at any moment (SIGKILL included) never leaves a half-written file
under the final name, because data goes to a temporary file in the same folder and is then renamed
with `os.replace`, which is atomic on POSIX and Windows."""
import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

TMP_SUFFIX = ".tmp"
# Mode of a new file before the umask, as open() uses: the umask then decides who else may read it.
NEW_FILE_MODE = 0o666


def _umask() -> int:
    """The process umask (os.umask can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary sibling of `path` to write, ending in `path`'s suffix (for writers that choose a format by the
    name, such as a video writer); on success it replaces `path`, on error it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX + path.suffix)
    except OSError as exc:  # its message would name the hidden temporary file, which the user never asked for
        raise OSError(exc.errno, f"{path.parent}: cannot write {path.name} there ({exc.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file 0600 and os.replace keeps that mode: give it the mode open() would.
        os.chmod(tmp, NEW_FILE_MODE & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary sibling of `path` for writing; on success it replaces `path`, on error it is removed."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def check_writable(*folders: str | os.PathLike) -> None:
    """Refuse, before any work, a folder that cannot be made or written (naming it). Nothing is left behind: a folder
    not there yet is judged by the nearest one above it that is."""
    for folder in map(Path, folders):
        existing = folder.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            if not existing.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise OSError(exc.errno, f"{folder}: cannot write there ({exc.strerror})") from None


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def save_npz(path: str | os.PathLike, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_open(path) as f:
        f.write(buffer.getvalue())


def save_torch(obj, path: str | os.PathLike) -> None:
    import torch  # here: this module is also what light code (the scripts' flag checks) writes files with

    with atomic_open(path) as f:
        torch.save(obj, f)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi)  # figures use constrained layout: no second draw for a tight box


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
