"""Support for the app tests (no tests here): a stand-in base model, a datastore copy and a real server.

The shipped base model (``sample-data/base_model/model.pt``) is used when it exists. Until then
:func:`temporary_base_model` trains a small MONAI UNet for a short while on a few source-site phantoms
and saves it with :func:`seapeft_monailabel.models.save_model_file` (same file format), so the app can
be exercised end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "apps" / "seapeft"
SAMPLE_DATA = REPO / "sample-data"
SHIPPED_MODEL = SAMPLE_DATA / "base_model" / "model.pt"
TARGET_LABELS = {"background": 0, "liver": 1, "gallbladder": 2}


def temporary_base_model(out_dir: Path, seconds: float = 60.0, seed: int = 0) -> Path:
    """Train UNet(16, 32, 64, 128; strides 2, 2, 2) on 4 source-site phantoms for ``seconds``; return its file.

    Patches are 64^3 voxels (a multiple of the UNet's 8; few windows per sample volume), DiceCE loss,
    Adam 2e-3. The file carries the patch size it was trained at (``patch_size``).
    """
    from monai.data import CacheDataset
    from monai.losses import DiceCELoss

    from seapeft_monailabel.data import label_names, train_transforms, write_site
    from seapeft_monailabel.models import NetworkSpec, build_network, save_model_file

    out_dir = Path(out_dir)
    path = out_dir / "model.pt"
    if path.is_file():
        return path
    data = write_site(out_dir / "source", "source", 4, seed)
    labels = label_names("source")
    patch = (64, 64, 64)
    dataset = CacheDataset(data, train_transforms(patch, num_samples=1, seed=seed), progress=False)
    torch.manual_seed(seed)
    spec = NetworkSpec(name="unet", out_channels=len(labels))
    net = build_network(spec)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    started, step = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        samples = [patch_item for i in range(len(dataset)) for patch_item in dataset[i]]
        x = torch.stack([s["image"] for s in samples])
        y = torch.stack([s["label"] for s in samples])
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        step += 1
    save_model_file(path, net.state_dict(), spec, labels, patch_size=list(patch), train_steps=step)  # atomic
    return path


def base_model_for_tests(cache_dir: Path) -> Path:
    """The shipped base model if it exists, else a temporary one trained into ``cache_dir``."""
    return SHIPPED_MODEL if SHIPPED_MODEL.is_file() else temporary_base_model(cache_dir, seconds=30.0)


def copy_datastore(dest: Path) -> Path:
    """A working copy of sample-data/ (images and labels only) at ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for image in SAMPLE_DATA.glob("*.nii.gz"):
        shutil.copy2(image, dest / image.name)
    shutil.copytree(SAMPLE_DATA / "labels", dest / "labels")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``monailabel start_server`` for ``apps/seapeft`` in a subprocess on a free loopback port.

    The app folder is copied (so ``model/`` and ``logs/`` land in a temporary folder, never in the
    repository), or ``app`` names the copy of an earlier server (a restart: its ``model/`` is kept);
    ``conf`` becomes ``--conf key value`` pairs.
    """

    def __init__(self, work: Path, studies: Path, conf: dict[str, str], env: dict[str, str] | None = None,
                 app: Path | None = None):
        self.app = app or work / "app"
        if app is None:
            shutil.copytree(APP_DIR, self.app, ignore=shutil.ignore_patterns("model", "logs", "__pycache__", "bin"))
        self.studies = studies
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "server.log"
        args = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(self.app),
                "--studies", str(studies), "--host", "127.0.0.1", "--port", str(self.port)]
        for key, value in conf.items():
            args += ["--conf", key, value]
        environ = {**os.environ, "MONAI_LABEL_TRACKING_ENABLED": "false",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   "MONAI_LABEL_SESSION_PATH": str(work / "sessions"), **(env or {})}
        self._log_handle = open(self.log, "w")  # noqa: SIM115 - open for the server's lifetime, closed in stop()
        self.process = subprocess.Popen(args, cwd=REPO, env=environ, stdout=self._log_handle,
                                        stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/info/", timeout=5) as reply:
                    json.load(reply)
                    return
            except OSError:
                time.sleep(1.0)
        raise TimeoutError(f"server not ready in {timeout} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log_handle.close()


def write_generated_subject(out_dir: Path, index: int, seed: int = 2025) -> dict[str, str]:
    """Write target-site subject ``index`` of the sample-data recipe (image + label) outside any datastore."""
    from seapeft_monailabel.data import generate
    from seapeft_monailabel.data.datastore import write_subject

    return write_subject(out_dir, f"target_{index:03d}", generate("target", seed, index), with_label=True)


def write_nifti(path: Path, array, affine) -> Path:
    """Save ``array`` as NIfTI with ``affine`` (for bad-input files)."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every image and label file under ``root`` (not MONAI Label's JSON/lock)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.nii*"))}
