"""The corrected resampled t-test for comparing two learners under repeated K-fold cross-validation.

Nadeau & Bengio (2003), "Inference for the generalization error"; Bouckaert & Frank (2004). The R x K
per-fold differences d of a repeated K-fold are not independent: every two training sets share most of
their data. Their sample variance s^2 (ddof 1) therefore understates the variance of their mean, which the
correction inflates by the test/train ratio:

    var = (1 / (R K) + n_test / n_train) s^2,  n_test / n_train = 1 / (K - 1)
    t = mean(d) / sqrt(var),  df = R K - 1,  two-sided p from Student's t,
    95 % CI = mean(d) +- t(0.975, df) sqrt(var).

The interval covers what the clip bootstrap cannot: training again on other folds with other seeds.

A CCC itself (not a difference) lies in [-1, 1], where a t interval of its fold values need not: its interval is
computed on the CCC's z-transform (Fisher's, as Lin 1989 gives it for the CCC: z = atanh(CCC)) and transformed back,
so it stays within (-1, 1) (`corrected_ccc_interval`). Differences of two CCCs stay on their own scale.
"""
import math

import numpy as np
from scipy import stats

CI_LEVEL = 0.95


def corrected_resampled_ttest(fold_diffs: list[list[float]]) -> dict:
    """The statistic of R lists of K per-fold differences: `fold_diffs` (as given), `mean`, `t`, `df`,
    `p_value`, `ci`. With no spread (s = 0) t is undefined (None): p is 1 for a mean of 0, else 0."""
    d = np.asarray(fold_diffs, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 2 or d.size < 2:
        raise ValueError(f"need R lists of K >= 2 differences, got shape {d.shape}")
    repeats, k = d.shape
    mean = float(d.mean())
    variance = (1 / d.size + 1 / (k - 1)) * float(d.var(ddof=1))
    df = d.size - 1
    half = float(stats.t.ppf(0.5 + CI_LEVEL / 2, df)) * math.sqrt(variance)
    if variance > 0:
        t = mean / math.sqrt(variance)
        p = float(2 * stats.t.sf(abs(t), df))
    else:
        t, p = None, 1.0 if mean == 0 else 0.0
    return {"fold_diffs": d.tolist(), "mean": mean, "t": t, "df": df, "p_value": p, "ci": [mean - half, mean + half]}


# Fold CCCs of exactly +-1 have an infinite z: they are taken this close to +-1 instead.
Z_CLIP = 1 - 1e-9


def corrected_ccc_interval(fold_cccs: list[list[float]]) -> dict:
    """The mean of R lists of K fold CCCs and its corrected-t interval on Fisher's z scale, transformed back:
    `mean` (of the CCCs themselves, so that the differences of two rows add up), `ci` within (-1, 1), `scale`."""
    c = np.asarray(fold_cccs, dtype=np.float64)
    z = corrected_resampled_ttest(np.arctanh(np.clip(c, -Z_CLIP, Z_CLIP)).tolist())
    return {"mean": float(c.mean()), "ci": [math.tanh(v) for v in z["ci"]], "scale": "Fisher z"}
