"""The search's stage clock, its 'timing' event and the split seapeft overhead prints."""

from __future__ import annotations

import time

import pytest

from seapeft_monailabel.evaluate.overhead import Overhead
from seapeft_monailabel.search.timing import STAGES, StageClock, stage_split


def test_the_clock_adds_the_seconds_of_each_stage():
    clock = StageClock()
    for _ in range(2):
        with clock("audit"):
            time.sleep(0.02)
    assert 0.04 <= clock.seconds["audit"] < 0.5
    assert clock.seconds["train"] == 0.0
    with pytest.raises(ValueError, match="unknown stage 'warm'"):
        with clock("warm"):
            pass


def test_the_split_is_the_last_timing_event():
    seconds = {stage: float(i) for i, stage in enumerate(STAGES)}
    events = [{"event": "train"}, {"event": "timing", "seconds": seconds}]
    assert stage_split(events) == seconds
    with pytest.raises(ValueError, match="no 'timing' event"):
        stage_split([{"event": "train"}])


def test_the_printed_split_names_every_stage_and_the_rest():
    split = {"train": 50.0, "prior": 0.0, "audit": 20.0, "allocate": 1.0, "evaluate": 9.0, "refine": 10.0}
    line = Overhead(100.0, 80.0, 300, split).split_line()
    assert line.startswith("train 50.0 s (50 %), prior 0.0 s (0 %), audit 20.0 s (20 %)")
    assert line.endswith("other 10.0 s (10 %)")
