"""A local datastore that refuses bad images and labels BEFORE anything is written.

MONAI Label's ``LocalDatastore.save_label`` copies the upload over ``labels/<tag>/<id>`` first and
calls the app afterwards, so a bad upload would already have replaced a good label. Here uploads are
checked first (HTTP 400 naming the image, the file as it would be stored and the problem); nothing
in the datastore changes when a check fails. ``final`` labels (the ones training uses) get the full
check; other tags (e.g. saved predictions, ``original``) may be empty but must still fit their image.
Images and labels may be in any format the library reads (NIfTI, NRRD, MetaImage), a label in another
format than its image. With sites on, a ``site`` the client puts in an image's info (on upload or with
``PUT /datastore/image/info``) must make a safe folder name (:mod:`lib.sites.names`), else HTTP 400.
"""

from __future__ import annotations

import os
from typing import Any

from monailabel.datastore.local import LocalDatastore

from seapeft_monailabel.data.volumes import VOLUME_EXTENSIONS

from ..errors import BAD_INPUT, NOT_FOUND, http_error
from ..sites.names import SiteNameError, safe_site_name
from ..sites.resolve import INFO_FIELD
from .checks import check_image, check_label, check_same_grid

FINAL = "final"


def datastore_extensions(configured: list[str]) -> list[str]:
    """The datastore's file patterns: MONAI Label's (``MONAI_LABEL_DATASTORE_FILE_EXT``) plus every volume format
    the library reads (MONAI Label's default lacks MetaImage ``*.mha`` / ``*.mhd``)."""
    return list(dict.fromkeys([*configured, *(f"*{ext}" for ext in VOLUME_EXTENSIONS)]))


class CheckedDatastore(LocalDatastore):
    """``LocalDatastore`` whose ``add_image`` and ``save_label`` validate their input first."""

    def __init__(self, *args, task_labels: dict[str, int], sites: bool = False, **kwargs):
        self.task_labels = dict(task_labels)
        self.sites = sites
        super().__init__(*args, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        image_id = image_id or self._to_id(os.path.basename(image_filename))[0]
        self._check_site(image_id, image_info)
        check_image(image_filename, self._stored_as(image_filename, self._datastore.images_dir, image_id))
        return super().add_image(image_id, image_filename, image_info)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self._check_site(image_id, info)
        return super().update_image_info(image_id, info)

    def _check_site(self, image_id: str, info: dict[str, Any] | None) -> None:
        """HTTP 400 when sites are on and ``info`` names a site that makes no safe folder name."""
        value = (info or {}).get(INFO_FIELD)
        if self.sites and value not in (None, ""):
            try:
                safe_site_name(value, f"'{INFO_FIELD}' in the info of image '{image_id}'")
            except SiteNameError as err:
                raise http_error(BAD_INPUT, f"image info rejected: {err}") from None

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        if image_id not in self.list_images():
            raise http_error(NOT_FOUND, f"label for image '{image_id}' rejected: no such image in the datastore")
        image_path = self.get_image_uri(image_id)
        upload = self._stored_as(label_filename, os.path.join(self._datastore.labels_dir, label_tag), image_id)
        if label_tag == FINAL:
            check_label(image_path, label_filename, self.task_labels, f"'{image_id}'", upload)
        else:
            check_same_grid(image_path, label_filename, f"'{image_id}'", upload)
        return super().save_label(image_id, label_filename, label_tag, label_info)

    def _stored_as(self, upload: str, folder: str, image_id: str) -> str:
        """How messages name an upload: the file it would become, relative to the datastore (``labels/final/a.nrrd``)."""
        extension = self._to_id(os.path.basename(upload))[1]
        return f"{os.path.normpath(os.path.join(folder, image_id + extension))} (upload)"
