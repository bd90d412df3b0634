"""Talk to Orthanc over HTTP: upload DICOM files through its REST API, search series over DICOMweb (QIDO-RS).

Only the standard library is used (urllib), so nothing here needs MONAI Label or a DICOMweb client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


class PacsError(RuntimeError):
    """The PACS refused a request or did not answer; the message names the URL, the file and the reply."""


def _request(url: str, data: bytes | None = None, method: str = "GET", content_type: str | None = None,
             timeout: float = 60.0):
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    request.add_header("Accept", "application/json, application/dicom+json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as err:
        raise PacsError(f"{method} {url}: HTTP {err.code} {err.read()[:500].decode(errors='replace')}") from None
    except OSError as err:
        raise PacsError(f"{method} {url}: no answer ({err})") from None
    return json.loads(body) if body.strip() else None


def upload_files(orthanc_url: str, files: list[str | Path]) -> list[dict]:
    """POST each file to ``{orthanc_url}/instances``; returns Orthanc's answers ({"ID", "ParentSeries", "Status"}).

    Raises :class:`PacsError` naming the first file Orthanc rejects (e.g. not DICOM).
    """
    answers = []
    for path in files:
        try:
            answers.append(_request(f"{orthanc_url.rstrip('/')}/instances", Path(path).read_bytes(), "POST",
                                    "application/dicom"))
        except PacsError as err:
            raise PacsError(f"{path}: upload refused: {err}") from None
    return answers


def search_series(dicomweb_url: str, **filters: str) -> list[dict]:
    """QIDO-RS ``{dicomweb_url}/series?key=value...`` -> list of DICOM JSON datasets (tag -> {"vr", "Value"})."""
    query = urllib.parse.urlencode(filters)
    answer = _request(f"{dicomweb_url.rstrip('/')}/series" + (f"?{query}" if query else ""))
    return answer or []


def tag_value(dataset: dict, tag: str):
    """First value of ``tag`` (8 hex digits) in a DICOM JSON dataset, or None."""
    values = dataset.get(tag, {}).get("Value") or [None]
    return values[0]


SERIES_INSTANCE_UID = "0020000E"
STUDY_INSTANCE_UID = "0020000D"


def series_uids(dicomweb_url: str, **filters: str) -> list[str]:
    """SeriesInstanceUIDs of the series matching ``filters`` (e.g. ``Modality="SEG"``)."""
    return [tag_value(d, SERIES_INSTANCE_UID) for d in search_series(dicomweb_url, **filters)]


def delete_series(orthanc_url: str, series_uid: str) -> bool:
    """Delete the series ``series_uid`` from Orthanc (REST ``/tools/lookup`` then ``DELETE /series/{id}``)."""
    found = _request(f"{orthanc_url.rstrip('/')}/tools/lookup", series_uid.encode(), "POST", "text/plain") or []
    ids = [item["ID"] for item in found if item.get("Type") == "Series"]
    for orthanc_id in ids:
        _request(f"{orthanc_url.rstrip('/')}/series/{orthanc_id}", method="DELETE")
    return bool(ids)
