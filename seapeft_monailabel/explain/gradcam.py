"""3D Grad-CAM of one label of a segmentation network, window by window.

The map is MONAI's Grad-CAM machinery (``monai.visualize.GradCAM``: forward/backward hooks on the chosen
layer, upsampling to the window) with two changes that segmentation networks need:

- **Score** (Seg-Grad-CAM, Vinogradova et al. 2020): a segmentation network has no single class logit;
  the score of label ``k`` is the sum of its logits over the voxels the network assigns to ``k`` in the
  window (zero, and a zero map, where it assigns none).
- **Weighting** (HiResCAM, Draelos & Carin 2020): the map is ``relu(sum_c A_c * dS/dA_c)``, gradient and
  activation multiplied voxel by voxel. Grad-CAM's channel weights are the spatial means of the gradient;
  behind an InstanceNorm (every level of MONAI's UNet and SwinUNETR has them) those means are small and
  of mixed sign, because the norm removes each channel's mean from the gradient of its input. Measured on
  the shipped UNet (``tests/test_explain.py``), MONAI's Grad-CAM puts no more of its map inside the liver
  than outside it (Grad-CAM++ divides by zero in windows without the structure), while this map is more
  than 5 times denser inside and peaks there.

Summed scores make window maps additive, so the served sliding window (:class:`..inference.Window`:
MONAI's sliding-window inference, Gaussian weights) blends them like logits and large volumes never need
one whole-volume backward pass. The blended map is
scaled by its maximum to ``[0, 1]``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.visualize import GradCAM
from torch import nn

from ..inference.window import OVERLAP, Window

#: a decoder level at half resolution: its features combine the skip connection with the deeper levels.
DEFAULT_LAYERS = {"unet": "model.1", "swinunetr": "decoder2"}


#: explanation windows are at least this wide per axis: Grad-CAM needs context, and small training patches
#: (16^3 in the tiny preset) would cost hundreds of windows per volume.
MIN_WINDOW = 64


def explanation_window(patch_size: Sequence[int]) -> tuple[int, int, int]:
    """The sliding window of explanations: the model's patch, widened to ``MIN_WINDOW`` and rounded up to a
    multiple of 32 (what SwinUNETR needs; MONAI's UNet needs a multiple of its total stride)."""
    return tuple(-(-max(int(s), MIN_WINDOW) // 32) * 32 for s in patch_size)


def default_layer(network_name: str) -> str:
    """The layer explained when none is asked for."""
    if network_name not in DEFAULT_LAYERS:
        raise ValueError(f"no default explanation layer for network '{network_name}' (known: {', '.join(DEFAULT_LAYERS)})")
    return DEFAULT_LAYERS[network_name]


class RegionScore(nn.Module):
    """Wraps a segmentation network: images ``(B, C, X, Y, Z)`` -> label scores ``(B, K)``.

    Score ``k`` = sum of the logits of ``k`` over the voxels whose argmax is ``k`` (the region is detached).
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        region = F.one_hot(logits.argmax(1), logits.shape[1]).movedim(-1, 1).to(logits.dtype).detach()
        return (logits * region).flatten(2).sum(-1)


class SegGradCAM(GradCAM):
    """``monai.visualize.GradCAM`` with voxel-wise gradient x activation (HiResCAM) instead of mean gradients."""

    def compute_map(self, x, class_idx=None, retain_graph=False, layer_idx=-1, **kwargs):
        """``(B, 1, *layer_spatial)`` map: ``relu(sum over channels of activation * gradient)``."""
        _, acti, grad = self.nn_module(x, class_idx=class_idx, retain_graph=retain_graph, **kwargs)
        return _voxelwise(acti[layer_idx], grad[layer_idx])

    def maps(self, x: torch.Tensor, class_indices: Sequence[int], layer_idx: int = -1) -> torch.Tensor:
        """``(B, L, *x_spatial)`` maps of ``L`` labels from one forward pass and one backward pass per label
        (the layer's activation is the same for every label; only the gradient differs)."""
        hooks = self.nn_module
        first, *rest = class_indices
        logits, acti, grad = hooks(x, class_idx=first, retain_graph=bool(rest))
        layer_maps = [_voxelwise(acti[layer_idx], grad[layer_idx])]
        for done, index in enumerate(rest, 1):
            hooks.model.zero_grad()
            hooks.class_score(logits, index).sum().backward(retain_graph=done < len(rest))
            layer_maps.append(_voxelwise(acti[layer_idx], hooks.gradients[hooks.target_layers[layer_idx]]))
        return self._upsample_and_post_process(torch.cat(layer_maps, 1), x)


def _voxelwise(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """HiResCAM of one layer: ``(B, C, *spatial)`` activation and gradient -> ``(B, 1, *spatial)``."""
    return F.relu((activation * gradient).sum(1, keepdim=True))


def label_maps(cam: GradCAM, x: torch.Tensor, class_indices: Sequence[int]) -> torch.Tensor:
    """``(B, L, *x_spatial)`` maps of ``L`` labels: :meth:`SegGradCAM.maps`, or one call per label for MONAI's
    other CAM classes."""
    if isinstance(cam, SegGradCAM):
        return cam.maps(x, class_indices)
    return torch.cat([cam(x, class_idx=index) for index in class_indices], 1)


def check_layer(network: nn.Module, layer: str) -> None:
    """Raise ``ValueError`` naming a few valid choices when ``layer`` is not a module path of ``network``."""
    names = [name for name, _ in network.named_modules() if name]
    if layer not in names:
        shallow = [n for n in names if n.count(".") <= 1][:8]
        raise ValueError(f"layer '{layer}' is not a module of the network (for example: {', '.join(shallow)})")


def explain_image(network: nn.Module, image: torch.Tensor, class_index: int, layer: str, roi_size: Sequence[int],
                  overlap: float = OVERLAP, device: str | torch.device = "cpu",
                  method: type[GradCAM] = SegGradCAM) -> torch.Tensor:
    """Grad-CAM of label ``class_index`` at ``layer`` over a whole preprocessed image: ``(X, Y, Z)`` float32
    map in ``[0, 1]`` on the CPU (see :func:`explain_labels` for the arguments)."""
    return explain_labels(network, image, [class_index], layer, roi_size, overlap, device, method)[0]


def explain_labels(network: nn.Module, image: torch.Tensor, class_indices: Sequence[int], layer: str,
                   roi_size: Sequence[int], overlap: float = OVERLAP, device: str | torch.device = "cpu",
                   method: type[GradCAM] = SegGradCAM) -> torch.Tensor:
    """Grad-CAM of several labels at ``layer`` over a whole preprocessed image, one forward pass per window.

    Args:
        network: segmentation network mapping ``(B, C, *roi_size)`` to logits ``(B, K, *roi_size)``; its
            parameters may be frozen (the gradient reaches the layer through the input).
        image: ``(C, X, Y, Z)`` preprocessed image.
        class_indices: the ``L`` labels whose predictions are explained (each in 1..K-1).
        layer: module path in ``network`` (see :data:`DEFAULT_LAYERS`).
        roi_size: the sliding window (the model's patch size).
        overlap: window overlap; window maps are blended with Gaussian weights.
        method: :class:`SegGradCAM`, or one of MONAI's (``GradCAM``, ``GradCAMpp``) for comparison.

    Returns:
        ``(L, X, Y, Z)`` float32 maps on the CPU, each scaled to ``[0, 1]`` by its own maximum; all zeros
        for a label the network assigns no voxel to.
    """
    check_layer(network, layer)
    # MONAI's hooks stay on the module they are registered on (and MONAI may clear ``inplace`` flags),
    # so they go on a copy: the caller's network, which may be serving other requests, is left untouched.
    scorer = RegionScore(copy.deepcopy(network)).eval()
    cam = method(nn_module=scorer, target_layers=f"net.{layer}", postprocessing=lambda m: m)

    def window_maps(window: torch.Tensor) -> torch.Tensor:
        return label_maps(cam, window.detach().requires_grad_(True), class_indices).detach()

    plain = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)  # no MetaTensor tracking
    with torch.enable_grad():
        blended = Window(tuple(roi_size), overlap).run(window_maps, plain[None].float().to(device))
    heat = blended[0].float().cpu()
    peaks = heat.flatten(1).amax(1).clamp_min(torch.finfo(heat.dtype).tiny)
    return heat / peaks[:, None, None, None]
