"""Where a structure's errors lie (seapeft_monailabel.evaluate.errors), on hand-made class maps."""

from __future__ import annotations

import numpy as np

from seapeft_monailabel.evaluate.errors import StructureErrors


def test_structure_errors_tell_a_thin_rim_from_a_missed_core():
    label = np.zeros((12, 12, 12), dtype=np.int64)
    label[2:10, 2:10, 2:10] = 1  # an 8-voxel cube
    eroded = np.zeros_like(label)
    eroded[3:9, 3:9, 3:9] = 1  # misses exactly the cube's outer voxel layer
    eroded[0, 0, 0] = 1  # and adds one voxel outside
    errors = StructureErrors()
    errors.add(eroded, label, 1, spacing=(2.0, 2.0, 2.0))
    assert errors.true_positive == 6 ** 3 and errors.false_positive == 1
    assert errors.false_negative == 8 ** 3 - 6 ** 3
    assert errors.missed_depths_mm.max() == 2.0  # one voxel step deep: every missed voxel is on the surface
    cored = label.copy()
    cored[4:8, 4:8, 4:8] = 0  # misses a 4-voxel core instead: 3 or 4 voxel steps deep
    errors.add(cored, label, 1, spacing=(2.0, 2.0, 2.0))
    assert errors.false_negative == 8 ** 3 - 6 ** 3 + 4 ** 3  # counts add up over volumes
    assert set(errors.missed_depths_mm[8 ** 3 - 6 ** 3:]) == {6.0, 8.0}
    assert "100 % of them within 2 mm" in StructureErrors(1, 0, np.full(3, 2.0)).summary(2.0)
