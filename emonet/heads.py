"""The heads trained on EmoNet features, and how each predicts: frame by frame, smoothed along the clip, or
with a sequence model over the clip.

- `frame`: `FeatureHead`, 256 -> 128 -> 64 -> 2 on each frame's feature alone.
- `smooth`: the same network, then a Gaussian filter along each clip over its predictions (`smooth_clips`),
  sigma in frames chosen on the inner validation split from `SIGMA_GRID` (0 included: smoothing is never
  forced). The sigma of a checkpoint is the one chosen at its epoch (its history row).
- `temporal`: `TemporalHead`, a non-causal temporal convolution network over the clip's features in frame
  order.

Frames are placed along a clip by their frame number, never by their rank: a frame missing from the
features (an undecodable image, a frame without a face in `predict.py`) leaves a gap of that many frames.
The Gaussian filter renormalises its weights over the frames present (a gap and the clip's ends get no
weight), and the temporal network sees zeros there, exactly as beyond the clip's ends, and predicts nothing
for them. A clip's predictions therefore never depend on which other clips share its batch, nor on how
much padding it gets.
"""
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from torch import nn

from .constants import DEFAULT_HEAD, FEATURE_DIM, LABEL_SCALE
from .errors import DatasetError

HEAD_HIDDEN = (128, 64)
# Gaussian sigmas (in frames) the smooth head chooses from. AFEW-VA's labels move over tens of frames (clips of
# 10 to 145 frames, about 50 on average): 8 frames already averages over a third of a second at 25 fps.
SIGMA_GRID = (0.0, 1.0, 2.0, 4.0, 8.0)
# The temporal network (see TemporalHead and README_HSV_PIPELINE.md for the architectures compared): 4 levels of
# dilated convolutions (dilations 1, 2, 4, 8) of kernel 5 see 61 frames, 2.4 s at 25 fps; 48 channels (about
# 60 k parameters) matched 64 and 128 in accuracy on AFEW-VA-sized data, in 0.8 and 0.4 of their time.
TEMPORAL_DEFAULTS = {"channels": 48, "levels": 4, "kernel": 5}
# Frames per forward pass when predicting with a frame head.
PREDICT_BATCH = 4096
# Clips (or windows) per forward pass when predicting with the temporal head (each one's outputs do not depend on it).
PREDICT_CLIPS = 32
# Frames per window of the temporal head on long videos (Aff-Wild2's run to tens of thousands): training cuts a longer
# clip into windows at a new random offset every epoch, prediction overlaps them by the receptive radius. AFEW-VA's
# clips (at most 145 frames) are each one window, as before windows existed.
TEMPORAL_WINDOW = 1024
# Rows per chunk of the standardisation statistics (`feature_statistics`).
STATISTICS_CHUNK = 65_536


# -- clips as sequences --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipSequences:
    """The rows of a list of samples grouped by clip, in frame order, with each frame's place in its clip."""

    clips: list[str]
    rows: list[np.ndarray]  # per clip: indices into the samples, by frame number
    positions: list[np.ndarray]  # per clip: frame number minus the clip's first (0 for its first frame)

    @classmethod
    def from_samples(cls, samples: list[dict]) -> "ClipSequences":
        by_clip: dict[str, list[tuple[int, int]]] = {}
        for i, s in enumerate(samples):
            frame = str(s["frame"])
            if not frame.isdigit():
                raise DatasetError(f"clip {s['clip']}: frame {frame!r} is not a number; the smooth and temporal heads "
                                   "place frames along a clip by their number")
            by_clip.setdefault(s["clip"], []).append((int(frame), i))
        clips, rows, positions = [], [], []
        for clip in sorted(by_clip):
            entries = sorted(by_clip[clip])
            numbers = np.array([n for n, _ in entries], dtype=np.int64)
            if len(numbers) > 1 and (np.diff(numbers) == 0).any():
                raise DatasetError(f"clip {clip}: a frame number appears twice")
            clips.append(clip)
            rows.append(np.array([i for _, i in entries], dtype=np.int64))
            positions.append(numbers - numbers[0])
        return cls(clips, rows, positions)

    def on(self, rows: np.ndarray) -> "ClipSequences":
        """The same clips with their rows mapped through `rows` (the samples were `all_samples[rows]`): a trainer then
        reads the whole feature array in place instead of a copy of one side's rows."""
        return ClipSequences(self.clips, [rows[r] for r in self.rows], self.positions)

    def length(self, k: int) -> int:
        """Clip k's span in frames, first to last (gaps included)."""
        return int(self.positions[k][-1]) + 1

    def dense(self, values: np.ndarray, k: int, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Clip k's rows of `values` (N x D) on its frame grid, positions start..stop-1 (default: the whole clip):
        (length x D with zeros in gaps, length mask)."""
        stop = self.length(k) if stop is None else stop
        positions = self.positions[k]
        lo, hi = np.searchsorted(positions, [start, stop])
        out = np.zeros((stop - start, values.shape[1]), dtype=values.dtype)
        mask = np.zeros(stop - start, dtype=bool)
        out[positions[lo:hi] - start] = values[self.rows[k][lo:hi]]
        mask[positions[lo:hi] - start] = True
        return out, mask

    def windows(self, window: int, offsets: np.ndarray | None = None) -> list[tuple[int, int, int]]:
        """(clip, start, stop) pieces of at most `window` positions covering every clip once. A clip longer than the
        window is cut at offset + j window (offset = `offsets[k]`, in [0, window); 0 without offsets), so that a
        trainer that draws new offsets every epoch puts no frame at a window's edge every epoch."""
        out = []
        for k in range(len(self.clips)):
            length = self.length(k)
            first = 0 if offsets is None or length <= window else int(offsets[k]) % window
            cuts = sorted({0, length, *range(first, length, window)})
            out += [(k, a, b) for a, b in itertools.pairwise(cuts)]
        return out


def smooth_clips(pred: np.ndarray, sequences: ClipSequences, sigma: float) -> np.ndarray:
    """`pred` (N x 2) filtered along each clip with a Gaussian of `sigma` frames, renormalised over the frames
    present (normalised convolution: gaps and the clip's ends carry no weight). sigma 0 returns `pred`."""
    if sigma == 0:
        return pred.copy()
    out = np.empty_like(pred)
    for k in range(len(sequences.clips)):
        values, mask = sequences.dense(pred.astype(np.float64), k)
        weight = gaussian_filter1d(mask.astype(np.float64), sigma, mode="constant", cval=0.0)
        summed = gaussian_filter1d(values, sigma, axis=0, mode="constant", cval=0.0)
        out[sequences.rows[k]] = (summed[mask] / weight[mask, None]).astype(pred.dtype)
    return out


# -- the networks ----------------------------------------------------------------------------------------------
class FeatureHead(nn.Module):
    """256 -> 128 -> 64 -> 2 (valence, arousal on EmoNet's [-1, 1] scale), one frame at a time.

    The input is standardised with the training split's per-dimension mean and standard deviation, kept
    as buffers so that the checkpoint carries them: EmoNet features are not unit-scaled.
    """

    def __init__(self, in_dim: int = FEATURE_DIM, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        h1, h2 = HEAD_HIDDEN
        self.net = nn.Sequential(
            nn.Linear(in_dim, h1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h1, h2), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h2, 2),
        )

    def set_normalisation(self, features: np.ndarray, rows: np.ndarray) -> None:
        set_normalisation(self, features, rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.feature_mean) / self.feature_std)


def set_normalisation(model: nn.Module, features: np.ndarray, rows: np.ndarray) -> None:
    """Standardisation buffers from the training side's rows `rows` of `features` (N x 256)."""
    mean, std = feature_statistics(features, rows)
    model.feature_mean.copy_(torch.from_numpy(mean))
    model.feature_std.copy_(torch.from_numpy(std).clamp_min(1e-6))


def feature_statistics(features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and (population) standard deviation of `features[rows]`, as float32, accumulated in float64
    over STATISTICS_CHUNK rows at a time: at Aff-Wild2's size the training rows are 2.3 GB, which `features[rows]`
    would copy once per unit (and per worker process of a comparison)."""
    total = np.zeros(features.shape[1], dtype=np.float64)
    for start in range(0, len(rows), STATISTICS_CHUNK):
        total += features[rows[start : start + STATISTICS_CHUNK]].sum(axis=0, dtype=np.float64)
    mean = total / max(len(rows), 1)
    squares = np.zeros_like(total)
    for start in range(0, len(rows), STATISTICS_CHUNK):
        squares += np.square(features[rows[start : start + STATISTICS_CHUNK]] - mean).sum(axis=0)
    return mean.astype(np.float32), np.sqrt(squares / max(len(rows), 1)).astype(np.float32)


class TemporalBlock(nn.Module):
    """A residual level: dilated non-causal convolution, ReLU, dropout, then LayerNorm over the channels of
    each frame (no statistic across frames or clips, so padding cannot enter it); gaps are re-zeroed."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(channels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = h + self.dropout(F.relu(self.conv(h)))
        return self.norm(h.transpose(1, 2)).transpose(1, 2) * mask


class TemporalHead(nn.Module):
    """A non-causal temporal convolution network over a clip's features in frame order.

    Input x: B x T x 256 (clips padded to the longest), mask: B x T (True where a frame is present). The
    features are standardised (training-side statistics, as FeatureHead), projected to `channels`, passed
    through `levels` residual blocks with dilations 1, 2, 4, ... (kernel `kernel`, receptive field
    1 + (kernel - 1) (2^levels - 1) frames) and mapped to valence and arousal for every frame. Positions
    outside the mask are zero at every layer's input, so a clip's outputs are those it would get alone.
    """

    def __init__(self, in_dim: int = FEATURE_DIM, channels: int = TEMPORAL_DEFAULTS["channels"],
                 levels: int = TEMPORAL_DEFAULTS["levels"], kernel: int = TEMPORAL_DEFAULTS["kernel"],
                 dropout: float = 0.2):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel {kernel}: a non-causal convolution centred on its frame needs an odd kernel")
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        # Frames on each side an output depends on: (kernel - 1) / 2 at dilations 1, 2, ..., 2^(levels - 1).
        self.radius = (kernel - 1) // 2 * (2**levels - 1)
        # Per-frame projections in and out: linear layers (a matrix product per batch, faster on the CPU than the
        # equivalent 1-wide convolutions).
        self.input = nn.Linear(in_dim, channels)
        self.blocks = nn.ModuleList(TemporalBlock(channels, kernel, 2**i, dropout) for i in range(levels))
        self.output = nn.Linear(channels, 2)

    def set_normalisation(self, features: np.ndarray, rows: np.ndarray) -> None:
        set_normalisation(self, features, rows)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # B x 1 x T
        h = self.input((x - self.feature_mean) / self.feature_std).transpose(1, 2) * m  # B x channels x T
        for block in self.blocks:
            h = block(h, m)
        return self.output(h.transpose(1, 2))  # B x T x 2; rows outside the mask mean nothing


def clip_batch(sequences: ClipSequences, values: np.ndarray,
               pieces: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pieces (clip, start, stop) of `sequences` (`ClipSequences.windows`) as one padded batch: (B x T x D values,
    B x T mask), T the longest."""
    dense = [sequences.dense(values, k, start, stop) for k, start, stop in pieces]
    length = max(len(m) for _, m in dense)
    x = np.zeros((len(pieces), length, values.shape[1]), dtype=np.float32)
    mask = np.zeros((len(pieces), length), dtype=bool)
    for b, (v, m) in enumerate(dense):
        x[b, : len(m)], mask[b, : len(m)] = v, m
    return torch.from_numpy(x), torch.from_numpy(mask)


# -- checkpoints and predictions -------------------------------------------------------------------------------
def head_kind(ckpt: dict) -> str:
    """The head kind of a checkpoint of train_emonet_features.py (older checkpoints hold a frame head)."""
    return ckpt.get("head", {}).get("kind", DEFAULT_HEAD)


def chosen_sigma(ckpt: dict) -> float | None:
    """The smoothing sigma chosen with the checkpoint's weights (its epoch's history row); None for the heads that do
    not smooth."""
    if head_kind(ckpt) != "smooth":
        return None
    return float(ckpt["history"][int(ckpt["epoch"]) - 1]["sigma"])


def head_record(ckpt: dict) -> dict:
    """What an evaluation or a prediction run records of a checkpoint's head: its kind, and the smooth head's sigma."""
    sigma = chosen_sigma(ckpt)
    return {"kind": head_kind(ckpt)} | ({} if sigma is None else {"sigma": sigma})


def build_head(kind: str, model_args: dict) -> nn.Module:
    return TemporalHead(**model_args) if kind == "temporal" else FeatureHead(**model_args)


def load_head(ckpt: dict) -> nn.Module:
    """The network stored in a checkpoint of train_emonet_features.py, in eval mode on the CPU."""
    head = build_head(head_kind(ckpt), ckpt["model_args"])
    head.load_state_dict(ckpt["model"])
    return head.eval()


def frame_predictions(head: FeatureHead, features: np.ndarray, device: torch.device) -> np.ndarray:
    """A frame head's (valence, arousal) on EmoNet's scale [-1, 1] for each row of `features`, N x 2."""
    head = head.to(device).eval()
    with torch.no_grad():
        x = torch.from_numpy(features)
        pred = [head(x[i : i + PREDICT_BATCH].to(device)).cpu() for i in range(0, len(x), PREDICT_BATCH)]
    return torch.cat(pred).numpy() if pred else np.zeros((0, 2), np.float32)


def temporal_predictions(head: TemporalHead, features: np.ndarray, sequences: ClipSequences,
                         device: torch.device) -> np.ndarray:
    """A temporal head's (valence, arousal) on [-1, 1] for each row of `features` (rows grouped by `sequences`).

    A clip longer than TEMPORAL_WINDOW is predicted in windows of that many frames, each passed with the network's
    receptive radius of real frames on either side (`TemporalHead.radius`) and only its own frames kept: every frame's
    output then sees exactly the frames it sees in the whole clip, so predictions do not depend on where a window
    starts (tests: equal to the whole clip at once)."""
    head = head.to(device).eval()
    out = np.zeros((len(features), 2), dtype=np.float32)
    radius = head.radius
    pieces = []  # (clip, start, stop) passed to the network, and the positions [keep_start, keep_stop) kept
    for k, keep_start, keep_stop in sequences.windows(TEMPORAL_WINDOW):
        pieces.append(((k, max(0, keep_start - radius), min(sequences.length(k), keep_stop + radius)), keep_start, keep_stop))
    pieces.sort(key=lambda p: p[0][2] - p[0][1])  # little padding
    with torch.no_grad():
        for start in range(0, len(pieces), PREDICT_CLIPS):
            chunk = pieces[start : start + PREDICT_CLIPS]
            x, mask = clip_batch(sequences, features, [piece for piece, _, _ in chunk])
            pred = head(x.to(device), mask.to(device)).cpu().numpy()
            for b, ((k, first, _), keep_start, keep_stop) in enumerate(chunk):
                positions = sequences.positions[k]
                lo, hi = np.searchsorted(positions, [keep_start, keep_stop])
                out[sequences.rows[k][lo:hi]] = pred[b][positions[lo:hi] - first]
    return out


@dataclass
class HeadPredictor:
    """A trained head as evaluation and prediction use it: `predict` gives the raw-scale [-10, 10] output of
    each frame of `samples` (its clip and frame number place it), `raw` the frame head's before smoothing."""

    kind: str
    network: nn.Module
    sigma: float | None = None  # the smooth head's

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "HeadPredictor":
        return cls(head_kind(ckpt), load_head(ckpt), chosen_sigma(ckpt))

    def raw(self, features: np.ndarray, samples: list[dict], device: torch.device) -> np.ndarray:
        if self.kind == "temporal":
            return temporal_predictions(self.network, features, ClipSequences.from_samples(samples), device) * LABEL_SCALE
        return frame_predictions(self.network, features, device) * LABEL_SCALE

    def predict(self, features: np.ndarray, samples: list[dict], device: torch.device) -> np.ndarray:
        pred = self.raw(features, samples, device)
        if self.kind == "smooth":
            pred = smooth_clips(pred, ClipSequences.from_samples(samples), self.sigma)
        return pred

    @property
    def context(self) -> int:
        """Frames on each side of a frame that its prediction depends on: the temporal network's receptive radius,
        the smooth head's Gaussian radius (scipy's, 4 sigma), 0 for the frame head."""
        if self.kind == "temporal":
            return self.network.radius
        if self.kind == "smooth":
            return int(GAUSSIAN_TRUNCATE * self.sigma + 0.5)
        return 0


# scipy.ndimage.gaussian_filter1d's default truncation: its kernel reaches int(4 sigma + 0.5) frames each side.
GAUSSIAN_TRUNCATE = 4.0
# Frame numbers per block of a SequenceStream.
STREAM_BLOCK = 256


@dataclass
class SequenceStream:
    """A head's predictions along one sequence (one person's frames in predict.py) as its frames arrive, equal to those
    of the whole sequence at once: frame t's depends on frames t - C .. t + C only (C = `HeadPredictor.context`), so
    the sequence is cut into blocks of STREAM_BLOCK frame numbers from its first frame, and each block is predicted
    from its frames and the C frame numbers on either side once no frame there can still arrive. A block's figures
    never depend on when it was computed (a resumed run gives the same), and the stream holds at most a block and
    2 C frames."""

    predictor: HeadPredictor
    origin: int | None = None  # the sequence's first frame number
    block: int = 0  # the next block to predict
    frames: list[int] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)

    def push(self, frame: int, features: np.ndarray) -> None:
        if self.origin is None:
            self.origin = frame
        self.frames.append(frame)
        self.features.append(features)

    def ready(self, now: int | None) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(frame, prediction, frame head's prediction) of every block no frame can still change: all frame numbers
        below `now` have been pushed (None: the sequence has ended)."""
        out = []
        context = self.predictor.context
        while self.frames:
            start = self.origin + self.block * STREAM_BLOCK
            pending = [f for f in self.frames if f >= start]  # the others are the left context of this block
            if not pending:
                break
            if pending[0] >= start + STREAM_BLOCK:  # a gap: on to the block of the next frame held
                self.block = (pending[0] - self.origin) // STREAM_BLOCK
                continue
            end = start + STREAM_BLOCK
            if now is not None and now < end + context:
                break
            window = [i for i, f in enumerate(self.frames) if start - context <= f < end + context]
            samples = [{"clip": "sequence", "frame": str(self.frames[i])} for i in window]
            features = np.stack([self.features[i] for i in window])
            cpu = torch.device("cpu")
            pred, raw = self.predictor.predict(features, samples, cpu), self.predictor.raw(features, samples, cpu)
            out += [(self.frames[i], pred[j], raw[j]) for j, i in enumerate(window) if start <= self.frames[i] < end]
            self.block += 1
            keep = [i for i, f in enumerate(self.frames) if f >= end - context]
            self.frames, self.features = [self.frames[i] for i in keep], [self.features[i] for i in keep]
        return out
