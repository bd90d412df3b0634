"""Per-unit utility estimator: EMA, window, robust score and uncertainty.

An audit of unit ``u`` measures ``delta = Dice(with u) - Dice(without u)``. The utility sample is
``d = delta / cost`` (Dice gain per trained parameter). Per unit the estimator keeps

* ``ema``: exponential moving average of ``d`` (``beta`` 0.93, 0.95 for one-shot runs), bias-corrected:
  ``m <- beta * m + (1 - beta) * d`` from ``m = 0`` and ``ema = m / (1 - beta ** n)`` after ``n``
  samples. The first sample sets it (``ema = d``), and every later sample gets its proper exponential
  weight. The reference's ``ema = d_1`` followed by the plain recursion gives the first sample a weight
  ``beta ** (n - 1)``, i.e. it counts like ``1 / (1 - beta) ~ 14`` samples: a noisy first audit then
  decided a unit's fate for dozens of audits (seen in the planted-problem simulation, where lucky
  useless units displaced useful ones);
* a window of the last ``window`` (5) EMA values;
* ``robust = median(W) - lam * IQR(W)`` with ``lam`` 0.25 and ``IQR = max(0, Q3 - Q1)`` from
  ``numpy.percentile`` (linear interpolation);
* ``uncertainty``: the IQR of the window (the same quantity the robust score discounts). With a single
  sample the window has no spread, yet one sample is not certain, so the uncertainty of a unit seen once
  is a prior width ``max(|delta|, delta_floor) / cost``: the error bar of one sample is taken to be as
  large as the sample itself, and never smaller than ``delta_floor`` Dice (default 1e-3, the resolution of
  an audit on a few patches), expressed per parameter.

Contract with the loop: feed only audits of units that have been trained at least once. A unit that has
never been on is exactly zero at creation, so its delta is 0 by construction and carries no information;
to the estimator such a unit is "never audited" (``robust`` returns None) and the probe proposer ranks it
by its saliency prior instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class _UnitRecord:
    """Running statistics of one unit."""

    cost: int
    ema: float
    momentum: float
    window: deque[float]
    n: int = 1
    last_delta: float = 0.0
    last_sample: float = 0.0
    first_delta: float = 0.0


def _iqr(values: deque[float]) -> float:
    """Interquartile range (``>= 0``) of ``values`` with numpy's linear percentiles."""
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25.0, 75.0])
    return max(0.0, float(q3 - q1))


class UtilityEstimator:
    """EMA / window / robust-score estimator of Dice gain per parameter, keyed by unit name."""

    def __init__(
        self,
        beta: float = 0.93,
        window: int = 5,
        lam: float = 0.25,
        delta_floor: float = 1e-3,
    ) -> None:
        """Create an empty estimator.

        Args:
            beta: EMA factor (0.93; use 0.95 for one-shot runs).
            window: number of most recent EMA values kept for the robust score.
            lam: weight of the IQR penalty in ``median - lam * IQR``.
            delta_floor: smallest error bar, in Dice, of a unit seen once (see module docstring).
        """
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if lam < 0.0 or delta_floor <= 0.0:
            raise ValueError("lam must be >= 0 and delta_floor > 0")
        self.beta = beta
        self.window = window
        self.lam = lam
        self.delta_floor = delta_floor
        self._units: dict[str, _UnitRecord] = {}

    def update(self, name: str, delta: float, cost: int) -> float:
        """Record one audit of ``name``: raw Dice change ``delta`` for a unit of ``cost`` parameters.

        Returns the utility sample ``delta / cost``.
        """
        if cost < 1:
            raise ValueError(f"unit {name!r} has cost {cost}; a unit trains at least one parameter")
        sample = float(delta) / cost
        rec = self._units.get(name)
        if rec is None:
            rec = _UnitRecord(
                cost=cost,
                ema=sample,
                momentum=(1.0 - self.beta) * sample,
                window=deque([sample], maxlen=self.window),
                first_delta=float(delta),
            )
            self._units[name] = rec
        else:
            rec.cost = cost
            rec.n += 1
            rec.momentum = self.beta * rec.momentum + (1.0 - self.beta) * sample
            rec.ema = rec.momentum / (1.0 - self.beta**rec.n)
            rec.window.append(rec.ema)
        rec.last_delta = float(delta)
        rec.last_sample = sample
        return sample

    def audited(self, name: str) -> bool:
        """Whether ``name`` has at least one sample."""
        return name in self._units

    def n_samples(self, name: str) -> int:
        """Number of samples of ``name`` (0 if never audited)."""
        rec = self._units.get(name)
        return 0 if rec is None else rec.n

    def ema(self, name: str) -> float | None:
        """Current EMA of ``name``, or None if never audited."""
        rec = self._units.get(name)
        return None if rec is None else rec.ema

    def robust(self, name: str) -> float | None:
        """``median(W) - lam * IQR(W)`` of ``name``, or None if never audited."""
        rec = self._units.get(name)
        if rec is None:
            return None
        return float(np.median(np.asarray(rec.window, dtype=float))) - self.lam * _iqr(rec.window)

    def uncertainty(self, name: str) -> float | None:
        """IQR of the window; the prior width for a unit seen once; None if never audited."""
        rec = self._units.get(name)
        if rec is None:
            return None
        if rec.n == 1:
            return max(abs(rec.first_delta), self.delta_floor) / rec.cost
        return _iqr(rec.window)

    def last_delta(self, name: str) -> float | None:
        """Raw Dice change of the most recent audit of ``name``, or None if never audited."""
        rec = self._units.get(name)
        return None if rec is None else rec.last_delta

    def robust_scores(self) -> dict[str, float]:
        """Robust score of every audited unit (never-audited units are absent)."""
        return {name: score for name in self._units if (score := self.robust(name)) is not None}

    def uncertainties(self) -> dict[str, float]:
        """Uncertainty of every audited unit (never-audited units are absent)."""
        return {name: unc for name in self._units if (unc := self.uncertainty(name)) is not None}

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        """Loggable per-unit state: n, ema, robust, uncertainty, last sample and last raw delta."""
        out: dict[str, dict[str, float | int]] = {}
        for name in sorted(self._units):
            rec = self._units[name]
            robust, unc = self.robust(name), self.uncertainty(name)
            assert robust is not None and unc is not None
            out[name] = {
                "n": rec.n,
                "ema": rec.ema,
                "robust": robust,
                "uncertainty": unc,
                "last_sample": rec.last_sample,
                "last_delta": rec.last_delta,
            }
        return out
