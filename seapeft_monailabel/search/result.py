"""What a finished run chose, measured and wrote: the one summary of a run, in memory and on disk.

:func:`~.engine.run_search` and :func:`~.engine.run_fixed` return a :class:`RunResult`; its
:meth:`~RunResult.to_dict` is the top of the run's ``config.yaml``, the benchmark's run records and
the app's publish pointer, and :meth:`~RunResult.from_dict` (or :meth:`~RunResult.from_run_dir`)
reads it back from any of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ..peft.adapter_files import ADAPTER_FILES

CONFIG_FILE = "config.yaml"
#: The files of a complete run folder: the summary, the adapter files (head and chosen units), the merged model,
#: the event log and the report.
RUN_FILES = (CONFIG_FILE, *ADAPTER_FILES, "model.pt", "events.jsonl", "report.png")


@dataclass
class RunResult:
    """The summary of one run (SEA-PEFT or a fixed method).

    ``units`` are the chosen unit names and ``unit_costs`` their parameter counts; ``cost`` their sum,
    within ``budget``. ``selection_dice`` is the Dice on the selection (audit) volume's patches and
    ``head_only_dice`` the head-only candidate's (SEA-PEFT only). ``steps`` = ``search_steps`` +
    ``refine_steps``; ``seconds`` the run's wall time; ``out_dir`` the folder of its :data:`RUN_FILES`.
    """

    method: str
    units: list[str]
    cost: int
    budget: int
    backbone_parameters: int
    shots: int
    selection_dice: float | None
    head_only_dice: float | None
    stop_reason: str
    steps: int
    seconds: float
    out_dir: str = ""
    unit_costs: dict[str, int] = field(default_factory=dict)
    search_steps: int = 0  # steps on the support set (a fixed method: always the config's max_steps)
    refine_steps: int = 0  # refine steps run (fewer than the config's when the refine stage stopped early)

    def to_dict(self) -> dict:
        """Plain values only (YAML and JSON ready); ``seconds`` to a tenth."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 1)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        """The result in ``data`` (a :meth:`to_dict`, or a dict holding one among other keys)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> RunResult:
        """The result of a finished run, from the ``config.yaml`` it wrote (``out_dir``: where it is now)."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (the run did not finish)")
        result = cls.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
        result.out_dir = str(run_dir)
        return result
