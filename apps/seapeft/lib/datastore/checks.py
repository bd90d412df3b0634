"""Checks of images and labels before they are used or stored, through the library's validator.

:func:`seapeft_monailabel.data.load_volume_pair` rejects a volume that is not 3D, a label whose grid
differs from its image, an empty label, label values outside the task's labels, and unreadable files
or formats it does not read (it reads NIfTI, NRRD, MetaImage and DICOM series); these wrappers turn
its message into an HTTP 400 that names the image (and an uploaded file by the name the caller gives,
not by the server's temporary path).
"""

from __future__ import annotations

from seapeft_monailabel.data import load_volume_pair

from ..errors import BAD_INPUT, http_error


def _named(message: str, replacements: dict[str, str]) -> str:
    for path, name in replacements.items():
        message = message.replace(path, name)
    return message


def check_image(path: str, name: str) -> None:
    """Raise HTTP 400 unless ``path`` is a readable 3D volume; ``name`` is what the message calls it."""
    try:
        load_volume_pair(path)
    except (ValueError, FileNotFoundError) as err:
        raise http_error(BAD_INPUT, f"image {name} rejected: {_named(str(err), {path: name})}") from None


def check_label(image_path: str, label_path: str, labels: dict[str, int], image_name: str, label_name: str) -> None:
    """Raise HTTP 400 unless ``label_path`` is a valid label of ``image_path`` for ``labels``."""
    try:
        load_volume_pair(image_path, label_path, label_names=labels)
    except (ValueError, FileNotFoundError) as err:
        message = _named(str(err), {label_path: label_name, image_path: image_name})
        raise http_error(BAD_INPUT, f"label {label_name} for image {image_name} rejected: {message}") from None


def check_same_grid(image_path: str, label_path: str, image_name: str, label_name: str) -> None:
    """Raise HTTP 400 unless ``label_path`` is a readable 3D volume of the image's shape (it may be empty)."""
    try:
        image, _, _ = load_volume_pair(image_path)
        label, _, _ = load_volume_pair(label_path)
    except (ValueError, FileNotFoundError) as err:
        message = _named(str(err), {label_path: label_name, image_path: image_name})
        raise http_error(BAD_INPUT, f"label {label_name} for image {image_name} rejected: {message}") from None
    if label.shape != image.shape:
        raise http_error(BAD_INPUT, f"label {label_name} for image {image_name} rejected: label shape {label.shape} "
                         f"differs from image shape {image.shape}")
