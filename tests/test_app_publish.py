"""The app's publishing and model selection without a server: pointer, run clean-up, served model, conf keys."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from app_support import APP_DIR, TARGET_LABELS

sys.path.insert(0, str(APP_DIR))

from lib.configs.conf import AppConf, ConfError
from lib.infers.predictor import PredictorPicker
from lib.models.published import (
    POINTER,
    RUN_FILES,
    publish,
    read_pointer,
    remove_incomplete_runs,
)
from lib.models.served import ModelStore

from seapeft_monailabel.models import NetworkSpec, build_network, save_model_file

SPEC = NetworkSpec(name="unet", out_channels=len(TARGET_LABELS))


def _model_file(path, seed):
    torch.manual_seed(seed)
    save_model_file(path, build_network(SPEC).state_dict(), SPEC, TARGET_LABELS, patch_size=[32, 32, 32])
    return path


def _run(model_dir, run_id, seed):
    run = model_dir / "runs" / run_id
    run.mkdir(parents=True)
    for name in RUN_FILES:
        (run / name).write_bytes(b"")
    _model_file(run / "model.pt", seed)
    return run


@pytest.fixture
def store(tmp_path):
    (tmp_path / "base").mkdir()
    base = _model_file(tmp_path / "base" / "model.pt", 0)
    conf = AppConf.from_conf({"base_model": str(base), "device": "cpu"}, APP_DIR)
    return ModelStore(conf, tmp_path / "model" / "seapeft")


def test_base_model_is_served_until_a_run_is_published(store):
    served = store.current()
    assert served.kind == "base" and served.model_id.startswith("base:") and served.patch_size == (32, 32, 32)
    assert store.current() is served  # cached while nothing changes
    _run(store.model_dir, "r1", seed=1)
    assert store.current() is served  # a run folder alone is not published
    pointer = publish(store.model_dir, "r1", {"patch_size": [32, 32, 32], "units": ["u"]})
    adapted = store.current()
    assert adapted.kind == "adapted" and adapted.model_id == f"adapted:r1:{pointer['sha256'][:12]}"
    assert read_pointer(store.model_dir)["run"] == "r1"
    assert not [p for p in store.model_dir.iterdir() if p.name.startswith(f".{POINTER}")]  # no temporary left


def test_altered_published_model_falls_back_to_base_with_note(store):
    _run(store.model_dir, "r1", seed=1)
    publish(store.model_dir, "r1", {"patch_size": [32, 32, 32]})
    _model_file(store.model_dir / "runs" / "r1" / "model.pt", seed=2)  # replaced after publishing
    (store.model_dir / POINTER).touch()
    served = store.current()
    assert served.kind == "base" and "checksum" in served.note


def test_published_model_for_other_labels_is_not_served(store):
    run = _run(store.model_dir, "r1", seed=1)
    save_model_file(run / "model.pt", build_network(SPEC).state_dict(), SPEC, {"background": 0, "a": 1, "b": 2})
    publish(store.model_dir, "r1", {"patch_size": [32, 32, 32]})
    served = store.current()
    assert served.kind == "base" and "labels" in served.note


def test_incomplete_runs_are_removed_but_never_the_published_one(tmp_path):
    model_dir = tmp_path / "seapeft"
    _run(model_dir, "done", seed=0)
    publish(model_dir, "done", {})
    (model_dir / "runs" / "killed" / ".staging-x").mkdir(parents=True)
    assert remove_incomplete_runs(model_dir) == ["killed"]
    assert (model_dir / "runs" / "done" / "model.pt").is_file()


def test_conf_keys_parse_and_fail_clearly(tmp_path):
    conf = AppConf.from_conf({"base_model": "x.pt", "labels": "liver,spleen", "patch_size": "64,64,32",
                              "steps": "10", "time_limit": "60", "runtime": "torch", "precision": "int8"}, APP_DIR)
    assert conf.labels == {"background": 0, "liver": 1, "spleen": 2}
    assert conf.patch_size == (64, 64, 32)
    assert conf.search_changes == {"max_steps": 10, "time_limit_s": 60.0}
    assert AppConf.from_conf({}, APP_DIR).base_model == APP_DIR.parents[1] / "sample-data" / "base_model" / "model.pt"
    assert AppConf.from_conf({"labels": json.dumps(TARGET_LABELS)}, APP_DIR).labels == TARGET_LABELS
    for bad in ({"runtime": "tensorrt"}, {"labels": '{"liver": 1}'}, {"patch_size": "a"}, {"steps": "0"}):
        with pytest.raises(ConfError, match=next(iter(bad))):
            AppConf.from_conf(bad, APP_DIR)


def test_runtime_choice_falls_back_to_pytorch_and_says_why(store):
    served = store.current()
    assert served.from_file  # the base file's labels are the task's: its model.pt can be converted
    auto = PredictorPicker("auto", "fp32")(served)
    assert (auto.runtime, auto.precision, auto.note) == ("torch", "fp32", None)  # no serving.json beside it
    assert auto.roi_size == served.patch_size
    asked = PredictorPicker("openvino", "int8")(served)
    assert asked.runtime == "torch" and "serving.json" in asked.note
    assert "int8" in PredictorPicker("torch", "int8")(served).note
