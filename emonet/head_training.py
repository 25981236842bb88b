"""Training the heads of `heads.py` on in-memory features: the code behind train_emonet_features.py and every head
unit of compare_color_spaces.py.

Frame and smooth heads train as a batch of units (`StackedHeads`): U networks of one shape, each with its own data,
split, seed, dropout and optimizer state, held as batched weights (one `baddbmm` per layer), because a head step is
bound by per-operation overhead (the guide's "Heads" benchmark). Units never mix: a unit trained alone and in a batch
ends with the same bits (tested). The smooth head trains as the frame head and also picks its sigma
(`heads.SIGMA_GRID`) with the epoch on the selection side. The temporal head trains alone (`train_temporal_unit`) on
padded, masked batches of clips, longer clips cut into windows of `heads.TEMPORAL_WINDOW` frames at a new offset
every epoch."""
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd
from tqdm import tqdm

from .constants import LABEL_SCALE
from .errors import CheckpointError
from .features import FeatureSet
from .heads import (HEAD_HIDDEN, SIGMA_GRID, TEMPORAL_DEFAULTS, TEMPORAL_WINDOW, ClipSequences, FeatureHead,
                    TemporalHead, clip_batch, smooth_clips, temporal_predictions)
from .losses import batched_loss, get_loss
from .manifest import take
from .settings import HeadConfig
from .splits import SplitIndices, selection_side
from .training import (SGD_MOMENTUM, TrainingRun, epoch_generator, fit, fit_runs, make_optimizer, module_state, reseed,
                       va_ccc, warn_constant_selection)

logger = logging.getLogger(__name__)

# The head is too small to gain from a second intra-op thread (measured: 1.69 ms a step with one or two);
# training it on one thread also makes its floats independent of the machine's core count.
HEAD_THREADS = 1
# Dropout draws are made for this many steps at a time (one call per unit, not one per step).
DROPOUT_CHUNK = 64
# Adam's defaults (Kingma & Ba 2015), as torch.optim.Adam has them.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
# Clips per step of the temporal head (train_emonet_features.py --clips_per_batch): about 400 frames.
# Separate random streams of one (seed, epoch): the order of the frames, the dropout masks, the temporal head's windows.
DROPOUT_STREAM = 7919
WINDOW_STREAM = 104_729


@dataclass
class HeadUnit:
    """One head to train: its data (an index into the feature sets given to the trainer), split, seed, kind
    (frame, smooth or temporal), folder, checkpoint metadata, and the checkpoint it resumes from."""

    output_dir: Path
    kind: str
    data: int
    indices: SplitIndices
    seed: int
    meta: dict
    resumed: dict | None = None
    sequences: ClipSequences | None = field(default=None, repr=False)  # the selection side's clips (smooth)


def head_config(kind: str, config: HeadConfig) -> dict:
    """What a checkpoint records of a head besides its weights (`head`), from the training flags."""
    if kind == "smooth":
        return {"kind": kind, "sigma_grid": list(SIGMA_GRID)}
    if kind == "temporal":
        return {"kind": kind, **TEMPORAL_DEFAULTS, "clips_per_batch": config.clips_per_batch, "window": TEMPORAL_WINDOW}
    return {"kind": kind}


def model_args(kind: str, config: HeadConfig) -> dict:
    """The constructor arguments of a unit's network (`model_args` in its checkpoint)."""
    if kind == "temporal":
        return {**TEMPORAL_DEFAULTS, "dropout": config.dropout}
    return {"dropout": config.dropout}


def train_heads(units: list[HeadUnit], datasets: list[FeatureSet], config: HeadConfig, device: torch.device,
                progress: bool = False) -> None:
    """Train every unit for `config.epochs` (its optimisation, `dropout`, and `clips_per_batch` for temporal units),
    choosing each one's best epoch on its selection side. Frame and
    smooth units train together as one batch, temporal units one after the other."""
    stacked = [u for u in units if u.kind != "temporal"]
    with intra_op_threads(HEAD_THREADS):
        if stacked:
            StackedTrainer(stacked, datasets, config, device).fit(progress)
        for unit in units:
            if unit.kind == "temporal":
                train_temporal_unit(unit, datasets[unit.data], config, device)


@contextlib.contextmanager
def intra_op_threads(n: int):
    """Run the block with `n` intra-op threads, restoring the previous number after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- frame and smooth heads, trained as a batch -----------------------------------------------------------------
class StackedHeads:
    """U FeatureHeads as six batched tensors: W1, b1, W2, b2, W3, b3 of shapes U x in x out (for baddbmm) and
    U x 1 x out, in FeatureHead's parameter order, so that a unit converts to and from a FeatureHead state dict
    without loss. Standardisation statistics are U x 1 x 256 buffers."""

    def __init__(self, heads: list[FeatureHead], device: torch.device):
        self.dropout = heads[0].net[2].p
        per_head = [self._tensors(h) for h in heads]
        self.params = [torch.stack(parts).to(device).requires_grad_() for parts in zip(*per_head, strict=True)]
        self.mean = torch.stack([h.feature_mean for h in heads])[:, None].to(device)
        self.std = torch.stack([h.feature_std for h in heads])[:, None].to(device)

    @staticmethod
    def _linears(head: FeatureHead) -> list[torch.nn.Linear]:
        return [m for m in head.net if isinstance(m, torch.nn.Linear)]

    @classmethod
    def _tensors(cls, head: FeatureHead) -> list[torch.Tensor]:
        out = []
        for linear in cls._linears(head):
            out += [linear.weight.detach().t().contiguous(), linear.bias.detach()[None].clone()]
        return out

    def forward(self, x: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """U x B x 2 outputs for U x B x 256 inputs; `masks` (dropout, already scaled) in training."""
        w1, b1, w2, b2, w3, b3 = self.params
        h = torch.relu(torch.baddbmm(b1, (x - self.mean) / self.std, w1))
        if masks is not None:
            h = h * masks[0]
        h = torch.relu(torch.baddbmm(b2, h, w2))
        if masks is not None:
            h = h * masks[1]
        return torch.baddbmm(b3, h, w3)

    def predict(self, u: int, x: torch.Tensor) -> torch.Tensor:
        """Unit u's outputs for N x 256 inputs, without dropout."""
        w1, b1, w2, b2, w3, b3 = (t[u] for t in self.params)
        h = torch.relu(torch.addmm(b1, (x - self.mean[u]) / self.std[u], w1))
        h = torch.relu(torch.addmm(b2, h, w2))
        return torch.addmm(b3, h, w3)

    def state_dict(self, u: int) -> dict:
        """Unit u as a FeatureHead state dict (CPU tensors): the inverse of `_tensors`, through FeatureHead itself."""
        head = FeatureHead(dropout=self.dropout)
        with torch.no_grad():
            for linear, (weight, bias) in zip(self._linears(head), zip(self.params[::2], self.params[1::2], strict=True),
                                              strict=True):
                linear.weight.copy_(weight[u].t())
                linear.bias.copy_(bias[u, 0])
            head.feature_mean.copy_(self.mean[u, 0])
            head.feature_std.copy_(self.std[u, 0])
        return head.state_dict()

    def load_unit(self, u: int, state: dict) -> None:
        head = FeatureHead(dropout=self.dropout)
        head.load_state_dict(state)
        with torch.no_grad():
            for param, value in zip(self.params, self._tensors(head), strict=True):
                param[u] = value
            self.mean[u, 0], self.std[u, 0] = head.feature_mean, head.feature_std


class StackedOptimizer:
    """torch.optim's Adam (fused) or SGD with momentum, applied to each unit's slices of `StackedHeads`' tensors as
    if each unit had its own optimizer: every slice has its own moments and step count, and a step updates the
    active units only (a unit whose batch has fewer than two frames, or that has finished, keeps its weights and
    moments exactly). The functional torch.optim.adam/sgd do the arithmetic, element by element."""

    def __init__(self, name: str, params: list[torch.Tensor], lr: float, weight_decay: float):
        self.name, self.params, self.lr, self.weight_decay = name, params, lr, weight_decay
        self.first = [torch.zeros_like(p) for p in params]  # Adam: exp_avg; SGD: momentum buffer
        self.second = [torch.zeros_like(p) for p in params]  # Adam: exp_avg_sq
        self.steps = torch.zeros(len(params[0]), len(params))  # per unit and tensor, as torch's fused Adam counts
        units = range(len(params[0]))
        self._views = {"params": [[t.data[u] for t in params] for u in units],
                       "first": [[t[u] for t in self.first] for u in units],
                       "second": [[t[u] for t in self.second] for u in units],
                       "steps": [[self.steps[u, j] for j in range(len(params))] for u in units]}

    def _gather(self, key: str, active: list[int]) -> list[torch.Tensor]:
        return [t for u in active for t in self._views[key][u]]

    @torch.no_grad()
    def step(self, active: list[int]) -> None:
        """One step of the units `active`."""
        grads = [t.grad.unbind(0) for t in self.params]
        grad_list = [g[u] for u in active for g in grads]
        if self.name == "adam":
            adam(self._gather("params", active), grad_list, self._gather("first", active), self._gather("second", active),
                 [], self._gather("steps", active), fused=True, amsgrad=False, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                 lr=self.lr, weight_decay=self.weight_decay, eps=ADAM_EPS, maximize=False)
            return
        # torch's SGD starts a momentum buffer as a copy of a parameter's first gradient: a unit that has not
        # stepped yet passes None and gets its buffers copied in after the step.
        fresh = {u for u in active if self.steps[u, 0] == 0}
        slots = [(u, view) for u in active for view in self._views["first"][u]]
        buffers = [None if u in fresh else view for u, view in slots]
        sgd(self._gather("params", active), grad_list, buffers, weight_decay=self.weight_decay, momentum=SGD_MOMENTUM,
            lr=self.lr, dampening=0.0, nesterov=False, maximize=False, foreach=True)
        for (unit, view), buffer in zip(slots, buffers, strict=True):
            if unit in fresh:
                view.copy_(buffer)
        self.steps[active] += 1

    def state_dict(self, u: int) -> dict:
        return {"algorithm": self.name, "steps": self.steps[u].clone(),
                "first": [t[u].cpu().clone() for t in self.first], "second": [t[u].cpu().clone() for t in self.second]}

    def load_unit(self, u: int, state: dict, path: Path) -> None:
        if not isinstance(state, dict) or state.get("algorithm") != self.name:
            raise CheckpointError(f"{path}: its optimizer state is not that of this project's {self.name} for heads (a "
                             "checkpoint of an earlier version, or another --optimizer); start a new run")
        with torch.no_grad():
            self.steps[u] = state["steps"]
            for buffers, values in ((self.first, state["first"]), (self.second, state["second"])):
                for buffer, value in zip(buffers, values, strict=True):
                    buffer[u] = value


def _stream(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 31 + stream)


class StackedTrainer:
    """The epoch loop of a batch of frame/smooth units (see the module docstring)."""

    def __init__(self, units: list[HeadUnit], datasets: list[FeatureSet], config: HeadConfig, device: torch.device):
        self.units, self.config, self.device = units, config, device
        self.batch = config.batch_size
        # The feature sets these units train on, stacked; one set is used as it is: a forked worker then shares the
        # parent's pages instead of copying every colour space (2.9 GB each at Aff-Wild2's size).
        used = sorted({u.data for u in units})
        offsets = dict(zip(used, np.cumsum([0] + [len(datasets[k].features) for k in used[:-1]]).tolist(), strict=True))
        features = datasets[used[0]].features if len(used) == 1 else np.concatenate([datasets[k].features for k in used])
        self.x = torch.from_numpy(features).to(device)
        self.y = torch.from_numpy(np.concatenate([datasets[k].labels for k in used]) / np.float32(LABEL_SCALE)).to(device)
        self.train_rows = [u.indices.train + offsets[u.data] for u in units]  # rows of x, per unit
        self.select_rows = [torch.from_numpy(u.indices.selection + offsets[u.data]).to(device) for u in units]
        heads = []
        for unit in units:
            torch.manual_seed(unit.seed)  # a unit's initial weights depend on its seed alone
            head = FeatureHead(dropout=config.dropout)
            head.set_normalisation(datasets[unit.data].features, unit.indices.train)  # training side only
            heads.append(head)
            samples = datasets[unit.data].samples
            if unit.kind == "smooth":
                unit.sequences = ClipSequences.from_samples(take(samples, unit.indices.selection))
            warn_constant_selection(datasets[unit.data].labels[unit.indices.selection], str(unit.output_dir),
                                    selection_side(unit.meta["split"]))
        self.heads = StackedHeads(heads, device)
        self.optimizer = StackedOptimizer(config.optimizer, self.heads.params, config.learning_rate, config.weight_decay)
        self.loss = get_loss(config.loss_function)
        self.runs = [TrainingRun(u.output_dir, config.epochs, config.save_freq, u.meta, *self._state(i),
                                 keep_checkpoints=config.keep_checkpoints) for i, u in enumerate(units)]

    def _state(self, u: int):
        def state() -> dict:
            return {"model": self.heads.state_dict(u), "optimizer": self.optimizer.state_dict(u)}

        def restore(ckpt: dict) -> None:
            self.heads.load_unit(u, ckpt["model"])
            self.optimizer.load_unit(u, ckpt["optimizer"], self.units[u].output_dir)

        return state, restore

    def fit(self, progress: bool) -> None:
        bar = tqdm(total=max(self.config.epochs - min(r.start_epoch for r in self.runs) + 1, 0), unit="epoch",
                   desc=f"{len(self.units)} head unit{'s' if len(self.units) > 1 else ''}", disable=not progress)

        def train_epoch(epoch: int, active: list[int]) -> list[float]:
            losses = self.train_epoch(epoch, active)
            bar.update()
            return losses

        with bar:
            fit_runs(self.runs, train_epoch, self.validate, [u.resumed for u in self.units])

    def _epoch_plan(self, epoch: int, active: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Rows (U x steps x B, padded with 0) and weights (U x steps x B, 1 for a real row) of every unit's batches
        this epoch: each unit's training rows in the order drawn from (its seed, epoch); inactive units get none."""
        orders = {i: self.train_rows[i][torch.randperm(len(self.train_rows[i]),
                                                       generator=epoch_generator(self.units[i].seed, epoch)).numpy()]
                  for i in active}
        steps = max(-(-len(o) // self.batch) for o in orders.values())
        rows = np.zeros((len(self.units), steps * self.batch), dtype=np.int64)
        weight = np.zeros((len(self.units), steps * self.batch), dtype=np.float32)
        for i, order in orders.items():
            rows[i, : len(order)], weight[i, : len(order)] = order, 1.0
        shape = (len(self.units), steps, self.batch)
        return (torch.from_numpy(rows).view(shape).to(self.device), torch.from_numpy(weight).view(shape).to(self.device),
                steps)

    def _dropout(self, generators: list[torch.Generator | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Scaled dropout masks of every unit for DROPOUT_CHUNK steps (U x chunk x B x width, per layer)."""
        p = self.heads.dropout
        if p == 0:
            return None
        width = sum(HEAD_HIDDEN)
        keep = torch.zeros(len(self.units), DROPOUT_CHUNK, self.batch, width)
        for i, g in enumerate(generators):
            if g is not None:
                keep[i] = (torch.rand(DROPOUT_CHUNK, self.batch, width, generator=g) >= p).float()
        keep = (keep / (1 - p)).to(self.device)
        return keep[..., : HEAD_HIDDEN[0]], keep[..., HEAD_HIDDEN[0] :]

    def train_epoch(self, epoch: int, active: list[int]) -> list[float]:
        rows, weight, steps = self._epoch_plan(epoch, active)
        frames = weight.sum(2)  # U x steps: frames of each unit's batch
        stepping = frames >= 2  # a CCC over fewer than two frames is undefined: that unit skips the step
        who = [torch.nonzero(stepping[:, step]).squeeze(1).tolist() for step in range(steps)]
        generators = [_stream(u.seed, epoch, DROPOUT_STREAM) if i in active else None for i, u in enumerate(self.units)]
        losses_sum = torch.zeros(len(self.units), dtype=torch.float64)
        masks = None
        for step in range(steps):
            if step % DROPOUT_CHUNK == 0:
                masks = self._dropout(generators)
            r = rows[:, step]
            x = self.x.index_select(0, r.reshape(-1)).view(*r.shape, -1)
            y = self.y.index_select(0, r.reshape(-1)).view(*r.shape, -1)
            step_masks = None if masks is None else tuple(m[:, step % DROPOUT_CHUNK] for m in masks)
            losses = batched_loss(self.config.loss_function, self.heads.forward(x, step_masks), y, weight[:, step, :, None])
            losses = losses * stepping[:, step]  # a unit that skips the step gets no gradient
            for param in self.heads.params:
                param.grad = None
            losses.sum().backward()
            self.optimizer.step(who[step])
            losses_sum += (losses.detach() * frames[:, step]).double()
        seen = (frames * stepping).sum(1).double()
        return [float(losses_sum[i] / max(float(seen[i]), 1.0)) for i in active]

    def validate(self, active: list[int]) -> list[dict]:
        out = []
        with torch.no_grad():
            for i in active:
                rows = self.select_rows[i]
                pred = self.heads.predict(i, self.x[rows])
                target = self.y[rows]
                out.append(self._score(self.units[i], pred.cpu().numpy(), target.cpu().numpy()))
        return out

    def _score(self, unit: HeadUnit, pred: np.ndarray, target: np.ndarray) -> dict:
        """Loss and CCC of a unit's selection-side predictions; a smooth unit tries every sigma and keeps the best
        (the smallest among equals, so that smoothing is never chosen for nothing)."""
        best = None
        for sigma in SIGMA_GRID if unit.kind == "smooth" else (None,):
            p = pred if sigma is None else smooth_clips(pred, unit.sequences, sigma)
            v, a = va_ccc(p, target)
            row = {"loss": self.loss(torch.from_numpy(p), torch.from_numpy(target)).item(), "valence_CCC": v,
                   "arousal_CCC": a, **({} if sigma is None else {"sigma": sigma})}
            if best is None or (v + a) / 2 > (best["valence_CCC"] + best["arousal_CCC"]) / 2:
                best = row
        return best


# -- the temporal head -------------------------------------------------------------------------------------------
def train_temporal_unit(unit: HeadUnit, data: FeatureSet, config: HeadConfig, device: torch.device,
                        network: torch.nn.Module | None = None) -> TrainingRun:
    """Train a TemporalHead on the training side's clips, choosing its best epoch on the selection side.

    `network`: another sequence model with TemporalHead's interface (`forward(x, mask)`, `set_normalisation`), for
    benchmarks/bench_temporal_heads.py, which compares architectures with this same loop."""
    torch.manual_seed(unit.seed)
    model = network if network is not None else TemporalHead(**model_args("temporal", config))
    model.set_normalisation(data.features, unit.indices.train)
    model.to(device)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.learning_rate, config.weight_decay)
    loss_fn = get_loss(config.loss_function)
    # The training clips as rows of the whole arrays: no copy of the training side's features (2.3 GB at Aff-Wild2's size).
    train = ClipSequences.from_samples(take(data.samples, unit.indices.train)).on(unit.indices.train)
    labels = data.labels / np.float32(LABEL_SCALE)
    select_samples = take(data.samples, unit.indices.selection)
    select = ClipSequences.from_samples(select_samples)
    select_x = data.features[unit.indices.selection]
    select_y = data.labels[unit.indices.selection] / np.float32(LABEL_SCALE)
    warn_constant_selection(data.labels[unit.indices.selection], str(unit.output_dir), selection_side(unit.meta["split"]))

    def train_epoch(epoch: int) -> float:
        reseed(unit.seed, epoch)  # dropout
        model.train()
        total, seen = 0.0, 0
        # Clips longer than TEMPORAL_WINDOW are cut into windows at offsets drawn anew each epoch (their own stream:
        # without long clips the order is drawn as it was before windows existed).
        offsets = torch.randint(TEMPORAL_WINDOW, (len(train.clips),), generator=_stream(unit.seed, epoch, WINDOW_STREAM))
        pieces = train.windows(TEMPORAL_WINDOW, offsets.numpy())
        order = torch.randperm(len(pieces), generator=epoch_generator(unit.seed, epoch)).tolist()
        for start in range(0, len(order), config.clips_per_batch):
            chunk = [pieces[i] for i in order[start : start + config.clips_per_batch]]
            x, mask = clip_batch(train, data.features, chunk)
            y, _ = clip_batch(train, labels, chunk)
            mask = mask.to(device)
            pred = model(x.to(device), mask)
            n = int(mask.sum())
            if n < 2:  # a CCC over fewer than two frames is undefined
                continue
            loss = loss_fn(pred[mask], y.to(device)[mask])  # padding and gaps never enter the loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * n
            seen += n
        return total / max(seen, 1)

    def validate() -> dict:
        pred = temporal_predictions(model, select_x, select, device)
        v, a = va_ccc(pred, select_y)
        return {"loss": loss_fn(torch.from_numpy(pred), torch.from_numpy(select_y)).item(), "valence_CCC": v,
                "arousal_CCC": a}

    run = TrainingRun(unit.output_dir, config.epochs, config.save_freq, unit.meta, *module_state(model, optimizer),
                      keep_checkpoints=config.keep_checkpoints)
    fit(run, train_epoch, validate, unit.resumed)
    return run
