"""Atomic writes: a reader sees the old file (or folder content) or the new one, never a half-written one.

A file is written to a temporary name beside its destination (same folder, hence the same file
system), flushed to disk with ``fsync`` and moved into place with ``os.replace``; if anything fails
on the way the temporary file is removed and the old file stays as it was.

* :func:`atomic_path`: for writers that want a file name (``torch.save``, ``savefig``);
* :func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`write_json_atomic`;
* :func:`staged_folder`: several files written into a staging folder, all moved into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is fsynced and replaces ``path``.

    The temporary name keeps the suffix (``.model.x1y2.tmp.pt``), so writers that infer the format
    from it work. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | Path, data, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (``indent``, one final newline) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


@contextmanager
def staged_folder(out_dir: str | Path) -> Iterator[Path]:
    """A staging folder inside ``out_dir`` whose entries move into ``out_dir`` when the block ends without error.

    Each entry (file or folder) is moved with ``os.replace``; the staging folder is removed in every case,
    so an interrupted or failed block leaves ``out_dir`` as it was.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield staging
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
