"""Writing the project's PNG figures (audit report, training curve, benchmark plot, explanations)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, title: str, png_path: str | Path, dpi: int) -> Path:
    """Title ``fig``, lay it out, write it to ``png_path`` and release it; returns the path."""
    fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=dpi)
    plt.close(fig)
    return png_path
