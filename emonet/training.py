"""The epoch loop shared by both training scripts: checkpoints, best model, logs, curves, resume.

A checkpoint (`best_model.pth`, `last.pth`, `checkpoint_epoch_N.pth`, written atomically) is a dict of
plain tensors and containers, loadable with `weights_only=True`:
`format`, `model_type` ("feature_head" or "emonet"), `model_args`, `model` (state dict), `optimizer`,
`epoch`, `best_metric` (mean validation CCC), `best_epoch`, `history`, `args` (vars of the command line),
`split` (see `splits.make_split`) and `settings` (colour space, crop, ... of the input), so evaluation
needs no flag repeated.

Reproducibility: the torch RNG is reseeded from (seed, epoch) at the start of every epoch and batches
are drawn from (seed, epoch) generators, so an interrupted run resumed from `last.pth` ends with the same
weights as an uninterrupted one.
"""
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .checkpoint import read_checkpoint
from .errors import CheckpointError, EmoNetError
from .io import save_figure, save_torch, write_json, write_text
from .losses import ccc_per_dim

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "emonet-pipeline-checkpoint/1"
OPTIMIZERS = ("adam", "sgd")
SGD_MOMENTUM = 0.9
# Which script trains (and --model_type evaluates) each model type, for messages that say what to run.
MODEL_TYPE_SOURCES = {"feature_head": ("train_emonet_features.py", "feature"),
                      "emonet": ("train_emonet_hsv.py", "full")}
# What a training run writes into its folder; a folder holding any of these holds a run.
RUN_FILES = ("best_model.pth", "last.pth", "training_log.txt", "training_curves.png", "args.json", "split.json")
EPOCH_CHECKPOINTS = "checkpoint_epoch_*.pth"
# Flags a resumed run must keep: they decide which frames the model sees and how it learns. (--epochs may grow.)
RESUME_FIXED_ARGS = ("split", "val_split", "folds", "fold", "inner_val_split", "seed", "batch_size", "learning_rate",
                     "weight_decay", "optimizer", "loss_function")


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        # The fused kernel updates all tensors in one op: 8 % of a feature-head step on the CPU.
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling of one epoch depends on (seed, epoch) only, not on how the run got there."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def va_ccc(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Validation CCC of valence and arousal (N x 2 arrays)."""
    values = ccc_per_dim(torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64))
    return float(values[0]), float(values[1])


def load_training_checkpoint(path: str | os.PathLike, model_type: str | None) -> dict:
    """A project checkpoint of `model_type` (None: any), for --resume or evaluation; clear errors otherwise."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this project's training scripts "
                              f"(no format {CHECKPOINT_FORMAT!r})")
    if model_type is not None and ckpt.get("model_type") != model_type:
        found = ckpt.get("model_type")
        script, flag = MODEL_TYPE_SOURCES.get(found, ("?", "?"))
        raise CheckpointError(f"{path}: holds a {found!r} model (made by {script}; evaluate it with --model_type "
                              f"{flag}), expected {model_type!r} (made by {MODEL_TYPE_SOURCES[model_type][0]})")
    return ckpt


def run_files(output_dir: Path) -> list[Path]:
    """The files of a training run present in `output_dir`."""
    return [output_dir / n for n in RUN_FILES if (output_dir / n).exists()] + sorted(output_dir.glob(EPOCH_CHECKPOINTS))


def check_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to write into a folder that holds another run, unless it is resumed from there or replaced."""
    found = run_files(output_dir)
    if not found or overwrite or (resume and Path(resume).resolve().parent == output_dir.resolve()):
        return
    raise EmoNetError(f"{output_dir} already holds a training run ({', '.join(p.name for p in found[:3])}"
                      f"{', ...' if len(found) > 3 else ''}): pass --resume {output_dir / 'last.pth'} to continue "
                      "it, or --overwrite to replace it, or choose another --output_dir")


def resume_changes(before: dict, after: dict, keys) -> list[str]:
    """`key: old -> new` for each of `keys` whose value differs between two settings dicts."""
    return [f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in keys if before.get(k) != after.get(k)]


def check_resume(path: str, ckpt: dict, epochs: int, changes: list[str]) -> None:
    """Refuse a resume whose run was made with other settings (`changes`), or that has nothing left to train."""
    if changes:
        raise EmoNetError(f"--resume {path}: the run was made with other settings ({'; '.join(changes)}); a resumed "
                          "run must see the same data the same way. Start a new run in another --output_dir")
    if epochs <= int(ckpt["epoch"]):
        raise EmoNetError(f"--resume {path}: {ckpt['epoch']} epochs are already trained; pass --epochs above that")


@dataclass
class TrainingRun:
    """What `fit` needs besides the two callbacks."""

    output_dir: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    seed: int
    save_freq: int
    meta: dict  # model_type, model_args, args, split, settings: copied into every checkpoint
    history: list = field(default_factory=list)
    start_epoch: int = 1
    best_metric: float = -math.inf
    best_epoch: int = 0
    is_main: bool = True  # under torchrun only rank 0 writes files and prints epoch lines

    def resume_from(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.best_metric, self.best_epoch = float(ckpt["best_metric"]), int(ckpt["best_epoch"])
        self.history = list(ckpt["history"])
        logger.info("resuming after epoch %d (best mean CCC %.4f at epoch %d)", ckpt["epoch"], self.best_metric,
                    self.best_epoch)

    def checkpoint(self, epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, **self.meta, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "epoch": epoch, "best_metric": self.best_metric,
            "best_epoch": self.best_epoch, "history": self.history,
        }


def fit(run: TrainingRun, train_epoch: Callable[[int], float], validate: Callable[[], dict],
        resumed: dict | None = None) -> dict:
    """Train epochs `run.start_epoch..run.epochs`, after restoring `resumed` (a checkpoint) when given.

    `train_epoch(epoch)` trains one epoch and returns the mean training loss; `validate()` returns
    `{"loss", "valence_CCC", "arousal_CCC"}` on the validation side. Returns the last history row.
    """
    if resumed is not None:
        run.resume_from(resumed)
    out = run.output_dir
    if run.is_main:
        if resumed is None:  # a fresh run replaces whatever an earlier run left here (check_output_dir allowed it)
            for stale in run_files(out):
                stale.unlink()
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "args.json", run.meta["args"])
        write_json(out / "split.json", run.meta["split"])
    for epoch in range(run.start_epoch, run.epochs + 1):
        torch.manual_seed(run.seed * 1_000_003 + epoch)
        train_loss = train_epoch(epoch)
        val = validate()
        mean_ccc = (val["valence_CCC"] + val["arousal_CCC"]) / 2
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"epoch {epoch}: training loss is {train_loss}; lower --learning_rate")
        row = {"epoch": epoch, "train_loss": float(train_loss), "val_loss": float(val["loss"]),
               "val_valence_CCC": float(val["valence_CCC"]), "val_arousal_CCC": float(val["arousal_CCC"]),
               "val_mean_CCC": float(mean_ccc)}
        run.history.append(row)
        improved = mean_ccc > run.best_metric
        if improved:
            run.best_metric, run.best_epoch = float(mean_ccc), epoch
        if run.is_main:
            ckpt = run.checkpoint(epoch)
            save_torch(ckpt, out / "last.pth")
            if improved:
                save_torch(ckpt, out / "best_model.pth")
            if run.save_freq and epoch % run.save_freq == 0:
                save_torch(ckpt, out / f"checkpoint_epoch_{epoch}.pth")
                plot_curves(run.history, out / "training_curves.png")
            write_text(out / "training_log.txt", format_log(run.history, run.best_epoch))
        logger.info("epoch %d/%d  train %.4f  val %.4f  CCC v %.4f a %.4f%s", epoch, run.epochs, train_loss,
                    val["loss"], val["valence_CCC"], val["arousal_CCC"], "  (best)" if improved else "")
    if run.history and run.is_main:
        plot_curves(run.history, out / "training_curves.png")
    logger.info("best mean validation CCC %.4f at epoch %d; checkpoints in %s", run.best_metric, run.best_epoch, out)
    return run.history[-1] if run.history else {}


def format_log(history: list[dict], best_epoch: int) -> str:
    lines = ["epoch  train_loss  val_loss  val_valence_CCC  val_arousal_CCC  val_mean_CCC"]
    for r in history:
        lines.append(f"{r['epoch']:>5}  {r['train_loss']:>10.5f}  {r['val_loss']:>8.5f}  {r['val_valence_CCC']:>15.4f}  "
                     f"{r['val_arousal_CCC']:>15.4f}  {r['val_mean_CCC']:>12.4f}{'  *' if r['epoch'] == best_epoch else ''}")
    lines.append(f"best epoch (mean validation CCC): {best_epoch}")
    return "\n".join(lines) + "\n"


def plot_curves(history: list[dict], path: Path) -> "Figure":
    """Loss and validation CCC per epoch; returns the (closed) figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_ccc) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    # Markers: after one epoch a line has nothing to join, and the point must still show.
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], marker="o", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    for key, label in (("val_valence_CCC", "valence"), ("val_arousal_CCC", "arousal"), ("val_mean_CCC", "mean")):
        ax_ccc.plot(epochs, [r[key] for r in history], marker="o", label=label)
    ax_ccc.set(xlabel="epoch", ylabel="CCC", title="Validation CCC (the side the best epoch is chosen on)")
    for ax in (ax_loss, ax_ccc):
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # one epoch still gets a range, and a whole-epoch tick
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)
    plt.close(fig)
    return fig
