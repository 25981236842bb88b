"""The head units of a comparison: heads (`heads.py`) trained on each colour space's extracted features, every core
busy. Frame and smooth units train together as batches (`head_training.StackedHeads`), one batch per worker process,
temporal units one per worker; a unit's figures do not depend on its batch or process, so 1 or N workers, torchrun
or a job array give the same report bit for bit. One colour space's features are in memory at a time (`use`).
"""
import faulthandler
import logging
import multiprocessing
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .comparison import (HEAD_TRAINING_ARGS, MODEL_TYPES, CommonFrames, Unit, fingerprint, load_space, unit_split,
                         unit_training)
from .comparison_records import done_line, finish_unit, unit_state
from .constants import LABEL_SCALE
from .distributed import Distributed
from .features import FeatureSet
from .head_training import HEAD_THREADS, HeadUnit, head_config, intra_op_threads, model_args, train_heads
from .heads import HeadPredictor
from .manifest import Manifest
from .settings import HeadConfig
from .splits import split_indices
from .training import load_training_checkpoint

logger = logging.getLogger(__name__)

@dataclass
class HeadComparison:
    """What every head unit of one command shares: folders, folds, flags, the frames, and the features of the one
    colour space whose units are being trained (`use`)."""

    approach = "head"  # the interface every comparison's units share (see `comparison_finetune.FinetuneComparison`)

    output_dir: Path
    folds: dict
    training: HeadConfig  # the comparison's; each unit's is `unit_training` of it
    spaces: list[str]
    common: CommonFrames
    sources: dict[str, dict]  # space -> feature_identity
    manifests: dict[str, Manifest]  # paths and settings (`without_samples`)
    device: torch.device
    progress: bool = False
    datasets: dict[str, FeatureSet] = field(default_factory=dict)  # the space in memory

    def use(self, space: str) -> None:
        """Hold `space`'s features, in the comparison's frame order, and no other space's: memory is one space's (2.9 GB
        at Aff-Wild2's size), however many spaces are compared."""
        if space in self.datasets:
            return
        self.datasets.clear()
        self.datasets[space] = load_space(self.manifests[space].path, self.common, space, self.progress)

    def plan(self, unit: Unit) -> tuple[dict, HeadConfig, dict]:
        split = unit_split(self.folds, unit, self.training.inner_val_split)
        training = unit_training(self.training, self.folds, unit)
        return split, training, fingerprint("head", unit, split, training, HEAD_TRAINING_ARGS, self.sources[unit.space],
                                            head_config(unit.head, training))

    def expected(self, unit: Unit) -> dict:
        return self.plan(unit)[2]

    def head_unit(self, unit: Unit, resumed: dict | None) -> HeadUnit:
        split, training, fp = self.plan(unit)
        manifest = self.manifests[unit.space]
        meta = {"model_type": MODEL_TYPES["head"], "args": asdict(training), "split": split, "unit": fp,
                "head": head_config(unit.head, training), "model_args": model_args(unit.head, training),
                "settings": {**manifest.settings, "color_space": unit.space,
                             "manifest_file": str(manifest.path.resolve()),
                             "data_root": str(manifest.path.resolve().parent)}}
        return HeadUnit(unit.folder(self.output_dir), unit.head, self.spaces.index(unit.space),
                        split_indices(self.common.samples, split), training.seed, meta, resumed)

    def finish(self, unit: Unit, state: str) -> str:
        """Predict the held-out fold with the unit's chosen model; returns the unit's line."""
        folder = unit.folder(self.output_dir)
        split, _, fp = self.plan(unit)
        data = self.datasets[unit.space]
        indices = split_indices(data.samples, split)
        best = load_training_checkpoint(folder / "best_model.pth", MODEL_TYPES["head"])
        held_out = data.samples[indices.val]
        zero_shot = None if data.emonet_va is None else data.emonet_va[indices.val] * LABEL_SCALE
        with intra_op_threads(HEAD_THREADS):
            pred = HeadPredictor.from_checkpoint(best).predict(data.features[indices.val], held_out, self.device)
        finish_unit(folder, held_out, pred, zero_shot, fp, str(self.manifests[unit.space].path.resolve()))
        return done_line(state, best, len(held_out))

    def run(self, units: list[Unit], dist: Distributed, workers: int | None) -> list[str]:
        """Train, select and predict this process's share of `units` (torchrun: every world_size-th); one line each."""
        mine = units[dist.rank :: dist.world_size]
        return run_head_units(self, mine, workers or default_workers(dist), progress=self.progress and dist.is_main)


PROBE_SECONDS = 60  # a forked probe that has not run one backward pass by then cannot train either

# The comparison a forked worker process inherits (set before the pool starts; never pickled).
_SHARED: HeadComparison | None = None


def _train_item(item: list[tuple[Unit, str, dict | None]], progress: bool = False) -> list[tuple[str, str]]:
    """Train and finish the units of one work item (a batch of frame/smooth units of one space, or one temporal unit)."""
    comparison = _SHARED
    training = [(u, s, c) for u, s, c in item if s in ("new", "resume")]
    if training:
        config = unit_training(comparison.training, comparison.folds, training[0][0])
        train_heads([comparison.head_unit(u, c) for u, _, c in training],
                    [comparison.datasets.get(s) for s in comparison.spaces], config, comparison.device, progress=progress)
    return [(u.label, comparison.finish(u, s)) for u, s, _ in item]


def _init_worker() -> None:
    # Ctrl-C is the main process's to handle: it ends the workers itself (see `_run_items`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(HEAD_THREADS)


def default_workers(dist: Distributed) -> int:
    """Worker processes for head units: every core of a plain CPU run (one per core: a head step runs on one
    thread), one under torchrun (its processes are the workers) or on a GPU."""
    if dist.is_distributed or dist.device.type != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_head_units(comparison: HeadComparison, units: list[Unit], workers: int, progress: bool) -> list[str]:
    """Train, select and predict `units`; returns one line per unit, in the order of `units`.

    One colour space at a time (its features loaded, the others' not): its frame and smooth units that need training
    are dealt into `workers` batches, its temporal units are one item each; with several workers the items run in
    forked processes (each with one intra-op thread), which share the space's features with the parent.
    """
    global _SHARED
    states = []
    for unit in units:
        state, resumed = unit_state(unit.folder(comparison.output_dir), comparison.expected(unit), MODEL_TYPES["head"],
                                    comparison.training.epochs)
        states.append((unit, state, resumed))
    lines = {u.label: "skipped (finished)" for u, s, _ in states if s == "done"}
    todo = [t for t in states if t[1] != "done"]
    _SHARED = comparison
    try:
        with tqdm(total=len(todo), unit="unit", desc="units", disable=not progress or workers <= 1) as bar:
            def finished(done: list[tuple[str, str]]) -> None:
                lines.update(done)
                bar.update(len(done))

            for space in dict.fromkeys(u.space for u, _, _ in todo):
                comparison.use(space)
                mine = [t for t in todo if t[0].space == space]
                stacked = [t for t in mine if t[0].head != "temporal"]
                items = [[stacked[i] for i in chunk]
                         for chunk in np.array_split(np.arange(len(stacked)), max(1, min(workers, len(stacked)))) if len(chunk)]
                items += [[t] for t in mine if t[0].head == "temporal"]
                if workers > 1 and len(items) > 1 and not _forked_autograd_works():
                    logger.warning("a process forked from this one cannot train (this one has run torch.compile and "
                                   "a backward pass, and PyTorch's autograd threads do not survive fork): the units "
                                   "are trained here, one item at a time; a fresh process (the script, a new notebook "
                                   "kernel) trains them in %d workers", workers)
                    workers = 1
                if workers <= 1 or len(items) <= 1:
                    for item in items:
                        finished(_train_item(item, progress))
                else:
                    _run_items(items, min(workers, len(items)), finished)
    finally:
        _SHARED = None
    return [f"{u.label} {lines[u.label]}" for u in units]


def _backward_exit() -> None:
    """A forked probe's whole life: exit 0 if it can run backward. os._exit: no atexit handler of the parent's runs.
    Its abort is an answer, not an error to show: silenced, with the dump of every thread that pytest (or python -X
    faulthandler) would print."""
    faulthandler.disable()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    try:
        torch.ones(1, requires_grad=True).sum().backward()
    except RuntimeError:
        os._exit(1)
    os._exit(0)


def _forked_autograd_works() -> bool:
    """Whether a process forked from this one can train. Not always: once this process has run torch.compile and then
    a backward pass (a notebook that compiled an extraction and trained a head), PyTorch's autograd threads do not
    survive fork (https://github.com/pytorch/pytorch/wiki/Autograd-and-Fork), and the workers must be forked to share
    the features. PyTorch offers no way to ask this process, so a forked one is asked."""
    probe = multiprocessing.get_context("fork").Process(target=_backward_exit, daemon=True)
    probe.start()
    probe.join(PROBE_SECONDS)
    if probe.is_alive():
        probe.kill()
        probe.join()
    return probe.exitcode == 0


def _run_items(items: list, workers: int, finished) -> None:
    """Train `items` in `workers` forked processes, calling `finished` with what `_train_item` returns for each item
    as it finishes.

    Ctrl-C: the first says so at once and ends the workers (the units in flight stop where they are: each resumes
    from its last.pth, and every finished unit is kept); a second, while they are being ended, kills them and exits.
    """
    context = multiprocessing.get_context("fork")  # the workers inherit the features instead of receiving a copy
    pool = context.Pool(workers, initializer=_init_worker)
    try:
        for done in pool.imap_unordered(_train_item, items):
            finished(done)
        pool.close()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            logger.warning("stopping: ending the units in flight (finished units are kept; a second Ctrl-C aborts at once)")
        previous = signal.signal(signal.SIGINT, _abort)
        try:
            pool.terminate()
        finally:
            signal.signal(signal.SIGINT, previous)
        raise
    finally:
        pool.join()


def _abort(signum, frame) -> None:
    """A second Ctrl-C while the workers are being ended: kill them and leave at once."""
    for child in multiprocessing.active_children():
        child.kill()
    os._exit(130)


