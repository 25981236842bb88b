"""Cluster bootstrap of valence/arousal metrics: confidence intervals and paired differences that respect
the video structure of AFEW-VA.

Frames of a clip are near copies, so they are not independent observations: resampling frames would make
intervals far too narrow. A draw here resamples whole clips (or actors) with replacement and pools all
their frames. Every metric of `metrics.py` that the comparison reports is a function of per-clip sums (n,
sum t, sum p, sum t^2, sum p^2, sum tp, sign agreements), so a draw is one matrix product of clip counts
with those sums, and 1,000 draws over 600 clips take milliseconds.

- CI: the 2.5th and 97.5th percentiles of the draws (percentile bootstrap).
- Paired difference of two models: both are scored on the same draws (the same clips), and the CI of
  their difference is that of the per-draw differences.
- Two-sided p-value of "no difference": twice the smaller share of draws on either side of 0, counting
  the observed sample as one draw, (1 + #{d <= 0}) / (B + 1) and (1 + #{d >= 0}) / (B + 1), at most 1.
  It is the smallest alpha at which the percentile interval of level 1 - alpha excludes 0.
Draws in which a metric is undefined (all drawn truths equal) are left out of its percentiles.
"""
import numpy as np

CI_LEVEL = 0.95
# Per-group sums, in this order, for one series of (truth, prediction) pairs.
SUMS = ("n", "t", "p", "tt", "pp", "tp", "sign_agree")
BOOTSTRAP_METRICS = ("PCC", "CCC", "RMSE", "SAGR")


def group_sums(groups: np.ndarray, n_groups: int, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-group sums (n_groups x len(SUMS)) of the pairs (truth[i], pred[i]) of group groups[i]."""
    t, p = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    columns = (np.ones_like(t), t, p, t * t, p * p, t * p, (np.sign(t) == np.sign(p)).astype(np.float64))
    return np.stack([np.bincount(groups, weights=c, minlength=n_groups) for c in columns], axis=1)


def metrics_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """BOOTSTRAP_METRICS from pooled sums (..., len(SUMS)); NaN where a correlation is undefined."""
    n, st, sp, stt, spp, stp, agree = np.moveaxis(sums, -1, 0)
    mt, mp = st / n, sp / n
    vt, vp = stt / n - mt**2, spp / n - mp**2
    cov = stp / n - mt * mp
    with np.errstate(invalid="ignore", divide="ignore"):
        pcc = np.where((vt > 0) & (vp > 0), cov / np.sqrt(np.clip(vt, 0, None) * np.clip(vp, 0, None)), np.nan)
        ccc = 2 * cov / (vt + vp + (mt - mp) ** 2)
    return {"PCC": pcc, "CCC": ccc, "RMSE": np.sqrt(np.clip((stt - 2 * stp + spp) / n, 0, None)), "SAGR": agree / n}


def draw_counts(n_groups: int, n_draws: int, seed: int) -> np.ndarray:
    """n_draws x n_groups: how often each group is drawn in each bootstrap sample (n_groups draws each)."""
    picks = np.random.default_rng(seed).integers(0, n_groups, size=(n_draws, n_groups))
    offsets = np.arange(n_draws)[:, None] * n_groups
    return np.bincount((picks + offsets).ravel(), minlength=n_draws * n_groups).reshape(n_draws, n_groups).astype(np.float64)


def resample(sums: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """BOOTSTRAP_METRICS of every draw: sums (n_groups x len(SUMS)) pooled with `counts` (draws x n_groups).

    einsum, not `counts @ sums`: BLAS splits a large product among its threads and the float sums then
    depend on how many there are (seen: 9e-11 apart at 1,000 draws x 600 clips), so the same comparison on
    another machine or under torchrun would print other CIs. einsum's own loop has one order everywhere.
    """
    return metrics_from_sums(np.einsum("dg,gs->ds", counts, sums))


def interval(draws: np.ndarray) -> list[float]:
    """Percentile interval at CI_LEVEL of the defined draws."""
    tail = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
    return [float(lo), float(hi)]


def p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a zero difference (see the module docstring)."""
    d = differences[np.isfinite(differences)]
    below, above = (1 + np.sum(d <= 0)) / (len(d) + 1), (1 + np.sum(d >= 0)) / (len(d) + 1)
    return float(min(1.0, 2 * min(below, above)))
