"""The comparison's cross-corpus rows: every unit's chosen model scored on another corpus.

Units trained on one dataset (`--manifests`) also predict the frames of another (`--test_manifests`, the same colour
spaces, extracted with the same crop and checkpoint): its official validation split where it has one (Aff-Wild2,
AffectNet), every frame otherwise (AFEW-VA; no unit trained on any of it). A unit writes them beside its own
predictions, `cross_<dataset>.csv` (clip, frame, its prediction and EmoNet's zero-shot one, on AFEW-VA's scale), then
`cross_<dataset>.json` (what it scored, by content) last: a rerun skips a unit that has them, and refuses one that
scored other frames. Prediction only: a test corpus can be added to a finished comparison without training again.

The report scores, for each repetition, one prediction a frame: under cross-validation the mean of the repetition's K
fold models (each trained on (K-1)/K of the training corpus; their mean is the cross-validated model's natural
out-of-corpus prediction, where a single fold's would throw away the others), under the official protocol its one
model. The statistic is that of a fixed test set (`comparison_report`: a bootstrap of the test corpus's clips or
actors, and of the repetitions when there are several).
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .comparison import (MODEL_TYPES, CommonFrames, Unit, check_feature_files, check_heads, check_manifests,
                         feature_identity, group_indices, load_space, prediction_column, read_manifests, unit_groups,
                         without_samples)
from .comparison_heads import HeadComparison
from .comparison_records import cross_files, write_predictions
from .constants import LABEL_SCALE
from .errors import EmoNetError
from .head_training import HEAD_THREADS, intra_op_threads
from .heads import HeadPredictor
from .manifest import FEATURE_IDENTITY_KEYS, Manifest
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)

@dataclass
class TestCorpus:
    """Another dataset's frames, scored by every unit."""

    dataset: str
    manifests: dict[str, Manifest]  # paths and settings
    common: CommonFrames  # every frame of the test manifests
    rows: np.ndarray  # the scored frames: indices into common.samples
    identity: dict[str, dict]  # space -> what is scored, by content

    @property
    def samples(self) -> list[dict]:
        return self.common.samples[self.rows]

    @property
    def scored(self) -> str:
        """The scored frames in words."""
        return "official validation split" if self.common.official else "every frame"

    def files(self, unit_folder: Path) -> tuple[Path, Path]:
        """(predictions, record) of a unit."""
        return cross_files(unit_folder, self.dataset)


def read_test_corpus(paths: dict[str, Path], training: dict[str, Manifest], training_dataset: str, heads: list[str],
                     common_frames: bool, check_files: bool) -> TestCorpus:
    """The test manifests, checked as the training ones are (same frames in every space, same crop and checkpoint),
    for the colour spaces of `training` (the training manifests), each made as its training manifest was (crop,
    checkpoint, precision: a head scored on other features would measure the mismatch), from another dataset."""
    spaces = list(training)
    if set(paths) != set(spaces):
        raise EmoNetError(f"--test_manifests: give the colour spaces of --manifests ({', '.join(spaces)}), found "
                          f"{', '.join(paths)}")
    manifests = read_manifests(paths)
    common = check_manifests(manifests, common_frames)
    if common.dataset == training_dataset:
        raise EmoNetError(f"--test_manifests hold {training_dataset} features, the dataset the units train on: "
                          "cross-corpus rows score another corpus")
    for space in spaces:
        trained, tested = training[space].settings, manifests[space].settings
        differ = [f"{key} {trained.get(key)!r} -> {tested.get(key)!r}" for key in FEATURE_IDENTITY_KEYS
                  if key in trained and key in tested and trained[key] != tested[key]]
        if differ:
            raise EmoNetError(f"--test_manifests {space}={manifests[space].path}: made otherwise than the training "
                              f"features ({'; '.join(differ)}); extract both corpora with the same crop, checkpoint and "
                              "precision (Aff-Wild2 takes --crop resize only)")
    check_heads(manifests, heads)
    rows = np.arange(len(common.samples))
    if common.official:
        rows = np.array([i for i, s in enumerate(common.samples) if s.get("split") == "validation"], dtype=np.int64)
        if not len(rows):
            raise EmoNetError(f"--test_manifests: the {common.dataset} manifests hold no frame of its validation split")
    if check_files:
        check_feature_files(manifests)
    scored = common.samples[rows]
    identity = {space: feature_identity(manifests[space], scored) for space in spaces}
    return TestCorpus(common.dataset, without_samples(manifests), common, rows, identity)


def predict_test_corpus(comparison: HeadComparison, corpus: TestCorpus, units: list[Unit]) -> int:
    """Predict the test corpus with the chosen model of every finished unit of `units` that has not yet (one space's
    test features in memory at a time); returns how many units predicted it."""
    done = 0
    for space in dict.fromkeys(u.space for u in units):
        todo = [u for u in units if u.space == space and _needs_predictions(corpus, u.folder(comparison.output_dir), space)]
        if not todo:
            continue
        comparison.datasets.clear()  # the training features of the space are no longer needed
        data = load_space(corpus.manifests[space].path, corpus.common, space, comparison.progress)
        features, samples = data.features[corpus.rows], corpus.samples
        zero = None if data.emonet_va is None else data.emonet_va[corpus.rows] * LABEL_SCALE
        del data
        for unit in todo:
            folder = unit.folder(comparison.output_dir)
            best = load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["head"])
            with intra_op_threads(HEAD_THREADS):
                pred = HeadPredictor.from_checkpoint(best).predict(features, samples, comparison.device)
            write_predictions(*corpus.files(folder), samples, pred, zero,
                              {"test": corpus.identity[space], "frames": len(samples),
                               "source": str(corpus.manifests[space].path.resolve())})
            done += 1
    return done


def _needs_predictions(corpus: TestCorpus, folder: Path, space: str) -> bool:
    record = corpus.files(folder)[1]
    if not record.is_file():
        return True
    stored = json.loads(record.read_text()).get("test")
    if stored != corpus.identity[space]:
        raise EmoNetError(f"{record}: this unit scored other {corpus.dataset} frames or features (another manifest, "
                          "crop or checkpoint); refusing to mix them. Use another --output_dir")
    return False


def collect_test_predictions(output_dir: Path, units: list[Unit], corpus: TestCorpus,
                             repeats: int) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """As `comparison.collect_predictions`, for the test corpus: one frame per repetition (fold 0 throughout: one test
    set), each (space, head)'s prediction the mean of its repetition's units; EmoNet's zero-shot per space."""
    missing = [u.label for u in units if not corpus.files(u.folder(output_dir))[1].is_file()]
    if missing:
        raise EmoNetError(f"{len(missing)} units have not predicted {corpus.dataset} ({', '.join(missing[:6])}"
                          f"{', ...' if len(missing) > 6 else ''}); run them (without --report_only) first")
    samples = corpus.samples
    base = pd.DataFrame({"clip": [s["clip"] for s in samples], "frame": [s["frame"] for s in samples], "fold": 0,
                         "valence_true": [float(s["valence"]) for s in samples],
                         "arousal_true": [float(s["arousal"]) for s in samples]})
    model = [base.copy() for _ in range(repeats)]
    zero = base.copy()
    for (r, space, head), group in unit_groups(units).items():
        tables = [pd.read_csv(corpus.files(u.folder(output_dir))[0], dtype={"clip": str, "frame": str}) for u in group]
        for table, unit in zip(tables, group, strict=True):
            if not (table["clip"].equals(base["clip"]) and table["frame"].equals(base["frame"])):
                raise EmoNetError(f"{corpus.files(unit.folder(output_dir))[0]}: not the frames of the test manifests")
        column = prediction_column(space, head)
        for dim in ("valence", "arousal"):
            model[r][f"{column}_{dim}"] = np.mean([t[f"{dim}_pred"].to_numpy() for t in tables], axis=0)
            if r == 0 and head == units[0].head:
                zero[f"{space}_{dim}"] = tables[0][f"{dim}_zero_shot"].to_numpy()
    return model, zero


def test_groups(samples: list[dict], group_by: str) -> tuple[np.ndarray, str]:
    """The bootstrap unit of each scored frame of the test corpus: `group_by` where every frame has it (actors of
    AFEW-VA and Aff-Wild2), else the clip (AffectNet has no actors)."""
    if group_by == "actor" and not all(s.get("actor") for s in samples):
        group_by = "clip"
    return group_indices(samples, group_by), group_by
