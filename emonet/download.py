"""Getting AFEW-VA onto disk: through kagglehub (cached, pinned version) or from a zip downloaded by hand."""
import logging
import os
import zipfile
from pathlib import Path

from .constants import AFEW_VA_FOLDER, KAGGLE_HANDLE
from .errors import DatasetError

logger = logging.getLogger(__name__)

KAGGLE_PAGE = "https://www.kaggle.com/datasets/hoanguyensgu/afew-va"


class DownloadError(DatasetError):
    """kagglehub could not deliver the dataset; the message says why and what else to do."""


def _alternatives() -> str:
    return (
        "Either (1) give kagglehub credentials (KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json) "
        f"after accepting the dataset's terms on {KAGGLE_PAGE}, then run again; or (2) download the zip from "
        "that page by hand and run: python download_afew_va.py --archive PATH/TO/archive.zip"
    )


def kaggle_download(handle: str = KAGGLE_HANDLE) -> Path:
    """`kagglehub.dataset_download(handle)`: a cached copy of a pinned version is returned without network."""
    import kagglehub
    import requests
    from kagglehub.exceptions import CredentialError, UnauthenticatedError

    try:
        return Path(kagglehub.dataset_download(handle))
    except (CredentialError, UnauthenticatedError) as exc:
        what = f"no valid Kaggle credentials ({exc})"
    except requests.HTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status == 403:
            what = "Kaggle refused access (HTTP 403): the dataset's terms have not been accepted for this account"
        elif status == 401:
            what = "Kaggle rejected the credentials (HTTP 401)"
        elif status == 404:
            what = f"Kaggle does not know the handle {handle!r} (HTTP 404)"
        else:
            what = f"Kaggle answered HTTP {status}"
    except (requests.ConnectionError, requests.Timeout):
        what = "Kaggle could not be reached (offline?) and no completed copy is in kagglehub's cache"
    raise DownloadError(f"download of {handle} failed: {what}. {_alternatives()}")


def extract_archive(archive: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Unzip a hand-downloaded AFEW-VA archive into `output_dir`; returns `output_dir`.

    Members that would land outside `output_dir` (absolute paths, `..`) are refused.
    """
    archive, output_dir = Path(archive), Path(output_dir)
    if not archive.is_file():
        raise DatasetError(f"{archive}: archive not found")
    try:
        with zipfile.ZipFile(archive) as zf:
            target = output_dir.resolve()
            for name in zf.namelist():
                if not (target / name).resolve().is_relative_to(target):
                    raise DatasetError(f"{archive}: refused, member {name!r} would be written outside {output_dir}")
            logger.info("extracting %d files from %s into %s", len(zf.namelist()), archive, output_dir)
            zf.extractall(output_dir)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive}: not a readable zip archive ({exc})") from None
    return output_dir


def find_dataset_root(folder: str | os.PathLike) -> Path:
    """The `AFEW-VA/` folder inside a download or extraction (or `folder` itself when it holds the clips)."""
    folder = Path(folder)
    candidates = [folder / AFEW_VA_FOLDER, *sorted(folder.glob(f"*/{AFEW_VA_FOLDER}"))]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if any(folder.glob("*/*.json")):
        return folder
    raise DatasetError(f"{folder}: no {AFEW_VA_FOLDER}/ folder and no clip folders inside")
