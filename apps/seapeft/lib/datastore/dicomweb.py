"""The DICOMweb datastore (``--studies http(s)://.../dicom-web``): MONAI Label's, with labels on the image grid.

* **Labels read back from DICOM SEG** (OHIF's export, or a SEG that dcmqi's ``itkimage2segimage`` wrote
  for a label saved through ``PUT /datastore/label``) hold only the slices that have labels: SEG writers
  skip empty slices. :class:`SeaPeftDICOMWebDatastore` pads the stored ``final`` label onto its
  image's grid (:func:`seapeft_monailabel.dicom.expand_to_image_grid`) before training sees it; a SEG
  that is not a sub-grid of its image is an error naming both files, never a silent resampling.
* **Series listed**: MONAI Label lists only CT by default; :func:`search_filter` defaults to MR and CT
  (``--conf dicomweb_search_filter`` or ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` change it).
* **Offline start**: dcmqi's ``itkimage2segimage`` comes from the ``dcmqi`` wheel in the virtual
  environment; :func:`put_venv_on_path` puts that ``bin`` folder on ``PATH`` so MONAI Label finds it
  and downloads nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import dicom_to_nifti
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag

from seapeft_monailabel.dicom import expand_to_image_grid

logger = logging.getLogger(__name__)

#: Series the app lists when neither the conf nor the environment says otherwise.
DEFAULT_SEARCH_FILTER = {"Modality": "CT,MR"}
#: MONAI Label's own default (``start_server`` exports every setting, so the variable is always set).
MONAI_LABEL_SEARCH_FILTER = {"Modality": "CT"}


def search_filter(conf_value: dict | None) -> dict:
    """The QIDO-RS series filter: ``--conf dicomweb_search_filter``, else ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER``
    when it says something other than MONAI Label's default (CT only), else MR and CT."""
    if conf_value is not None:
        return dict(conf_value)
    configured = dict(settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER)
    return configured if configured != MONAI_LABEL_SEARCH_FILTER else dict(DEFAULT_SEARCH_FILTER)


def put_venv_on_path() -> str:
    """Prepend the running interpreter's ``bin`` folder (dcmqi's tools from PyPI) to ``PATH``; return it."""
    folder = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if folder not in parts:
        os.environ["PATH"] = os.pathsep.join([folder, *filter(None, parts)])
    return folder


class SeaPeftDICOMWebDatastore(DICOMWebDatastore):
    """``DICOMWebDatastore`` whose ``final`` labels read back from DICOM SEG are NIfTI on their image's grid."""

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The label file; a ``final`` SEG ``label_id`` of ``image_id`` becomes ``labels/final/<image_id>.nii.gz``.

        As MONAI Label's: the SEG series is downloaded into the cache and read (``pydicom_seg``); then it
        is padded onto the image's grid and stored as NIfTI (the library reads NIfTI) instead of the
        reader's sub-grid NRRD. A label already stored as NIfTI (saved through this server) is used as is.

        Raises:
            seapeft_monailabel.dicom.SegGridError: the SEG is not a sub-grid of its image (names both files).
        """
        if label_tag != DefaultLabelTag.FINAL or not image_id or not self._convert_to_nifti:
            return super().get_label_uri(label_id, label_tag, image_id)
        stored = LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL)
        if stored.endswith(".nii.gz") and os.path.isfile(stored):
            return stored
        label_dir = os.path.realpath(os.path.join(self._datastore.label_path(label_tag), label_id))
        if not os.path.isdir(label_dir) or not os.listdir(label_dir):
            dicom_web_download_series(None, label_id, label_dir, self._client, self._fetch_by_frame)
        seg = dicom_to_nifti(label_dir, is_seg=True)  # only the slices that have labels
        if not seg:
            return ""
        try:
            with tempfile.TemporaryDirectory(prefix="seapeft-seg-") as tmp:
                nifti = expand_to_image_grid(seg, self.get_image_uri(image_id), Path(tmp) / f"{image_id}.nii.gz")
                LocalDatastore.save_label(self, image_id, str(nifti), label_tag, self._dicom_info(label_id))
        finally:
            os.unlink(seg)
        logger.info(f"DICOM SEG {label_id} of {image_id}: stored on the image grid as NIfTI")
        return LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL)


def dicomweb_datastore(url: str, filters: dict) -> SeaPeftDICOMWebDatastore:
    """MONAI Label's DICOMweb client and cache settings (prefixes, credentials, cache path) for ``url``."""
    session = None
    username = settings.MONAI_LABEL_DICOMWEB_USERNAME or settings.MONAI_LABEL_DATASTORE_USERNAME
    password = settings.MONAI_LABEL_DICOMWEB_PASSWORD or settings.MONAI_LABEL_DATASTORE_PASSWORD
    if username and password:
        from dicomweb_client.session_utils import create_session_from_user_pass

        session = create_session_from_user_pass(username, password)
    client = DICOMwebClientX(url=url, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                             wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                             stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
    cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or settings.MONAI_LABEL_DATASTORE_CACHE_PATH or "").strip()
    logger.info(f"DICOMweb {url}: series filter {json.dumps(filters)}")
    return SeaPeftDICOMWebDatastore(client=client, search_filter=filters, cache_path=cache or None,
                                    fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                    convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI)
