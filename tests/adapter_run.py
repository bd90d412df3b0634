"""A run folder made by hand in a second: a tiny UNet base model file, trained-looking units of every UNet family
(LoRA, SALT, BitFit, SSF) and head, saved as adapter files and as the merged model.pt (what the engine writes)."""

from __future__ import annotations

from pathlib import Path

import torch

from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names, save_model_file
from seapeft_monailabel.peft import UnitRegistry, save_adapter_files, save_merged_model

LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))
#: one unit of each family the UNet manifest places, on different modules
UNITS = ["model.0.conv.unit0.conv:lora:r2", "model.0.conv.unit1.conv:salt:r2", "model.0.residual:bitfit:full",
         "model.0.conv.unit0.adn.N:ssf:full"]
PATCH = [16, 16, 16]


def base_network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(SPEC)


def make_run(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """``root/base.pt`` (the base model file) and ``root/run`` (adapter files and the merged model.pt)."""
    base = root / "base.pt"
    network = base_network(seed)
    save_model_file(base, network.state_dict(), SPEC, LABELS)
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in UNITS:
            for p in registry.unit(name).trainable_parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=generator))
        for p in registry.head_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    run = root / "run"
    save_adapter_files(run, registry, UNITS, SPEC, LABELS, method="test", patch_size=PATCH, spacing=None)
    save_merged_model(run / "model.pt", registry, UNITS, SPEC, LABELS)
    return base, run
