"""Device names as the command line, the app's conf and the run settings give them."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; any other name (``cpu``, ``cuda``, ``cuda:1``) as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
