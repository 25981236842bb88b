"""The fine-tuning units of a comparison: EmoNet fine-tuned on the frames of each colour space (`finetune.py`, the code
of train_emonet_hsv.py), frame head only. Every process of a torchrun job trains each unit together (DDP); rank 0
writes.
"""
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .afew_va import Frame
from .checkpoint import load_emonet
from .comparison import (FINETUNE_TRAINING_ARGS, MODEL_TYPES, Unit, fingerprint, frames_sha256, unit_split,
                         unit_training)
from .comparison_records import done_line, finish_unit, unit_state
from .constants import DEFAULT_HEAD, LABEL_SCALE
from .distributed import Distributed
from .finetune import finetune_emonet, predict_frames
from .settings import FinetuneConfig
from .splits import split_indices
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class FinetuneComparison:
    """What every fine-tuning unit of one command shares: folders, folds, settings, the frames and their source."""

    approach = "finetune"

    output_dir: Path
    folds: dict
    training: FinetuneConfig  # the comparison's; each unit's is `unit_training` of it
    frames: list[Frame]
    dataset_root: Path
    source: dict  # the frames, the checkpoint and the processes, by content (part of every fingerprint)

    @classmethod
    def of(cls, output_dir: Path, folds: dict, training: FinetuneConfig, frames: list[Frame], dataset_root: Path,
           pretrained_sha256: str, processes: int) -> "FinetuneComparison":
        source = {"frames_sha256": frames_sha256([f.sample() for f in frames]), "pretrained_sha256": pretrained_sha256,
                  "processes": processes}
        return cls(output_dir, folds, training, frames, dataset_root, source)

    def plan(self, unit: Unit) -> tuple[dict, FinetuneConfig, dict]:
        split = unit_split(self.folds, unit, self.training.inner_val_split)
        training = unit_training(self.training, self.folds, unit)
        return split, training, fingerprint("finetune", unit, split, training, FINETUNE_TRAINING_ARGS, self.source,
                                            {"kind": DEFAULT_HEAD})

    def expected(self, unit: Unit) -> dict:
        return self.plan(unit)[2]

    def run(self, units: list[Unit], dist: Distributed, workers: int | None = None) -> list[str]:
        """Fine-tune, select and predict each unit with every process of the job; one line each, on rank 0 (the others
        took part in the same units)."""
        lines = [f"{unit.label} {self.run_unit(unit, dist)}" for unit in units]
        return lines if dist.is_main else []

    def run_unit(self, unit: Unit, dist: Distributed) -> str:
        folder = unit.folder(self.output_dir)
        split, training, fp = self.plan(unit)
        state, resumed = unit_state(folder, fp, MODEL_TYPES["finetune"], training.epochs)
        if state == "done":
            return "skipped (finished)"
        samples = [f.sample() for f in self.frames]
        indices = split_indices(samples, split)
        if state in ("new", "resume"):
            meta = {"model_type": MODEL_TYPES["finetune"], "args": asdict(training), "split": split, "unit": fp,
                    "settings": {"color_space": unit.space, "crop": training.crop, "pretrained_path": training.pretrained_path,
                                 "pretrained_sha256": self.source["pretrained_sha256"],
                                 "freeze_backbone": training.freeze_backbone, "augment": training.augment,
                                 "dataset_root": str(self.dataset_root), "dataset": training.dataset},
                    "world_size": dist.world_size, "global_batch_size": dist.world_size * training.batch_size}
            finetune_emonet(self.frames, indices, training, folder, meta, resumed, dist)
        dist.barrier()  # rank 0 has written best_model.pth
        held_out = [self.frames[i] for i in indices.val]
        pred, zero = (self._predict(path, held_out, training, dist)
                      for path in (folder / "best_model.pth", Path(training.pretrained_path)))
        failed = np.isnan(pred).any(axis=1) | np.isnan(zero).any(axis=1)  # undecodable frames: left out, listed
        if dist.is_main:
            if failed.any():
                logger.warning("%s: %d held-out frames could not be decoded and are left out", folder, int(failed.sum()))
            kept = [samples[i] for i, bad in zip(indices.val, failed, strict=True) if not bad]
            finish_unit(folder, kept, pred[~failed], zero[~failed], fp, str(self.dataset_root))
        return done_line(state, load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["finetune"]),
                         len(held_out))

    @staticmethod
    def _predict(weights: Path, frames: list[Frame], training: FinetuneConfig, dist: Distributed) -> np.ndarray:
        model, _ = load_emonet(weights, dist.device)
        pred, _ = predict_frames(model, frames, training.color_space, training.crop, dist.device, training.batch_size,
                                 training.num_workers, training.amp, training.flip_tta,
                                 progress=training.progress and dist.is_main, dist=dist)
        return pred * LABEL_SCALE
