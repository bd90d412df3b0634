"""The library's packages import only packages below them, and never MONAI Label.

Layers, bottom up (a package may import its own modules and any lower layer):

0. ``atomic``, ``devices``, ``metrics``, ``figures``: helpers with no library imports
1. ``data``: volumes, transforms, datastores, phantoms
2. ``models``, ``dicom``: networks, weights, the model file; DICOM series
3. ``peft``: units on a network, merged models
4. ``inference``: the sliding window and the predictor
5. ``search``, ``quant``, ``explain``: the SEA-PEFT engine; OpenVINO/INT8 and the runtime choice; Grad-CAM
6. ``evaluate``: metrics over volumes, the benchmark
7. ``training``: pretraining a base model
8. ``commands``, then ``cli``
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "seapeft_monailabel"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
LAYERS = [{"atomic", "devices", "metrics", "figures"}, {"data"}, {"models", "dicom"}, {"peft"}, {"inference"},
          {"search", "quant", "explain"}, {"evaluate"}, {"training"}, {"commands"}, {"cli"}]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(path: Path) -> str:
    """The top-level package (or module) of the library a file belongs to."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def _imported(path: Path) -> set[str]:
    """Absolute dotted names of every module ``path`` imports (relative imports resolved)."""
    module = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    package = module if module[-1] == "__init__" else module[:-1]
    package = package[:-1] if package[-1] == "__init__" else package
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module)
            else:
                base = package[: len(package) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
    return names


def _library_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.name != "__main__.py")


def test_every_package_has_a_layer():
    tops = {_top(p) for p in _library_files()} - {"__init__"}
    assert tops <= set(RANK), f"packages with no layer in this test: {sorted(tops - set(RANK))}"


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    top = _top(path)
    if top == "__init__":
        return
    upward = []
    for name in _imported(path):
        parts = name.split(".")
        assert parts[0] != "monailabel", f"{path.name} imports MONAI Label ({name}): only the app may"
        if parts[0] != PACKAGE or len(parts) < 2 or parts[1] == top:
            continue
        if RANK[parts[1]] >= RANK[top]:
            upward.append(name)
    assert not upward, f"{path.relative_to(ROOT)} ({top}, layer {RANK[top]}) imports {sorted(upward)}"
