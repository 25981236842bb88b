"""Matching detections to what is followed: the IoU matrix of two sets of boxes and one global assignment helper, used
by every matching step of `people.py` (motion, swaps at crossings, links between tracklets)."""
import numpy as np
from scipy.optimize import linear_sum_assignment

# Stands in for "not allowed" in a cost matrix: linear_sum_assignment needs finite costs.
FORBIDDEN = 1e6


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `a` (N x 4, x1 y1 x2 y2) with every box of `b` (M x 4): N x M."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """The (row, column) pairs of the assignment of least total cost (Hungarian algorithm) whose own cost is at most
    `max_cost`; each row and each column is used at most once. Non-finite costs are never assigned."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    finite = np.where(np.isfinite(cost), cost, FORBIDDEN)
    rows, cols = linear_sum_assignment(np.minimum(finite, FORBIDDEN))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if finite[r, c] <= max_cost]
