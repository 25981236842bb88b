"""Training losses on (N, 2) valence/arousal tensors, EmoNet's [-1, 1] scale."""
import torch
import torch.nn.functional as F

from .constants import LOSS_NAMES

# Keeps 1 - CCC defined on a batch whose predictions and targets are all equal (0 / 0 otherwise).
CCC_EPS = 1e-8


def ccc_per_dim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CCC of each column over the batch (population statistics)."""
    pred_mean, target_mean = pred.mean(dim=0), target.mean(dim=0)
    covariance = ((pred - pred_mean) * (target - target_mean)).mean(dim=0)
    denominator = pred.var(dim=0, unbiased=False) + target.var(dim=0, unbiased=False) + (pred_mean - target_mean) ** 2
    return 2 * covariance / (denominator + CCC_EPS)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CCC, averaged over valence and arousal, computed over the batch."""
    return 1 - ccc_per_dim(pred, target).mean()


def batched_loss(name: str, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The loss `name` of each of U batches at once: pred and target U x B x 2, weight U x B x 1 (1 for a frame of
    the batch, 0 for padding, which enters no statistic). Returns U losses; a batch without frames gives a
    finite value, to be masked out by the caller."""
    n = weight.sum(1).clamp_min(1)  # U x 1
    if name == "ccc":
        pred_mean = (pred * weight).sum(1, keepdim=True) / n[:, None]
        target_mean = (target * weight).sum(1, keepdim=True) / n[:, None]
        p, t = (pred - pred_mean) * weight, (target - target_mean) * weight
        covariance = (p * t).sum(1) / n
        denominator = (p * p).sum(1) / n + (t * t).sum(1) / n + (pred_mean - target_mean).squeeze(1) ** 2
        return 1 - (2 * covariance / (denominator + CCC_EPS)).mean(1)
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    error = pred - target
    per_value = error * error if name == "mse" else error.abs()
    return (per_value * weight).sum((1, 2)) / (pred.shape[-1] * n.squeeze(1))


def get_loss(name: str):
    losses = {"ccc": ccc_loss, "mse": F.mse_loss, "mae": F.l1_loss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return losses[name]
