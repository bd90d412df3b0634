"""The site of an image or of an infer request, by the app's rule (``--conf sites``).

In order, the first that names one:

1. the request's ``site`` parameter (infer requests only; the one way to name the site of a file sent
   with the request, which is in no datastore);
2. ``--conf sites`` given as a JSON map of image ids;
3. the image's DICOM header: the first of InstitutionName, StationName, Manufacturer that is set, read
   from the first DICOM file of its series folder (a DICOM series in a local datastore; for DICOMweb
   the series MONAI Label downloaded beside its NIfTI copy, ``images/<id>/``);
4. the ``site`` field of the image's datastore info, which a client sets on upload
   (``PUT /datastore/image`` with ``params {"site": ...}``) or later (``PUT /datastore/image/info``).

An image none of these names has no site: the shared default model serves it and training trains that
model with it. Every name is made safe for paths (:func:`.names.safe_site_name`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .names import SiteNameError, safe_site_name

#: DICOM attributes that name a site, most specific first.
SITE_TAGS = ("InstitutionName", "StationName", "Manufacturer")
#: The datastore info field a client sets.
INFO_FIELD = "site"
NO_SITE = (f"no site: no request parameter 'site', no DICOM {'/'.join(SITE_TAGS)} and no '{INFO_FIELD}' in the "
           "image's datastore info")


@dataclass(frozen=True)
class Site:
    """The site of an image (``name`` None: none) and where the name came from."""

    name: str | None
    source: str


def dicom_site(folder: str | Path) -> tuple[str, str] | None:
    """(value, attribute) of the first :data:`SITE_TAGS` attribute set in ``folder``'s first DICOM file, or None."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(SITE_TAGS))
        except (InvalidDicomError, OSError, EOFError):
            continue
        for tag in SITE_TAGS:
            value = str(header.get(tag) or "").strip()
            if value:
                return value, tag
        return None
    return None


def series_folder(image_path: str, image_id: str) -> Path:
    """Where an image's DICOM files are: the image itself (a series folder), else ``<id>/`` beside it."""
    path = Path(image_path)
    return path if path.is_dir() else path.parent / image_id


class SiteResolver:
    """The site rule of ``--conf sites``: ``mode`` ``none`` (off) or ``auto``, ``mapping`` {image id: site}."""

    def __init__(self, mode: str, mapping: dict[str, str] | None = None):
        self.mode = mode
        self.mapping = dict(mapping or {})

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def of_request(self, request: dict, datastore) -> Site:
        """The site of an infer request (see the module docstring).

        Raises:
            SiteNameError: the site is named but unsafe, or named while sites are off.
        """
        asked = request.get("site")
        if not self.enabled:
            if asked not in (None, ""):
                raise SiteNameError(f"the request names site {asked!r}, but this server runs without sites "
                                    "(start it with --conf sites auto)")
            return Site(None, "sites are off (--conf sites none)")
        if asked not in (None, ""):
            return Site(safe_site_name(asked, "request parameter 'site'"), "request parameter 'site'")
        image = request.get("image")
        if not isinstance(image, str) or not image or os.path.exists(image):
            return Site(None, "no site: the image came with the request; name its site with the request "
                              "parameter 'site'")
        return self.of_image(datastore, image)

    def of_image(self, datastore, image_id: str, image_path: str | None = None) -> Site:
        """The site of a datastore image (``image_path``: its file, when the caller has it already).

        Raises:
            SiteNameError: a name found for the image is unsafe (the message names the image).
        """
        if image_id in self.mapping:
            return Site(self.mapping[image_id], "--conf sites")
        path = image_path if image_path is not None else datastore.get_image_uri(image_id)
        found = dicom_site(series_folder(path, image_id)) if path else None
        if found:
            value, tag = found
            return Site(safe_site_name(value, f"DICOM {tag} of image {image_id}"), f"DICOM {tag}")
        value = (datastore.get_image_info(image_id) or {}).get(INFO_FIELD)
        if value not in (None, ""):
            return Site(safe_site_name(value, f"'{INFO_FIELD}' in the datastore info of image {image_id}"),
                        f"image info '{INFO_FIELD}'")
        return Site(None, NO_SITE)


__all__ = ["INFO_FIELD", "SITE_TAGS", "Site", "SiteNameError", "SiteResolver", "dicom_site", "series_folder"]
