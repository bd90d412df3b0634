"""Volume file -> DICOM series -> back: the array and the RAS affine survive (MONAI's ITK reader and pydicom)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage

from seapeft_monailabel.dicom import SeriesError, read_series_array, volume_to_series, write_series

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample-data" / "target_000.nii.gz"


def _itk_read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    image = LoadImage(image_only=True, reader="ITKReader")(str(folder))
    return np.asarray(image), np.asarray(image.affine)


def test_sample_volume_round_trip(tmp_path):
    info = volume_to_series(SAMPLE, tmp_path / "series", modality="MR")
    source = nib.load(str(SAMPLE))
    array, affine = _itk_read(tmp_path / "series")
    assert array.shape == source.shape and info.slices == source.shape[2]
    np.testing.assert_array_equal(array, np.asanyarray(source.dataobj))
    np.testing.assert_allclose(affine, source.affine, atol=1e-3)
    first = pydicom.dcmread(str(info.files[0]))
    assert first.Modality == "MR" and first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([3.3, 3.3], abs=1e-5)
    assert float(first.SliceThickness) == pytest.approx(5.0) and float(first.SpacingBetweenSlices) == pytest.approx(5.0)
    assert {pydicom.dcmread(str(f)).SeriesInstanceUID for f in info.files} == {info.series_uid}
    again = volume_to_series(SAMPLE, tmp_path / "again")
    assert (again.study_uid, again.series_uid) == (info.study_uid, info.series_uid)


@pytest.mark.parametrize("ext", [".nrrd", ".mha"])
def test_nrrd_and_metaimage_convert_like_their_nifti(tmp_path, ext):
    """The same volume as NRRD or MetaImage gives the same series: voxels, grid and UIDs."""
    from volume_files import convert_volume

    reference = volume_to_series(SAMPLE, tmp_path / "from_nifti")
    info = volume_to_series(convert_volume(SAMPLE, tmp_path / f"target_000{ext}"), tmp_path / "series")
    array, affine = _itk_read(tmp_path / "series")
    source = nib.load(str(SAMPLE))
    np.testing.assert_array_equal(array, np.asanyarray(source.dataobj))
    np.testing.assert_allclose(affine, source.affine, atol=1e-3)
    assert (info.study_uid, info.series_uid) == (reference.study_uid, reference.series_uid)
    assert pydicom.dcmread(str(info.files[0])).PatientID == "target_000"


def test_oblique_left_handed_float_ct(tmp_path):
    """An oblique grid whose k axis points against the slice normal, float values, CT: same physical image."""
    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 300.0, size=(12, 10, 7)).astype(np.float32)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.1, -2.5])  # det < 0: k runs against i x j
    affine[:3, 3] = [10.0, -20.0, 30.0]
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "ct.nii.gz"))
    info = volume_to_series(tmp_path / "ct.nii.gz", tmp_path / "series", modality="CT")
    assert pydicom.dcmread(str(info.files[0])).Modality == "CT"
    slope = float(pydicom.dcmread(str(info.files[0])).RescaleSlope)
    for array, read_affine in (_itk_read(tmp_path / "series"), read_series_array(list(info.files))):
        # written along the normal, so the k axis comes back flipped: same voxels in space
        flipped = volume[:, :, ::-1]
        np.testing.assert_allclose(array, flipped, atol=slope / 2 + 1e-3)
        corner = affine @ np.array([0, 0, volume.shape[2] - 1, 1.0])
        np.testing.assert_allclose(read_affine[:3, 3], corner[:3], atol=1e-3)
        np.testing.assert_allclose(read_affine[:3, 2], -affine[:3, 2], atol=1e-4)
        np.testing.assert_allclose(read_affine[:3, :2], affine[:3, :2], atol=1e-4)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(SeriesError, match="expected a 3D volume"):
        write_series(np.zeros((4, 4)), np.eye(4), tmp_path / "flat", identity="flat.nii.gz")
    with pytest.raises(SeriesError, match="not an invertible"):
        write_series(np.zeros((4, 4, 2)), np.zeros((4, 4)), tmp_path / "singular")
    with pytest.raises(SeriesError, match="modality"):
        write_series(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "us", modality="US")
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(SeriesError, match=r"broken.nii.gz: cannot read as '\.nii\.gz'"):
        volume_to_series(tmp_path / "broken.nii.gz", tmp_path / "out")


def test_seg_subgrid_is_padded_onto_the_image(tmp_path):
    """A label cut to the slices that have labels (as DICOM SEG stores it) comes back on the full grid."""
    from seapeft_monailabel.dicom import SegGridError, expand_to_image_grid

    label_file = REPO / "sample-data" / "labels" / "final" / "target_000.nii.gz"
    source = nib.load(str(label_file))
    full = np.asanyarray(source.dataobj)
    ks = np.nonzero(full.any(axis=(0, 1)))[0]
    cut = full[:, :, ks[0]:ks[-1] + 1]
    shifted = source.affine.copy()
    shifted[:3, 3] = (source.affine @ np.array([0, 0, ks[0], 1.0]))[:3]
    nib.save(nib.Nifti1Image(cut, shifted), str(tmp_path / "cut.nii.gz"))
    out = expand_to_image_grid(tmp_path / "cut.nii.gz", SAMPLE, tmp_path / "full.nii.gz")
    back = nib.load(str(out))
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), full)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-3)
    coarse = source.affine.copy()
    coarse[0, 0] *= 2
    nib.save(nib.Nifti1Image(cut, coarse), str(tmp_path / "coarse.nii.gz"))
    with pytest.raises(SegGridError, match="coarse.nii.gz: spacing"):
        expand_to_image_grid(tmp_path / "coarse.nii.gz", SAMPLE)
