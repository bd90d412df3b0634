"""A PNG of an explanation map over the image's middle slices (axial, coronal, sagittal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import plt, save_figure


def draw_overlay(image: np.ndarray, heat: np.ndarray, path: str | Path, title: str) -> None:
    """Write the middle slices of ``image`` ``(X, Y, Z)`` (RAS) with ``heat`` ``(X, Y, Z)`` in ``[0, 1]`` on top.

    Slices cross the map's maximum, so the PNG shows where the explanation peaks.
    """
    if image.shape != heat.shape:
        raise ValueError(f"image {image.shape} and map {heat.shape} differ in shape")
    x, y, z = np.unravel_index(int(np.argmax(heat)), heat.shape)
    views = [("axial", image[:, :, z], heat[:, :, z]), ("coronal", image[:, y, :], heat[:, y, :]),
             ("sagittal", image[x, :, :], heat[x, :, :])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5))
    for ax, (name, plane, overlay) in zip(axes, views):
        ax.imshow(np.rot90(plane), cmap="gray")
        ax.imshow(np.rot90(np.ma.masked_less(overlay, 0.05)), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    save_figure(fig, title, path, dpi=90)
