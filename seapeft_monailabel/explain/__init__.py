"""Explanations of a segmentation network: 3D Grad-CAM maps, their figure, and the pointing game."""

from .figure import draw_overlay
from .gradcam import (
    DEFAULT_LAYERS,
    RegionScore,
    SegGradCAM,
    check_layer,
    default_layer,
    explain_image,
    explain_labels,
    explanation_window,
)
from .pointing import peak_inside, pointing_game
from .volume import Explanation, explain_file, on_image_grid

__all__ = ["DEFAULT_LAYERS", "Explanation", "RegionScore", "SegGradCAM", "check_layer", "default_layer", "draw_overlay",
           "explain_file", "explain_image", "explain_labels",
           "explanation_window", "on_image_grid", "peak_inside", "pointing_game"]
