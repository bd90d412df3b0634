"""Build the segmentation networks the project uses, from a small serialisable spec.

Two MONAI networks are supported, both 3D:

- ``swinunetr``: :class:`monai.networks.nets.SwinUNETR` (the default backbone).
  Input ``(B, in_channels, D, H, W)`` with D, H and W each divisible by 32
  (patch size 2 and four 2x merges); output ``(B, out_channels, D, H, W)`` logits.
  The bottleneck at ``(D, H, W) / 32`` is instance-normalised, so it needs more than one voxel:
  32^3 fails, 64 x 32 x 32 and 64^3 (or larger) work.
- ``unet``: :class:`monai.networks.nets.UNet` (residual units, instance norm, PReLU).
  Input ``(B, in_channels, D, H, W)`` with D, H and W each divisible by ``prod(strides)``;
  output ``(B, out_channels, D, H, W)`` logits.

The spec is written beside every model the project saves (YAML/JSON through
:meth:`NetworkSpec.to_dict`), so a model file can always be rebuilt into the network it came from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from torch import nn

__all__ = [
    "NETWORK_NAMES",
    "NetworkSpec",
    "build_network",
    "count_parameters",
    "head_module_names",
    "spatial_multiple",
]

NETWORK_NAMES = ("swinunetr", "unet")

# SwinUNETR: patch embedding (stride 2) followed by four patch-merging stages (2x each).
_SWIN_MULTIPLE = 32


def _positive_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"NetworkSpec.{field_name} must be a positive integer, got {value!r}")
    return value


def _int_tuple(value: Any, field_name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"NetworkSpec.{field_name} must be a sequence of positive integers, got {value!r}")
    items = tuple(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ValueError(f"NetworkSpec.{field_name} must hold positive integers, got {list(items)!r}")
    return items


@dataclass(frozen=True)
class NetworkSpec:
    """What network to build; everything needed to rebuild it from a saved file.

    Attributes:
        name: ``"swinunetr"`` or ``"unet"`` (case-insensitive).
        in_channels: image channels C_in of the input ``(B, C_in, D, H, W)``.
        out_channels: classes C_out of the output logits ``(B, C_out, D, H, W)``, background included.
        feature_size: SwinUNETR embedding width F (stage widths F, 2F, 4F, 8F, 16F); a multiple of 12.
        use_v2: SwinUNETR v2 (adds a residual conv block before each Swin stage).
        channels: UNet feature channels per level, top to bottom.
        strides: UNet downsampling strides between levels; ``len(channels) - 1`` of them.
        num_res_units: UNet residual units per block (0 gives plain conv blocks).
    """

    name: str = "swinunetr"
    in_channels: int = 1
    out_channels: int = 2
    feature_size: int = 12
    use_v2: bool = False
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 2

    def __post_init__(self) -> None:
        name = str(self.name).strip().lower()
        if name not in NETWORK_NAMES:
            raise ValueError(f"NetworkSpec.name must be one of {', '.join(NETWORK_NAMES)}; got {self.name!r}")
        object.__setattr__(self, "name", name)
        _positive_int(self.in_channels, "in_channels")
        _positive_int(self.out_channels, "out_channels")
        if not isinstance(self.use_v2, bool):
            raise ValueError(f"NetworkSpec.use_v2 must be true or false, got {self.use_v2!r}")
        object.__setattr__(self, "channels", _int_tuple(self.channels, "channels"))
        object.__setattr__(self, "strides", _int_tuple(self.strides, "strides"))
        if isinstance(self.num_res_units, bool) or not isinstance(self.num_res_units, int) or self.num_res_units < 0:
            raise ValueError(f"NetworkSpec.num_res_units must be an integer >= 0, got {self.num_res_units!r}")
        _positive_int(self.feature_size, "feature_size")
        if name == "swinunetr" and self.feature_size % 12 != 0:
            raise ValueError(
                f"NetworkSpec.feature_size must be divisible by 12 for SwinUNETR (its stages have 3, 6, 12 "
                f"and 24 attention heads); got {self.feature_size}. Use 12, 24, 36 or 48."
            )
        if name == "unet":
            if len(self.channels) < 2:
                raise ValueError(f"NetworkSpec.channels needs at least 2 levels for UNet, got {list(self.channels)}")
            if len(self.strides) != len(self.channels) - 1:
                raise ValueError(
                    f"NetworkSpec.strides must have len(channels) - 1 = {len(self.channels) - 1} entries for UNet, "
                    f"got {len(self.strides)} (channels={list(self.channels)}, strides={list(self.strides)})"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) safe for ``yaml.safe_dump`` and ``json.dump``."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["strides"] = list(self.strides)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NetworkSpec":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"NetworkSpec.from_dict expects a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"NetworkSpec: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**dict(data))


def spatial_multiple(spec: NetworkSpec) -> int:
    """Each of D, H, W of the network input must be a multiple of this number.

    For SwinUNETR the input must also be larger than 32^3 (see the module docstring).
    """
    if spec.name == "swinunetr":
        return _SWIN_MULTIPLE
    return math.prod(spec.strides)


def build_network(spec: NetworkSpec) -> nn.Module:
    """Build the MONAI network described by ``spec`` (freshly initialised, in train mode).

    Input ``(B, spec.in_channels, D, H, W)`` float, D/H/W multiples of :func:`spatial_multiple`;
    output ``(B, spec.out_channels, D, H, W)`` logits (no softmax).
    """
    from monai.networks.nets import SwinUNETR, UNet

    if spec.name == "swinunetr":
        return SwinUNETR(
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
            feature_size=spec.feature_size,
            use_v2=spec.use_v2,
            spatial_dims=3,
        )
    return UNet(
        spatial_dims=3,
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        channels=spec.channels,
        strides=spec.strides,
        num_res_units=spec.num_res_units,
    )


_CONV_TYPES = (nn.Conv3d, nn.ConvTranspose3d)


def head_module_names(spec: NetworkSpec, network: nn.Module | None = None) -> list[str]:
    """Names of the modules whose outputs are the classes, in forward order.

    These are the modules whose tensors change shape when the number of classes changes.

    - SwinUNETR: ``["out.conv.conv"]`` (Conv3d F -> C_out, 1x1x1).
    - UNet: the convolutions in the top-level output block ``model.<last>`` with C_out outputs.
      With residual units: ``["model.2.0.conv", "model.2.1.conv.unit0.conv"]`` for 4 levels
      (ConvTranspose3d channels[1] -> C_out, then Conv3d C_out -> C_out; the residual path is an
      identity there); without: ``["model.2.conv"]``.

    ``network`` may be passed to avoid building one; it must have been built from ``spec``.
    """
    if spec.name == "swinunetr":
        return ["out.conv.conv"]
    net = network if network is not None else build_network(spec)
    top_blocks = [name for name, _ in net.model.named_children()]
    prefix = f"model.{top_blocks[-1]}"
    names = [
        name
        for name, module in net.named_modules()
        if (name == prefix or name.startswith(prefix + "."))
        and isinstance(module, _CONV_TYPES)
        and module.out_channels == spec.out_channels
    ]
    if not names:
        raise RuntimeError(f"no convolution with {spec.out_channels} outputs found under {prefix} of the UNet")
    return names


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
