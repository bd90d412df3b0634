"""Colin 27 (MNI), as MRIcron's ``ch2`` template in Debian's ``mricron-data``: a T1-weighted head and its brain.

``ch2.nii.gz`` is the average of 27 T1 scans of one healthy adult (Holmes et al. 1998), 1 mm,
181 x 217 x 181. ``ch2bet.nii.gz`` is the same volume brain-extracted with FSL's BET, as shipped;
the brain mask is its non-zero voxels.
"""

from .source import RealSource

SOURCE = RealSource(
    id="colin27",
    registry="debian",
    package="mricron-data",
    version=None,
    image="usr/share/mricron/templates/ch2.nii.gz",
    mask="usr/share/mricron/templates/ch2bet.nii.gz",
    mask_above=0,
    description="Colin 27: one adult, 27 averaged T1 scans, 1 mm; brain = BET-extracted ch2bet > 0",
    licence="BSD-3-clause (Debian copyright of mricron-data)",
)
