"""Valence/arousal metrics with EmoNet's definitions (numpy, population statistics).

- PCC: Pearson correlation, cov(t, p) / (sd(t) sd(p)).
- CCC: concordance correlation, 2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))^2); it penalises
  bias and scale errors that PCC ignores.
- MSE, RMSE.
- SAGR: sign agreement, mean(sign(t) == sign(p)). sign(0) = 0, so a true 0 (27.6 % of AFEW-VA's valence
  labels) agrees only with a predicted exact 0, which a regressor practically never outputs: SAGR is
  pulled down by the zero labels, as in EmoNet's own evaluation.

Degenerate input is defined, never a silent NaN: when truth or prediction is constant, PCC is 0 (no
linear association can be measured) and a warning is logged; CCC is 0 in that case too, except for
identical constant inputs, where agreement is perfect and CCC is 1.
"""
import logging

import numpy as np

logger = logging.getLogger(__name__)

METRIC_NAMES = ("PCC", "CCC", "MSE", "RMSE", "SAGR")


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"need two non-empty arrays of the same length, got {t.size} and {p.size}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("metrics got NaN or infinite values")
    return t, p


def pcc(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    st, sp = t.std(), p.std()
    if st == 0 or sp == 0:
        logger.warning("PCC undefined for constant %s; reported as 0", "truth" if st == 0 else "predictions")
        return 0.0
    return float(np.mean((t - t.mean()) * (p - p.mean())) / (st * sp))


def ccc(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    denominator = t.var() + p.var() + (t.mean() - p.mean()) ** 2
    if denominator == 0:  # both constant and equal
        return 1.0
    return float(2 * np.mean((t - t.mean()) * (p - p.mean())) / denominator)


def mse(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean((t - p) ** 2))


def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(mse(y_true, y_pred)))


def sagr(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.sign(t) == np.sign(p)))


def regression_metrics(y_true, y_pred) -> dict:
    """All of METRIC_NAMES for one dimension."""
    return {"PCC": pcc(y_true, y_pred), "CCC": ccc(y_true, y_pred), "MSE": mse(y_true, y_pred),
            "RMSE": rmse(y_true, y_pred), "SAGR": sagr(y_true, y_pred)}
