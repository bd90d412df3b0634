"""The pointing game (as in PEFT-MedSAM; docs/DESIGN.md): does the explanation's maximum fall inside the structure?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..data.transforms import eval_transforms
from .gradcam import explain_labels, explanation_window


def peak_inside(heat: torch.Tensor, label: torch.Tensor, class_index: int) -> bool:
    """Whether the maximum of ``heat`` ``(X, Y, Z)`` lies on a voxel of ``class_index`` in ``label`` ``(X, Y, Z)``.

    An all-zero map (the network found nothing to explain) is a miss.
    """
    if float(heat.max()) <= 0:
        return False
    peak = np.unravel_index(int(torch.argmax(heat)), tuple(heat.shape))
    return int(label[peak]) == class_index


def pointing_game(network: nn.Module, datalist: Sequence[dict], labels: Mapping[str, int], layer: str,
                  roi_size: Sequence[int], spacing: Sequence[float] | None = None,
                  device: str | torch.device = "cpu") -> dict[str, dict]:
    """Pointing game of every foreground label over ``{"image", "label"}`` volumes.

    ``roi_size`` is the model's patch size; the maps use :func:`explanation_window` of it.

    Returns ``{label name: {"hit_rate": share of volumes hit, "hits": [bool per volume]}}``.
    """
    chain = eval_transforms(spacing)
    hits: dict[str, list[bool]] = {name: [] for name, index in labels.items() if index}
    for item in datalist:
        data = chain(dict(item))
        truth = torch.as_tensor(data["label"])[0]
        heats = explain_labels(network, data["image"], [labels[name] for name in hits], layer,
                               explanation_window(roi_size), device=device)
        for name, heat in zip(hits, heats):
            hits[name].append(peak_inside(heat, truth, labels[name]))
    return {name: {"hit_rate": sum(flags) / len(flags), "hits": flags} for name, flags in hits.items()}
