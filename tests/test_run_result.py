"""RunResult: one summary of a run, the same in memory, in config.yaml, in bench records and in the publish pointer."""

from __future__ import annotations

import pytest
import yaml

from seapeft_monailabel.search import RunResult


def _result() -> RunResult:
    return RunResult(method="sea-peft", units=["a:lora:r4"], cost=96, budget=120, backbone_parameters=24000, shots=2,
                     selection_dice=0.8, head_only_dice=0.7, stop_reason="plateau", steps=12, seconds=3.14159,
                     out_dir="/runs/r1", unit_costs={"a:lora:r4": 96}, search_steps=10, refine_steps=2)


def test_round_trip_through_a_dict_holding_other_keys(tmp_path):
    result = _result()
    data = result.to_dict()
    assert data["seconds"] == 3.1 and data["units"] == ["a:lora:r4"]
    config = {**data, "network": {"name": "unet"}, "placements": [{"name": "a:lora:r4", "cost": 96}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    read = RunResult.from_run_dir(tmp_path)
    assert read.to_dict() == {**data, "out_dir": str(tmp_path)}
    assert RunResult.from_dict(data) == RunResult(**{**vars(result), "seconds": 3.1})


def test_a_run_folder_without_config_yaml_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        RunResult.from_run_dir(tmp_path)
