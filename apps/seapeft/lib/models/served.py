"""The model the server answers with: the latest published adapted model, else the base model.

:class:`ModelStore` is shared by the infer task, the uncertainty strategy and the Dice scoring. It
checks the publish pointer's stamp on every call (one ``stat``) and reloads when a training run has
published, so a new model is picked up without a restart. A published model that is missing,
corrupt, altered (checksum) or made for other labels is not served: the base model answers instead,
with one log line and a note in the response saying why. A site's store (``serve_base=False``, see
:mod:`.sites`) answers None instead of loading a base model of its own, and the shared one answers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from seapeft_monailabel.devices import resolve_device
from seapeft_monailabel.models import file_sha256
from seapeft_monailabel.peft import load_merged_model

from ..configs.conf import AppConf
from .base import load_base
from .published import pointer_stamp, read_pointer

logger = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """A loaded network (eval mode, on ``device``) and what identifies it.

    ``network`` maps ``(B, 1, *patch_size)`` images to ``(B, K, *patch_size)`` logits, K = len(labels).
    """

    network: nn.Module
    network_name: str  # "unet" or "swinunetr"
    kind: str  # "adapted" or "base"
    model_id: str
    sha256: str
    path: str
    labels: dict[str, int]
    patch_size: tuple[int, int, int]
    spacing: tuple[float, float, float] | None
    device: str
    from_file: bool = True  # the network is exactly the file at ``path`` (False: head re-created for the labels)
    untrained_labels: tuple[str, ...] = ()  # labels whose head row was created fresh: their output is noise
    adapter: dict | None = None
    note: str | None = None
    site: str | None = None  # the site whose adapter this is (None: the shared model)

    def describe(self) -> dict:
        """JSON-ready identity for responses and /info."""
        out = {"kind": self.kind, "id": self.model_id, "sha256": self.sha256, "path": self.path,
               "labels": self.labels, "patch_size": list(self.patch_size), "device": self.device}
        if self.spacing:
            out["spacing"] = list(self.spacing)
        if self.adapter is not None:
            out["adapter"] = self.adapter
        if self.note:
            out["note"] = self.note
        if self.site:
            out["site"] = self.site
        return out


class ModelStore:
    """Loads and caches the served model; thread-safe; reloads after a new publish.

    ``site``: the site whose ``model_dir`` this is (None: the shared one); ``serve_base`` False: no base
    model is loaded here, :meth:`current` answers None while nothing servable is published (``note`` says why).
    """

    def __init__(self, conf: AppConf, model_dir: str | Path, site: str | None = None, serve_base: bool = True):
        self.conf = conf
        self.model_dir = Path(model_dir)
        self.site = site
        self.serve_base = serve_base
        self.device = str(resolve_device(conf.device))
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._served: ServedModel | None = None
        self.note: str | None = None

    def _base_stamp(self) -> tuple | None:
        try:
            st = self.conf.base_model.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> ServedModel | None:
        """The model to answer with now (loads on first use and after every publish); None only with
        ``serve_base`` False and nothing servable published.

        Raises:
            WeightLoadError: the base model is needed and cannot be loaded (message names the file).
        """
        with self._lock:
            stamp = (pointer_stamp(self.model_dir), self._base_stamp())
            if stamp != self._stamp:
                self._served, self.note = self._load()
                self._stamp = stamp
                if self._served is not None:
                    logger.info(f"Serving {self._served.kind} model {self._served.model_id} ({self._served.path})")
            return self._served

    def _load(self) -> tuple[ServedModel | None, str | None]:
        pointer = read_pointer(self.model_dir)
        note = None
        if pointer is not None:
            try:
                return self._load_adapted(pointer), None
            except (OSError, ValueError, KeyError) as err:
                note = f"published model not served ({err}); serving the base model"
                logger.error(note)
        return (self._load_base(note) if self.serve_base else None), note

    def _load_adapted(self, pointer: dict) -> ServedModel:
        path = self.model_dir / pointer["model"]
        digest = file_sha256(path)
        if digest != pointer["sha256"]:
            raise ValueError(f"{path}: checksum {digest[:12]} differs from the published {pointer['sha256'][:12]}")
        network, meta = load_merged_model(path)
        labels = {str(k): int(v) for k, v in meta["labels"].items()}
        if labels != self.conf.labels:
            raise ValueError(f"{path}: made for labels {labels}, the server's labels are {self.conf.labels}")
        spacing = pointer.get("spacing")
        return ServedModel(network.to(self.device), meta["network"]["name"], "adapted",
                           f"adapted:{pointer['run']}:{digest[:12]}", digest, str(path), labels, tuple(pointer["patch_size"]),
                           tuple(spacing) if spacing else None, self.device, adapter=pointer, site=self.site)

    def _load_base(self, note: str | None) -> ServedModel:
        base = load_base(self.conf)
        digest = file_sha256(self.conf.base_model) if self.conf.base_model.is_file() else ""
        logger.info(f"Base model: {base.summary}")
        return ServedModel(base.network.to(self.device), base.spec.name, "base", f"base:{digest[:12]}", digest,
                           str(self.conf.base_model), base.labels, base.patch_size, base.spacing, self.device,
                           from_file=base.same_as_file, untrained_labels=tuple(base.untrained_labels), note=note)

    def published(self) -> dict | None:
        """The publish pointer (cheap: no model is loaded), for /info."""
        return read_pointer(self.model_dir)
