"""Run under ``torchrun --nproc_per_node 2`` by tests/test_distributed.py (Gloo on CPU).

Phases, all in one launch: (1) audit Dice of a few gate sets on split audit patches; (2) the planted
problem of test_search_engine, recording each rank's gates after every allocation; (3) a tiny run_search
into OUT/search (only rank 0 may write there). Each rank reports into OUT/rank<r>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.peft import UnitRegistry
from seapeft_monailabel.models import head_module_names
from seapeft_monailabel.search import preset, run_search
from seapeft_monailabel.search.audit import Auditor
from seapeft_monailabel.search.distributed import init_distributed
from seapeft_monailabel.search.engine import split_support
from seapeft_monailabel.search.episode import SearchEpisode
from seapeft_monailabel.search.events import EventLog
from seapeft_monailabel.search.patches import audit_patches

from test_search_engine import AUDIT_SETS, LABELS, SPEC, ScriptedAuditor, _network, audit_registry, planted_config

torch.set_num_threads(1)


def main(out: Path) -> None:
    ctx = init_distributed(torch.device("cpu"))
    report = {"rank": ctx.rank, "world_size": ctx.world_size}
    datalist = make_datalist("sample-data")[:3]

    images, labels = audit_patches(datalist[0], (16, 16, 16), 4, 3, seed=0)
    auditor = Auditor(audit_registry(), images, labels, n_classes=3, ctx=ctx)
    report["audit"] = [auditor.dice(names) for names in AUDIT_SETS]

    network = _network()
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    support, audit_item = split_support(datalist, 0)
    holder = {}
    episode = SearchEpisode(registry, support, audit_item, planted_config(), n_classes=3, shots=len(support),
                            events=EventLog(None), device="cpu", ctx=ctx,
                            auditor=ScriptedAuditor(registry, clock=lambda: holder["episode"].trainer.step_count))
    holder["episode"] = episode
    gates = []
    allocate = episode._allocate

    def recording(step):
        stop = allocate(step)
        gates.append(sorted(registry.enabled_names()))
        return stop

    episode._allocate = recording
    report["planted_chosen"] = sorted(episode.run().chosen)
    report["gates"] = gates

    network = _network()
    result = run_search(datalist, network, spec=SPEC, head_names=head_module_names(SPEC, network), labels=LABELS,
                        config=preset("tiny"), out_dir=out / "search")
    report["search_chosen"] = result.units
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
