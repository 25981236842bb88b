"""Stage 1: the kagglehub path through its cache (no network), --archive, --verify, and the failure messages."""
import os
import shutil
import subprocess
import sys
import zipfile

import requests

import download_afew_va
from conftest import ROOT
from emonet.cli import run
from emonet.constants import KAGGLE_HANDLE


def _script(args, cwd, **env):
    # A dead proxy keeps every test offline even on a machine with network.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", **env}
    return subprocess.run([sys.executable, str(ROOT / "download_afew_va.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_kagglehub_cache_path_offline(afew_tree, tmp_path):
    owner, name, _, version = KAGGLE_HANDLE.split("/")
    cached = tmp_path / "cache" / "datasets" / owner / name / "versions" / version
    cached.mkdir(parents=True)
    (cached / "AFEW-VA").symlink_to(afew_tree, target_is_directory=True)
    (tmp_path / "cache" / "datasets" / owner / name / f"{version}.complete").touch()
    result = _script([], tmp_path, KAGGLEHUB_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert f"AFEW-VA at {cached / 'AFEW-VA'}" in result.stdout
    assert "frames labelled in JSON       24" in result.stdout
    assert f"export AFEW_VA_ROOT={(cached / 'AFEW-VA').resolve()}" in result.stdout


def test_offline_without_cache_is_one_clear_message(tmp_path):
    result = _script([], tmp_path, KAGGLEHUB_CACHE=str(tmp_path / "empty"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "could not be reached" in result.stderr and "--archive" in result.stderr and "credentials" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_http_403_says_consent(monkeypatch, tmp_path, caplog):
    import kagglehub
    from kagglehub.exceptions import KaggleApiHTTPError

    response = requests.Response()
    response.status_code = 403

    def refuse(handle):
        raise KaggleApiHTTPError("403 Client Error: Forbidden", response=response)

    monkeypatch.setattr(kagglehub, "dataset_download", refuse)
    monkeypatch.chdir(tmp_path)
    assert run(download_afew_va.main, download_afew_va.get_args_parser().parse_args([])) == 1
    assert "HTTP 403" in caplog.text and "terms have not been accepted" in caplog.text and "--archive" in caplog.text


def test_archive_is_extracted_and_verified(afew_tree, tmp_path):
    archive = tmp_path / "afew-va.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in afew_tree.rglob("*"):
            zf.write(path, path.relative_to(afew_tree.parent))
    result = _script(["--archive", str(archive), "--output_dir", "data"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "AFEW-VA" / "001").is_dir()
    assert f"export AFEW_VA_ROOT={tmp_path / 'data' / 'AFEW-VA'}" in result.stdout
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    result = _script(["--archive", str(evil)], tmp_path)
    assert result.returncode == 1 and "outside" in result.stderr and not (tmp_path / "outside.txt").exists()


def test_verify_reports_problems_and_fails_without_frames(afew_tree, tmp_path):
    empty = tmp_path / "AFEW-VA" / "001"
    empty.mkdir(parents=True)
    (empty / "00000.png").write_bytes(b"")
    result = _script(["--verify", str(tmp_path / "AFEW-VA")], tmp_path)
    assert result.returncode == 1
    assert "missing json                   1" in result.stdout and "no usable frame" in result.stderr
    assert (tmp_path / "afew_va_problems.json").is_file()
    result = _script(["--verify", str(afew_tree)], tmp_path)  # another dataset's problems are not replaced silently
    assert result.returncode == 1 and "holds the problems of" in result.stderr and "--overwrite" in result.stderr
    result = _script(["--verify", str(afew_tree), "--overwrite"], tmp_path)
    assert result.returncode == 0 and "frames labelled in JSON       24" in result.stdout
    assert "usable frames                 24  (labels, landmarks and image; .png 24)" in result.stdout


def test_verify_counts_labelled_frames_that_are_not_usable(afew_tree, tmp_path):
    root = tmp_path / "AFEW-VA"
    shutil.copytree(afew_tree, root)
    clip = sorted(p.name for p in root.iterdir())[0]
    (root / clip / "00001.png").unlink()  # labelled, but its image is missing
    result = _script(["--verify", str(root)], tmp_path)
    assert result.returncode == 0
    assert "frames labelled in JSON       24" in result.stdout and "usable frames                 23" in result.stdout
