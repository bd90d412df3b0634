"""The model the server answers with: the latest published adapted model, else the base model.

:class:`ModelStore` is shared by the infer task, the uncertainty strategy and the Dice scoring. It
checks the publish pointer's stamp on every call (one ``stat``) and reloads when a training run has
published, so a new model is picked up without a restart. A published model that is missing,
corrupt, altered (checksum) or made for other labels is not served: the base model answers instead,
with one log line and a note in the response saying why.
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
        return out


class ModelStore:
    """Loads and caches the served model; thread-safe; reloads after a new publish."""

    def __init__(self, conf: AppConf, model_dir: str | Path):
        self.conf = conf
        self.model_dir = Path(model_dir)
        self.device = str(resolve_device(conf.device))
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._served: ServedModel | None = None

    def _base_stamp(self) -> tuple | None:
        try:
            st = self.conf.base_model.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> ServedModel:
        """The model to answer with now (loads on first use and after every publish).

        Raises:
            WeightLoadError: the base model is needed and cannot be loaded (message names the file).
        """
        with self._lock:
            stamp = (pointer_stamp(self.model_dir), self._base_stamp())
            if self._served is None or stamp != self._stamp:
                self._served = self._load()
                self._stamp = stamp
                logger.info(f"Serving {self._served.kind} model {self._served.model_id} ({self._served.path})")
            return self._served

    def _load(self) -> ServedModel:
        pointer = read_pointer(self.model_dir)
        note = None
        if pointer is not None:
            try:
                return self._load_adapted(pointer)
            except (OSError, ValueError, KeyError) as err:
                note = f"published model not served ({err}); serving the base model"
                logger.error(note)
        return self._load_base(note)

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
                           tuple(spacing) if spacing else None, self.device, adapter=pointer)

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
