"""Run Debian's Orthanc (``/usr/sbin/Orthanc``) with the DICOMweb plugin on loopback, from the project's config.

The config kept in the repository is ``orthanc.json`` beside this file: HTTP on 127.0.0.1 only
(``RemoteAccessAllowed`` false; Orthanc 1.10 has no bind-address option, so the socket listens on
all interfaces but refuses every non-loopback client), no DICOM port, no authentication, the DICOMweb
plugin under ``/dicom-web/``. :func:`start` copies it into a working folder with that folder's
``storage/`` as the database and the chosen HTTP port, starts Orthanc in the background, records
its pid in ``orthanc.pid`` and waits for ``/system``. :func:`stop` sends SIGTERM (Orthanc closes its
database cleanly) and waits for the process to end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

CONFIG_TEMPLATE = Path(__file__).with_name("orthanc.json")
ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class OrthancError(RuntimeError):
    """Orthanc is missing, did not start, or did not stop; the message says which and where the log is."""


def missing_parts() -> list[str]:
    """The Orthanc files this module needs that are not installed (empty when ready)."""
    return [p for p in (ORTHANC, DICOMWEB_PLUGIN) if not os.path.exists(p)]


def url_for(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.load(reply)


def _pid(work: Path) -> int | None:
    try:
        pid = int((work / "orthanc.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a finished child of this process is reaped, not counted)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_config(work: str | Path, port: int = 8042) -> Path:
    """``work/orthanc.json``: the repository's config with ``work/storage`` and ``port``; returns its path."""
    work = Path(work).resolve()
    (work / "storage").mkdir(parents=True, exist_ok=True)
    config = json.loads(CONFIG_TEMPLATE.read_text())
    config["StorageDirectory"] = config["IndexDirectory"] = str(work / "storage")
    config["HttpPort"] = int(port)
    path = work / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def status(work: str | Path, port: int = 8042) -> dict | None:
    """Orthanc's ``/system`` answer when the instance of ``work`` answers on ``port``, else None."""
    if _pid(Path(work).resolve()) is None:
        return None
    try:
        return _get_json(url_for(port) + "/system", timeout=2.0)
    except OSError:
        return None


def start(work: str | Path, port: int = 8042, timeout: float = 30.0) -> str:
    """Start Orthanc for ``work`` on ``port`` (or reuse the running one); return its base URL.

    Raises :class:`OrthancError` when Orthanc is not installed, the port is taken by another
    program, or the server does not answer within ``timeout`` seconds (the log is ``work/orthanc.log``).
    """
    if missing_parts():
        raise OrthancError(f"Orthanc is not installed ({', '.join(missing_parts())} missing): "
                           "run .ci/install_viewer_deps.sh (apt-get install orthanc orthanc-dicomweb)")
    work = Path(work).resolve()
    if status(work, port):
        return url_for(port)
    try:
        _get_json(url_for(port) + "/system", timeout=1.0)
        raise OrthancError(f"port {port} already answers HTTP but not from the Orthanc of {work}: choose another --port")
    except OSError:
        pass
    config = write_config(work, port)
    log = work / "orthanc.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen([shutil.which("nice") or "nice", "-n", "5", ORTHANC, str(config)],
                                   stdout=handle, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
    (work / "orthanc.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OrthancError(f"Orthanc exited with status {process.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            plugins = _get_json(url_for(port) + "/plugins", timeout=1.0)
        except OSError:
            time.sleep(0.3)
            continue
        if "dicom-web" not in plugins:
            stop(work)
            raise OrthancError(f"Orthanc started without the DICOMweb plugin ({DICOMWEB_PLUGIN}); see {log}")
        return url_for(port)
    stop(work)
    raise OrthancError(f"Orthanc did not answer on port {port} within {timeout:.0f} s; see {log}")


def stop(work: str | Path, timeout: float = 30.0) -> bool:
    """Stop the Orthanc of ``work`` with SIGTERM (SIGKILL after ``timeout``); False if none was running."""
    work = Path(work).resolve()
    pid = _pid(work)
    if pid is None:
        (work / "orthanc.pid").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    (work / "orthanc.pid").unlink(missing_ok=True)
    return True
