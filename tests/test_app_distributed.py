"""The train task's ``--conf multi_gpu``: torchrun command construction and path choice, on CPU, without GPUs.

Nothing is launched under torchrun here: the command is parsed back by the ``seapeft`` command line's
own parser (so the distributed run gets exactly the task's settings), the train task is checked to
take the torchrun path only with ``multi_gpu true`` and more than one CUDA device (the device count
is patched), and a run folder written by the engine is read back into the same result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch
from app_support import APP_DIR, SAMPLE_DATA, TARGET_LABELS, base_model_for_tests

sys.path.insert(0, str(APP_DIR))

import lib.trainers.seapeft as train_module
from lib.configs.conf import AppConf, ConfError
from lib.sites.resolve import SiteResolver
from lib.trainers.distributed import processes, search_command
from lib.trainers.seapeft import SeaPeftTrain

from seapeft_monailabel.commands import search as search_verb
from seapeft_monailabel.commands.common import config_from_args
from seapeft_monailabel.data import make_datalist
from seapeft_monailabel.search import RunResult, preset, run_search


def _search_args(command: list[str]):
    """``command``'s arguments after ``-m seapeft_monailabel.cli search``, parsed by that verb's own parser."""
    assert command[6:8] == ["seapeft_monailabel.cli", "search"]
    parser = argparse.ArgumentParser()
    search_verb.add_arguments(parser)
    return parser.parse_args(command[8:])


def _conf(tmp_path, **keys) -> AppConf:
    return AppConf.from_conf({k: str(v) for k, v in keys.items()}, tmp_path / "apps" / "seapeft")


@pytest.mark.parametrize("multi_gpu, gpus, device, expected", [
    ("false", 4, "auto", 1), ("true", 4, "auto", 4), ("true", 4, "cuda", 4), ("true", 1, "auto", 1),
    ("true", 0, "auto", 1), ("true", 4, "cpu", 1), ("true", 4, "cuda:1", 1)])
def test_processes(tmp_path, monkeypatch, multi_gpu, gpus, device, expected):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert processes(_conf(tmp_path, multi_gpu=multi_gpu), device) == expected


def test_multi_gpu_conf_key_is_a_flag(tmp_path):
    assert _conf(tmp_path).multi_gpu is False
    with pytest.raises(ConfError, match="multi_gpu"):
        _conf(tmp_path, multi_gpu="yes please")


def test_search_command_carries_the_task_settings(tmp_path):
    conf = _conf(tmp_path, multi_gpu="true", base_model=tmp_path / "base.pt")
    config = preset("gpu", max_steps=123, refine_steps=7, seed=3, budget_fraction=0.01, time_limit_s=50.0,
                    patch_size=(48, 48, 32), device="auto")
    command = search_command(4, conf, TARGET_LABELS, "gpu", config, tmp_path / "datalist.json", tmp_path / "run")
    assert command[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert command[6:8] == ["seapeft_monailabel.cli", "search"]
    args = _search_args(command)
    assert args.nproc == 1  # under torchrun the command does not relaunch itself
    assert (args.datalist, args.out, args.weights) == (str(tmp_path / "datalist.json"), str(tmp_path / "run"),
                                                       str(tmp_path / "base.pt"))
    assert json.loads(args.label_names) == TARGET_LABELS and args.network is None
    assert config_from_args(args) == config.with_(device="cuda")  # every rank on its own GPU (LOCAL_RANK)

    swin = _conf(tmp_path, network="swinunetr", feature_size="24", base_model=tmp_path / "base.pt")
    args = _search_args(search_command(2, swin, TARGET_LABELS, "gpu", config, tmp_path / "d.json", tmp_path / "run"))
    assert (args.network, args.feature_size) == ("swinunetr", 24)
    with pytest.raises(ConfError, match="spacing"):
        search_command(2, conf, TARGET_LABELS, "gpu", config.with_(spacing=(1.5, 1.5, 2.0)), tmp_path / "d.json",
                       tmp_path / "run")


class _Datastore:
    def datalist(self):
        return make_datalist(SAMPLE_DATA)[:3]


class _Launched(Exception):
    """Raised by the patched run functions: which path the task took, and with what."""


@pytest.mark.parametrize("multi_gpu, gpus, distributed", [("true", 2, True), ("false", 2, False), ("true", 1, False)])
def test_train_task_takes_torchrun_only_with_multi_gpu_and_several_gpus(tmp_path, monkeypatch, multi_gpu, gpus,
                                                                       distributed):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    calls = {}

    def fake_distributed(command, datalist, datalist_path, cwd):
        calls["distributed"] = (command, datalist, datalist_path)
        raise _Launched

    def fake_search(datalist, network, **kwargs):
        calls["single"] = (datalist, kwargs)
        raise _Launched

    monkeypatch.setattr(train_module, "run_distributed", fake_distributed)
    monkeypatch.setattr(train_module, "run_search", fake_search)
    base = base_model_for_tests(tmp_path / "base")
    conf = _conf(tmp_path, multi_gpu=multi_gpu, base_model=base, preset="tiny")
    task = SeaPeftTrain(conf, tmp_path / "model", SiteResolver(conf.sites, conf.site_map), "test")
    with pytest.raises(_Launched):
        task({"steps": "6", "seed": "2"}, _Datastore())
    assert set(calls) == {"distributed" if distributed else "single"}
    if distributed:
        command, datalist, datalist_path = calls["distributed"]
        assert "--nproc_per_node=2" in command and datalist == _Datastore().datalist()
        args = _search_args(command)
        assert (args.steps, args.seed, args.preset, args.datalist) == (6, 2, "tiny", str(datalist_path))
        assert Path(args.out).parent == tmp_path / "model" / "runs"
    else:
        assert calls["single"][1]["config"].max_steps == 6


def test_result_is_read_back_from_the_run_folder(tmp_path):
    from seapeft_monailabel.models import load_base_model

    base = load_base_model(base_model_for_tests(tmp_path / "base"), TARGET_LABELS)
    config = preset("tiny", max_steps=4, refine_steps=1, patch_size=(16, 16, 16), device="cpu")
    result = run_search(make_datalist(SAMPLE_DATA)[:2], base.network, spec=base.spec, head_names=base.head_names,
                        labels=base.labels, config=config, out_dir=tmp_path / "run")
    read = RunResult.from_run_dir(tmp_path / "run")
    expected = result.to_dict()
    got = read.to_dict()
    assert abs(got.pop("seconds") - expected.pop("seconds")) < 5.0
    assert got == expected
