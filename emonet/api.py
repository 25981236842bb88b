"""The pipeline from Python, as the scripts run it: the same settings (keyword arguments named as the scripts' flags,
without their dashes; `--no_progress` is `progress`), the same checks, the same errors (`EmoNetError` and its kin),
the same files written.

    import emonet

    rows = emonet.predict("interview.mp4", pretrained_path="pretrained/emonet_8.pth")      # a pandas DataFrame
    manifest = emonet.extract("data/AFEW-VA", color_space="hsv", pretrained_path="pretrained/emonet_8.pth",
                              output_dir="features_hsv")
    report = emonet.compare({"rgb": "features_manifest.json", "hsv": "features_hsv_manifest.json"},
                            output_dir="color_space_comparison", heads=("frame", "smooth"), repeats=3)
    results = emonet.evaluate("hsv_features_training/best_model.pth", None, output_dir="hsv_evaluation")
"""
import functools
import logging
import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from .comparison_run import run_comparison
from .errors import EmoNetError, MediaError
from .evaluation_run import evaluate as _evaluate
from .extraction import extract_features
from .prediction_outputs import CSV_FILE, read_rows
from .prediction_run import run_predictions
from .settings import ComparisonConfig, EvaluationConfig, ExtractionConfig, PredictConfig

logger = logging.getLogger(__name__)


def _keywords(function):
    """The package's errors name the scripts' flags (`--sample_fps 0: ...`); called from Python they name the keyword
    (`sample_fps 0: ...`), of the same class. A path given as a keyword is taken as its string, as a flag would be: the
    settings are recorded in JSON and checkpoints."""
    @functools.wraps(function)
    def called(*positional, **keywords):
        keywords = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in keywords.items()}
        try:
            return function(*positional, **keywords)
        except EmoNetError as exc:
            raise type(exc)(re.sub(r"(?<![\w-])--(\w+)", r"\1", str(exc))) from exc
    return called


@_keywords
def predict(inputs: str | Path | list, *, pretrained_path: str | Path, model_path: str | Path | None = None,
            faces: str = "all", sample_fps: float | None = None, device: str = "auto", output_dir: str | Path | None = None,
            progress: bool = False, **settings) -> pd.DataFrame:
    """Valence and arousal of every face of `inputs` (a video, an image, a folder of images, or a list of them): the
    rows and columns of predictions.csv, for these inputs, in their order. With `output_dir`, every output of
    predict.py is written there (and an interrupted run resumes there); without, the run goes to a temporary folder
    that is removed. Other settings: predict.py's flags (`crop`, `render`, `batch_size`, `backend`, `threads`, ...).
    An input that cannot be read is left out, logged as an error, and named in the frame's `attrs["unread"]`; when
    none can be read, MediaError."""
    names = [str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]
    with tempfile.TemporaryDirectory() as scratch:
        config = PredictConfig(inputs=tuple(names), model_path=None if model_path is None else str(model_path),
                               pretrained_path=str(pretrained_path), faces=faces, sample_fps=sample_fps, device=device,
                               output_dir=str(output_dir or Path(scratch) / "predictions"), progress=progress, **settings)
        done = run_predictions(config)
        unread = {e["input"]: e["error"] for e in done.failed}
        if len(unread) == len(done.entries):
            raise MediaError("no input could be read: " + "; ".join(unread.values()))
        rows = read_rows(Path(config.output_dir) / CSV_FILE)
        wanted = [e["input"] for e in done.entries if not e["error"]]
        rows = pd.concat([rows[rows["source"] == name] for name in wanted], ignore_index=True)
    rows.attrs["unread"] = unread
    return rows


@_keywords
def extract(dataset_root: str | Path, *, pretrained_path: str | Path, output_dir: str | Path, color_space: str = "rgb",
            dataset: str = "afew_va", manifest_file: str | Path | None = None, crop: str | None = None,
            device: str = "auto", progress: bool = False, **settings) -> Path:
    """EmoNet's features of every frame of a dataset into `output_dir`; returns the manifest written (default: beside
    the working folder's others, features_<space>_manifest.json). Other settings: the extraction scripts' flags
    (`batch_size`, `limit`, `backend`, `int8_calibration`, `overwrite`, ...)."""
    config = ExtractionConfig(dataset_root=str(dataset_root), output_dir=str(output_dir),
                              manifest_file=None if manifest_file is None else str(manifest_file),
                              pretrained_path=str(pretrained_path), color_space=color_space, crop=crop, dataset=dataset,
                              device=device, progress=progress, **settings).checked()
    result = extract_features(config)
    logger.info("%s", result.summary())
    return Path(config.manifest_file)


@_keywords
def compare(manifests: dict[str, str | Path] | None = None, *, output_dir: str | Path, heads=("frame",),
            folds: int | None = None, repeats: int = 1, progress: bool = False, **settings) -> dict:
    """A colour-space comparison of the feature `manifests` ({label: manifest}, the labels naming the spaces) into
    `output_dir`; returns its report (the content of comparison.json). Other settings: compare_color_spaces.py's flags
    (`epochs`, `split`, `reference`, `bootstrap`, `approach`, `report_only`, ...); `folds` None is 5, or the official
    split's one test set. With `list_units` or `only`, no report: {"units": the units listed or trained, in lines}."""
    config = ComparisonConfig(manifests=None if manifests is None else {k: str(v) for k, v in manifests.items()},
                              output_dir=str(output_dir), heads=tuple(heads) if heads else None, folds=folds,
                              repeats=repeats, progress=progress, **settings)
    done = run_comparison(config)
    return done.report if done.report is not None else {"units": done.listed or done.lines}


@_keywords
def evaluate(model_path: str | Path | None, manifest_file: str | Path | None, *, progress: bool = False,
             **settings) -> dict:
    """Score a model (`model_type`: feature, full or pretrained) and write evaluation_results.json, predictions.csv and
    the plots into `output_dir` (default evaluation_results); returns the results (the content of
    evaluation_results.json). Other settings: evaluate_hsv_model.py's flags (`subset`, `dataset`, `dataset_root`, ...)."""
    return _evaluate(EvaluationConfig(model_path=None if model_path is None else str(model_path),
                                      manifest_file=None if manifest_file is None else str(manifest_file),
                                      progress=progress, **settings))
