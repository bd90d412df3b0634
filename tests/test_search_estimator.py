"""UtilityEstimator: EMA, window, robust score and uncertainty on known numbers."""

import numpy as np
import pytest

from seapeft_monailabel.search import UtilityEstimator


def test_never_audited_returns_none() -> None:
    est = UtilityEstimator()
    assert est.robust("u") is None and est.uncertainty("u") is None
    assert not est.audited("u") and est.n_samples("u") == 0 and est.last_delta("u") is None
    assert est.robust_scores() == {} and est.snapshot() == {}


def test_first_sample_sets_ema_and_uncertainty_is_prior_width() -> None:
    est = UtilityEstimator(beta=0.93)
    assert est.update("u", 0.02, 100) == pytest.approx(2e-4)
    assert est.ema("u") == pytest.approx(2e-4)
    assert est.robust("u") == pytest.approx(2e-4)
    assert est.uncertainty("u") == pytest.approx(2e-4)  # |delta| / cost
    est.update("z", 0.0, 50)  # a zero sample is still uncertain: delta_floor / cost
    assert est.uncertainty("z") == pytest.approx(1e-3 / 50)
    assert est.uncertainty("z") > 0


def test_ema_window_robust_formula() -> None:
    beta, lam = 0.9, 0.25
    est = UtilityEstimator(beta=beta, window=5, lam=lam)
    samples = [0.05, 0.01, 0.03, -0.02, 0.04, 0.02, 0.0]
    m, emas = 0.0, []
    for n, delta in enumerate(samples, start=1):
        est.update("u", delta, 10)
        m = beta * m + (1 - beta) * delta / 10  # bias-corrected EMA
        ema = m / (1 - beta**n)
        emas.append(ema)
    # equivalently, an exponentially weighted mean of the samples
    weights = beta ** np.arange(len(samples))[::-1]
    assert ema == pytest.approx(np.dot(weights, np.array(samples) / 10) / weights.sum())
    window = np.array(emas[-5:])
    q1, q3 = np.percentile(window, [25, 75])
    assert est.ema("u") == pytest.approx(ema)
    assert est.robust("u") == pytest.approx(np.median(window) - lam * (q3 - q1))
    assert est.uncertainty("u") == pytest.approx(q3 - q1)
    assert est.n_samples("u") == 7 and est.last_delta("u") == pytest.approx(0.0)
    snap = est.snapshot()["u"]
    assert snap["n"] == 7 and snap["robust"] == pytest.approx(est.robust("u"))


def test_known_numbers_two_samples() -> None:
    est = UtilityEstimator(beta=0.5, window=5, lam=0.25)
    est.update("u", 1.0, 1)
    est.update("u", 0.0, 1)  # ema: 1.0, then (0.5 * 0.5) / (1 - 0.25) = 1/3; window [1, 1/3]
    # percentiles of [1/3, 1]: Q1 = 1/2, Q3 = 5/6, IQR 1/3, median 2/3
    assert est.ema("u") == pytest.approx(1 / 3)
    assert est.robust("u") == pytest.approx(2 / 3 - 0.25 / 3)
    assert est.uncertainty("u") == pytest.approx(1 / 3)


def test_one_shot_beta_and_validation() -> None:
    est = UtilityEstimator(beta=0.95)
    est.update("u", 0.1, 1)
    est.update("u", 0.0, 1)
    assert est.ema("u") == pytest.approx(0.95 * 0.05 * 0.1 / (1 - 0.95**2))  # weights 0.95 : 1
    with pytest.raises(ValueError):
        est.update("u", 0.1, 0)
    with pytest.raises(ValueError):
        UtilityEstimator(beta=1.0)
