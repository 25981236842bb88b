"""The epoch loop shared by both training scripts: checkpoints, best model, logs, curves, resume.

A checkpoint (`best_model.pth`, `last.pth`, `checkpoint_epoch_N.pth`, written atomically) is a dict of
plain tensors and containers, loadable with `weights_only=True`:
`format`, `model_type` ("feature_head" or "emonet"), `model_args`, `model` (state dict), `optimizer`,
`epoch`, `best_metric` (mean validation CCC), `best_epoch`, `history`, `args` (vars of the command line),
`split` (see `splits.make_split`) and `settings` (colour space, crop, ... of the input), so evaluation
needs no flag repeated.

Reproducibility: every random draw of an epoch (order, dropout, augmentation) comes from (seed, epoch), not
from how the run got there, so an interrupted run resumed from `last.pth` ends with the same weights as an
uninterrupted one.
"""
import logging
import math
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from .constants import OPTIMIZERS
from .checkpoint import read_checkpoint
from .errors import CheckpointError, EmoNetError
from .io import check_writable, save_figure, save_torch, write_json, write_text
from .losses import ccc_per_dim
from .runs import check_kind
from .splits import selection_side

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "emonet-pipeline-checkpoint/1"
SGD_MOMENTUM = 0.9
# Which script trains (and --model_type evaluates) each model type, for messages that say what to run.
MODEL_TYPE_SOURCES = {"feature_head": ("train_emonet_features.py", "feature"),
                      "emonet": ("train_emonet_hsv.py", "full")}
# What a training run writes into its folder; a folder holding any of these holds a run.
RUN_FILES = ("best_model.pth", "last.pth", "training_log.txt", "training_log.csv", "training_curves.png", "args.json",
             "split.json")
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
    """Refuse to write into a folder that holds another run, unless it is resumed from there or replaced; refuse
    a folder of another kind (a comparison, an evaluation, ...) in any case."""
    check_kind(output_dir, "training")
    found = run_files(output_dir)
    if not found or overwrite or (resume and Path(resume).resolve().parent == output_dir.resolve()):
        check_writable(output_dir)
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


def reseed(seed: int, epoch: int) -> None:
    """Reseed torch's global RNG (dropout of an nn.Module) from (seed, epoch) at the start of an epoch, so that a
    resumed run draws what an uninterrupted one would have."""
    torch.manual_seed(seed * 1_000_003 + epoch)


def module_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Callable[[], dict], Callable[[dict], None]]:
    """`TrainingRun.state` and `.restore` for one nn.Module trained by a torch optimizer."""
    def state() -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}

    def restore(ckpt: dict) -> None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])

    return state, restore


SIDE_NAMES = {"inner_val": "inner validation", "val": "validation"}


def selection_of(meta: dict) -> str:
    """The side a run chooses its best epoch on (inner_val or val), from its split; val without one."""
    return selection_side(meta["split"]) if meta.get("split") else "val"


def warn_constant_selection(targets: np.ndarray, run: str, side: str) -> None:
    """Warn when the labels (raw scale) an epoch is chosen on are constant in a dimension: CCC is then 0 at every
    epoch there, and the choice of epoch rests on the other dimension alone (or, both constant, on none)."""
    targets = np.asarray(targets)
    constant = [f"{dim} labels are all {targets[0, i]:g}" for i, dim in enumerate(("valence", "arousal"))
                if len(targets) and np.ptp(targets[:, i]) == 0]
    if constant:
        logger.warning("%s: the %s side's %s: CCC there is 0 at every epoch, so the best epoch is not chosen on it; "
                       "use a larger --inner_val_split or another --seed", run, SIDE_NAMES.get(side, side),
                       " and ".join(constant))


@dataclass
class TrainingRun:
    """One model being trained: where it writes, what its checkpoints record, and how far it got.

    `state()` returns the checkpoint entries that hold the weights and the optimizer (`model`, `optimizer`),
    `restore(ckpt)` puts them back: an nn.Module with a torch optimizer (`module_state`), or one unit of a
    batch of heads trained together (`head_training.StackedHeads`).
    """

    output_dir: Path
    epochs: int
    save_freq: int
    meta: dict  # model_type, model_args, head, args, split, settings: copied into every checkpoint
    state: Callable[[], dict]
    restore: Callable[[dict], None]
    is_main: bool = True  # under torchrun only rank 0 writes files and prints epoch lines
    keep_checkpoints: int = 3  # checkpoint_epoch_N.pth kept, the latest ones (0: every one)
    history: list = field(default_factory=list)
    start_epoch: int = 1
    best_metric: float = -math.inf
    best_epoch: int = 0

    @property
    def name(self) -> str:
        return str(self.output_dir)

    def resume_from(self, ckpt: dict) -> None:
        self.restore(ckpt)
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.best_metric, self.best_epoch = float(ckpt["best_metric"]), int(ckpt["best_epoch"])
        self.history = list(ckpt["history"])
        logger.info("%s: resuming after epoch %d (best mean CCC %.4f at epoch %d)", self.name, ckpt["epoch"],
                    self.best_metric, self.best_epoch)

    def begin(self, resumed: dict | None) -> None:
        """Restore `resumed`, or clear what an earlier run left in the folder (check_output_dir allowed it)."""
        if resumed is not None:
            self.resume_from(resumed)
        if not self.is_main:
            return
        if resumed is None:
            for stale in run_files(self.output_dir):
                stale.unlink()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.output_dir / "args.json", self.meta["args"])
        write_json(self.output_dir / "split.json", self.meta["split"])

    def checkpoint(self, epoch: int) -> dict:
        return {"format": CHECKPOINT_FORMAT, **self.meta, **self.state(), "epoch": epoch,
                "best_metric": self.best_metric, "best_epoch": self.best_epoch, "history": self.history}

    def record(self, epoch: int, train_loss: float, val: dict) -> None:
        """Add one epoch's row (validate's dict: loss, valence_CCC, arousal_CCC, and any choice it made, such
        as the smoothing sigma), keep the best epoch, write checkpoints and logs."""
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"{self.name}: epoch {epoch}: training loss is {train_loss}; lower --learning_rate")
        mean_ccc = (val["valence_CCC"] + val["arousal_CCC"]) / 2
        row = {"epoch": epoch, "train_loss": float(train_loss), "val_loss": float(val["loss"]),
               "val_valence_CCC": float(val["valence_CCC"]), "val_arousal_CCC": float(val["arousal_CCC"]),
               "val_mean_CCC": float(mean_ccc),
               **{k: v for k, v in val.items() if k not in ("loss", "valence_CCC", "arousal_CCC")}}
        self.history.append(row)
        improved = mean_ccc > self.best_metric
        if improved:
            self.best_metric, self.best_epoch = float(mean_ccc), epoch
        if self.is_main:
            out = self.output_dir
            ckpt = self.checkpoint(epoch)
            save_torch(ckpt, out / "last.pth")
            if improved:
                save_torch(ckpt, out / "best_model.pth")
            if self.save_freq and epoch % self.save_freq == 0:
                save_torch(ckpt, out / f"checkpoint_epoch_{epoch}.pth")
                self._drop_old_checkpoints()
                plot_curves(self.history, out / "training_curves.png", self.best_epoch, self.title, selection_of(self.meta))
            write_log(self.history, self.best_epoch, out, selection_of(self.meta))
        extra = "".join(f"  {k} {v:g}" for k, v in row.items() if k not in LOG_COLUMNS)
        logger.info("%s: epoch %d/%d  train %.4f  val %.4f  CCC v %.4f a %.4f%s%s", self.name, epoch, self.epochs,
                    train_loss, val["loss"], val["valence_CCC"], val["arousal_CCC"], extra, "  (best)" if improved else "")

    def _drop_old_checkpoints(self) -> None:
        """Keep the `keep_checkpoints` latest checkpoint_epoch_N.pth (52 files after 529 epochs otherwise)."""
        if not self.keep_checkpoints:
            return
        saved = sorted(self.output_dir.glob(EPOCH_CHECKPOINTS), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        for old in saved[:-self.keep_checkpoints]:
            old.unlink()

    @property
    def title(self) -> str:
        """What the curves are of: the run's folder, model and input."""
        settings, head = self.meta.get("settings", {}), self.meta.get("head", {})
        model = {"feature_head": f"{head.get('kind', 'frame')} head", "emonet": "fine-tuned EmoNet"}.get(
            self.meta.get("model_type"), self.meta.get("model_type", "model"))
        return f"{self.output_dir.name}: {model}, {settings.get('color_space') or '?'} input"

    def finish(self) -> None:
        """Final curves and log; a warning when no epoch scored better than another (the choice meant nothing)."""
        if self.history and self.is_main:
            plot_curves(self.history, self.output_dir / "training_curves.png", self.best_epoch, self.title,
                        selection_of(self.meta))
        scores = {round(r["val_mean_CCC"], 12) for r in self.history}
        if len(self.history) > 1 and len(scores) == 1:
            logger.warning("%s: every epoch scored the same mean CCC (%.4f) on the selection side, so epoch %d was "
                           "kept by default, not chosen; check that side's labels vary (a larger --inner_val_split)",
                           self.name, self.best_metric, self.best_epoch)
        logger.info("%s: best mean validation CCC %.4f at epoch %d", self.name, self.best_metric, self.best_epoch)


def fit_runs(runs: list[TrainingRun], train_epoch: Callable[[int, list[int]], list[float]],
             validate: Callable[[list[int]], list[dict]], resumed: list[dict | None]) -> None:
    """Train several runs epoch by epoch together (a batch of heads): `train_epoch(epoch, active)` trains the runs
    at positions `active` for one epoch and returns their mean training losses, `validate(active)` their
    validation dicts. A run resumed from a checkpoint (`resumed`) joins at its next epoch."""
    for run, ckpt in zip(runs, resumed, strict=True):
        run.begin(ckpt)
    first, last = min(r.start_epoch for r in runs), max(r.epochs for r in runs)
    for epoch in range(first, last + 1):
        active = [i for i, r in enumerate(runs) if r.start_epoch <= epoch <= r.epochs]
        if not active:
            continue
        losses = train_epoch(epoch, active)
        for i, loss, val in zip(active, losses, validate(active), strict=True):
            runs[i].record(epoch, loss, val)
    for run in runs:
        run.finish()


def fit(run: TrainingRun, train_epoch: Callable[[int], float], validate: Callable[[], dict],
        resumed: dict | None = None) -> dict:
    """Train epochs `run.start_epoch..run.epochs` of one run, after restoring `resumed` when given.

    `train_epoch(epoch)` trains one epoch and returns the mean training loss; `validate()` returns
    `{"loss", "valence_CCC", "arousal_CCC"}` on the validation side. Returns the last history row.
    """
    fit_runs([run], lambda epoch, _: [train_epoch(epoch)], lambda _: [validate()], [resumed])
    return run.history[-1] if run.history else {}


# Columns of training_log.txt and .csv (a run may add its own, such as the smooth head's sigma). The history keeps
# the `val_` names for the side the epoch is chosen on; the logs name that side (`inner_val_` with an inner split).
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_valence_CCC", "val_arousal_CCC", "val_mean_CCC")


def _side_column(name: str, side: str) -> str:
    return f"{side}_{name.removeprefix('val_')}" if name.startswith("val_") else name


def format_log(history: list[dict], best_epoch: int, side: str = "val") -> str:
    extra = [k for k in history[0] if k not in LOG_COLUMNS] if history else []
    names = [_side_column(c, side) for c in LOG_COLUMNS]
    widths = [max(len(n), 8) for n in names]
    lines = ["  ".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True)) + "".join(f"  {k:>8}" for k in extra)]
    for r in history:
        cells = [f"{r['epoch']:>{widths[0]}}", f"{r['train_loss']:>{widths[1]}.5f}"] + [
            f"{r[c]:>{w}.{5 if c == 'val_loss' else 4}f}" for c, w in zip(LOG_COLUMNS[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells) + "".join(f"  {r[k]:>8g}" for k in extra) + ("  *" if r["epoch"] == best_epoch else ""))
    lines.append(f"best epoch (mean {SIDE_NAMES.get(side, side)} CCC): {best_epoch}")
    return "\n".join(lines) + "\n"


def write_log(history: list[dict], best_epoch: int, output_dir: Path, side: str = "val") -> None:
    """training_log.txt (for a person) and training_log.csv (one row per epoch, for pandas; `best` marks the
    epoch kept); the columns of the side the epoch is chosen on are named after it (`inner_val_mean_CCC`)."""
    write_text(output_dir / "training_log.txt", format_log(history, best_epoch, side))
    table = pd.DataFrame(history).rename(columns=lambda c: _side_column(c, side))
    table["best"] = table["epoch"] == best_epoch
    write_text(output_dir / "training_log.csv", table.to_csv(index=False))


# Up to this many epochs each epoch gets a marker; beyond, lines alone stay readable.
MARKER_MAX_EPOCHS = 30


def plot_curves(history: list[dict], path: Path, best_epoch: int | None = None, title: str | None = None,
                side: str = "val") -> "Figure":
    """Loss and the CCC of the side the epoch is chosen on (`side`) per epoch, the epoch kept marked; returns the
    (closed) figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    marker = "o" if len(epochs) <= MARKER_MAX_EPOCHS else None  # after one epoch a line has nothing to join
    fig, (ax_loss, ax_ccc) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker=marker, ms=4, label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], marker=marker, ms=4, label=SIDE_NAMES.get(side, side))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    for key, label in (("val_valence_CCC", "valence"), ("val_arousal_CCC", "arousal"), ("val_mean_CCC", "mean")):
        ax_ccc.plot(epochs, [r[key] for r in history], marker=marker, ms=4, label=label)
    ax_ccc.set(xlabel="epoch", ylabel="CCC", title=f"{SIDE_NAMES.get(side, side).capitalize()} CCC (chooses the epoch)")
    # A CCC axis of at least [-0.05, 0.25] and a loss axis at least 0.1 tall: after one epoch (or a flat run) autoscaling
    # would spread a few thousandths over the whole plot.
    cccs = [r[k] for r in history for k in ("val_valence_CCC", "val_arousal_CCC", "val_mean_CCC")]
    ax_ccc.set_ylim(max(-1.05, min(-0.05, min(cccs) - 0.05)), min(1.05, max(0.25, max(cccs) + 0.05)))
    losses = [r[k] for r in history for k in ("train_loss", "val_loss")]
    middle, half = (max(losses) + min(losses)) / 2, max(0.05, (max(losses) - min(losses)) / 2 * 1.1)
    ax_loss.set_ylim(middle - half, middle + half)
    for ax in (ax_loss, ax_ccc):
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # one epoch still gets a range, and a whole-epoch tick
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if best_epoch:
            ax.axvline(best_epoch, color="k", ls=":", lw=1.2, label=f"kept: epoch {best_epoch}")
        # Below the axes, never over the curves.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(textwrap.fill(title, 110), fontsize=10)  # a long run name wraps rather than running off the figure
    save_figure(fig, path)
    plt.close(fig)
    return fig
