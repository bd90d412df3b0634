"""Adapter files (adapter_config.json + adapter_model.safetensors): kilobytes, safe to read, applied onto the base
they were trained on (and only that one) with the merged model's output; a malicious pickle never runs."""

from __future__ import annotations

import builtins
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from adapter_run import LABELS, SPEC, UNITS, base_network, make_run
from seapeft_monailabel.models import WeightLoadError, head_module_names, load_base_model
from seapeft_monailabel.models.weights import read_checkpoint
from seapeft_monailabel.peft import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterFileError, base_weights_sha256,
                                     load_adapter_files, load_merged_model, read_adapter_config)
from seapeft_monailabel.peft.host import UnitHost

X = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path)


def _merged_output(run_dir):
    merged, _ = load_merged_model(run_dir / "model.pt")
    with torch.no_grad():
        return merged(X)


def test_base_and_adapter_files_give_the_merged_models_output(run):
    base, run_dir = run
    adapted = load_adapter_files(run_dir, base)
    hosts = [m for m in adapted.modules() if isinstance(m, UnitHost)]
    assert sorted(u.name for h in hosts for u in h.units.values() if u.enabled) == sorted(UNITS)  # applied, unmerged
    with torch.no_grad():
        out = adapted(X)
    torch.testing.assert_close(out, _merged_output(run_dir), rtol=1e-4, atol=1e-5)
    base_out = load_base_model(base).network.eval()(X)
    assert (out - base_out).abs().max() > 1e-2  # the units and head change the answer


def test_a_plain_base_network_is_copied_and_the_same_weights_in_a_state_dict_are_recognised(run, tmp_path):
    base, run_dir = run
    network = load_base_model(base).network
    before = {k: v.clone() for k, v in network.state_dict().items()}
    adapted = load_adapter_files(run_dir, network)
    assert not any(isinstance(m, UnitHost) for m in network.modules())
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    torch.save(base_network().state_dict(), tmp_path / "plain.pt")  # the base's weights in another container
    with torch.no_grad():
        torch.testing.assert_close(adapted(X), _merged_output(run_dir), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(load_adapter_files(run_dir, tmp_path / "plain.pt")(X), adapted(X))


def test_the_files_are_kilobytes_of_head_and_unit_tensors_only(run):
    base, run_dir = run
    config = read_adapter_config(run_dir)
    tensors = load_file(str(run_dir / ADAPTER_WEIGHTS))
    assert sum(t.numel() for t in tensors.values()) == config["cost"] + config["head_parameters"]
    assert {k.split("/")[1] for k in tensors if k.startswith("unit/")} == set(UNITS)
    size = (run_dir / ADAPTER_WEIGHTS).stat().st_size + (run_dir / ADAPTER_CONFIG).stat().st_size
    assert size < 4 * (config["cost"] + config["head_parameters"]) + 16_384 < base.stat().st_size / 3
    assert [u["family"] for u in config["units"]] == ["lora", "salt", "bitfit", "ssf"]
    assert config["labels"] == LABELS and config["network"] == SPEC.to_dict() and config["method"] == "test"
    assert config["cost"] == sum(u["cost"] for u in config["units"]) > 0
    network = base_network()
    assert config["base_model_sha256"] == base_weights_sha256(network, head_module_names(SPEC, network))


def test_an_adapter_for_another_base_is_refused(run, tmp_path):
    _, run_dir = run
    other, _ = make_run(tmp_path / "other", seed=5)
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json: made for the base model with weights SHA-256 "
                                               r"[0-9a-f]{16}\.\.\., but the base it is applied to has [0-9a-f]{16}"):
        load_adapter_files(run_dir, other)
    with pytest.raises(AdapterFileError, match="already carries PEFT units"):
        load_adapter_files(run_dir, load_adapter_files(run_dir, run[0]))


def test_damaged_adapter_files_are_refused_naming_the_file(run):
    base, run_dir = run
    config = json.loads((run_dir / ADAPTER_CONFIG).read_text())
    weights = (run_dir / ADAPTER_WEIGHTS).read_bytes()
    (run_dir / ADAPTER_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(AdapterFileError, match=r"adapter_model\.safetensors: not a safetensors file"):
        load_adapter_files(run_dir, base)
    (run_dir / ADAPTER_WEIGHTS).write_bytes(weights)
    (run_dir / ADAPTER_CONFIG).write_text(json.dumps({**config, "units": config["units"][1:]}))
    with pytest.raises(AdapterFileError, match=r"adapter_model\.safetensors: tensor 'unit/model\.0\.conv\.unit0\.conv:"
                                               r"lora:r2/lora_A' belongs to no unit of adapter_config\.json"):
        load_adapter_files(run_dir, base)
    (run_dir / ADAPTER_CONFIG).write_text(json.dumps({**config, "format": "peft"}))
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json: not a SEA-PEFT adapter config \(format 'peft'"):
        read_adapter_config(run_dir)
    (run_dir / ADAPTER_CONFIG).write_text("{")
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json: not valid JSON"):
        read_adapter_config(run_dir)
    (run_dir / ADAPTER_CONFIG).unlink()
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json: no such file \(not an adapter folder\)"):
        read_adapter_config(run_dir)


class _WritesAFile:
    """Unpickling this calls ``open(target, "w")``: the file appears when the pickle's code runs."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return builtins.open, (self.target, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_refused_and_never_runs(run, tmp_path, writer):
    _, run_dir = run
    target = tmp_path / "written_by_the_pickle"
    evil = tmp_path / "evil.pt"
    payload = {"trap": _WritesAFile(target), "state_dict": {"w": torch.zeros(1)}}
    if writer == "torch.save":
        torch.save(payload, evil)
        torch.load(evil, weights_only=False)  # the payload is real: loading it unsafely writes the file
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
        pickle.loads(evil.read_bytes())
    assert target.exists()
    target.unlink()
    for load in (read_checkpoint, load_base_model, lambda p: load_adapter_files(run_dir, p),
                 lambda p: load_merged_model(p)):
        with pytest.raises(WeightLoadError, match=r"evil\.pt: holds Python objects \(io\.open\)"):
            load(evil)
        assert not target.exists()
    (run_dir / ADAPTER_WEIGHTS).write_bytes(evil.read_bytes())  # a pickle where the safetensors file should be
    with pytest.raises(AdapterFileError, match=r"adapter_model\.safetensors: not a safetensors file"):
        load_adapter_files(run_dir, run[0])
    assert not target.exists()
