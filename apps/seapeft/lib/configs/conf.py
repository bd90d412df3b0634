"""The app's ``--conf`` keys, parsed once into :class:`AppConf` (every value arrives as a string).

Keys (all optional; the README's "The MONAI Label app" section documents them for users):

``base_model``   base model file (default ``<repo>/sample-data/base_model/model.pt``)
``network``      ``auto`` (the file says) | ``swinunetr`` | ``unet``: for a plain state dict or bundle
``feature_size`` SwinUNETR feature size when ``network`` is given (default 12)
``labels``       JSON ``{"background": 0, "liver": 1, ...}`` or ``liver,gallbladder`` (numbered from 1)
``preset``       ``auto`` (gpu with CUDA, else cpu) | ``cpu`` | ``gpu`` | ``tiny``: SEA-PEFT settings
``budget_fraction``, ``steps``, ``refine_steps``, ``time_limit``, ``seed``: changes to the preset
``patch_size``   training patch and inference window, ``64`` or ``64,64,32`` (default: the model's)
``overlap``      sliding-window overlap (default 0.25)
``device``       ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``
``runtime``      ``auto`` | ``torch`` | ``openvino``;  ``precision``: ``fp32`` | ``int8``
``export``       ``auto`` | ``none`` | ``fp32`` | ``int8``: converted models written after each training run
``auto_scoring`` ``false`` | ``true``: rescore the datastore after start, next-sample and training (off by
                 default: on a small CPU machine the scoring subprocess slows the user's inference)
``multi_gpu``    ``false`` | ``true``: with more than one CUDA device, training runs under ``torchrun`` with
                 one process per GPU (see :mod:`lib.trainers.distributed`)
``sites``        ``none`` (one served model for every image) | ``auto`` (each image's site from its DICOM
                 InstitutionName / StationName / Manufacturer, else the ``site`` field of its datastore info) |
                 a JSON object ``{"image id": "site", ...}`` (those images; the others as ``auto``); see
                 :mod:`lib.sites`
``site_cache``   site models kept loaded at once (least recently used evicted; default 4)
``dicomweb_search_filter`` JSON QIDO-RS series filter for a DICOMweb ``--studies`` (default: the
                 ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` environment variable when it is not MONAI Label's
                 default of CT only, else ``{"Modality": "CT,MR"}``)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..sites.names import SiteNameError, safe_site_name

#: The target site's task (sample-data/dataset.json).
DEFAULT_LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
RUNTIMES = ("auto", "torch", "openvino")
PRECISIONS = ("fp32", "int8")
PRESETS = ("auto", "cpu", "gpu", "tiny")
NETWORKS = ("auto", "swinunetr", "unet")
EXPORTS = ("auto", "none", "fp32", "int8")


class ConfError(ValueError):
    """A ``--conf`` value cannot be used; the message names the key."""


def parse_labels(text: str | None) -> dict[str, int]:
    """``{"background":0,...}`` JSON or a comma list of foreground names (background added at 0)."""
    if not text:
        return dict(DEFAULT_LABELS)
    text = text.strip()
    if text.startswith("{"):
        try:
            labels = {str(k): int(v) for k, v in json.loads(text).items()}
        except (ValueError, TypeError, AttributeError) as err:
            raise ConfError(f"--conf labels: not a JSON object of name: index ({err})") from None
    else:
        names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "background"]
        labels = {"background": 0, **{n: i for i, n in enumerate(names, 1)}}
    if sorted(labels.values()) != list(range(len(labels))) or labels.get("background") != 0 or len(labels) < 2:
        raise ConfError(f"--conf labels: need background at 0 and indices 0..K-1, got {labels}")
    return labels


def parse_patch(text: str | None) -> tuple[int, int, int] | None:
    """``64`` or ``64,64,32`` -> (64, 64, 64) / (64, 64, 32); empty -> None."""
    if not text:
        return None
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfError(f"--conf patch_size: expected integers like 64 or 64,64,32, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 8:
        raise ConfError(f"--conf patch_size: expected one or three integers >= 8, got {text!r}")
    return tuple(values)


def _choice(conf: dict, key: str, choices: tuple[str, ...], default: str) -> str:
    value = str(conf.get(key, default)).strip().lower()
    if value not in choices and not (key == "device" and value.startswith("cuda:")):
        raise ConfError(f"--conf {key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _flag(conf: dict, key: str) -> bool:
    value = str(conf.get(key, "false")).strip().lower()
    if value not in ("true", "false"):
        raise ConfError(f"--conf {key}: expected true or false, got {value!r}")
    return value == "true"


def parse_filter(text: str | None) -> dict | None:
    """``{"Modality": "CT,MR"}`` JSON -> dict; empty -> None (the default applies)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ConfError(f"--conf dicomweb_search_filter: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ConfError(f"--conf dicomweb_search_filter: expected a JSON object like {{\"Modality\": \"CT,MR\"}}, "
                        f"got {text!r}")
    return value


def parse_sites(text: str | None) -> tuple[str, dict[str, str]]:
    """``none`` | ``auto`` | JSON ``{"image id": "site"}`` -> (mode, {image id: safe site name}); empty -> none."""
    value = (text or "none").strip()
    if value.lower() in ("none", "auto"):
        return value.lower(), {}
    try:
        mapping = json.loads(value)
    except ValueError:
        mapping = None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ConfError(f"--conf sites: expected none, auto or a JSON object {{\"image id\": \"site\"}}, got {value!r}")
    try:
        return "auto", {str(k): safe_site_name(v, f"--conf sites, image {k}") for k, v in mapping.items()}
    except SiteNameError as err:
        raise ConfError(str(err)) from None


def _number(conf: dict, key: str, kind: type, low: float | None = None):
    if conf.get(key) in (None, ""):
        return None
    try:
        value = kind(conf[key])
    except ValueError:
        raise ConfError(f"--conf {key}: expected a {kind.__name__}, got {conf[key]!r}") from None
    if low is not None and value < low:
        raise ConfError(f"--conf {key}: must be >= {low}, got {value}")
    return value


@dataclass(frozen=True)
class AppConf:
    """Parsed configuration shared by every task of the app."""

    base_model: Path
    network: str = "auto"
    feature_size: int = 12
    labels: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    preset: str = "auto"
    search_changes: dict = field(default_factory=dict)
    patch_size: tuple[int, int, int] | None = None
    overlap: float = 0.25
    device: str = "auto"
    runtime: str = "auto"
    precision: str = "fp32"
    export: str = "auto"
    auto_scoring: bool = False
    multi_gpu: bool = False
    dicomweb_search_filter: dict | None = None
    sites: str = "none"
    site_map: dict[str, str] = field(default_factory=dict)
    site_cache: int = 4

    @classmethod
    def from_conf(cls, conf: dict[str, str], app_dir: str | Path) -> AppConf:
        """Parse MONAI Label's conf dict; relative paths are taken from the current folder."""
        default_model = Path(app_dir).resolve().parents[1] / "sample-data" / "base_model" / "model.pt"
        base = Path(conf["base_model"]).expanduser().resolve() if conf.get("base_model") else default_model
        changes = {key: value for key, value in (
            ("budget_fraction", _number(conf, "budget_fraction", float, 0.0)),
            ("max_steps", _number(conf, "steps", int, 1)),
            ("refine_steps", _number(conf, "refine_steps", int, 0)),
            ("time_limit_s", _number(conf, "time_limit", float, 1.0)),
            ("seed", _number(conf, "seed", int, 0)),
        ) if value is not None}
        overlap = _number(conf, "overlap", float, 0.0)
        sites, site_map = parse_sites(conf.get("sites"))
        if overlap is not None and overlap >= 1:
            raise ConfError(f"--conf overlap: must be in [0, 1), got {overlap}")
        return cls(
            base_model=base,
            network=_choice(conf, "network", NETWORKS, "auto"),
            feature_size=_number(conf, "feature_size", int, 12) or 12,
            labels=parse_labels(conf.get("labels")),
            preset=_choice(conf, "preset", PRESETS, "auto"),
            search_changes=changes,
            patch_size=parse_patch(conf.get("patch_size")),
            overlap=0.25 if overlap is None else overlap,
            device=_choice(conf, "device", ("auto", "cpu", "cuda"), "auto"),
            runtime=_choice(conf, "runtime", RUNTIMES, "auto"),
            precision=_choice(conf, "precision", PRECISIONS, "fp32"),
            export=_choice(conf, "export", EXPORTS, "auto"),
            auto_scoring=_flag(conf, "auto_scoring"),
            multi_gpu=_flag(conf, "multi_gpu"),
            dicomweb_search_filter=parse_filter(conf.get("dicomweb_search_filter")),
            sites=sites,
            site_map=site_map,
            site_cache=_number(conf, "site_cache", int, 1) or 4,
        )
