"""A local datastore that refuses bad images and labels BEFORE anything is written.

MONAI Label's ``LocalDatastore.save_label`` copies the upload over ``labels/<tag>/<id>`` first and
calls the app afterwards, so a bad upload would already have replaced a good label. Here uploads are
checked first (HTTP 400 naming the image and the problem); nothing in the datastore changes when a
check fails. ``final`` labels (the ones training uses) get the full check; other tags (e.g. saved
predictions, ``original``) may be empty but must still fit their image.
"""

from __future__ import annotations

from typing import Any

from monailabel.datastore.local import LocalDatastore

from ..errors import NOT_FOUND, http_error
from .checks import check_image, check_label, check_same_grid

FINAL = "final"


class CheckedDatastore(LocalDatastore):
    """``LocalDatastore`` whose ``add_image`` and ``save_label`` validate their input first."""

    def __init__(self, *args, task_labels: dict[str, int], **kwargs):
        self.task_labels = dict(task_labels)
        super().__init__(*args, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        check_image(image_filename, f"'{image_id}' (upload)")
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        if image_id not in self.list_images():
            raise http_error(NOT_FOUND, f"label for image '{image_id}' rejected: no such image in the datastore")
        image_path = self.get_image_uri(image_id)
        upload = f"(uploaded, tag {label_tag})"
        if label_tag == FINAL:
            check_label(image_path, label_filename, self.task_labels, f"'{image_id}'", upload)
        else:
            check_same_grid(image_path, label_filename, f"'{image_id}'", upload)
        return super().save_label(image_id, label_filename, label_tag, label_info)
