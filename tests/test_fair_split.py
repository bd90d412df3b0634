"""A fair comparison: SEA-PEFT and every fixed method train on the same support volumes, are judged on the
same selection volume, refine on the same volumes and record the same shots; the head-only Dice is one number."""

from __future__ import annotations

import pytest
import torch
import yaml

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.search import FIXED_METHODS, method_manifest, preset, run_fixed, run_search, split_support
from seapeft_monailabel.search import engine, episode
from seapeft_monailabel.search.patches import PatchStream, audit_patches

LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))
CONFIG = preset("tiny", max_steps=8, refine_steps=2, seed=3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every method on the same 3 labelled volumes, with the volumes each training stream and the selection
    patches were drawn from recorded as the runs made them."""
    datalist = make_datalist("sample-data")[:3]
    seen: dict[str, dict] = {}
    current: list[str] = []

    class RecordingStream(PatchStream):
        def __init__(self, data, *args, **kwargs):
            seen[current[0]]["streams"].append([i["image"] for i in data])
            super().__init__(data, *args, **kwargs)

    def recording_audit_patches(item, *args, **kwargs):
        seen[current[0]]["selection"].append(item["image"])
        return audit_patches(item, *args, **kwargs)

    def train(method, out, **kwargs):
        current[:] = [method]
        seen[method] = {"streams": [], "selection": []}
        torch.manual_seed(0)
        network = build_network(SPEC)
        common = dict(spec=SPEC, head_names=head_module_names(SPEC, network), labels=LABELS, config=CONFIG,
                      out_dir=out / method)
        if method == "sea-peft":
            result = run_search(datalist, network, **common)
        else:
            result = run_fixed(datalist, network, method=method, **common, **kwargs)
        return result, yaml.safe_load((out / method / "config.yaml").read_text())

    out = tmp_path_factory.mktemp("fair")
    with pytest.MonkeyPatch.context() as patch:
        for module in (engine, episode):
            patch.setattr(module, "PatchStream", RecordingStream)
            patch.setattr(module, "audit_patches", recording_audit_patches)
        done = {"sea-peft": train("sea-peft", out)}
        for method in FIXED_METHODS:
            if method == "random":
                done[method] = train(method, out, target_cost=done["sea-peft"][0].cost)
                continue
            try:
                method_manifest(method, SPEC.name)
            except ValueError:  # adaptformer has no site in a UNet
                continue
            done[method] = train(method, out)
    return datalist, done, seen


def test_every_method_trains_and_selects_on_the_same_split(runs):
    datalist, done, seen = runs
    support, selection = split_support(datalist, CONFIG.seed)
    support_images = [i["image"] for i in support]
    assert set(done) == {m for m in ("sea-peft",) + FIXED_METHODS if m != "adaptformer"}
    for method, (result, config) in done.items():
        # what the run recorded
        assert config["support"] == support_images and config["audit_volume"] == selection["image"], method
        assert config["shots"] == result.shots == len(support) == 2, method
        # what it trained and judged on: the support set, then (refine) support and selection volume together
        assert seen[method]["streams"] == [support_images, [i["image"] for i in datalist]], method
        assert seen[method]["selection"] == [selection["image"]], method
        assert 0.0 <= result.selection_dice <= 1.0 and config["selection_dice"] == result.selection_dice, method
        assert result.steps == result.search_steps + result.refine_steps, method
        assert (config["search_steps"], config["refine_steps"]) == (result.search_steps, result.refine_steps), method
    assert done["lora"][0].search_steps == CONFIG.max_steps


def test_head_only_dice_is_the_head_only_candidate(runs):
    _, done, _ = runs
    result, config = done["sea-peft"]
    (head_only,) = [c for c in config["candidates"] if c["units"] == []]
    assert config["head_only_dice"] == head_only["dice"] == result.head_only_dice
