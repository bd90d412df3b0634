"""The audit report PNG, drawn from a run's events log with matplotlib (no display needed).

Four panels: robust utility (Dice per parameter) of the units that were ever on, per audit; the
state of those units at every allocation (off / probation / active); the audit baseline Dice and
the training loss over steps; the parameters held by active units against the budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import plt, save_figure
from .events import read_events

MAX_UNITS = 16


def _short(name: str) -> str:
    site, family, level = name.rsplit(":", 2)
    return f"{'.'.join(site.split('.')[-3:])}:{family}:{level}"


def draw_report(events: list[dict] | str | Path, png_path: str | Path, title: str = "SEA-PEFT audit report") -> Path:
    """Draw the report of ``events`` (a list or an events.jsonl path) into ``png_path``."""
    if not isinstance(events, list):
        events = read_events(events)
    audits = [e for e in events if e["event"] == "audit"]
    allocations = [e for e in events if e["event"] == "allocation"]
    train = [e for e in events if e["event"] == "train"]
    ever_on = sorted({n for a in allocations for n in a["active"] + a["probation"]})
    last_robust = {}
    for audit in audits:
        for name, sample in audit["units"].items():
            if sample.get("robust") is not None:
                last_robust[name] = sample["robust"]
    shown = sorted(ever_on, key=lambda n: -last_robust.get(n, 0.0))[:MAX_UNITS]

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axes[0, 0]
    for name in shown:
        pts = [(a["step"], a["units"][name]["robust"]) for a in audits
               if name in a["units"] and a["units"][name].get("robust") is not None]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=_short(name))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title="Robust utility per unit (Dice per parameter)", xlabel="step")
    if shown:
        ax.legend(fontsize=6, loc="best")

    ax = axes[0, 1]
    if allocations and shown:
        grid = np.zeros((len(shown), len(allocations)))
        for j, a in enumerate(allocations):
            for i, name in enumerate(shown):
                grid[i, j] = 2 if name in a["active"] else (1 if name in a["probation"] else 0)
        ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="Blues", vmin=0, vmax=2)
        ax.set_yticks(range(len(shown)), [_short(n) for n in shown], fontsize=6)
        ax.set_xticks(range(len(allocations))[:: max(1, len(allocations) // 8)],
                      [a["step"] for a in allocations][:: max(1, len(allocations) // 8)])
    ax.set(title="Unit state at each allocation (white off, light probation, dark active)", xlabel="allocation step")

    ax = axes[1, 0]
    if audits:
        ax.plot([a["step"] for a in audits], [a["baseline_dice"] for a in audits], "o-", color="C2", label="audit Dice")
    ax.set(title="Audit Dice and training loss", xlabel="step", ylabel="soft Dice")
    search = [t for t in train if t.get("stage") == "search"]
    if search:
        twin = ax.twinx()
        twin.plot([t["step"] for t in search], [t["loss"] for t in search], color="C1", alpha=0.4, lw=0.8, label="loss")
        twin.set_ylabel("training loss")
    ax.legend(loc="lower left", fontsize=8)

    ax = axes[1, 1]
    if allocations:
        steps = [a["step"] for a in allocations]
        ax.step(steps, [a["active_cost"] for a in allocations], where="post", label="active units")
        ax.step(steps, [a["desired_cost"] for a in allocations], where="post", ls="--", label="allocator's choice")
        ax.axhline(allocations[-1]["budget"], color="red", lw=1, label="budget")
        ax.legend(fontsize=8)
    ax.set(title="Trained parameters against the budget", xlabel="step", ylabel="parameters")
    return save_figure(fig, title, png_path, dpi=100)
