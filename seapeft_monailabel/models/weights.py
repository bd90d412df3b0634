"""Load pretrained weights into a network from the checkpoint formats people actually have.

Accepted (all read with ``torch.load(map_location="cpu", weights_only=True)``):

- a plain state dict (``torch.save(model.state_dict(), path)``);
- a checkpoint dict holding the state dict under ``state_dict``, ``model``, ``model_state_dict``,
  ``network`` or ``net``, also nested (``{"state_dict": {...}, "epoch": 3}``);
- keys prefixed ``module.`` (DataParallel / DDP) or ``_orig_mod.`` (``torch.compile``);
- a MONAI bundle directory (``<dir>/models/model.pt``);
- self-supervised Swin encoder weights for SwinUNETR: a checkpoint whose keys all start with
  ``swinViT.`` (or ``swin_vit.``), and the published MONAI layout (``model_swinvit.pt``) whose
  encoder keys lack that prefix (``module.patch_embed.*``, ``module.layers1.0.blocks.0.*``), use
  ``mlp.fc1``/``mlp.fc2`` for ``mlp.linear1``/``mlp.linear2`` and carry pretext heads
  (``rotation_head``, ``contrastive_head``, ``convTrans3d``) that are ignored. Only the encoder is
  loaded; the rest of the network keeps its initialisation, and the report says so.

The classification head (the modules named by ``head_names``, see
:func:`seapeft_monailabel.models.factory.head_module_names`) may have a different number of classes
than the checkpoint: its tensors are then kept at the network's fresh initialisation, and the classes
that ``label_map`` ({network class index: checkpoint class index}) says the checkpoint already knows
are copied over ("zero-shot init"). Any other mismatch is a :class:`WeightLoadError` with one message
naming the file and the problem.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["LoadReport", "WeightLoadError", "load_pretrained", "read_state_dict"]

logger = logging.getLogger(__name__)

_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "network", "net")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SSL_PRETEXT_HEADS = ("rotation_head.", "contrastive_head.", "convTrans3d.")
_SWIN_V2_BLOCK = re.compile(r"^swinViT\.layers\d+c\.")
_SHOW = 3  # how many key names a message lists before "and N more"


class WeightLoadError(ValueError):
    """A weights file cannot be loaded into the network; the message names the file and the problem."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        source: the file that was read.
        layout: how its contents were interpreted (e.g. ``"checkpoint['state_dict'], 'module.' stripped"``).
        loaded: network keys set from the checkpoint (head tensors with copied classes included).
        missing: network keys the checkpoint should have had but did not (kept at initialisation).
        unexpected: checkpoint keys with no place in the network (not loaded).
        head_reinitialised: head keys kept at the network's fresh initialisation (class count differs,
            a label map was given, or absent from the checkpoint); see ``copied_classes``.
        copied_classes: {network class: checkpoint class} rows copied into re-created head tensors.
        kept_initialisation: network keys intentionally not taken from this checkpoint
            (e.g. the decoder when loading encoder-only Swin weights).
        ignored: checkpoint keys intentionally not loaded (self-supervised pretext heads).
    """

    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    head_reinitialised: list[str] = field(default_factory=list)
    copied_classes: dict[int, int] = field(default_factory=dict)
    kept_initialisation: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for a log or a status line."""
        parts = [f"{self.source} ({self.layout}): loaded {len(self.loaded)} tensors"]
        if self.head_reinitialised:
            copied = ", ".join(f"{t}<-{s}" for t, s in sorted(self.copied_classes.items())) or "none"
            parts.append(
                f"head re-created at the network's initialisation: {_names(self.head_reinitialised)} "
                f"(classes copied network<-checkpoint: {copied})"
            )
        if self.kept_initialisation:
            parts.append(f"{len(self.kept_initialisation)} tensors intentionally left at their initialisation "
                         f"({_names(self.kept_initialisation)})")
        if self.ignored:
            parts.append(f"{len(self.ignored)} checkpoint tensors ignored ({_names(self.ignored)})")
        if self.missing:
            parts.append(f"{len(self.missing)} MISSING, kept at initialisation ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} UNEXPECTED, not loaded ({_names(self.unexpected)})")
        return "; ".join(parts)


def _names(keys: list[str], show: int = _SHOW) -> str:
    head = ", ".join(keys[:show])
    return head if len(keys) <= show else f"{head} and {len(keys) - show} more"


def _fail(source: Path, problem: str) -> WeightLoadError:
    return WeightLoadError(f"{source.name}: {problem} [{source}]")


# ----------------------------------------------------------------------------- reading


def _resolve(path: str | Path) -> tuple[Path, str]:
    """File to read, and a note for the layout (MONAI bundle or not)."""
    path = Path(path)
    if path.is_dir():
        model_file = path / "models" / "model.pt"
        if not model_file.is_file():
            raise _fail(path, "is a directory but not a MONAI bundle (no models/model.pt inside)")
        return model_file, "MONAI bundle models/model.pt"
    if not path.exists():
        raise _fail(path, "no such file")
    return path, ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def read_checkpoint(file: Path) -> Any:
    """``torch.load`` the file safely (``weights_only=True``); every failure becomes one :class:`WeightLoadError`."""
    try:
        with open(file, "rb") as handle:
            magic = handle.read(2)
    except OSError as exc:
        raise _fail(file, f"cannot be read ({_first_line(exc)})") from exc
    # torch.save writes a zip archive; the legacy format is a pickle (protocol 2+ starts with 0x80).
    if not zipfile.is_zipfile(file) and magic[:1] != b"\x80":
        raise _fail(file, "not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            detail = re.search(r"GLOBAL (\S+)", str(exc))
            what = f" ({detail.group(1)})" if detail else ""
            raise _fail(
                file,
                f"holds Python objects{what} besides tensors, which safe loading (weights_only=True) refuses; "
                "re-save the weights alone: torch.save(model.state_dict(), path)",
            ) from exc
        raise _fail(file, "not a PyTorch checkpoint (corrupt or not written by torch.save)") from exc
    except Exception as exc:  # torch.load raises many types for damaged files
        raise _fail(file, f"not a PyTorch checkpoint ({_first_line(exc)})") from exc


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _unwrap(obj: Any, file: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Find the state dict inside whatever was saved; returns it and where it was."""
    where = "state dict"
    path = ""
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise _fail(file, f"holds a {type(obj).__name__}{path}, not a state dict or a checkpoint dict")
        if len(obj) == 0:
            raise _fail(file, f"the checkpoint{path} is empty")
        inner = next((k for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            keys = sorted(str(k) for k in obj)[:8]
            raise _fail(
                file,
                f"no state dict found{path}: expected tensors, or one of the keys "
                f"{', '.join(_CONTAINER_KEYS)}; its keys are {keys}",
            )
        path += f"[{inner!r}]"
        obj = obj[inner]
        where = f"checkpoint{path}"
    return dict(obj), where


def _strip_wrappers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    stripped = []
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, stripped


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str, Path]:
    """Read any accepted file or bundle into a flat state dict.

    Returns ``(state_dict, layout, file)``: wrapper prefixes (``module.``) are stripped, the layout
    says where the tensors were found. Raises :class:`WeightLoadError`.
    """
    file, bundle_note = _resolve(path)
    state, where = _unwrap(read_checkpoint(file), file)
    state, stripped = _strip_wrappers(state)
    notes = [n for n in (bundle_note, where) if n]
    notes += [f"{p!r} stripped" for p in stripped]
    return state, ", ".join(notes), file


# ----------------------------------------------------------------------------- layouts


def _swin_encoder_layout(
    state: dict[str, torch.Tensor], network: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str], str] | None:
    """Map self-supervised Swin encoder weights to network keys, or None if not that layout."""
    if not hasattr(network, "swinViT"):
        return None
    if all(k.startswith("swin_vit.") for k in state):
        state = {"swinViT." + k[len("swin_vit."):]: v for k, v in state.items()}
    if all(k.startswith("swinViT.") for k in state):
        return state, [], "Swin encoder only (swinViT.*)"
    if "patch_embed.proj.weight" not in state:
        return None
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in state.items():
        if key.startswith(_SSL_PRETEXT_HEADS):
            ignored.append(key)
            continue
        key = key.replace(".mlp.fc1.", ".mlp.linear1.").replace(".mlp.fc2.", ".mlp.linear2.")
        mapped["swinViT." + key] = value
    return mapped, ignored, "published MONAI self-supervised Swin weights (encoder only)"


def _guess_network(keys: list[str]) -> str | None:
    probes = (
        ("swinViT.", "SwinUNETR"),
        ("patch_embed.", "SwinUNETR"),
        ("model.0.", "UNet"),
        ("vit.", "UNETR"),
        ("convInit.", "SegResNet"),
        ("conv_0.", "BasicUNet"),
    )
    for prefix, name in probes:
        if any(k.startswith(prefix) for k in keys):
            return name
    return None


# ----------------------------------------------------------------------------- head


def _class_dims(module: nn.Module, param: str, follows_head: bool, n_classes: int) -> list[int]:
    """Dimensions of a head tensor indexed by class.

    Conv/Linear weight (out, in, ...): 0; ConvTranspose weight (in, out, ...): 1; biases and
    per-channel norm tensors: 0. The input dimension is a class dimension too when the module
    consumes a previous head module's class-sized output (UNet's final C -> C conv).
    """
    if param != "weight" or not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
        return [0]
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    in_size = module.in_features if isinstance(module, nn.Linear) else module.in_channels
    return [out_dim, in_dim] if follows_head and in_size == n_classes else [out_dim]


def _module_classes(module: nn.Module) -> int:
    for attr in ("out_channels", "out_features", "num_features"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    raise ValueError(f"cannot tell the number of classes of head module {type(module).__name__}")


def _head_tensors(network: nn.Module, head_names: list[str]) -> dict[str, tuple[nn.Module, str, bool]]:
    """{state key: (module, parameter name, follows another head module)} for the head modules."""
    result: dict[str, tuple[nn.Module, str, bool]] = {}
    for i, name in enumerate(head_names):
        try:
            module = network.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"head module {name!r} does not exist in {type(network).__name__}") from exc
        for param, _ in itertools.chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False)):
            result[f"{name}.{param}"] = (module, param, i > 0)
    return result


def _normalise_label_map(label_map: Mapping[Any, Any] | None, n_net: int, n_ckpt: int, file: Path) -> dict[int, int]:
    if not label_map:
        return {}
    result: dict[int, int] = {}
    for target, source in label_map.items():
        try:
            t, s = int(target), int(source)
        except (TypeError, ValueError) as exc:
            raise _fail(file, f"label_map entries must be integers, got {target!r}: {source!r}") from exc
        if not 0 <= t < n_net:
            raise _fail(file, f"label_map target class {t} is outside the network's classes 0..{n_net - 1}")
        if not 0 <= s < n_ckpt:
            raise _fail(file, f"label_map source class {s} is outside the checkpoint's classes 0..{n_ckpt - 1}")
        result[t] = s
    return result


def _recreate(fresh: torch.Tensor, saved: torch.Tensor, dims: list[int], mapping: dict[int, int]) -> torch.Tensor:
    """Fresh tensor with the mapped class entries copied from the saved one (all class dims)."""
    out = fresh.detach().clone()
    for pairs in itertools.product(mapping.items(), repeat=len(dims)):
        dst: list[Any] = [slice(None)] * fresh.dim()
        src: list[Any] = [slice(None)] * fresh.dim()
        for dim, (t, s) in zip(dims, pairs):
            dst[dim], src[dim] = t, s
        out[tuple(dst)] = saved[tuple(src)].to(out.dtype)
    return out


# ----------------------------------------------------------------------------- loading


def load_pretrained(
    network: nn.Module,
    path: str | Path,
    *,
    head_names: list[str],
    label_map: Mapping[int, int] | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load weights from ``path`` into ``network`` in place and report what happened.

    Args:
        network: the freshly built network (:func:`~seapeft_monailabel.models.factory.build_network`).
        path: a checkpoint file or a MONAI bundle directory (formats in the module docstring).
        head_names: modules whose tensors depend on the number of classes
            (:func:`~seapeft_monailabel.models.factory.head_module_names`).
        label_map: {network class index: checkpoint class index} for classes the checkpoint already
            knows; those head rows are copied when the head is re-created. Giving it always
            re-creates the head (also with an equal class count, e.g. to reorder classes).
        strict: if True (default), any missing non-head key or unexpected key is an error; if False
            they are reported, and missing ones stay at their initialisation.

    Raises:
        WeightLoadError: unreadable or empty file, checkpoint of another network, a tensor whose
            shape differs outside the head's class dimension, or (strict) missing/unexpected keys.
    """
    state, layout, file = read_state_dict(path)
    source = str(file)
    net_state = network.state_dict()
    net_keys = list(net_state)

    ignored: list[str] = []
    expected = net_keys
    swin = _swin_encoder_layout(state, network)
    if swin is not None:
        state, ignored, note = swin
        layout = f"{layout}, {note}"
        expected = [k for k in net_keys if k.startswith("swinViT.")]
        if not any(_SWIN_V2_BLOCK.match(k) for k in state):
            expected = [k for k in expected if not _SWIN_V2_BLOCK.match(k)]
    expected_set = set(expected)
    kept = [k for k in net_keys if k not in expected_set]

    ckpt_keys = list(state)
    matched = [k for k in expected if k in state]
    if not state:
        raise _fail(file, "holds no tensors for the network (only self-supervised pretext heads)")
    if len(matched) * 2 < len(expected):
        guess = _guess_network(ckpt_keys)
        net_type = type(network).__name__
        hint = (
            f"is this a {guess} checkpoint? The network is a {net_type}."
            if guess and guess != net_type
            else f"is it a checkpoint for a different network than this {net_type}?"
        )
        first_missing = next(k for k in expected if k not in state)
        raise _fail(
            file,
            f"{len(expected) - len(matched)} of {len(expected)} network keys missing — {hint} "
            f"First missing: {first_missing}; first in checkpoint: {ckpt_keys[0]}",
        )

    heads = _head_tensors(network, list(head_names))
    head_keys = [k for k in expected if k in heads]
    body_keys = [k for k in matched if k not in heads]

    mismatched = [k for k in body_keys if tuple(state[k].shape) != tuple(net_state[k].shape)]
    if mismatched:
        k = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise _fail(
            file,
            f"{k} has shape {tuple(state[k].shape)} in the checkpoint but {tuple(net_state[k].shape)} in the "
            f"network{more}; the checkpoint was made for a differently configured network "
            f"(feature size, channels or input channels)",
        )

    missing = [k for k in expected if k not in state and k not in heads]
    unexpected = [k for k in ckpt_keys if k not in expected_set]
    if strict and (missing or unexpected):
        problems = []
        if missing:
            problems.append(f"{len(missing)} network key(s) missing from the checkpoint ({_names(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} checkpoint key(s) not in the network ({_names(unexpected)})")
        raise _fail(file, "; ".join(problems) + "; pass strict=False to load the rest anyway")

    new_state = dict(net_state)
    loaded = list(body_keys)
    for k in body_keys:
        new_state[k] = state[k]

    head_reinitialised: list[str] = []
    copied: dict[int, int] = {}
    present_head = [k for k in head_keys if k in state]
    head_reinitialised += [k for k in head_keys if k not in state]
    if present_head:
        first_module = network.get_submodule(head_names[0])
        n_net = _module_classes(first_module)
        dims_of = {k: _class_dims(heads[k][0], heads[k][1], heads[k][2], n_net) for k in present_head}
        first_weight = next((k for k in present_head if heads[k][0] is first_module), present_head[0])
        n_ckpt = state[first_weight].shape[dims_of[first_weight][0]]
        recreate = n_ckpt != n_net or bool(label_map)
        for k in present_head:
            saved, fresh, dims = state[k], net_state[k], dims_of[k]
            expected_shape = [n_ckpt if d in dims else fresh.shape[d] for d in range(fresh.dim())]
            if saved.dim() != fresh.dim() or list(saved.shape) != expected_shape:
                raise _fail(
                    file,
                    f"head tensor {k} has shape {tuple(saved.shape)} in the checkpoint but "
                    f"{tuple(fresh.shape)} in the network, which is more than a different number of classes "
                    f"({n_ckpt} vs {n_net})",
                )
        if recreate:
            copied = _normalise_label_map(label_map, n_net, n_ckpt, file)
            for k in present_head:
                new_state[k] = _recreate(net_state[k], state[k], dims_of[k], copied)
                head_reinitialised.append(k)
                if copied:
                    loaded.append(k)
        else:
            for k in present_head:
                new_state[k] = state[k]
                loaded.append(k)

    network.load_state_dict(new_state, strict=True)

    report = LoadReport(
        source=source,
        layout=layout,
        loaded=loaded,
        missing=missing,
        unexpected=unexpected,
        head_reinitialised=head_reinitialised,
        copied_classes=copied,
        kept_initialisation=kept,
        ignored=ignored,
    )
    if missing or unexpected:
        logger.warning("%s", report.summary())
    else:
        logger.info("%s", report.summary())
    return report
