"""Typed settings of every run: what it is asked to do, frozen, and checked before any work.

Each is made from a script's parsed flags (`from_args`) or from the API's keyword arguments (`emonet.api`), whose
names are the flags'; `checked()` returns it validated, with the defaults that depend on other settings filled in.
The package takes these, never a parsed command line, and checkpoints and run records store `asdict(...)`. This
module imports nothing heavy, so that a script's flags are checked (and `--help` answered) in a fraction of a second.
"""
import os
from dataclasses import dataclass, fields, replace

from .constants import (AFEW_VA_ROOT_ENV, APPROACHES, DEFAULT_CLIPS_PER_BATCH, DEFAULT_COLOR_SPACE, DEFAULT_DATASET,
                        DEFAULT_HEAD, DEFAULT_PRETRAINED_PATH, FINETUNE_DEFAULTS, HEAD_DEFAULTS,
                        HEAD_KINDS)
from .dataset_info import DATASETS, dataset_crop
from .errors import EmoNetError

# The feature folder of rgb, as the seed named it; other spaces take features_<space>.
RGB_FEATURE_DIR = "features"


def _values(cls, args) -> dict:
    """The fields of `cls` that a parsed command line holds, by name (`--no_progress` is `progress`)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    if hasattr(args, "no_progress"):
        values["progress"] = not args.no_progress
    return values


def given(settings, name: str) -> bool:
    """Whether a setting differs from its field's default (was given, on a command line or as a keyword)."""
    default = next(f.default for f in fields(settings) if f.name == name)
    return getattr(settings, name) != default


def default_feature_paths(color_space: str) -> tuple[str, str]:
    """Default (feature folder, manifest file) of a colour space: features/ + features_manifest.json for rgb,
    features_<space>/ + features_<space>_manifest.json otherwise."""
    folder = RGB_FEATURE_DIR if color_space == "rgb" else f"{RGB_FEATURE_DIR}_{color_space}"
    return folder, f"{folder}_manifest.json"


def dataset_root_for(dataset: str, value: str | None, fallback: str | None = None) -> str:
    """The dataset's top folder: `value`; for AFEW-VA also $AFEW_VA_ROOT, then `fallback` (the seed's --data_root)."""
    if dataset != DEFAULT_DATASET and not value:
        raise EmoNetError(f"--dataset {dataset} needs --dataset_root, its top folder (${AFEW_VA_ROOT_ENV} is AFEW-VA's)")
    root = value or os.environ.get(AFEW_VA_ROOT_ENV) or fallback
    if not root:
        raise EmoNetError(f"no dataset root: pass --dataset_root or set {AFEW_VA_ROOT_ENV} "
                          "(python download_afew_va.py prints the line to paste)")
    return root


def check_fraction(flag: str, value: float | None) -> None:
    if value is not None and not 0 < value < 1:
        raise EmoNetError(f"{flag} {value}: must be a fraction between 0 and 1")


def check_official_split(official_split: bool, dataset: str, where: str) -> None:
    """--official_split needs a dataset that has one (`where`: the data, in words)."""
    if official_split and not DATASETS[dataset].official_split:
        raise EmoNetError(f"--official_split: {where} holds {dataset} data, which have no official split; use "
                          "--val_split or --folds")


def check_optimisation(s) -> None:
    """How a model is optimised: refused where it cannot work."""
    if s.epochs < 1:
        raise EmoNetError(f"--epochs {s.epochs}: at least 1 is needed to train anything")
    if s.batch_size < 2:
        raise EmoNetError(f"--batch_size {s.batch_size}: at least 2 (the CCC of a batch needs two samples)")
    if not s.learning_rate > 0:
        raise EmoNetError(f"--learning_rate {s.learning_rate}: must be positive")
    if s.weight_decay < 0:
        raise EmoNetError(f"--weight_decay {s.weight_decay}: must not be negative")
    if s.save_freq < 0:
        raise EmoNetError(f"--save_freq {s.save_freq}: 0 (never) or a number of epochs")
    if s.keep_checkpoints < 0:
        raise EmoNetError(f"--keep_checkpoints {s.keep_checkpoints}: 0 (keep every one) or a number of files")


# -- training ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingConfig:
    """How a model is optimised, split and written: the flags both training scripts share. A comparison's unit is one of
    these with its own seed and fold (`dataclasses.replace`)."""

    epochs: int | None = None  # None: the kind of training's default (`checked`)
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.0
    optimizer: str = "adam"
    loss_function: str = "ccc"
    seed: int = 0
    save_freq: int = 10
    keep_checkpoints: int = 3
    split: str = "clip"
    val_split: float | None = None
    folds: int | None = None
    fold: int | None = None
    official_split: bool = False
    inner_val_split: float | None = None
    resume: str | None = None
    overwrite: bool = False
    device: str = "auto"
    output_dir: str | None = None
    progress: bool = True

    DEFAULTS = HEAD_DEFAULTS

    @classmethod
    def from_args(cls, args):
        return cls(**_values(cls, args)).checked()

    def checked(self):
        """Validated, the kind's defaults filled in (refusing what cannot work or would be ignored)."""
        s = replace(self, **{k: v for k, v in self.DEFAULTS.items() if getattr(self, k) is None})
        check_optimisation(s)
        if s.folds is None:
            if s.fold is not None:
                raise EmoNetError(f"--fold {s.fold} needs --folds K: without it the run is an ordinary holdout and every "
                                  "fold would train the same split")
            check_fraction("--val_split", s.val_split)
        else:
            if s.folds < 2:
                raise EmoNetError(f"--folds {s.folds}: K-fold needs K >= 2")
            if s.fold is None:
                raise EmoNetError(f"--folds {s.folds} needs --fold i (0..{s.folds - 1}): which fold is held out")
            if not 0 <= s.fold < s.folds:
                raise EmoNetError(f"--fold {s.fold}: must be in 0..{s.folds - 1} with --folds {s.folds}")
            if s.val_split is not None:
                raise EmoNetError(f"--val_split does not apply with --folds: fold {s.fold} is the held-out side; drop one "
                                  "of them")
        check_fraction("--inner_val_split", s.inner_val_split)
        if s.official_split:
            for flag in ("folds", "val_split"):
                if getattr(s, flag) is not None:
                    raise EmoNetError(f"--{flag} does not apply with --official_split: the official validation split is "
                                      "held out")
            if s.split == "frame":
                raise EmoNetError("--split frame does not apply with --official_split: it keeps clips or actors whole")
        if s.resume and s.overwrite:
            raise EmoNetError("--resume continues the run in --output_dir and --overwrite replaces it: choose one")
        return s


@dataclass(frozen=True)
class HeadConfig(TrainingConfig):
    """A head on extracted features (train_emonet_features.py, and each head unit of a comparison)."""

    manifest_file: str | None = None
    data_root: str | None = None
    head: str = DEFAULT_HEAD
    clips_per_batch: int | None = None
    dropout: float = 0.2

    def checked(self):
        if self.head not in HEAD_KINDS:
            raise EmoNetError(f"--head {self.head}: choose one of {', '.join(HEAD_KINDS)}")
        if self.head == "temporal":
            if self.batch_size not in (None, self.DEFAULTS["batch_size"]):
                raise EmoNetError("--batch_size counts frames of the frame and smooth heads; the temporal head trains on "
                                  "whole clips: use --clips_per_batch")
            s = replace(self, clips_per_batch=self.clips_per_batch or DEFAULT_CLIPS_PER_BATCH)
            if s.clips_per_batch < 1:
                raise EmoNetError(f"--clips_per_batch {s.clips_per_batch}: at least 1")
        elif self.clips_per_batch is not None:
            raise EmoNetError(f"--clips_per_batch applies to --head temporal, not {self.head} (which uses --batch_size)")
        else:
            s = self
        if not 0 <= s.dropout < 1:
            raise EmoNetError(f"--dropout {s.dropout}: must be in [0, 1)")
        return TrainingConfig.checked(s)


@dataclass(frozen=True)
class FrameNetworkSettings:
    """What fine-tuning EmoNet on a dataset's frames takes beyond its optimisation: one set, shared by a single run
    (FinetuneConfig) and a fine-tuning comparison (ComparisonConfig), which hands it to each unit."""

    dataset: str = DEFAULT_DATASET
    dataset_root: str | None = None
    pretrained_path: str = DEFAULT_PRETRAINED_PATH
    crop: str | None = None  # the dataset's own
    n_expression: int | None = None
    freeze_backbone: bool = False
    augment: bool = True
    colour_jitter: float = 0.0
    grad_clip: float | None = None
    sync_bn: bool = False
    num_workers: int | None = None
    amp: bool = False
    limit: int | None = None
    flip_tta: bool = False  # the comparison's held-out predictions only


@dataclass(frozen=True)
class FinetuneConfig(TrainingConfig, FrameNetworkSettings):
    """EmoNet fine-tuned on frames (train_emonet_hsv.py, and each unit of a fine-tuning comparison)."""

    data_root: str | None = None  # the seed's flag: a folder holding AFEW-VA/, after --dataset_root and $AFEW_VA_ROOT
    color_space: str = "hsv"

    DEFAULTS = FINETUNE_DEFAULTS

    def checked(self):
        s = replace(self, crop=dataset_crop(self.dataset, self.crop))
        dataset_root_for(s.dataset, s.dataset_root, s.data_root)
        if not 0 <= s.colour_jitter:
            raise EmoNetError(f"--colour_jitter {s.colour_jitter}: must not be negative")
        if s.colour_jitter and not s.augment:
            raise EmoNetError("--colour_jitter is part of the augmentation: it does nothing with --no-augment")
        check_official_split(s.official_split, s.dataset, f"--dataset {s.dataset}")
        return TrainingConfig.checked(s)


# -- extraction ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractionConfig:
    """EmoNet's features of every frame of a dataset (the extraction scripts, `emonet.extract`)."""

    dataset_root: str | None = None
    output_dir: str | None = None  # default: features_<space>/ (features/ for rgb)
    manifest_file: str | None = None  # default: features_<space>_manifest.json (features_manifest.json for rgb)
    pretrained_path: str = DEFAULT_PRETRAINED_PATH
    color_space: str = DEFAULT_COLOR_SPACE
    crop: str | None = None  # the dataset's own
    batch_size: int = 32
    num_workers: int | None = None
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    limit: int | None = None
    overwrite: bool = False
    strict: bool = False
    progress: bool = True
    dataset: str = DEFAULT_DATASET
    backend: str = "auto"
    threads: int | None = None
    int8_calibration: int | None = None

    @classmethod
    def from_args(cls, args) -> "ExtractionConfig":
        return cls(**_values(cls, args)).checked()

    def checked(self) -> "ExtractionConfig":
        folder, manifest = default_feature_paths(self.color_space)
        if self.int8_calibration is not None and self.int8_calibration < 1:
            raise EmoNetError(f"--int8_calibration {self.int8_calibration}: at least one frame to calibrate on")
        return replace(self, dataset_root=dataset_root_for(self.dataset, self.dataset_root),
                       crop=dataset_crop(self.dataset, self.crop), output_dir=self.output_dir or folder,
                       manifest_file=self.manifest_file or manifest)


# -- prediction ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PredictConfig:
    """predict.py's run over one's own videos and images (`emonet.predict`)."""

    inputs: tuple[str, ...] = ()
    model_path: str | None = None
    pretrained_path: str = DEFAULT_PRETRAINED_PATH
    faces: str = "all"
    sample_fps: float | None = None
    crop: str = "model"
    output_dir: str = "predictions"
    render: bool = False
    batch_size: int = 8
    amp: bool | None = None  # None: the model's record decides
    compile: bool | None = None
    device: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def from_args(cls, args) -> "PredictConfig":
        return cls(**_values(cls, args)).checked()

    def checked(self) -> "PredictConfig":
        if isinstance(self.inputs, str):
            return replace(self, inputs=(self.inputs,)).checked()
        if not self.inputs:
            raise EmoNetError("--inputs: give at least one video, image or folder of images")
        if self.batch_size < 1:
            raise EmoNetError(f"--batch_size {self.batch_size}: at least 1")
        if self.sample_fps is not None and not self.sample_fps > 0:
            raise EmoNetError(f"--sample_fps {self.sample_fps}: a number of frames a second above 0")
        return replace(self, inputs=tuple(str(i) for i in self.inputs))


# -- evaluation ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationConfig:
    """evaluate_hsv_model.py's scoring of a model (`emonet.evaluate`)."""

    model_path: str | None = None
    model_type: str = "feature"  # feature (a head), full (a fine-tuned EmoNet), pretrained (EmoNet zero-shot)
    manifest_file: str | None = None
    data_root: str | None = None
    subset: str = "val"
    expression_classes: int | None = None  # 8 or 5: AffectNet images of EmoNet's classes only
    flip_tta: bool = False
    output_dir: str = "evaluation_results"
    overwrite: bool = False
    dataset: str | None = None
    dataset_root: str | None = None
    pretrained_path: str = DEFAULT_PRETRAINED_PATH
    color_space: str | None = None
    crop: str | None = None
    batch_size: int = 64
    num_workers: int | None = None
    amp: bool = False
    backend: str = "auto"
    threads: int | None = None
    device: str = "auto"
    progress: bool = True

    @classmethod
    def from_args(cls, args) -> "EvaluationConfig":
        return cls(**_values(cls, args)).checked()

    def checked(self) -> "EvaluationConfig":
        if self.model_type != "pretrained" and not self.model_path:
            raise EmoNetError(f"--model_type {self.model_type} needs --model_path")
        if self.subset != "all" and not (self.model_path or self.manifest_file or
                                         (self.dataset and DATASETS[self.dataset].official_split)):
            raise EmoNetError(f"--subset {self.subset} needs a checkpoint with a split (--model_path), or a dataset with an "
                              "official split (its --manifest_file, or --dataset and --dataset_root); use --subset all")
        if self.expression_classes and not self.manifest_file:
            raise EmoNetError("--expression_classes applies to AffectNet features: give their --manifest_file")
        return self


# -- the colour-space comparison -----------------------------------------------------------------------------------------
def manifest_pairs(values, flag: str) -> dict[str, str] | None:
    """`LABEL=PATH` strings (a command line's) as {label: path}; a dict is taken as it is."""
    if values is None or isinstance(values, dict):
        return None if values is None else {str(k): str(v) for k, v in values.items()}
    out = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise EmoNetError(f"{flag} {value!r}: expected LABEL=PATH, e.g. rgb=features_manifest.json")
        if label in out:
            raise EmoNetError(f"{flag}: the label {label!r} is given twice")
        out[label] = path
    return out


# Settings of one approach only: given with the other, they are refused, not ignored.
HEAD_ONLY = ("manifests", "test_manifests", "common_frames", "dropout", "heads", "clips_per_batch", "workers")
FINETUNE_ONLY = ("color_spaces", *(f.name for f in fields(FrameNetworkSettings)))
DEFAULT_FOLDS = 5
DEFAULT_BOOTSTRAP = 1000
DEMO_EPOCHS = 10


@dataclass(frozen=True)
class ComparisonConfig(FrameNetworkSettings):
    """compare_color_spaces.py's comparison (`emonet.compare`). None where the value is read from elsewhere: the
    approach's defaults, or with `report_only` the finished units (see emonet/comparison_records.py)."""

    approach: str = "head"
    manifests: dict[str, str] | None = None
    test_manifests: dict[str, str] | None = None
    common_frames: bool = False
    heads: tuple[str, ...] | None = None
    dropout: float = 0.2
    clips_per_batch: int | None = None
    workers: int | None = None
    color_spaces: tuple[str, ...] | None = None
    batch_size: int | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.0
    optimizer: str = "adam"
    loss_function: str = "ccc"
    seed: int = 0
    save_freq: int = 0
    keep_checkpoints: int = 3
    split: str | None = None
    folds: int | None = None
    repeats: int | None = None
    inner_val_split: float = 0.1
    reference: str | None = None
    bootstrap: int | None = None
    device: str = "auto"
    output_dir: str | None = None
    report_dir: str | None = None
    only: str | None = None
    list_units: bool = False
    report_only: bool = False
    progress: bool = True
    demo: bool = False
    demo_clips: int = 36
    demo_frames: int = 3

    @classmethod
    def from_args(cls, args) -> "ComparisonConfig":
        values = _values(cls, args)
        for name in ("heads", "color_spaces"):
            values[name] = tuple(values[name]) if values[name] else None
        for name in ("manifests", "test_manifests"):
            values[name] = manifest_pairs(values[name], f"--{name}")
        return cls(**values).checked()

    def checked(self) -> "ComparisonConfig":
        """Flag checks that need no file: the approach's flags only, the demo's, one of --only, --report_only and
        --list_units, the numbers' ranges. (--report_only's reading of the units happens when the comparison runs.)"""
        if self.approach not in APPROACHES:
            raise EmoNetError(f"--approach {self.approach}: choose one of {', '.join(APPROACHES)}")
        s = replace(self, manifests=manifest_pairs(self.manifests, "--manifests"),
                    test_manifests=manifest_pairs(self.test_manifests, "--test_manifests"),
                    heads=tuple(self.heads) if self.heads else None,
                    color_spaces=tuple(self.color_spaces) if self.color_spaces else None)
        other = sorted(n for n in (FINETUNE_ONLY if s.approach == "head" else HEAD_ONLY) if given(s, n))
        if other:
            raise EmoNetError(f"--{other[0]} does not apply to --approach {s.approach}"
                              + ("; fine-tuning keeps its frame-level network" if other[0] in ("heads", "clips_per_batch")
                                 else ""))
        if s.split == "frame":
            raise EmoNetError("--split frame is refused: neighbouring frames of a clip would sit in training and in the "
                              "held-out fold, and the comparison would measure clip recognition; use clip or actor")
        if s.demo and (s.approach != "head" or s.only or s.report_only or s.manifests):
            raise EmoNetError("--demo is a whole head comparison in one command: drop --approach finetune, --only, "
                              "--report_only, --manifests and torchrun")
        if (given(s, "demo_clips") or given(s, "demo_frames")) and not s.demo:
            raise EmoNetError("--demo_clips and --demo_frames go with --demo")
        if sum(map(bool, (s.only, s.report_only, s.list_units))) > 1:
            raise EmoNetError("--only trains one unit, --report_only trains none and --list_units lists them: choose one")
        for flag, value, least, why in (("--repeats", s.repeats, 1, "at least 1"), ("--workers", s.workers, 1, "at least 1"),
                                        ("--folds", s.folds, 2, "K-fold needs K >= 2"),
                                        ("--bootstrap", s.bootstrap, 100, "at least 100 draws for a 95 % interval")):
            if value is not None and value < least:
                raise EmoNetError(f"{flag} {value}: {why}")
        check_fraction("--inner_val_split", s.inner_val_split)
        check_optimisation(replace(s, **s.training()))
        if s.report_dir and (s.only or s.list_units) and s.report_dir != s.output_dir:
            raise EmoNetError("--report_dir is where a report goes: --only and --list_units write none")
        output_dir = s.output_dir or ("color_space_comparison_demo" if s.demo else "color_space_comparison")
        return replace(s, output_dir=output_dir, report_dir=s.report_dir or output_dir)

    def training(self) -> dict:
        """The optimisation settings with the approach's defaults (the demo trains DEMO_EPOCHS)."""
        defaults = FINETUNE_DEFAULTS if self.approach == "finetune" else HEAD_DEFAULTS
        return {k: getattr(self, k) if getattr(self, k) is not None else
                (DEMO_EPOCHS if self.demo and k == "epochs" else v) for k, v in defaults.items()}
