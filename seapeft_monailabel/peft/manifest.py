"""Manifests: which families and levels go on which sites of a network.

A manifest is YAML::

    name: swinunetr-default
    network: swinunetr
    sites:
      - pattern: 'swinViT\\.layers\\d\\.0\\.blocks\\.\\d+\\.attn\\.qkv'
        families: {lora: [r2, r4, r8], salt: [r2]}

``pattern`` is a regular expression matched against the whole module path (``re.fullmatch``: anchored,
so ``proj`` cannot match ``swinViT.patch_embed.proj`` by accident). Every pattern must match at least
one module unless the site says ``optional: true`` (e.g. SwinUNETR-v2-only blocks); ``nn.Identity``
placeholders are never sites. Shipped manifests
live in ``manifests/`` and are addressed by name (``swinunetr``, ``unet``) or by path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from torch import nn

from .families import family_class


@dataclass(frozen=True)
class SiteSpec:
    """One manifest entry: a module-path pattern and the families/levels to place on every match."""

    pattern: str
    families: dict[str, tuple[str, ...]]
    optional: bool = False

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern, path) is not None


@dataclass(frozen=True)
class Manifest:
    """A named list of :class:`SiteSpec`."""

    name: str
    sites: tuple[SiteSpec, ...]
    network: str | None = None
    description: str = ""
    source: str = field(default="<memory>", compare=False)

    def resolve(self, network: nn.Module) -> list[tuple[str, str, str]]:
        """``(module path, family, level)`` for every unit the manifest places on ``network``, in module order.

        Raises:
            ValueError: a required pattern matches no module (the message names the manifest and pattern).
        """
        paths = [p for p, m in network.named_modules() if p and not isinstance(m, nn.Identity)]
        placements: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str, str]] = set()
        for site in self.sites:
            hits = [p for p in paths if site.matches(p)]
            if not hits and not site.optional:
                raise ValueError(f"manifest '{self.name}' ({self.source}): pattern '{site.pattern}' matches no module")
            for path in hits:
                for family, levels in site.families.items():
                    for level in levels:
                        key = (path, family, level)
                        if key not in seen:
                            seen.add(key)
                            placements.append(key)
        order = {p: i for i, p in enumerate(paths)}
        return sorted(placements, key=lambda t: order[t[0]])


def _parse(data: dict, source: str) -> Manifest:
    if not isinstance(data, dict) or "sites" not in data:
        raise ValueError(f"{source}: a manifest needs a 'sites' list")
    sites = []
    for i, entry in enumerate(data["sites"]):
        if not isinstance(entry, dict) or "pattern" not in entry or "families" not in entry:
            raise ValueError(f"{source}: site #{i} needs 'pattern' and 'families'")
        try:
            re.compile(entry["pattern"])
        except re.error as err:
            raise ValueError(f"{source}: site #{i} pattern '{entry['pattern']}' is not a regular expression: {err}") from None
        families = {}
        for family, levels in entry["families"].items():
            cls = family_class(family)
            levels = tuple(str(level) for level in (levels if isinstance(levels, list) else [levels]))
            for level in levels:
                cls.parse_level(level)
            families[family] = levels
        sites.append(SiteSpec(entry["pattern"], families, bool(entry.get("optional", False))))
    return Manifest(name=str(data.get("name", Path(source).stem)), sites=tuple(sites), network=data.get("network"),
                    description=str(data.get("description", "")), source=source)


def shipped_manifests() -> list[str]:
    """Names of the manifests shipped with the package."""
    folder = resources.files(__package__) / "manifests"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Load a shipped manifest by name (``swinunetr``, ``unet``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: manifest file not found")
        text, source = path.read_text(), str(path)
    else:
        if str(name_or_path) not in shipped_manifests():
            raise ValueError(f"no shipped manifest '{name_or_path}' (shipped: {', '.join(shipped_manifests())})")
        resource = resources.files(__package__) / "manifests" / f"{name_or_path}.yaml"
        text, source = resource.read_text(), f"manifests/{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML: {err}") from None
    return _parse(data, source)


def manifest_from_dict(data: dict, source: str = "<dict>") -> Manifest:
    """Build a manifest from a dict shaped like the YAML (used by the fixed baselines)."""
    return _parse(data, source)


def units_manifest(units: list[dict], name: str) -> Manifest:
    """A manifest placing exactly ``units`` (``{"site", "family", "level"}`` each; each site matched by its
    whole module path): how merged model files and adapter files put their units back on a base."""
    sites = [{"pattern": re.escape(u["site"]), "families": {u["family"]: [u["level"]]}} for u in units]
    return manifest_from_dict({"name": name, "sites": sites}, source=name)
