"""One shared base, one adapted model per site: the model that answers a request of a given site.

``model/<task>/`` keeps the shared model's runs and pointer (today's layout, :mod:`.published`);
``model/<task>/sites/<site>/`` the same for each site. A request of site ``s`` is answered by the
model published in ``sites/s/``, else by the shared model (the latest model published for images
without a site, else the base model), and its response says which. Each site's folder is read by its own
:class:`~.served.ModelStore`, so a site's publish replaces only that site's pointer: no other site's
answer can change.

Site models are cached, at most ``capacity`` of them (least recently used evicted, with their
predictors in :class:`lib.infers.predictor.PredictorPicker`): switching between cached sites loads
nothing, and the shared base model is loaded once, whatever the number of sites.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from pathlib import Path

from ..configs.conf import AppConf
from ..sites.names import safe_site_name
from .published import POINTER, read_pointer
from .served import ModelStore, ServedModel

SITES = "sites"


def site_dir(model_dir: str | Path, site: str | None) -> Path:
    """The folder of ``site``'s runs and pointer (``site`` None: the shared ``model_dir``)."""
    return Path(model_dir) if site is None else Path(model_dir) / SITES / safe_site_name(site, "site folder")


def known_sites(model_dir: str | Path) -> list[str]:
    """Sites with a folder under ``sites/`` (trained at least once), sorted."""
    root = Path(model_dir) / SITES
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


class SiteModels:
    """The shared :class:`ModelStore` plus one per site (LRU, ``capacity``); thread-safe."""

    def __init__(self, conf: AppConf, model_dir: str | Path, capacity: int):
        self.conf = conf
        self.model_dir = Path(model_dir)
        self.capacity = capacity
        self.shared = ModelStore(conf, model_dir)
        self._lock = threading.Lock()
        self._stores: OrderedDict[str, ModelStore] = OrderedDict()

    def loaded(self) -> list[str]:
        """Cached sites, least recently used first."""
        with self._lock:
            return list(self._stores)

    def _store(self, site: str) -> ModelStore:
        with self._lock:
            store = self._stores.pop(site, None) or ModelStore(self.conf, site_dir(self.model_dir, site), site=site,
                                                                serve_base=False)
            self._stores[site] = store
            while len(self._stores) > self.capacity:
                self._stores.popitem(last=False)
            return store

    def current(self, site: str | None = None) -> ServedModel:
        """The model for a request of ``site`` (None: no site): the site's published model, else the shared one
        (with ``note`` saying why when the site has a pointer that cannot be served).

        Raises:
            WeightLoadError: the shared base model is needed and cannot be loaded.
        """
        if site is not None:
            site = safe_site_name(site, "site")
            if (site_dir(self.model_dir, site) / POINTER).is_file():
                store = self._store(site)
                served = store.current()
                if served is not None:
                    return served
                shared = self.shared.current()
                return dataclasses.replace(shared, note="; ".join(filter(None, [shared.note, f"site {site}: "
                                                                               f"{store.note}"])))
        return self.shared.current()

    def published(self, site: str | None = None) -> dict | None:
        """The publish pointer of ``site`` (None: the shared one); cheap, no model is loaded."""
        return read_pointer(site_dir(self.model_dir, site))
