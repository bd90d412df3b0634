"""Fetch one package from a registry into the cache and unpack it: Debian with ``apt-get``, PyPI with ``pip``.

Only the package registries are reached, through their ordinary clients; nothing else is downloaded.
A package is fetched once: the cache keeps the archive and its unpacked tree, each in a folder of its
own, and a later call reads them from there without any network::

    <cache>/debian/<package>/<package>_<version>_<arch>.deb   and   .../unpacked/
    <cache>/pypi/<name>-<version>/<sdist>.tar.gz             and   .../unpacked/

Every failure is a :class:`RealDataError` that names the package (and the command that failed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import unquote

UNPACKED = "unpacked"


class RealDataError(ValueError):
    """A source package cannot be fetched or lacks an expected file (a ValueError: the CLI reports one line)."""


def _run(command: list[str], cwd: Path, what: str, hint: str = "") -> None:
    """Run ``command``; on failure raise naming ``what``, the last line of its output and ``hint``."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RealDataError(f"{what}: `{' '.join(command)}` could not run ({err})") from err
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise RealDataError(f"{what}: `{' '.join(command)}` failed with status {done.returncode} ({lines[-1]})"
                            + (f"; {hint}" if hint else ""))


def _fetch_once(folder: Path, pattern: str, download, what: str) -> Path:
    """The one archive matching ``pattern`` in ``folder``; ``download(tmp)`` fills a scratch folder first if none."""
    found = sorted(folder.glob(pattern))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            download(Path(tmp))
            fetched = sorted(Path(tmp).glob(pattern))
            if len(fetched) != 1:
                raise RealDataError(f"{what}: expected one {pattern} from the registry, got {[p.name for p in fetched]}")
            fetched[0].replace(folder / fetched[0].name)
        found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise RealDataError(f"{what}: the cache folder {folder} holds {len(found)} archives; remove it to fetch again")
    return found[0]


def _unpack_once(archive: Path, unpack) -> Path:
    """``archive``'s unpacked tree beside it, made by ``unpack(archive, tmp)`` the first time (atomically)."""
    root = archive.parent / UNPACKED
    if not root.is_dir():
        with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
            unpack(archive, Path(tmp) / UNPACKED)
            (Path(tmp) / UNPACKED).replace(root)
    return root


def debian_package(package: str, cache: Path) -> tuple[Path, str]:
    """Unpacked root and version of Debian package ``package`` (``apt-get download`` + ``dpkg-deb -x``)."""
    what = f"Debian package {package}"
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RealDataError(f"{what}: `{tool}` is not available on this machine (a Debian system is needed)")

    def download(tmp: Path) -> None:
        _run(["apt-get", "download", package], tmp, what,
             "is the Debian archive reachable, and are its package lists there (`apt-get update` as root)?")

    def unpack(archive: Path, dest: Path) -> None:
        _run(["dpkg-deb", "-x", str(archive), str(dest)], archive.parent, what)

    archive = _fetch_once(Path(cache).resolve() / "debian" / package, f"{package}_*.deb", download, what)
    return _unpack_once(archive, unpack), unquote(archive.name.split("_")[1])


def pypi_sdist(name: str, version: str, cache: Path) -> tuple[Path, str]:
    """Unpacked root (the sdist's top folder) and version of ``name==version``'s source distribution (pip)."""
    what = f"PyPI package {name}=={version}"

    def download(tmp: Path) -> None:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name, "--quiet",
              "-d", str(tmp), f"{name}=={version}"], tmp, what, "is PyPI reachable from this machine?")

    def unpack(archive: Path, dest: Path) -> None:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")
        except (OSError, tarfile.TarError) as err:
            raise RealDataError(f"{what}: cannot unpack {archive} ({err})") from err

    archive = _fetch_once(Path(cache).resolve() / "pypi" / f"{name}-{version}", "*.tar.gz", download, what)
    root = _unpack_once(archive, unpack)
    tops = [p for p in root.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise RealDataError(f"{what}: {archive} does not unpack to a single top folder")
    return tops[0], version
