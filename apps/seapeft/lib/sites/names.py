"""Site names made safe for paths: they come from clients and DICOM headers, so never trusted as they are.

A name is folded to ASCII, lower-cased, and every run of characters other than letters and digits becomes
one ``-`` (``"St. Mary's Hospital"`` -> ``st-mary-s-hospital``; ``"../../etc"`` -> ``etc``), so it can only
ever name one folder under ``model/<task>/sites/``. A name with no letter or digit, or longer than
:data:`MAX_LENGTH` once sanitised (two long names must not be cut into one), is refused with an error that
says where the name came from.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 64


class SiteNameError(ValueError):
    """A site name that cannot be made into a folder name; the message names its origin."""


def safe_site_name(raw, origin: str) -> str:
    """``raw`` as a folder name (``[a-z0-9]`` runs joined by ``-``); ``origin`` says where it came from.

    Raises:
        SiteNameError: nothing is left after sanitising, or more than :data:`MAX_LENGTH` characters are.
    """
    text = unicodedata.normalize("NFKD", str(raw)).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name:
        raise SiteNameError(f"site name {str(raw)!r} ({origin}) is empty or unsafe: site names are sanitised for "
                            "folder names (ASCII letters and digits, other characters become '-') and nothing "
                            "is left of this one")
    if len(name) > MAX_LENGTH:
        raise SiteNameError(f"site name {str(raw)!r} ({origin}) is longer than {MAX_LENGTH} characters once "
                            f"sanitised for folder names ({name!r})")
    return name
