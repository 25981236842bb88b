"""Training losses on (N, 2) valence/arousal tensors, EmoNet's [-1, 1] scale."""
import torch
import torch.nn.functional as F

LOSS_NAMES = ("ccc", "mse", "mae")
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


def get_loss(name: str):
    losses = {"ccc": ccc_loss, "mse": F.mse_loss, "mae": F.l1_loss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return losses[name]
