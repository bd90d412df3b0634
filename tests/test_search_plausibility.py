"""The final selection's whole-volume guard: a unit set whose predicted structure volume lies far outside
the labelled volumes' range cannot win, and a search records each candidate's whole-volume Dice."""

from __future__ import annotations

import torch
import yaml

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.peft import UnitRegistry
from seapeft_monailabel.search import plausibility, preset, run_search
from seapeft_monailabel.search.plausibility import PlausibilityCheck

LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))
PATCH = (32, 32, 32)


class _Answer:
    """A predictor stand-in whose class map is a given label map ``(X, Y, Z)``."""

    def __init__(self, class_map: torch.Tensor):
        self.map = class_map

    def class_map(self, image):
        return self.map


def _check(datalist, ratio=2.0):
    network = build_network(SPEC)
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    return PlausibilityCheck(registry, datalist[0], datalist, len(LABELS), PATCH, None, ratio,
                             label_names=["liver", "gallbladder"])


def test_structure_volumes_in_millilitres():
    label = torch.zeros(4, 4, 4, dtype=torch.long)
    label[:2] = 1
    label[3, 0, 0] = 2
    assert plausibility.structure_volumes(label, 3, 8e-3) == [32 * 8e-3, 8e-3]


def test_a_set_that_labels_the_background_is_implausible(monkeypatch):
    datalist = make_datalist("sample-data")[:3]
    check = _check(datalist)
    truth = check.label
    # the selection volume's own label: Dice 1 and volumes inside the labelled range
    monkeypatch.setattr(plausibility, "torch_predictor", lambda *a, **k: _Answer(truth))
    verdict = check(())
    assert verdict.plausible and verdict.why is None and verdict.dice == [1.0, 1.0]
    # everything outside the liver called gallbladder (the air around a head called "brain")
    leaked = torch.where(truth == 1, truth, torch.full_like(truth, 2))
    monkeypatch.setattr(plausibility, "torch_predictor", lambda *a, **k: _Answer(leaked))
    verdict = check(())
    assert not verdict.plausible and verdict.why.startswith("gallbladder:") and "labelled volumes hold" in verdict.why
    assert verdict.dice[0] == 1.0 and verdict.dice[1] < 0.1
    # nothing found at all is implausible too
    monkeypatch.setattr(plausibility, "torch_predictor", lambda *a, **k: _Answer(torch.zeros_like(truth)))
    assert not check(()).plausible
    # the range holds every labelled volume's structures
    for k in range(2):
        assert check.low[k] <= plausibility.structure_volumes(truth, 3, check.voxel_ml)[k] <= check.high[k]


def _search_with_verdicts(tmp_path, monkeypatch, plausible):
    """A tiny search whose guard declares the sets ``plausible(names)`` says; returns (result, candidates, checked)."""
    datalist = make_datalist("sample-data")[:3]
    torch.manual_seed(0)
    network = build_network(SPEC)
    checked = []
    real_call = PlausibilityCheck.__call__

    def verdict(self, names):
        result = real_call(self, names)
        checked.append(tuple(sorted(names)))
        result.plausible = plausible(tuple(sorted(names)))
        result.why = None if result.plausible else "test: declared implausible"
        return result

    monkeypatch.setattr(PlausibilityCheck, "__call__", verdict)
    config = preset("tiny", max_steps=8, refine_steps=2, seed=1)
    result = run_search(datalist, network, spec=SPEC, head_names=head_module_names(SPEC, network), labels=LABELS,
                        config=config, out_dir=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    return result, saved["candidates"], checked


def test_search_records_whole_volume_dice_and_prefers_plausible_sets(tmp_path, monkeypatch):
    """An implausible set loses even with the best patch Dice; every set segmented carries its verdict."""
    # every set with units implausible, the head alone plausible: the head alone must win
    result, candidates, checked = _search_with_verdicts(tmp_path, monkeypatch, lambda names: not names)
    assert len(candidates) > 1 and checked[-1] == ()
    assert result.units == [] and candidates[0]["units"] == [] and candidates[0]["plausible"]
    for c in candidates:
        assert c["checked"] == (tuple(sorted(c["units"])) in checked)
        if c["checked"]:
            assert 0.0 <= c["volume_dice"] <= 1.0 and c["plausible"] == (c["units"] == [])
            assert c["plausible"] or c["implausible"]
        else:  # ranked below the winner: never segmented
            assert c["volume_dice"] is None


def test_the_guard_stops_at_the_first_plausible_set_down_the_ranking(tmp_path, monkeypatch):
    """With every set plausible, only the top-ranked set is segmented: the others cannot win."""
    result, candidates, checked = _search_with_verdicts(tmp_path, monkeypatch, lambda names: True)
    assert len(candidates) > 1 and checked == [tuple(sorted(result.units))]
    assert candidates[0]["checked"] and candidates[0]["volume_dice"] is not None
    assert not any(c["checked"] for c in candidates[1:])
