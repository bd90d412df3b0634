"""Which labelled images train which site: the training datalist grouped by the site of each image.

With ``--conf sites`` off every labelled image trains the shared model, as without sites. With sites on,
each site's labelled images train that site's adapter (one run per site, run one after the other by the
train task), and labelled images without a site train the shared model. A request's ``site`` trains that
site alone.
"""

from __future__ import annotations

import logging
import os

from monailabel.interfaces.datastore import DefaultLabelTag

from ..sites.names import SiteNameError, safe_site_name
from ..sites.resolve import SiteResolver

logger = logging.getLogger(__name__)


def _image_ids(datastore) -> dict[str, str]:
    """{real path of the image file: image id} of the labelled images (after ``datalist()`` fetched them)."""
    ids = {}
    for image_id in datastore.get_labeled_images(DefaultLabelTag.FINAL):
        path = (datastore.get_image_info(image_id) or {}).get("path")
        if path:
            ids[os.path.realpath(path)] = image_id
    return ids


def site_groups(datastore, datalist: list[dict], resolver: SiteResolver, only=None) -> dict[str | None, list[dict]]:
    """``{site or None (the shared model): [{"image", "label"}, ...]}``, the shared group first, then by name.

    Args:
        datalist: the datastore's labelled pairs (``datastore.datalist()``), image and label paths.
        only: a site named by the request: that group alone.

    Raises:
        SiteNameError: an image's site name is unsafe (names the image), or ``only`` is named with sites off.
        ValueError: ``only`` has no labelled image.
    """
    if not resolver.enabled:
        if only:
            raise SiteNameError(f"train request: site {only!r} named, but this server runs without sites "
                                "(start it with --conf sites auto)")
        return {None: list(datalist)}
    ids = _image_ids(datastore)
    groups: dict[str | None, list[dict]] = {}
    for item in datalist:
        image_id = ids.get(os.path.realpath(item["image"]))
        if image_id is None:
            logger.warning(f"{item['image']}: no datastore image id found for it; it trains the shared model")
        site = resolver.of_image(datastore, image_id, item["image"]).name if image_id else None
        groups.setdefault(site, []).append(item)
    if only:
        site = safe_site_name(only, "train request parameter 'site'")
        if site not in groups:
            named = ", ".join(s for s in groups if s) or "none"
            raise ValueError(f"train request: site {site} has no labelled image (sites with labelled images: {named})")
        return {site: groups[site]}
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")))
