"""SEA-PEFT under torch.distributed: two CPU processes (Gloo) launched with torchrun, against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.search import RUN_FILES
from seapeft_monailabel.search.audit import Auditor
from seapeft_monailabel.search.patches import audit_patches

from test_search_engine import AUDIT_SETS, U1_LARGE, U2, audit_registry

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(HERE / "distributed_job.py"), str(out)], cwd=HERE.parent, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_audit_dice_equals_a_single_process_audit(two_ranks):
    _, reports = two_ranks
    datalist = make_datalist("sample-data")[:3]
    images, labels = audit_patches(datalist[0], (16, 16, 16), 4, 3, seed=0)
    auditor = Auditor(audit_registry(), images, labels, n_classes=3)
    single = [auditor.dice(names) for names in AUDIT_SETS]
    assert len(set(single)) == len(single)  # the sets really differ
    for report in reports:
        assert report["world_size"] == 2
        # the same sums, added in another order (float32 within a patch batch)
        assert report["audit"] == pytest.approx(single, rel=1e-6)


def test_gates_agree_on_every_rank_after_every_allocation(two_ranks):
    _, (rank0, rank1) = two_ranks
    assert rank0["gates"] and rank0["gates"] == rank1["gates"]


def test_two_processes_choose_what_one_process_chooses(two_ranks):
    _, (rank0, rank1) = two_ranks
    # the single-process run of the same planted problem chooses exactly these (test_search_engine)
    assert rank0["planted_chosen"] == rank1["planted_chosen"] == sorted([U1_LARGE, U2])
    assert rank0["search_chosen"] == rank1["search_chosen"]


def test_only_rank_zero_writes(two_ranks):
    out, _ = two_ranks
    search = out / "search"
    assert sorted(p.name for p in search.iterdir()) == sorted(RUN_FILES)
    assert sorted(p.name for p in out.iterdir()) == ["rank0.json", "rank1.json", "search"]
    assert torch.load(search / "model.pt", weights_only=True)["format"] == "seapeft-merged/1"
