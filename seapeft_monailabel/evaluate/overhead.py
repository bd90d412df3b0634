"""The audit overhead: wall time of a SEA-PEFT search against the same number of steps of the LoRA baseline."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..search import SearchConfig, run_fixed, run_search
from ..search.events import read_events
from ..search.timing import stage_split


@dataclass
class Overhead:
    """Both runs' wall times (seconds) and steps, measured one after the other in the same process, and
    the search's seconds per stage (train, prior, audit, allocate, evaluate, refine) from its events log."""

    search_seconds: float
    lora_seconds: float
    steps: int
    split: dict[str, float] = field(default_factory=dict)
    selection_dice: tuple[float, float] = (0.0, 0.0)  # search, LoRA: soft Dice on the selection patches
    warmup_steps: int = 0  # the search's head warm-up steps, in its train stage beside the search steps
    audits: int = 0  # the search's audits
    audit_sets: int = 0  # unit sets they measured, the baselines included (one forward of the audit patches each)

    @property
    def ratio(self) -> float:
        return self.search_seconds / self.lora_seconds

    def split_line(self) -> str:
        """``train 350.1 s (43 %), audit ...``: the stages, and what lies outside them (setup, writing)."""
        parts = dict(self.split, other=self.search_seconds - sum(self.split.values()))
        return ", ".join(f"{k} {v:.1f} s ({100 * v / self.search_seconds:.0f} %)" for k, v in parts.items())

    def step_line(self) -> str:
        """``the search's training steps 128 ms each (train and refine stages); LoRA's run 106 ms a step (all
        included)``: what the searched units cost to train, the floor of the ratio however cheap the audits."""
        steps = self.steps + self.warmup_steps
        per_step = 1000 * (self.split.get("train", 0.0) + self.split.get("refine", 0.0)) / steps
        return (f"the search's training steps {per_step:.0f} ms each (train and refine stages); LoRA's run "
                f"{1000 * self.lora_seconds / self.steps:.0f} ms a step (all included)")

    def audit_line(self) -> str:
        """``24 audits measured 336 unit sets (81 ms a set)``."""
        per_set = 1000 * self.split.get("audit", 0.0) / self.audit_sets if self.audit_sets else float("nan")
        return f"{self.audits} audits measured {self.audit_sets} unit sets ({per_set:.0f} ms a set)"


def measure_overhead(datalist: Sequence[dict], make_model: Callable, labels: dict[str, int],
                     config: SearchConfig) -> Overhead:
    """Run SEA-PEFT, then LoRA for exactly the steps the search took; ``make_model()`` -> (network, spec, heads)."""
    with tempfile.TemporaryDirectory() as tmp:
        network, spec, heads = make_model()
        started = time.perf_counter()
        search = run_search(datalist, network, spec=spec, head_names=heads, labels=labels, config=config,
                            out_dir=f"{tmp}/search")
        search_seconds = time.perf_counter() - started
        events = read_events(f"{tmp}/search/events.jsonl")
        split = stage_split(events)
        audits = [e for e in events if e["event"] == "audit"]
        same = config.with_(max_steps=search.search_steps, refine_steps=search.refine_steps, refine_patience=10**9)
        network, spec, heads = make_model()
        started = time.perf_counter()
        lora = run_fixed(datalist, network, method="lora", spec=spec, head_names=heads, labels=labels, config=same,
                         out_dir=f"{tmp}/lora")
        lora_seconds = time.perf_counter() - started
    if lora.steps != search.steps:
        raise RuntimeError(f"step counts differ: search {search.steps}, lora {lora.steps}")
    return Overhead(search_seconds, lora_seconds, search.steps, split, (search.selection_dice, lora.selection_dice),
                    config.warmup_steps, len(audits), sum(e["sets"] for e in audits))
