"""Geometry of a site: what a unit needs to know about the module it sits on.

A *site* is one module of the network (one per block, never per stage), addressed by its
dotted path in the network as built (before any unit was injected). Units do not inspect
modules themselves; they receive a :class:`SiteGeometry` describing the module's weight and
feature layout.

Weight matrix view used by the low-rank families (LoRA, AdaLoRA, SALT):

* ``nn.Linear`` weight ``(out, in)`` is viewed as ``(out, in)``;
* ``nn.Conv3d`` weight ``(out, in/groups, kd, kh, kw)`` as ``(out, in/groups * kd*kh*kw)``;
* ``nn.ConvTranspose3d`` weight ``(in, out/groups, kd, kh, kw)`` as ``(in, out/groups * kd*kh*kw)``.

A delta ``(rows, cols)`` in that view reshapes back to the weight's shape, so every weight-space
unit merges into the frozen weight exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from torch import nn

_NORMS = (nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.BatchNorm3d, nn.GroupNorm)


@dataclass(frozen=True)
class SiteGeometry:
    """Shape facts about one site module.

    Attributes:
        path: dotted module path in the original network, e.g. ``swinViT.layers1.0.blocks.0.attn.qkv``.
        kind: ``linear``, ``conv`` (Conv3d), ``conv_transpose`` (ConvTranspose3d), ``norm`` or ``container``.
        in_features: channels entering the module (last dim for token layouts, dim 1 for volumes).
        out_features: channels leaving the module.
        channel_dim: axis of the output that holds the channels: ``-1`` for token layouts
            ``(B, ..., C)``, ``1`` for volumes ``(B, C, D, H, W)``.
        weight_shape: shape of the module's own ``weight`` (``None`` for norms without affine and containers).
        matrix_shape: ``(rows, cols)`` view of the weight for low-rank families, or ``None``.
        has_bias: whether the module has its own bias tensor.
    """

    path: str
    kind: str
    in_features: int
    out_features: int
    channel_dim: int
    weight_shape: tuple[int, ...] | None
    matrix_shape: tuple[int, int] | None
    has_bias: bool

    @property
    def is_weight_layer(self) -> bool:
        """True for Linear, Conv3d and ConvTranspose3d: modules whose weight a delta can change."""
        return self.kind in ("linear", "conv", "conv_transpose")


def _first_last(module: nn.Module, types: tuple[type, ...]) -> tuple[nn.Module | None, nn.Module | None]:
    found = [m for m in module.modules() if isinstance(m, types)]
    return (found[0], found[-1]) if found else (None, None)


def describe_site(path: str, module: nn.Module) -> SiteGeometry:
    """Build the :class:`SiteGeometry` of ``module`` found at ``path``.

    Raises:
        TypeError: the module is of a kind no unit family can sit on (for example an activation).
    """
    if isinstance(module, nn.Linear):
        w = tuple(module.weight.shape)
        return SiteGeometry(path, "linear", module.in_features, module.out_features, -1, w, (w[0], w[1]),
                            module.bias is not None)
    if isinstance(module, nn.Conv3d):
        w = tuple(module.weight.shape)
        return SiteGeometry(path, "conv", module.in_channels, module.out_channels, 1, w, (w[0], prod(w[1:])),
                            module.bias is not None)
    if isinstance(module, nn.ConvTranspose3d):
        w = tuple(module.weight.shape)
        return SiteGeometry(path, "conv_transpose", module.in_channels, module.out_channels, 1, w,
                            (w[0], prod(w[1:])), module.bias is not None)
    if isinstance(module, nn.LayerNorm):
        c = int(module.normalized_shape[-1])
        return SiteGeometry(path, "norm", c, c, -1, None, None, module.bias is not None)
    if isinstance(module, _NORMS):
        c = int(getattr(module, "num_features", getattr(module, "num_channels", 0)))
        return SiteGeometry(path, "norm", c, c, 1, None, None, getattr(module, "bias", None) is not None)
    first_lin, last_lin = _first_last(module, (nn.Linear,))
    if first_lin is not None:
        return SiteGeometry(path, "container", first_lin.in_features, last_lin.out_features, -1, None, None, False)
    first_conv, last_conv = _first_last(module, (nn.Conv3d, nn.ConvTranspose3d))
    if first_conv is not None:
        return SiteGeometry(path, "container", first_conv.in_channels, last_conv.out_channels, 1, None, None, False)
    raise ValueError(f"{path}: a {type(module).__name__} has no weights or channels a PEFT unit can adapt")


def channel_view(vector: torch.Tensor, channel_dim: int, ndim: int) -> torch.Tensor:
    """Reshape a per-channel vector ``(C,)`` so it broadcasts over an output of ``ndim`` dimensions.

    ``channel_dim=-1`` keeps ``(C,)`` (token layout ``(B, ..., C)``); ``channel_dim=1`` gives
    ``(1, C, 1, ..., 1)`` (volume layout ``(B, C, D, H, W)``).
    """
    if channel_dim == -1:
        return vector
    shape = [1] * ndim
    shape[channel_dim] = vector.numel()
    return vector.view(shape)
