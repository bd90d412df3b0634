"""The sliding window of every whole-volume inference: its size, overlap and blending, in one place.

MONAI's ``sliding_window_inference`` runs windows of the model's patch size one at a time
(``sw_batch_size`` 1: the OpenVINO models are exported with batch 1) and blends overlapping windows
with Gaussian weights, which down-weights the window borders where a network sees the least context.
Segmentation, scoring, active learning, the benchmarks and Grad-CAM all go through :meth:`Window.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference

#: Fraction of a window shared with its neighbours along each axis.
OVERLAP = 0.25
#: How overlapping windows are blended (MONAI's ``mode``).
BLEND = "gaussian"
#: Windows per forward call.
WINDOWS_PER_CALL = 1


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run PyTorch on one thread inside the block (restored after).

    Around sliding-window inference with OpenVINO answering, PyTorch only blends the windows; its
    OpenMP threads spin after each operation and, on 2 cores, compete with OpenVINO's threads, which
    costs more than INT8 saves (measured: blending a 120x104x70 volume 0.13 s on one thread, 0.4-1.4 s
    on two on a busy machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Window:
    """Sliding-window settings: ``roi_size`` (the model's patch size, X, Y, Z voxels) and ``overlap``."""

    roi_size: tuple[int, int, int]
    overlap: float = OVERLAP

    def __post_init__(self):
        roi = tuple(int(v) for v in self.roi_size)
        if len(roi) != 3 or min(roi) < 1:
            raise ValueError(f"the sliding window needs three positive sizes, got {self.roi_size!r}")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ValueError(f"window overlap must be in [0, 1), got {self.overlap!r}")
        object.__setattr__(self, "roi_size", roi)
        object.__setattr__(self, "overlap", float(self.overlap))

    def run(self, windows: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """Blend ``windows`` over ``batch``: ``(B, C, X, Y, Z)`` -> ``(B, K, X, Y, Z)``.

        ``windows`` maps ``(n, C, *roi_size)`` to ``(n, K, *roi_size)`` (logits, or any additive map such
        as Grad-CAM's). No gradient mode is set here: callers that need none wrap the call in
        ``torch.no_grad()``. A MetaTensor ``batch`` gives a MetaTensor carrying its metadata.
        """
        return sliding_window_inference(batch, self.roi_size, WINDOWS_PER_CALL, windows, overlap=self.overlap,
                                        mode=BLEND)

