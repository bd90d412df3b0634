"""Seeded 3D abdominal phantoms that look like CT or MR scans (numpy/scipy only).

One subject = an anatomy (body outline with fat and muscle layers, bowel-filled cavity, liver,
gallbladder, spleen, stomach, kidneys with renal sinus, aorta, IVC, psoas and paraspinal muscles,
vertebral column with discs and spinal canal), drawn from ``numpy.random.default_rng([seed, index,
site.seed_key])`` in mm at a subject-specific size, then imaged by a site (see :mod:`.sites`):
field of view and matrix size, voxel spacing, per-tissue intensity and texture, partial-volume edges,
a smooth multiplicative bias field and Gaussian or Rician noise.

Same (site, seed, index) -> byte-identical arrays. Arrays are indexed ``[x, y, z]`` on RAS axes
(x left->right, y posterior->anterior, z inferior->superior); the affine maps voxel indices to mm.

Typical use::

    ph = generate("target", seed=0, index=3)
    ph.image   # float32 (X, Y, Z), integer-valued intensities (HU for CT, a.u. for MR)
    ph.label   # uint8 (X, Y, Z), the site's task labels 0..K (see sites.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage

from .fields import Ellipsoid, SmoothField, Tube, coverage, rotation, smooth_union
from .sites import ANATOMY, Site, get_site


@dataclass
class Layer:
    """Paint ``tissue`` where ``f + offset < 0`` (offset in mm shrinks the shape); optionally only
    in front of the plane ``y > y_min`` (mm), e.g. gas floating on the stomach's fluid."""

    offset: float
    tissue: str
    y_min: Optional[float] = None


@dataclass
class Structure:
    """One anatomical structure: a smooth union of primitives, optionally deformed and clipped.

    Attributes:
        name: structure name (an ``ANATOMY`` key when labelled, else a descriptive name).
        label: anatomy-table value written where the structure covers > 50 % of a voxel; 0 clears.
        parts: primitives (Ellipsoid/Tube) combined with a smooth union of radius ``blend`` mm.
        layers: tissues painted from the outside in (the first layer defines the label extent).
        deform: (3 fields, amplitude mm) displacing the coordinates before evaluation, or None.
        clip: "cavity" (stay inside the abdominal cavity), "body" (inside the skin) or None.
        z_slabs: (period, phase, half_thickness) in mm to keep only periodic z slabs (discs).
        texture_step: pitch (mm) of the tissue's low-frequency texture field.
    """

    name: str
    label: int
    parts: List
    layers: List[Layer]
    blend: float = 0.0
    deform: Optional[Tuple[Tuple[SmoothField, SmoothField, SmoothField], float]] = None
    clip: Optional[str] = "cavity"
    z_slabs: Optional[Tuple[float, float, float]] = None
    texture_step: float = 12.0

    def bbox(self) -> Tuple[np.ndarray, np.ndarray]:
        boxes = [p.bbox() for p in self.parts]
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        margin = (self.deform[1] * 3.0 if self.deform else 0.0) + 2.0
        return lo - margin, hi + margin

    def sdf(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Signed distance (mm, float32) on the grid spanned by 1-D coordinates xs, ys, zs."""
        x, y, z = xs[:, None, None], ys[None, :, None], zs[None, None, :]
        if self.deform is not None:
            (fx, fy, fz), amp = self.deform
            x, y, z = x + amp * fx(xs, ys, zs), y + amp * fy(xs, ys, zs), z + amp * fz(xs, ys, zs)
        f = self.parts[0].sdf(x, y, z)
        for p in self.parts[1:]:
            f = smooth_union(f, p.sdf(x, y, z), self.blend)
        if self.z_slabs is not None:
            period, phase, half = self.z_slabs
            zz = np.mod(z - phase, period) - period / 2.0
            f = np.maximum(f, np.abs(zz) - half)
        return np.broadcast_to(f, (len(xs), len(ys), len(zs))).astype(np.float32)


@dataclass
class Body:
    """Skin outline: ellipse of semi-axes ``a`` (left-right) and ``b`` (anterior; posterior is
    ``b * flat_post``) mm, widening by ``taper`` per 100 mm upward, deformed in-plane by ``amp`` mm;
    subcutaneous fat ``t_fat`` and muscle wall ``t_muscle`` thicknesses in mm."""

    a: float
    b: float
    flat_post: float
    taper: float
    deform: Tuple[SmoothField, SmoothField]
    amp: float
    t_fat: float
    t_muscle: float

    def sdf(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Signed distance to the skin (mm, float32) on the (len(xs), len(ys), len(zs)) grid."""
        fx, fy = self.deform
        x = xs[:, None, None] + self.amp * fx(xs, ys, zs)
        y = ys[None, :, None] + self.amp * fy(xs, ys, zs)
        grow = 1.0 + self.taper * zs[None, None, :] / 100.0
        ry = np.where(y < 0, self.b * self.flat_post, self.b) * grow
        rho = np.maximum(np.sqrt((x / (self.a * grow)) ** 2 + (y / ry) ** 2), 1e-6)
        n = np.sqrt(x**2 + y**2)
        return (n - n / rho).astype(np.float32)


@dataclass
class Anatomy:
    """A subject's anatomy in mm (body frame); ``structures`` are painted in order."""

    scale: float
    body: Body
    structures: List[Structure] = field(default_factory=list)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _deform(rng, lo, hi, step, amp) -> Tuple[Tuple[SmoothField, SmoothField, SmoothField], float]:
    return (SmoothField(rng, lo, hi, step), SmoothField(rng, lo, hi, step), SmoothField(rng, lo, hi, step)), amp


def _organ(rng, name, label, center, radii, angles, layers, step, amp, blend=0.0, extra=()) -> Structure:
    parts = [Ellipsoid(tuple(center), tuple(radii), rotation(*angles)), *extra]
    lo = np.min([p.bbox()[0] for p in parts], axis=0)
    hi = np.max([p.bbox()[1] for p in parts], axis=0)
    return Structure(name, label, parts, layers, blend=blend, deform=_deform(rng, lo, hi, step, amp))


def sample_anatomy(rng: np.random.Generator, scale_range: Tuple[float, float]) -> Anatomy:
    """Draw one subject's anatomy (sizes in mm; ``scale_range`` bounds the overall size factor)."""
    s = _u(rng, *scale_range)
    sa = s * _u(rng, 0.92, 1.08)  # anterior-posterior build
    j = lambda: _u(rng, 0.88, 1.14)  # noqa: E731 - per-organ size jitter
    big = ([-260.0, -220.0, -320.0], [260.0, 220.0, 320.0])
    body = Body(
        a=150.0 * s, b=105.0 * sa, flat_post=_u(rng, 0.80, 0.90), taper=_u(rng, -0.04, 0.04),
        deform=(SmoothField(rng, *big, (70.0, 70.0, 120.0)), SmoothField(rng, *big, (70.0, 70.0, 120.0))),
        amp=_u(rng, 3.0, 8.0), t_fat=_u(rng, 8.0, 28.0) * sa, t_muscle=_u(rng, 8.0, 13.0) * s,
    )
    post = -body.b * body.flat_post  # posterior skin, mm
    yv = post + body.t_fat + 70.0 * s  # vertebral body centre (deeper with more fat)
    lord = (_u(rng, -4.0, 4.0), _u(rng, -6.0, 6.0))  # scoliosis (x) and lordosis (y) curvature
    spine_cx = (0.0, lord[0], 0.0)
    spine_cy = lambda dy: (yv + dy, 0.0, lord[1])  # noqa: E731
    zlo, zhi = -320.0, 320.0
    A: List[Structure] = []

    for side in (-1, 1):  # paraspinal muscles, in the posterior wall
        t = Tube((side * 36.0 * s, 0.0, 0.0), (post + body.t_fat + 22.0 * s, 0.0, lord[1]),
                 (26.0 * s, 20.0 * s), (24.0 * s, 18.0 * s), zlo, zhi)
        A.append(Structure("paraspinal", 0, [t], [Layer(0.0, "muscle")], clip="body"))
    for side in (-1, 1):  # psoas, growing downward from the renal level
        t = Tube((side * 38.0 * s, side * 4.0, 0.0), spine_cy(2.0 * s), (22.0 * s * j(), 20.0 * s),
                 (5.0 * s, 5.0 * s), -260.0, _u(rng, -10.0, 10.0))
        A.append(Structure("psoas", 0, [t], [Layer(0.0, "muscle")]))

    A.append(_organ(  # stomach: wall, fluid, gas floating anteriorly
        rng, "stomach", ANATOMY["stomach"], (-48.0 * s, 30.0 * sa, 80.0 * s),
        (42.0 * s * j(), 32.0 * sa * j(), 48.0 * s * j()), (0.0, _u(rng, -0.3, 0.3), _u(rng, -0.4, 0.2)),
        [Layer(0.0, "stomach_wall"), Layer(4.0, "stomach_fluid"), Layer(4.0, "gas", 30.0 * sa + _u(rng, 5, 20))],
        step=35.0, amp=7.0))
    right = Ellipsoid((75.0 * s, 12.0 * sa, 95.0 * s), (66.0 * s * j(), 76.0 * sa * j(), 80.0 * s * j()),
                      rotation(0.0, 0.0, _u(rng, -0.2, 0.2)))
    left = Ellipsoid((-10.0 * s, 38.0 * sa, 110.0 * s * j()), (62.0 * s * j(), 30.0 * sa * j(), 40.0 * s * j()),
                     rotation(0.0, _u(rng, -0.2, 0.2), 0.0))
    lo = np.minimum(right.bbox()[0], left.bbox()[0])
    hi = np.maximum(right.bbox()[1], left.bbox()[1])
    A.append(Structure("liver", ANATOMY["liver"], [right, left], [Layer(0.0, "liver")], blend=18.0,
                       deform=_deform(rng, lo, hi, 45.0, 9.0)))
    A.append(_organ(
        rng, "gallbladder", ANATOMY["gallbladder"],
        (_u(rng, 35.0, 55.0) * s, _u(rng, 30.0, 45.0) * sa, _u(rng, 25.0, 45.0) * s),
        (18.0 * s * j(), 17.0 * s * j(), 38.0 * s * j()), (_u(rng, -0.9, -0.4), _u(rng, -0.3, 0.3), 0.0),
        [Layer(0.0, "gallbladder")], step=25.0, amp=3.0))
    A.append(_organ(
        rng, "spleen", ANATOMY["spleen"], (-92.0 * s, -22.0 * sa, _u(rng, 65.0, 90.0) * s),
        (27.0 * s * j(), 55.0 * s * j(), 52.0 * s * j()), (0.0, 0.0, _u(rng, -0.8, -0.4)),
        [Layer(0.0, "spleen")], step=30.0, amp=6.0))
    zl = _u(rng, -5.0, 15.0) * s
    for side, name, dz in ((-1, "kidney_left", 0.0), (1, "kidney_right", -_u(rng, 10.0, 25.0))):
        c = (side * 68.0 * s * _u(rng, 0.93, 1.07), yv + _u(rng, -8.0, 6.0) * s, zl + dz * s)
        ang = (0.0, side * _u(rng, 0.1, 0.3), side * _u(rng, 0.2, 0.5))
        k = _organ(rng, name, ANATOMY[name], c, (24.0 * s * j(), 27.0 * s * j(), 52.0 * s * j()), ang,
                   [Layer(0.0, "kidney")], step=30.0, amp=3.0)
        A.append(k)
        sinus = Ellipsoid((c[0] - side * 9.0 * s, c[1] + 3.0 * s, c[2]), (9.0 * s, 10.0 * s, 26.0 * s), rotation(*ang))
        A.append(Structure("renal_sinus", ANATOMY[name], [sinus], [Layer(0.0, "renal_sinus")], deform=k.deform))
    vr = (16.0 * s, 18.0 * s)  # vertebral body semi-axes
    A.append(Structure("ivc", 0, [Tube((26.0 * s, lord[0], 0.0), spine_cy(vr[1] + 16.0 * s),
                                       (12.0 * s, 9.0 * s), (13.0 * s, 10.0 * s), zlo, zhi)], [Layer(0.0, "vein")]))
    r_ao = 11.0 * s * j()
    A.append(Structure("aorta", ANATOMY["aorta"], [Tube((-12.0 * s, lord[0], 0.0), spine_cy(vr[1] + 12.0 * s),
                                                        (r_ao * 0.85, r_ao * 0.85), (r_ao, r_ao),
                                                        -_u(rng, 110.0, 150.0) * s, zhi)], [Layer(0.0, "artery")]))
    vbody = Tube(spine_cx, spine_cy(0.0), (vr[1], vr[0]), (vr[1] * 0.95, vr[0] * 0.95), zlo, zhi)
    arch = Tube(spine_cx, spine_cy(-vr[0] - 9.0 * s), (19.0 * s, 9.0 * s), (17.0 * s, 9.0 * s), zlo, zhi)
    spinous = Tube(spine_cx, spine_cy(-vr[0] - 30.0 * s), (5.0 * s, 15.0 * s), (5.0 * s, 15.0 * s), zlo, zhi)
    A.append(Structure("spine", ANATOMY["spine"], [vbody, arch, spinous],
                       [Layer(0.0, "cortical_bone"), Layer(2.5, "marrow")], blend=3.0, clip="body"))
    period = 34.0 * s * _u(rng, 0.95, 1.05)
    disc = Tube(spine_cx, spine_cy(0.0), (vr[1] + 0.5, vr[0] + 0.5), (vr[1] * 0.95 + 0.5, vr[0] * 0.95 + 0.5), zlo, zhi)
    A.append(Structure("disc", ANATOMY["spine"], [disc], [Layer(0.0, "disc")], clip="body",
                       z_slabs=(period, _u(rng, 0.0, period), 4.5 * s)))
    A.append(Structure("canal", 0, [Tube(spine_cx, spine_cy(-vr[0] - 8.0 * s), (7.5 * s, 6.5 * s),
                                         (7.0 * s, 6.0 * s), zlo, zhi)], [Layer(0.0, "csf")], clip="body"))
    return Anatomy(scale=s, body=body, structures=A)


@dataclass
class Phantom:
    """One generated subject.

    Attributes:
        image: float32 (X, Y, Z) integer-valued intensities (HU for CT sites, a.u. for MR sites).
        label: uint8 (X, Y, Z) task labels of the site (0..K, see ``Site.labels``).
        anatomy: uint8 (X, Y, Z) full anatomical label map (``ANATOMY`` values).
        body: bool (X, Y, Z), True inside the skin.
        spacing: voxel size (mm) along x, y, z.
        affine: float64 (4, 4) voxel index -> mm (RAS), spacing on the diagonal.
        site, seed, index: what produced it.
    """

    image: np.ndarray
    label: np.ndarray
    anatomy: np.ndarray
    body: np.ndarray
    spacing: Tuple[float, float, float]
    affine: np.ndarray
    site: str
    seed: int
    index: int


def _subgrid(lo, hi, axes, spacing):
    """Index slices of the grid covering the mm box [lo, hi], or None when it misses the grid."""
    sl = []
    for d in range(3):
        a = axes[d]
        i0 = max(int(np.floor((lo[d] - a[0]) / spacing[d])), 0)
        i1 = min(int(np.ceil((hi[d] - a[0]) / spacing[d])) + 1, len(a))
        if i1 - i0 < 1:
            return None
        sl.append(slice(i0, i1))
    return tuple(sl)


def _render(anat: Anatomy, site: Site, rng: np.random.Generator, axes, spacing):
    """Paint the anatomy on the grid; returns (image float32, anatomy uint8, body bool)."""
    xs, ys, zs = axes
    tissues = site.tissues
    fov_lo = [a[0] - 20.0 for a in axes]
    fov_hi = [a[-1] + 20.0 for a in axes]
    tex = lambda step: SmoothField(rng, fov_lo, fov_hi, step)(xs, ys, zs)  # noqa: E731

    f_body = anat.body.sdf(xs, ys, zs)
    f_cav = f_body + (anat.body.t_fat + anat.body.t_muscle)
    air_mean, _ = tissues["air"]
    img = np.full(f_body.shape, air_mean, dtype=np.float32)
    lab = np.zeros(f_body.shape, dtype=np.uint8)
    t_fat = tex(20.0)
    for off, name in ((0.0, "fat"), (anat.body.t_fat, "muscle")):
        m, sd = tissues[name]
        alpha = coverage(f_body + off, spacing)
        img += alpha * (m + sd * t_fat - img)
    # Abdominal cavity: fat and bowel loops with a little gas.
    loops, gas = tex(11.0), tex(9.0)
    fm, fsd = tissues["fat"]
    bm, bsd = tissues["bowel"]
    gm, _ = tissues["gas"]
    mix = 1.0 / (1.0 + np.exp(-(3.0 * loops + 0.8)))
    val = fm + (bm - fm) * mix + (fsd * (1 - mix) + bsd * mix) * t_fat
    val += (gm - val) / (1.0 + np.exp(-8.0 * (gas - 2.2)))
    img += coverage(f_cav, spacing) * (val - img)
    del loops, gas, val, mix

    for st in anat.structures:
        sl = _subgrid(*st.bbox(), axes, spacing)
        if sl is None:
            continue
        sx, sy, sz = xs[sl[0]], ys[sl[1]], zs[sl[2]]
        f = st.sdf(sx, sy, sz)
        if st.clip == "cavity":
            f = np.maximum(f, f_cav[sl] + 1.0)
        elif st.clip == "body":
            f = np.maximum(f, f_body[sl] + 1.0)
        tfield = SmoothField(rng, *st.bbox(), st.texture_step)(sx, sy, sz)
        sub = img[sl]
        for i, layer in enumerate(st.layers):
            fl = f + layer.offset
            if layer.y_min is not None:
                fl = np.maximum(fl, layer.y_min - sy[None, :, None])
            alpha = coverage(fl, spacing)
            m, sd = tissues[layer.tissue]
            sub += alpha * (m + sd * tfield - sub)
            if i == 0:
                lab[sl][alpha > 0.5] = st.label
    return img, lab, f_body < 0


def _acquire(img: np.ndarray, anat: Anatomy, site: Site, rng: np.random.Generator, axes, spacing) -> np.ndarray:
    """Bias field, surface-coil profile and noise; returns float32 integer-valued intensities."""
    xs, ys, zs = axes
    lo = [a[0] - 20.0 for a in axes]
    hi = [a[-1] + 20.0 for a in axes]
    gain = np.exp(site.bias_log_std * SmoothField(rng, lo, hi, 150.0)(xs, ys, zs))
    if site.coil_gain:
        gain *= 1.0 + site.coil_gain * np.clip(np.abs(ys) / anat.body.b, 0.0, 1.3)[None, :, None] ** 2
    off = site.intensity_offset
    img = off + (img - off) * gain
    sigma = _u(rng, *site.noise_sigma)
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    if site.noise == "rician":
        n2 = rng.standard_normal(img.shape, dtype=np.float32)
        img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
    else:
        if site.noise_corr_vox > 0:
            n1 = ndimage.gaussian_filter(n1, (site.noise_corr_vox, site.noise_corr_vox, 0.0))
            n1 /= n1.std()
        img = img + sigma * n1
    return np.round(np.clip(img, *site.value_range)).astype(np.float32)


def generate(site: "str | Site", seed: int, index: int) -> Phantom:
    """Generate subject ``index`` of ``site`` with ``seed`` (deterministic; see module docstring).

    Args:
        site: a site name (``"source"``, ``"target"``, ``"target_ct"``) or a :class:`Site`.
        seed: non-negative integer dataset seed.
        index: non-negative subject index within the dataset.
    """
    site = get_site(site)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    rng = np.random.default_rng([int(seed), int(index), site.seed_key])
    anat = sample_anatomy(rng, site.anatomy_scale)
    shape = (int(rng.integers(site.shape_xy[0], site.shape_xy[1] + 1)),
             int(rng.integers(site.shape_xy[0], site.shape_xy[1] + 1)),
             int(rng.integers(site.shape_z[0], site.shape_z[1] + 1)))
    centre = np.array([_u(rng, -10.0, 10.0), _u(rng, -15.0, 5.0), _u(rng, *site.fov_center_z_mm)])
    spacing = np.asarray(site.spacing, dtype=np.float64)
    origin = centre - spacing * (np.asarray(shape) - 1) / 2.0
    axes = [(origin[d] + spacing[d] * np.arange(shape[d])).astype(np.float32) for d in range(3)]
    img, anatomy, body = _render(anat, site, rng, axes, site.spacing)
    img = _acquire(img, anat, site, rng, axes, site.spacing)
    lut = np.zeros(256, dtype=np.uint8)
    for anat_value, task_value in site.anatomy_to_task().items():
        lut[anat_value] = task_value
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Phantom(image=img, label=lut[anatomy], anatomy=anatomy, body=body, spacing=tuple(site.spacing),
                   affine=affine, site=site.name, seed=int(seed), index=int(index))
