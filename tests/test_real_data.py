"""The real regression set: a head with its brain mask prepared from a Debian package, and the `real` preset's folds.

The preparation test fetches ``insighttoolkit5-examples`` (1.7 MB) into the package cache once
(``$SEAPEFT_REAL_CACHE`` or ``.work/real-cache``, kept between runs) and skips, saying why, when the
Debian archive cannot be reached.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from seapeft_monailabel.data.real import LABELS, RealDataError, default_cache, itk_kmeans, prepare_real_data
from seapeft_monailabel.evaluate.bench import SEARCH, _jobs
from seapeft_monailabel.evaluate.bench_folds import leave_one_out
from seapeft_monailabel.evaluate.bench_presets import BenchPreset, bench_preset

SOURCE = itk_kmeans.SOURCE


@pytest.fixture(scope="module")
def package_root():
    """The unpacked ``insighttoolkit5-examples`` package in the cache (fetched the first time)."""
    try:
        root, _ = SOURCE.fetch(default_cache())
    except RealDataError as err:
        pytest.skip(f"cannot fetch the real-data package: {err}")
    return root


@pytest.fixture(scope="module")
def prepared(package_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    return out, prepare_real_data(out, [SOURCE], cache=default_cache())


def test_prepared_subject_is_a_3d_head_with_a_binary_brain_mask_on_its_grid(prepared):
    out, items = prepared
    (item,) = items
    image, label = nib.load(item["image"]), nib.load(item["label"])
    data, mask = np.asarray(image.dataobj), np.asarray(label.dataobj)
    assert data.ndim == 3 and min(data.shape) >= 40 and max(data.shape) <= 100  # a CPU-sized head
    assert mask.shape == data.shape and np.allclose(label.affine, image.affine)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S") and image.header.get_zooms() == (3.0, 3.0, 3.0)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert data[mask == 1].mean() > 3 * data[mask == 0].mean()  # the brain is brighter than the air around the head
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == LABELS == {"background": 0, "brain": 1} and meta["labelled"] == [SOURCE.id]
    (facts,) = meta["subjects"]
    assert facts["package"] == "insighttoolkit5-examples" and facts["version"] and facts["mask_rule"] == "mask > 0"
    assert facts["brain_ml"] == pytest.approx(mask.sum() * 27 / 1000, abs=0.1)


def test_resampling_keeps_the_brain_where_and_as_large_as_it_was(prepared, package_root):
    """The shipped mask (2 x 2 x 3 mm, coronal LSA) and the prepared one (3 mm RAS): same volume and centre in mm."""
    (item,) = prepared[1]
    shipped = sitk.ReadImage(str(package_root / SOURCE.mask)) > 0
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(shipped)
    volume_ml, centre_lps = stats.GetPhysicalSize(1) / 1000, np.asarray(stats.GetCentroid(1))
    label = nib.load(item["label"])
    mask = np.asarray(label.dataobj)
    centre_ras = nib.affines.apply_affine(label.affine, np.argwhere(mask).mean(axis=0))
    assert mask.sum() * 27 / 1000 == pytest.approx(volume_ml, rel=0.02)
    assert np.abs(centre_ras - centre_lps * [-1, -1, 1]).max() < 1.5


def test_a_second_preparation_reuses_the_datastore(prepared):
    out, items = prepared
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    assert prepare_real_data(out, [SOURCE], cache=default_cache()) == items
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before


def test_fetch_errors_name_the_package(tmp_path):
    missing = replace(SOURCE, id="nothing", package="seapeft-no-such-package")
    with pytest.raises(RealDataError, match="Debian package seapeft-no-such-package"):
        prepare_real_data(tmp_path / "out", [missing], cache=tmp_path / "cache")
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_real_preset_leaves_one_subject_out():
    bench = bench_preset("real")
    subjects = [{"id": f"s{i}", "image": f"s{i}.nii.gz", "label": f"s{i}_label.nii.gz"}
                for i in range(bench.pool + bench.test)]
    folds = leave_one_out(subjects, bench.folds)
    assert [test for _, test in folds] == [[s] for s in subjects]  # each subject is tested once
    labels = {"background": 0, "brain": 1}
    jobs = _jobs(bench, list(bench.methods), folds, "w.pt", labels, "cpu", Path("out"))
    assert {j["method"] for j in jobs} == {SEARCH, "head", "full", "lora"} and len(jobs) == 4 * bench.folds
    for job in jobs:
        (test,) = job["test"]
        assert test == subjects[job["fold"]] and test not in job["volumes"]  # no support or selection volume
        assert len(job["volumes"]) == job["shots"] + 1
    for fold in range(bench.folds):  # every method of a fold trains on the same volumes
        assert len({tuple(v["id"] for v in j["volumes"]) for j in jobs if j["fold"] == fold}) == 1
    with pytest.raises(ValueError, match="1..3 folds"):
        leave_one_out(subjects, 4)


def test_real_preset_settings_are_checked():
    with pytest.raises(ValueError, match="leave-one-subject-out"):
        BenchPreset("x", methods=("head",), shots=(1,), pool=2, test=2, data="real")
    with pytest.raises(ValueError, match="leave-one-subject-out"):
        BenchPreset("x", methods=("head",), shots=(1,), pool=2, test=1, folds=4, data="real")
    with pytest.raises(ValueError, match="'phantom' or 'real'"):
        BenchPreset("x", methods=("head",), data="dicom")
