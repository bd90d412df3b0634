"""A T1-weighted head from ITK's examples (Debian ``insighttoolkit5-examples``) with its skull-stripped tissue map.

``KmeansTest_T1UCharRaw.nii.gz`` is one subject's T1 head, 128 x 128 x 62 at 2 x 2 x 3 mm (coronal).
``KmeansTest_T1RawSkullStrip.nii.gz`` on the same grid labels the tissues inside the brain (values 4, 5,
6) and is 0 outside; the brain mask is its non-zero voxels.
"""

from .source import RealSource

SOURCE = RealSource(
    id="itk_t1",
    registry="debian",
    package="insighttoolkit5-examples",
    version=None,
    image="usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz",
    mask="usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1RawSkullStrip.nii.gz",
    mask_above=0,
    description="ITK example T1 head, 2 x 2 x 3 mm; brain = skull-stripped tissue map > 0",
    licence="Apache-2.0 (ITK examples data)",
)
