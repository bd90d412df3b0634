"""Explanation maps: 3D Grad-CAM of a segmentation network for one label, and the pointing game.

Grad-CAM (through ``monai.visualize.GradCAM``) needs one score per class. For segmentation the score of
class ``c`` is the mean logit of ``c`` over the voxels the network assigns to ``c`` (all voxels when it
assigns none): the gradient then says which features drive the predicted structure, not the background
(Seg-Grad-CAM). The map is upsampled to the input's size and scaled to ``[0, 1]``.

Pointing game (as in seed 003): a volume is a hit when the map's maximum lies inside the ground-truth
structure; the score is the share of hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import GradCAM
from torch import nn

from ..data.transforms import eval_transforms

#: layers whose output feeds the head: a decoder level with spatial detail and semantic features
DEFAULT_LAYERS = {"swinunetr": "decoder2", "unet": "model.1.submodule.2"}


class RegionScore(nn.Module):
    """Wraps a segmentation network: ``(B, C, D, H, W)`` -> per-class scores ``(B, K)``.

    Score ``k`` = mean logit of class ``k`` over the voxels predicted as ``k`` (all voxels if none).
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        n_classes = logits.shape[1]
        predicted = F.one_hot(logits.argmax(1), n_classes).movedim(-1, 1).to(logits.dtype).detach()
        empty = predicted.sum(dim=(2, 3, 4), keepdim=True) == 0
        region = torch.where(empty, torch.ones_like(predicted), predicted)
        return (logits * region).sum(dim=(2, 3, 4)) / region.sum(dim=(2, 3, 4))


def _pad_to(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pad ``(C, D, H, W)`` at the end of each axis to a multiple; returns the padded image and the original size."""
    size = tuple(image.shape[1:])
    pad = [(-s) % multiple for s in size]
    return F.pad(image, [0, pad[2], 0, pad[1], 0, pad[0]]), size


def grad_cam(network: nn.Module, image: torch.Tensor, class_index: int, layer: str, multiple: int = 32,
             device: str | torch.device = "cpu") -> torch.Tensor:
    """Grad-CAM of ``class_index`` at ``layer`` for one preprocessed image.

    Args:
        network: the segmentation network (eval mode is set for the call).
        image: ``(C, D, H, W)`` preprocessed image (padded internally to a multiple of ``multiple``).
        class_index: the label whose prediction is explained.
        layer: module path in ``network`` (e.g. ``decoder2``).

    Returns:
        ``(D, H, W)`` float32 map in ``[0, 1]`` on the CPU.
    """
    names = {name for name, _ in network.named_modules()}
    if layer not in names:
        raise ValueError(f"layer '{layer}' is not a module of the network (e.g. {sorted(names)[1:6]})")
    padded, size = _pad_to(image, multiple)
    x = padded[None].to(device).requires_grad_(True)  # frozen weights: the input carries the gradient to the layer
    cam = GradCAM(nn_module=RegionScore(network).to(device), target_layers=f"net.{layer}")
    with torch.enable_grad():
        result = cam(x, class_idx=class_index)
    return result[0, 0, : size[0], : size[1], : size[2]].detach().float().cpu()


def explain_volume(network: nn.Module, image_path: str | Path, class_index: int, layer: str,
                   spacing: Sequence[float] | None = None, device: str | torch.device = "cpu"):
    """Grad-CAM of a NIfTI image as it is preprocessed for the network; returns ``(map (D,H,W), affine (4,4))``."""
    data = eval_transforms(spacing, with_label=False)({"image": str(image_path)})
    image = data["image"]
    affine = np.asarray(image.affine) if hasattr(image, "affine") else np.eye(4)
    return grad_cam(network, torch.as_tensor(image), class_index, layer, device=device), affine


def pointing_game(network: nn.Module, datalist: Sequence[dict], class_index: int, layer: str,
                  spacing: Sequence[float] | None = None, device: str | torch.device = "cpu") -> float:
    """Share of ``{"image", "label"}`` volumes whose Grad-CAM maximum falls inside the ground truth of ``class_index``."""
    chain = eval_transforms(spacing)
    hits = 0
    for item in datalist:
        data = chain(dict(item))
        cam = grad_cam(network, torch.as_tensor(data["image"]), class_index, layer, device=device)
        peak = np.unravel_index(int(torch.argmax(cam)), cam.shape)
        hits += int(torch.as_tensor(data["label"])[0][peak] == class_index)
    return hits / len(datalist)
