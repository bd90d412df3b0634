"""Smooth random fields and implicit shapes used by the phantom generator (numpy only).

All coordinates are in millimetres in the body frame: x left->right, y posterior->anterior,
z inferior->superior (RAS). Shapes return an approximate signed distance ``f`` in mm (negative
inside), evaluated on broadcastable coordinate arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

# Mean over t of sum_k B3(t - k)^2 for the cubic B-spline B3 (= 151/315); used to give fields unit std.
_BSPLINE_SQ_MEAN = 151.0 / 315.0


def bspline3(u: np.ndarray) -> np.ndarray:
    """Cubic B-spline kernel B3(u), support (-2, 2), elementwise (float array in, same shape out)."""
    a = np.abs(u)
    out = np.where(a < 1.0, (4.0 - 6.0 * a**2 + 3.0 * a**3) / 6.0, 0.0)
    return np.where((a >= 1.0) & (a < 2.0), (2.0 - a) ** 3 / 6.0, out)


class SmoothField:
    """Random smooth scalar field with about unit standard deviation, defined in mm.

    A cubic B-spline whose control coefficients (i.i.d. N(0, 1)) sit on a regular grid of pitch
    ``step`` mm covering the box ``[lo, hi]``; the field fades to zero a few steps outside the box.
    Evaluation is separable, so a field on an (nx, ny, nz) grid costs three small matrix products.

    Args:
        rng: numpy Generator; the coefficients are drawn from it at construction.
        lo, hi: (3,) box corners in mm.
        step: control-point pitch in mm (larger = smoother); a scalar or one value per axis.
    """

    def __init__(self, rng: np.random.Generator, lo: Sequence[float], hi: Sequence[float], step) -> None:
        self.lo = np.asarray(lo, dtype=np.float64)
        self.step = np.broadcast_to(np.asarray(step, dtype=np.float64), (3,)).copy()
        n = np.ceil((np.asarray(hi, dtype=np.float64) - self.lo) / self.step).astype(int) + 4
        self.coef = rng.standard_normal(tuple(int(v) for v in n)) / np.sqrt(_BSPLINE_SQ_MEAN**3)

    def _matrix(self, coords: np.ndarray, axis: int) -> np.ndarray:
        t = (np.asarray(coords, dtype=np.float64) - self.lo[axis]) / self.step[axis] + 1.0
        k = np.arange(self.coef.shape[axis], dtype=np.float64)
        return bspline3(t[:, None] - k[None, :])

    def __call__(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Field on the grid spanned by 1-D mm coordinates; returns float32 (len(xs), len(ys), len(zs))."""
        a = np.tensordot(self._matrix(xs, 0), self.coef, axes=(1, 0))  # (nx, Ky, Kz)
        a = np.tensordot(a, self._matrix(ys, 1), axes=(1, 1))  # (nx, Kz, ny)
        a = np.tensordot(a, self._matrix(zs, 2), axes=(1, 1))  # (nx, ny, nz)
        return a.astype(np.float32)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """3x3 rotation Rz(az) @ Ry(ay) @ Rx(ax), angles in radians; columns are the local axes."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _radial_distance(components: Sequence[np.ndarray], radii: Sequence[float]) -> np.ndarray:
    """Signed distance to an ellipse/ellipsoid surface measured along the ray from its centre (mm)."""
    rho2 = sum((c / r) ** 2 for c, r in zip(components, radii))
    n = np.sqrt(sum(c**2 for c in components))
    rho = np.maximum(np.sqrt(rho2), 1e-6)
    return n - n / rho


@dataclass(frozen=True)
class Ellipsoid:
    """Rotated ellipsoid: ``center`` (3,) mm, ``radii`` (3,) mm semi-axes, ``rot`` (3, 3) local axes."""

    center: Tuple[float, float, float]
    radii: Tuple[float, float, float]
    rot: np.ndarray

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = (x - self.center[0], y - self.center[1], z - self.center[2])
        r = self.rot
        q = [d[0] * r[0, i] + d[1] * r[1, i] + d[2] * r[2, i] for i in range(3)]
        return _radial_distance(q, self.radii)

    def bbox(self) -> Tuple[np.ndarray, np.ndarray]:
        c, m = np.asarray(self.center), max(self.radii)
        return c - m, c + m


@dataclass(frozen=True)
class Tube:
    """Capped tube along z with an elliptical cross-section.

    Centre ``(cx(z), cy(z))`` with ``c(z) = c0 + c1*(z/100) + c2*(z/100)**2`` (mm); semi-axes vary
    linearly from ``r_bottom`` at ``z0`` to ``r_top`` at ``z1`` (mm); capped at ``z0 < z < z1``.
    """

    cx: Tuple[float, float, float]
    cy: Tuple[float, float, float]
    r_bottom: Tuple[float, float]
    r_top: Tuple[float, float]
    z0: float
    z1: float

    def _centre(self, z: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        t = z / 100.0
        return (self.cx[0] + self.cx[1] * t + self.cx[2] * t * t, self.cy[0] + self.cy[1] * t + self.cy[2] * t * t)

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        cx, cy = self._centre(z)
        w = np.clip((z - self.z0) / (self.z1 - self.z0), 0.0, 1.0)
        rx = self.r_bottom[0] + (self.r_top[0] - self.r_bottom[0]) * w
        ry = self.r_bottom[1] + (self.r_top[1] - self.r_bottom[1]) * w
        f = _radial_distance((x - cx, y - cy), (rx, ry))
        return np.maximum(f, np.maximum(self.z0 - z, z - self.z1))

    def bbox(self) -> Tuple[np.ndarray, np.ndarray]:
        zs = np.linspace(self.z0, self.z1, 9)
        cx, cy = self._centre(zs)
        r = max(max(self.r_bottom), max(self.r_top))
        return (np.array([cx.min() - r, cy.min() - r, self.z0]), np.array([cx.max() + r, cy.max() + r, self.z1]))


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distance fields with blend radius ``k`` mm (k=0: plain min)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def coverage(f: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Partial-volume fraction in [0, 1] of each voxel inside ``f < 0`` (float32, same shape as f).

    The fraction ramps linearly across the voxel's extent projected on the surface normal,
    ``sum_i |df/dx_i| * spacing_i`` (mm), which models anisotropic voxels (thick slices blur more).
    """
    s = [float(v) for v in spacing]
    if min(f.shape) >= 2:
        g = np.gradient(f, *s)
        width = np.abs(g[0]) * s[0] + np.abs(g[1]) * s[1] + np.abs(g[2]) * s[2]
        width = np.maximum(width, 0.5 * min(s))
    else:
        width = float(np.mean(s))
    return np.clip(0.5 - f / width, 0.0, 1.0).astype(np.float32)
