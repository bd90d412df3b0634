"""Wall time per stage of a search, for the run's events log (``timing``) and ``seapeft overhead``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: the stages in run order: head warm-up and search steps (train), saliency prior, audits, probes and
#: allocations (allocate), the final selection's evaluations (evaluate), the refine stage
STAGES = ("train", "prior", "audit", "allocate", "evaluate", "refine")


class StageClock:
    """Adds the wall seconds spent inside ``with clock("audit"):`` blocks, per stage."""

    def __init__(self) -> None:
        self.seconds = {stage: 0.0 for stage in STAGES}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if stage not in self.seconds:
            raise ValueError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started


def stage_split(events: list[dict]) -> dict[str, float]:
    """The ``timing`` event's seconds per stage from a run's events (see :func:`.events.read_events`)."""
    timing = [e for e in events if e["event"] == "timing"]
    if not timing:
        raise ValueError("the run's events hold no 'timing' event (a run older than the stage clock, or killed)")
    return {stage: float(timing[-1]["seconds"][stage]) for stage in STAGES}
