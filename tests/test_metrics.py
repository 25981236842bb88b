"""Metrics and losses on values computable by hand, and on degenerate input."""
import logging

import numpy as np
import pytest
import torch

from emonet.losses import ccc_loss, get_loss
from emonet.metrics import ccc, mse, pcc, regression_metrics, rmse, sagr

T = np.array([1.0, 2.0, 3.0, 4.0])


def test_hand_computed_values():
    # p = 2t: perfectly correlated, but not concordant.
    p = 2 * T
    assert pcc(T, p) == pytest.approx(1.0)
    # var(t) = 1.25, var(p) = 5, cov = 2.5, mean diff = 2.5 -> CCC = 5 / (1.25 + 5 + 6.25) = 0.4
    assert ccc(T, p) == pytest.approx(0.4)
    assert mse(T, p) == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert rmse(T, p) == pytest.approx(np.sqrt(7.5))
    assert pcc(T, -T) == pytest.approx(-1.0) and ccc(T, T) == pytest.approx(1.0)


def test_sagr_counts_zero_only_against_zero():
    true = np.array([0.0, 0.0, 2.0, -3.0, 1.0])
    pred = np.array([0.0, 0.1, 1.0, -0.5, -1.0])
    assert sagr(true, pred) == pytest.approx(3 / 5)


def test_constant_predictions_are_defined_and_warned(caplog):
    with caplog.at_level(logging.WARNING):
        metrics = regression_metrics(T, np.full(4, 2.5))
    assert metrics["PCC"] == 0.0 and metrics["CCC"] == 0.0
    assert "PCC undefined for constant predictions" in caplog.text
    assert ccc(np.ones(3), np.ones(3)) == 1.0
    assert all(np.isfinite(v) for v in metrics.values())
    with pytest.raises(ValueError, match="NaN"):
        pcc(T, np.array([1.0, np.nan, 2.0, 3.0]))


def test_ccc_loss_matches_numpy_ccc_and_is_defined_on_constants():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(32, 2))
    pred = target + rng.normal(scale=0.5, size=(32, 2))
    expected = 1 - (ccc(target[:, 0], pred[:, 0]) + ccc(target[:, 1], pred[:, 1])) / 2
    loss = ccc_loss(torch.tensor(pred), torch.tensor(target))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    constant = ccc_loss(torch.zeros(8, 2), torch.zeros(8, 2))
    assert torch.isfinite(constant) and constant.item() == pytest.approx(1.0)
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert get_loss("mse")(x, torch.zeros_like(x)).item() == pytest.approx(3.5)
    assert get_loss("mae")(x, torch.zeros_like(x)).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("huber")
