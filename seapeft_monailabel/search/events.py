"""The run's events log: JSON lines of training loss, audits, allocations, transitions, coverage and the
search's wall seconds per stage (``timing``, see :mod:`.timing`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class EventLog:
    """Appends one JSON object per line to ``path`` and keeps the events in memory for the report."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.events: list[dict[str, Any]] = []
        self._file = open(self.path, "w", encoding="utf-8") if self.path is not None else None

    def write(self, kind: str, **fields: Any) -> None:
        event = {"event": kind, **fields}
        self.events.append(event)
        if self._file is not None:
            self._file.write(json.dumps(event, default=_plain) + "\n")
            self._file.flush()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _plain(value: Any) -> Any:
    if hasattr(value, "value"):  # enums
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value)
    return float(value)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Read an events log back (skips a torn last line of a killed run)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
