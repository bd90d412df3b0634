"""The search's stage clock, its 'timing' event and the split seapeft overhead prints."""

from __future__ import annotations

import time

import pytest

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.evaluate.overhead import Overhead, measure_overhead
from seapeft_monailabel.models import load_base_model
from seapeft_monailabel.search import preset
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


def test_the_audit_line_gives_the_cost_of_one_set():
    split = {"train": 50.0, "prior": 0.0, "audit": 20.0, "allocate": 1.0, "evaluate": 9.0, "refine": 10.0}
    overhead = Overhead(100.0, 80.0, 300, split, warmup_steps=20, audits=10, audit_sets=250)
    assert overhead.audit_line() == "10 audits measured 250 unit sets (80 ms a set)"
    assert overhead.step_line() == ("the search's training steps 188 ms each (train and refine stages); LoRA's run "
                                    "267 ms a step (all included)")


def test_overhead_runs_both_on_equal_steps_and_counts_the_audits():
    def make_model():
        base = load_base_model("sample-data/base_model/model.pt")
        return base.network, base.spec, base.head_names

    labels = load_base_model("sample-data/base_model/model.pt").labels
    config = preset("tiny", max_steps=8, refine_steps=2, selection_volume_ratio=0)
    result = measure_overhead(make_datalist("sample-data")[:2], make_model, labels, config)
    assert result.steps >= 8 and result.lora_seconds > 0
    assert sum(result.split.values()) <= result.search_seconds
    assert result.audits == 8 // config.audit_every and result.audit_sets > result.audits  # a baseline and toggles
