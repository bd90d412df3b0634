"""Patch (sliding-window) sizes that a network accepts."""

from __future__ import annotations

from .factory import NetworkSpec, spatial_multiple

#: SwinUNETR's instance-normalised bottleneck needs more than one voxel: at least 64 in one axis.
SWIN_MIN_LARGEST = 64


def fit_patch(patch: tuple[int, int, int], spec: NetworkSpec) -> tuple[int, int, int]:
    """Round each side of ``patch`` (voxels, (X, Y, Z)) up to the network's multiple.

    SwinUNETR also gets its largest side raised to 64 (32^3 fails in the bottleneck's InstanceNorm).
    """
    multiple = spatial_multiple(spec)
    fitted = [max(multiple, -(-int(side) // multiple) * multiple) for side in patch]
    if spec.name == "swinunetr" and max(fitted) < SWIN_MIN_LARGEST:
        fitted[fitted.index(max(fitted))] = SWIN_MIN_LARGEST
    return tuple(fitted)
