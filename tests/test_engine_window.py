"""The engine trains at a window the network accepts: a patch size is fitted to the network (models.fit_patch)."""

from __future__ import annotations

import yaml

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.search import preset, run_fixed

LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))  # sides: multiples of 4


def test_a_patch_the_network_cannot_take_is_fitted(tmp_path):
    network = build_network(SPEC)
    config = preset("tiny", max_steps=2, refine_steps=1, patch_size=(16, 16, 14), seed=0)
    run_fixed(make_datalist("sample-data")[:2], network, method="head", spec=SPEC,
              head_names=head_module_names(SPEC, network), labels=LABELS, config=config, out_dir=tmp_path)
    settings = yaml.safe_load((tmp_path / "config.yaml").read_text())["config"]
    assert settings["patch_size"] == [16, 16, 16]
