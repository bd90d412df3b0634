"""Site definitions for the phantom generator: how each "hospital" scans and what it labels.

A site fixes the acquisition (voxel spacing, matrix size range, field of view), the appearance of
every tissue (mean intensity and texture amplitude), the noise model, the bias field, and the
segmentation task (which anatomical structures are labelled, and their integer values in the label
files). Anatomy itself is drawn by :mod:`seapeft_monailabel.data.phantoms` and is site-independent in
distribution (only its overall size range comes from the site).

Anatomy table (``ANATOMY``, the generator's internal full label map, fixed)::

    0 background   1 liver   2 spleen   3 kidney_left   4 kidney_right
    5 spine        6 aorta   7 gallbladder   8 stomach

Site tasks (label values written to ``labels/final``)::

    source      0 background, 1 liver, 2 spleen, 3 kidney_left, 4 kidney_right, 5 spine, 6 aorta
                (CT-like, portal-venous contrast; used only to pretrain the base model)
    target      0 background, 1 liver (seen), 2 gallbladder (novel)
                (MR-like, T2-weighted fat-bright contrast, Rician noise, strong bias field)
    target_ct   0 background, 1 spleen (seen), 2 stomach (novel)
                (the same modality and contrast phase from another scanner: other noise and
                reconstruction kernel, spacing, field of view and bias; the paper's regime)

"Seen" structures are labelled at the source site (the base model knows them); "novel" ones are
present in every subject's anatomy at every site but never labelled at the source site.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Dict, Mapping, Tuple

#: The generator's full anatomical label map (name -> value). Fixed; never renumber.
ANATOMY: Mapping[str, int] = MappingProxyType(
    {
        "background": 0,
        "liver": 1,
        "spleen": 2,
        "kidney_left": 3,
        "kidney_right": 4,
        "spine": 5,
        "aorta": 6,
        "gallbladder": 7,
        "stomach": 8,
    }
)

#: Tissues whose appearance every site must define (mean, texture standard deviation).
TISSUES: Tuple[str, ...] = (
    "air", "fat", "muscle", "bowel", "gas", "liver", "gallbladder", "spleen", "kidney",
    "renal_sinus", "artery", "vein", "cortical_bone", "marrow", "disc", "csf",
    "stomach_wall", "stomach_fluid",
)


@dataclass(frozen=True)
class Site:
    """One acquisition site (scanner, protocol, annotation task).

    Attributes:
        name: site identifier, e.g. ``"target"``.
        modality: free text, ``"CT"`` or ``"MR"``, for documentation and model cards.
        description: one line on what this site imitates.
        spacing: voxel size in mm along (x, y, z) = (left->right, posterior->anterior,
            inferior->superior), i.e. RAS axes.
        shape_xy: inclusive range of the in-plane matrix size (voxels), drawn per subject.
        shape_z: inclusive range of the number of slices, drawn per subject.
        fov_center_z_mm: range of the field-of-view centre along z (mm, body frame; 0 is about the
            level of the renal hila, positive is superior).
        anatomy_scale: range of the subject's overall size factor (1.0 = average adult phantom).
        tissues: tissue name -> (mean intensity, texture std) in the site's intensity unit.
        noise: ``"gaussian"`` (additive) or ``"rician"`` (magnitude of complex Gaussian noise).
        noise_sigma: range of the noise standard deviation, drawn per subject (intensity units).
        noise_corr_vox: in-plane Gaussian smoothing (voxels) of the noise, imitating a
            reconstruction kernel; 0 for white noise. The noise is rescaled to keep ``noise_sigma``.
        bias_log_std: std of the log of the smooth multiplicative bias field (0.1 ~ +-10 %).
        coil_gain: extra brightness near the anterior/posterior body surface (surface-coil
            profile), as a fraction; 0 for CT.
        intensity_offset: value the bias field multiplies around (CT: -1000 so that the bias acts
            on attenuation, not on Hounsfield units; MR: 0).
        value_range: (min, max) clip range of stored intensities; values are rounded to integers
            so they are stored losslessly as int16.
        labels: task label name -> value in this site's label files (0 is background).
        seen: labelled structures the base model was trained on (empty for the source site).
        novel: labelled structures the base model never saw labelled.
    """

    name: str
    modality: str
    description: str
    spacing: Tuple[float, float, float]
    shape_xy: Tuple[int, int]
    shape_z: Tuple[int, int]
    fov_center_z_mm: Tuple[float, float]
    anatomy_scale: Tuple[float, float]
    tissues: Mapping[str, Tuple[float, float]]
    noise: str
    noise_sigma: Tuple[float, float]
    noise_corr_vox: float
    bias_log_std: float
    coil_gain: float
    intensity_offset: float
    value_range: Tuple[float, float]
    labels: Mapping[str, int]
    seen: Tuple[str, ...] = ()
    novel: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [t for t in TISSUES if t not in self.tissues]
        if missing:
            raise ValueError(f"site {self.name!r}: tissues without appearance: {missing}")
        if self.noise not in ("gaussian", "rician"):
            raise ValueError(f"site {self.name!r}: noise must be 'gaussian' or 'rician', got {self.noise!r}")
        values = sorted(self.labels.values())
        if values != list(range(len(values))) or self.labels.get("background") != 0:
            raise ValueError(f"site {self.name!r}: labels must be 0..K with background 0, got {dict(self.labels)}")
        unknown = [n for n in self.labels if n not in ANATOMY]
        if unknown:
            raise ValueError(f"site {self.name!r}: labels not in the anatomy table: {unknown}")

    @property
    def label_names(self) -> Dict[str, int]:
        """Task label name -> integer value in this site's label files (a fresh dict)."""
        return dict(self.labels)

    @property
    def seed_key(self) -> int:
        """Stable integer derived from the site name, mixed into every subject's random seed."""
        return zlib.crc32(self.name.encode("utf-8"))

    def anatomy_to_task(self) -> Dict[int, int]:
        """Map from anatomy-table values to task values; structures not in the task map to 0."""
        return {ANATOMY[name]: value for name, value in self.labels.items()}


def _frozen(d: Dict) -> Mapping:
    return MappingProxyType(dict(d))


_SOURCE_LABELS = {
    "background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 4, "spine": 5, "aorta": 6,
}

SOURCE = Site(
    name="source",
    modality="CT",
    description="portal-venous contrast CT, Hounsfield units, mild correlated noise",
    spacing=(3.0, 3.0, 4.0),
    shape_xy=(104, 120),
    shape_z=(56, 72),
    fov_center_z_mm=(10.0, 40.0),
    anatomy_scale=(0.88, 1.12),
    tissues=_frozen({
        "air": (-1000.0, 0.0), "fat": (-100.0, 12.0), "muscle": (50.0, 8.0), "bowel": (35.0, 15.0),
        "gas": (-950.0, 20.0), "liver": (115.0, 8.0), "gallbladder": (12.0, 3.0), "spleen": (125.0, 7.0),
        "kidney": (185.0, 12.0), "renal_sinus": (-40.0, 20.0), "artery": (170.0, 4.0), "vein": (135.0, 4.0),
        "cortical_bone": (700.0, 60.0), "marrow": (260.0, 40.0), "disc": (85.0, 6.0), "csf": (15.0, 3.0),
        "stomach_wall": (70.0, 5.0), "stomach_fluid": (15.0, 5.0),
    }),
    noise="gaussian",
    noise_sigma=(10.0, 18.0),
    noise_corr_vox=0.7,
    bias_log_std=0.005,
    coil_gain=0.0,
    intensity_offset=-1000.0,
    value_range=(-1024.0, 3071.0),
    labels=_frozen(_SOURCE_LABELS),
)

TARGET = Site(
    name="target",
    modality="MR",
    description="T2-weighted fat-bright MR: other contrast ordering, Rician noise, strong bias field",
    spacing=(3.3, 3.3, 5.0),
    shape_xy=(96, 112),
    shape_z=(48, 60),
    fov_center_z_mm=(15.0, 40.0),
    anatomy_scale=(0.85, 1.10),
    tissues=_frozen({
        "air": (0.0, 0.0), "fat": (155.0, 10.0), "muscle": (38.0, 4.0), "bowel": (95.0, 15.0),
        "gas": (1.0, 0.5), "liver": (52.0, 4.0), "gallbladder": (245.0, 8.0), "spleen": (118.0, 6.0),
        "kidney": (100.0, 6.0), "renal_sinus": (160.0, 10.0), "artery": (11.0, 2.5), "vein": (22.0, 5.0),
        "cortical_bone": (10.0, 1.5), "marrow": (105.0, 10.0), "disc": (162.0, 10.0), "csf": (250.0, 8.0),
        "stomach_wall": (55.0, 4.0), "stomach_fluid": (225.0, 10.0),
    }),
    noise="rician",
    noise_sigma=(4.5, 7.5),
    noise_corr_vox=0.0,
    bias_log_std=0.18,
    coil_gain=0.35,
    intensity_offset=0.0,
    value_range=(0.0, 1023.0),
    labels=_frozen({"background": 0, "liver": 1, "gallbladder": 2}),
    seen=("liver",),
    novel=("gallbladder",),
)

TARGET_CT = Site(
    name="target_ct",
    modality="CT",
    description="portal-venous CT from another scanner: other noise and kernel, 5 mm slices, other field of view",
    spacing=(2.8, 2.8, 5.0),
    shape_xy=(112, 128),
    shape_z=(44, 56),
    fov_center_z_mm=(0.0, 30.0),
    anatomy_scale=(0.90, 1.15),
    tissues=_frozen({
        "air": (-1000.0, 0.0), "fat": (-92.0, 14.0), "muscle": (58.0, 9.0), "bowel": (42.0, 16.0),
        "gas": (-940.0, 25.0), "liver": (104.0, 9.0), "gallbladder": (18.0, 4.0), "spleen": (112.0, 8.0),
        "kidney": (168.0, 14.0), "renal_sinus": (-30.0, 20.0), "artery": (152.0, 5.0), "vein": (142.0, 5.0),
        "cortical_bone": (760.0, 70.0), "marrow": (280.0, 45.0), "disc": (92.0, 7.0), "csf": (20.0, 4.0),
        "stomach_wall": (78.0, 6.0), "stomach_fluid": (20.0, 6.0),
    }),
    noise="gaussian",
    noise_sigma=(16.0, 24.0),
    noise_corr_vox=1.3,
    bias_log_std=0.02,
    coil_gain=0.0,
    intensity_offset=-1000.0,
    value_range=(-1024.0, 3071.0),
    labels=_frozen({"background": 0, "spleen": 1, "stomach": 2}),
    seen=("spleen",),
    novel=("stomach",),
)

#: All sites by name.
SITES: Mapping[str, Site] = MappingProxyType({s.name: s for s in (SOURCE, TARGET, TARGET_CT)})


def get_site(site: "str | Site") -> Site:
    """Return the :class:`Site` named ``site`` (a ``Site`` is returned unchanged).

    Raises:
        ValueError: unknown name; the message lists the valid site names.
    """
    if isinstance(site, Site):
        return site
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; valid sites: {', '.join(sorted(SITES))}")
    return SITES[site]


def label_names(site: "str | Site") -> Dict[str, int]:
    """Task label name -> value for ``site`` (what the server and the model's output channels use)."""
    return get_site(site).label_names
