"""Write a 3D volume (NIfTI, NRRD, MetaImage file) as a DICOM CT or MR image series with correct geometry.

Geometry. A volume's affine (as read: NIfTI's, or the RAS one MONAI derives for NRRD and MetaImage)
maps voxel indices (i, j, k) to RAS millimetres; DICOM uses LPS. With
``A = diag(-1, -1, 1, 1) @ affine`` the DICOM attributes of slice ``k`` are

* ImageOrientationPatient = [A[:3, 0] / |A[:3, 0]|, A[:3, 1] / |A[:3, 1]|] (along a row, i grows;
  down a column, j grows), so the pixel array of slice k is ``volume[:, :, k].T`` (shape (J, I));
* PixelSpacing = [|A[:3, 1]|, |A[:3, 0]|] (row spacing first, as DICOM orders it);
* ImagePositionPatient = A @ (0, 0, k, 1); SliceThickness = SpacingBetweenSlices = |A[:3, 2]|.

The k axis is written along the slice normal (row x column cosines): a volume whose k axis points
the other way is flipped first (same physical image), so every DICOM reader stacks the slices in
the file order. Intensities are stored as int16 with RescaleSlope/RescaleIntercept: integer volumes
that fit int16 exactly (slope 1, intercept 0), others linearly quantised over their range (the
error is at most slope / 2). UIDs are derived from the volume's voxels and grid, so converting the same
volume twice gives the same UIDs (a second upload to a PACS replaces rather than duplicates).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

#: modality -> (SOP Class UID, name)
SOP_CLASSES = {"CT": ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
               "MR": ("1.2.840.10008.5.1.4.1.1.4", "MR Image Storage")}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
INT16 = np.iinfo(np.int16)


class SeriesError(ValueError):
    """The volume cannot be written as a DICOM series; the message names the file and the problem."""


@dataclass(frozen=True)
class SeriesInfo:
    """What was written: UIDs, the files, and the slice grid (J rows, I columns, K slices)."""

    study_uid: str
    series_uid: str
    files: tuple[Path, ...]
    rows: int
    columns: int
    slices: int
    modality: str


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _quantise(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """int16 values and (slope, intercept) with ``volume ~= stored * slope + intercept``."""
    if np.issubdtype(volume.dtype, np.integer) and volume.size and INT16.min <= volume.min() and volume.max() <= INT16.max:
        return volume.astype(np.int16), 1.0, 0.0
    low, high = float(np.min(volume)), float(np.max(volume))
    slope = (high - low) / (INT16.max - INT16.min) if high > low else 1.0
    stored = np.round((volume.astype(np.float64) - low) / slope) + INT16.min
    return np.clip(stored, INT16.min, INT16.max).astype(np.int16), slope, low - INT16.min * slope


def _on_normal(volume: np.ndarray, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip the k axis when it points against the slice normal; returns (volume, LPS affine)."""
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if float(np.dot(normal, lps[:3, 2])) >= 0:
        return volume, lps
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, volume.shape[2] - 1
    return volume[:, :, ::-1], lps @ flip


def _base_dataset(meta: FileMetaDataset, modality: str, patient_id: str, patient_name: str,
                  study_uid: str, series_uid: str, frame_uid: str, description: str, when: datetime) -> FileDataset:
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality = modality
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.StudyDescription = ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.Manufacturer = "seapeft-monailabel"
    ds.PositionReferenceIndicator = ""
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    if modality == "CT":
        ds.KVP, ds.RescaleType = "", "HU"
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "3D", "", "", ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def write_series(volume: np.ndarray, affine: np.ndarray, out_dir: str | Path, *, modality: str = "MR",
                 patient_id: str = "SEAPEFT", patient_name: str = "", description: str = "seapeft volume",
                 study_uid: str | None = None, series_uid: str | None = None, identity: str = "",
                 when: datetime | None = None) -> SeriesInfo:
    """Write ``volume`` (I, J, K) with RAS ``affine`` (4, 4) as K DICOM files ``out_dir/slice_0000.dcm``...

    ``identity`` seeds the UIDs that are not given (same identity -> same UIDs). Returns :class:`SeriesInfo`.
    """
    if modality not in SOP_CLASSES:
        raise SeriesError(f"modality {modality!r}: expected one of {', '.join(SOP_CLASSES)}")
    volume = np.asarray(volume)
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise SeriesError(f"{identity or 'volume'}: expected a 3D volume, got shape {volume.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise SeriesError(f"{identity or 'volume'}: the affine is not an invertible 4x4 matrix:\n{affine}")
    volume, lps = _on_normal(volume, RAS_TO_LPS @ affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    orientation = np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])
    stored, slope, intercept = _quantise(volume)
    study_uid = study_uid or _uid(identity, "study")
    series_uid = series_uid or _uid(identity, "series", modality)
    frame_uid = _uid(identity, "frame")
    when = when or datetime.now()
    physical = stored.astype(np.float64) * slope + intercept
    low, high = np.percentile(physical, [1, 99]) if physical.size else (0.0, 1.0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASSES[modality][0]
        meta.MediaStorageSOPInstanceUID = _uid(series_uid, k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = _base_dataset(meta, modality, patient_id, patient_name, study_uid, series_uid, frame_uid,
                           description, when)
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = k + 1
        position = lps @ np.array([0.0, 0.0, k, 1.0])
        ds.ImagePositionPatient = [f"{v:.6g}" for v in position[:3]]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in orientation]
        ds.SliceLocation = f"{float(np.dot(position[:3], np.cross(orientation[:3], orientation[3:]))):.6g}"
        ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{spacing[2]:.6g}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        ds.WindowCenter, ds.WindowWidth = f"{(low + high) / 2:.6g}", f"{max(high - low, 1.0):.6g}"
        pixels = np.ascontiguousarray(stored[:, :, k].T)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        path = out_dir / f"slice_{k:04d}.dcm"
        ds.save_as(path, write_like_original=False)
        files.append(path)
    return SeriesInfo(study_uid, series_uid, tuple(files), stored.shape[1], stored.shape[0], stored.shape[2], modality)


def volume_to_series(volume_file: str | Path, out_dir: str | Path, *, modality: str = "MR",
                     patient_id: str | None = None, description: str | None = None) -> SeriesInfo:
    """Convert a volume file (NIfTI, NRRD, MetaImage: what :func:`..data.volumes.read_volume` reads) into a
    DICOM series under ``out_dir`` (see :func:`write_series`).

    Integer-valued volumes are stored exactly. The patient id and description default to the file's id;
    UIDs derive from the SHA-256 of the voxels and the grid (the same volume in another format gets the
    same UIDs).
    """
    from ..data.volumes import read_volume, split_volume_name

    volume_file = Path(volume_file)
    if volume_file.is_dir():
        raise SeriesError(f"{volume_file}: a folder (a DICOM series already?); give a volume file")
    try:
        volume, affine = read_volume(volume_file)
    except (ValueError, FileNotFoundError) as err:
        raise SeriesError(str(err)) from None
    if volume.size and np.array_equal(volume, np.round(volume)):
        volume = volume.astype(np.int64)
    split = split_volume_name(volume_file.name)
    name = split[0] if split else volume_file.name
    digest = hashlib.sha256(np.ascontiguousarray(volume).tobytes() + np.asarray(affine).tobytes()).hexdigest()
    try:
        return write_series(volume, affine, out_dir, modality=modality, patient_id=patient_id or name,
                            patient_name=name, description=description or name, identity=digest)
    except SeriesError as err:
        raise SeriesError(f"{volume_file}: {err}") from None


def read_series_array(files: list[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read a series written by :func:`write_series` with pydicom: (volume (I, J, K) float64, RAS affine (4, 4)).

    Slices are ordered along the normal; used to check a series without ITK.
    """
    datasets = [pydicom.dcmread(str(f)) for f in files]
    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    datasets.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=np.float64), normal)))
    first = np.array(datasets[0].ImagePositionPatient, dtype=np.float64)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    step = (np.array(datasets[-1].ImagePositionPatient, dtype=np.float64) - first) / max(len(datasets) - 1, 1)
    if len(datasets) == 1:
        step = normal * float(datasets[0].SliceThickness)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = orientation[:3] * col_spacing, orientation[3:] * row_spacing, step, first
    volume = np.stack([d.pixel_array.T * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets], axis=2)
    return volume, RAS_TO_LPS @ lps
