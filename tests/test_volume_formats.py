"""Volumes as users keep them: NIfTI (.nii.gz, .nii), NRRD, MetaImage (.mha, .mhd) and DICOM series folders.

Files are written by SimpleITK (and DICOM by the project's series writer); the library reads them through
MONAI's ``LoadImage``. Covered: the same voxels and RAS grid from every format, image/label pairs in mixed
formats, the folder scan and datalists of the training commands, and errors that name the file.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from volume_files import write_volume

from seapeft_monailabel.commands.common import datalist_from_args
from seapeft_monailabel.data import find_volumes, load_volume_pair, make_datalist, output_extension, read_volume
from seapeft_monailabel.data.datastore import unlabelled_ids

EXTENSIONS = [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"]
LABELS = {"background": 0, "liver": 1, "gallbladder": 2}


@pytest.fixture(scope="module")
def arrays():
    """An int16 image (X, Y, Z) = (12, 10, 8) and its uint8 label with both foreground values."""
    image = np.random.default_rng(0).integers(-200, 300, size=(12, 10, 8)).astype(np.int16)
    label = np.zeros(image.shape, np.uint8)
    label[2:6, 3:7, 1:4], label[7:10, 2:5, 4:7] = 1, 2
    return image, label


def _args(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**{"datalist": None, "images": None, "labels": None, "shots": None, "seed": 0, **kwargs})


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_every_format_reads_the_same_voxels_and_grid(tmp_path, arrays, ext):
    image, label = arrays
    reference, reference_affine = read_volume(write_volume(tmp_path / "ref.nii.gz", image))
    data, affine = read_volume(write_volume(tmp_path / f"case{ext}", image))
    np.testing.assert_array_equal(data, reference)
    np.testing.assert_allclose(affine, reference_affine, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), [1.5, 1.25, 3.0], atol=1e-6)
    other = ".nrrd" if ext != ".nrrd" else ".nii.gz"  # a label may be in another format than its image
    _, lab, spacing = load_volume_pair(tmp_path / f"case{ext}", write_volume(tmp_path / f"label{other}", label), LABELS)
    np.testing.assert_array_equal(lab, label)
    assert spacing == pytest.approx((1.5, 1.25, 3.0))
    assert output_extension(tmp_path / f"case{ext}") == (".mha" if ext == ".mhd" else ext)


def test_dicom_series_folder_reads_like_its_nifti(tmp_path, arrays):
    from seapeft_monailabel.dicom.series import volume_to_series

    nifti = write_volume(tmp_path / "case.nii.gz", arrays[0])
    volume_to_series(nifti, tmp_path / "study" / "case", modality="CT")
    reference, reference_affine = read_volume(nifti)
    data, affine = read_volume(tmp_path / "study" / "case")
    np.testing.assert_array_equal(data, reference)
    np.testing.assert_allclose(affine, reference_affine, atol=1e-3)
    assert output_extension(tmp_path / "study" / "case") == ".nii.gz"  # predictions on a series: one file
    assert find_volumes(tmp_path / "study") == {"case": tmp_path / "study" / "case"}


def test_errors_name_the_file_and_the_problem(tmp_path, arrays):
    image, label = arrays
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"photo\.png: unsupported format '\.png' \(readable: \.nii\.gz, .*DICOM series"):
        read_volume(png)
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_bytes(b"not an NRRD header\n" * 4)
    with pytest.raises(ValueError, match=r"corrupt\.nrrd: cannot read as '\.nrrd'"):
        read_volume(corrupt)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes: a folder that holds no DICOM series"):
        read_volume(tmp_path / "notes")
    with pytest.raises(FileNotFoundError, match=r"missing\.mha"):
        read_volume(tmp_path / "missing.mha")
    with pytest.raises(ValueError, match=r"flat\.nrrd: .*not a 3D volume"):
        load_volume_pair(write_volume(tmp_path / "flat.nrrd", image[:, :, :1]))
    shifted = write_volume(tmp_path / "shifted.mha", label, origin=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"shifted\.mha: label affine differs .*case\.nrrd"):
        load_volume_pair(write_volume(tmp_path / "case.nrrd", image), shifted, LABELS)


def test_find_volumes_lists_every_format_and_refuses_two_files_of_one_id(tmp_path, arrays):
    image = arrays[0]
    for name in ("a.nii.gz", "b.nrrd", "c.mha", "d.nii", "e.mhd", "labels/final/a.nrrd"):
        write_volume(tmp_path / name, image)
    (tmp_path / "readme.txt").write_text("not a volume")
    (tmp_path / ".f.tmp.nrrd").write_bytes(b"")  # an atomic writer's temporary file
    found = find_volumes(tmp_path)
    assert list(found) == ["a", "b", "c", "d", "e"]
    assert found["e"].name == "e.mhd"  # its data file (e.raw or e.zraw) is not a volume of its own
    write_volume(tmp_path / "b.nii.gz", image)
    with pytest.raises(ValueError, match=r"two volumes with id 'b': b\.nii\.gz and b\.nrrd"):
        find_volumes(tmp_path)


def test_folder_scan_pairs_images_and_labels_of_any_format(tmp_path, arrays):
    image, label = arrays
    for sid, image_ext, label_ext in (("s0", ".nrrd", ".nrrd"), ("s1", ".nrrd", ".mha"), ("s2", ".mha", ".nii.gz")):
        write_volume(tmp_path / "store" / f"{sid}{image_ext}", image)
        write_volume(tmp_path / "store" / "labels" / "final" / f"{sid}{label_ext}", label)
    write_volume(tmp_path / "store" / "s3.nrrd", image)  # not labelled yet
    items = datalist_from_args(_args(images=str(tmp_path / "store")))
    assert [(i["image"].rsplit("/", 1)[1], i["label"].rsplit("/", 1)[1]) for i in items] == [
        ("s0.nrrd", "s0.nrrd"), ("s1.nrrd", "s1.mha"), ("s2.mha", "s2.nii.gz")]
    for item in items:
        load_volume_pair(item["image"], item["label"], LABELS)
    assert make_datalist(tmp_path / "store") == items  # the datastore's own listing agrees
    assert unlabelled_ids(tmp_path / "store") == ["s3"]
    write_volume(tmp_path / "elsewhere" / "s3.nii", label)  # --labels: another folder
    assert [i["label"] for i in datalist_from_args(_args(images=str(tmp_path / "store"), labels=str(tmp_path / "elsewhere")))] == [
        str(tmp_path / "elsewhere" / "s3.nii")]


def test_folder_scan_says_what_it_found_and_looked_for(tmp_path, arrays):
    for sid in ("s0", "s1", "s2", "s3"):
        write_volume(tmp_path / "store" / f"{sid}.nrrd", arrays[0])
    with pytest.raises(ValueError) as info:
        datalist_from_args(_args(images=str(tmp_path / "store")))
    message = str(info.value)
    assert "4 images (s0, s1, s2, ...)" in message
    assert f"none has a label in {tmp_path / 'store' / 'labels' / 'final'} (no such folder)" in message
    assert ".nii.gz, .nii, .nrrd, .mha, .mhd files or DICOM series folders" in message and "--labels" in message
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "scan.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"photos: no images \(\.nii\.gz, .*\); it holds 1 other files \(scan\.png\)"):
        datalist_from_args(_args(images=str(tmp_path / "photos")))


def test_datalist_with_nrrd_and_mha_paths(tmp_path, arrays):
    image, label = arrays
    write_volume(tmp_path / "data" / "case.nrrd", image)
    write_volume(tmp_path / "data" / "case_label.mha", label)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps([{"image": "data/case.nrrd", "label": "data/case_label.mha"}]))
    items = datalist_from_args(_args(datalist=str(datalist)))
    assert items == [{"image": str(tmp_path / "data" / "case.nrrd"), "label": str(tmp_path / "data" / "case_label.mha")}]
    _, lab, _ = load_volume_pair(items[0]["image"], items[0]["label"], LABELS)
    np.testing.assert_array_equal(lab, label)
