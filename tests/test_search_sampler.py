"""AuditSampler: sample size and the coverage bound over long random runs."""

import math

import numpy as np
import pytest

from seapeft_monailabel.search import AuditSampler


def test_sample_size() -> None:
    assert AuditSampler([f"u{i}" for i in range(192)]).k == 38
    assert AuditSampler([f"u{i}" for i in range(50)]).k == 10
    assert AuditSampler([f"u{i}" for i in range(50)], fraction=0.05).k == math.ceil(50 / 6)
    assert AuditSampler(["a"]).k == 1


@pytest.mark.parametrize("n", [50, 97, 180, 300])
@pytest.mark.parametrize("fraction", [0.2, 0.01])
def test_coverage_bound_long_random_run(n: int, fraction: float) -> None:
    """Every unit is audited at least once in every window of H consecutive audits, from audit 1,
    even when the free slots always prefer the same units (fraction 0.01 makes k = ceil(N/H))."""
    rng = np.random.default_rng(n)
    names = [f"u{i:03d}" for i in range(n)]
    sampler = AuditSampler(names, fraction=fraction, horizon=6)
    last = {name: -1 for name in names}
    trained: set[str] = set()
    for t in range(500):
        on = {x for x in names if rng.random() < 0.15}
        trained |= set(rng.choice(names, size=3))
        if t % 50 < 25:  # adversarial phase: fixed uncertainties always favour the same units
            unc = {x: float(i) for i, x in enumerate(names) if x in trained}
        else:
            unc = {x: float(rng.random()) for x in names if rng.random() < 0.7}
        sel = sampler.sample(on, unc, trained)
        assert len(sel) == len(set(sel)) == sampler.k
        sampler.record(sel)
        for x in sel:
            last[x] = t
        assert all(t - last[x] < 6 for x in names), "a unit went H audits without an audit"
        assert max(sampler.debt(x) for x in names) <= 5
    assert max(sampler.max_gap(x) for x in names) <= 6
    assert sampler.coverage()["max_gap"] <= 6


def test_naive_forcing_counterexample_is_handled() -> None:
    """The free slots pick the same 10 units forever: lookahead forcing still rotates the others."""
    names = [f"u{i:02d}" for i in range(60)]
    sampler = AuditSampler(names, fraction=0.0, horizon=6)  # k = 10 = N / H exactly
    favourite = set(names[:10])
    unc = {x: 1.0 for x in favourite}
    for _ in range(60):
        sampler.record(sampler.sample(favourite, unc, favourite))
    assert sampler.coverage()["max_gap"] <= 6


def test_pools_and_priorities() -> None:
    names = [f"u{i:02d}" for i in range(20)]
    sampler = AuditSampler(names, fraction=0.2, horizon=6, on_share=0.75)  # k = 4, nothing forced
    on = {"u05", "u06", "u07", "u08"}
    trained = on | {"u10", "u11"}
    unc = {"u05": 0.1, "u06": 0.3, "u07": 0.2, "u10": 0.5, "u11": 0.9}  # u08 never measured
    assert sampler.sample(on, unc, trained) == ["u08", "u06", "u07", "u11"]
    # on pool too small: the excess goes to trained candidates, then to the most indebted others
    assert sampler.sample({"u05"}, unc, {"u05", "u11"}) == ["u05", "u11", "u00", "u01"]
    sampler.record(["u05"])
    assert sampler.debt("u05") == 0 and sampler.debt("u00") == 1
    with pytest.raises(KeyError):
        sampler.record(["zz"])
