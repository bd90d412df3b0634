"""Tests of the phantom generator, sites, datastore layout, sample-data and transforms (fast, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from seapeft_monailabel.data import datastore, sites
from seapeft_monailabel.data.phantoms import generate

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample-data"

# Plausible volumes (mL) for the anatomy map, generous enough for FOV cuts and size variation.
VOLUME_ML = {
    "liver": (500, 3000), "spleen": (60, 600), "kidney_left": (50, 350), "kidney_right": (50, 350),
    "spine": (150, 900), "aorta": (30, 200), "gallbladder": (10, 120), "stomach": (30, 600),
}


@pytest.fixture(scope="module")
def subjects():
    """Three subjects per site, generated once for the module."""
    return {name: [generate(name, 11, i) for i in range(3)] for name in sites.SITES}


def test_same_seed_identical_different_seed_different():
    a, b = generate("target", 5, 2), generate("target", 5, 2)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.label.tobytes() == b.label.tobytes()
    assert np.array_equal(a.affine, b.affine)
    c, d = generate("target", 6, 2), generate("target", 5, 3)
    for other in (c, d):
        assert other.image.shape != a.image.shape or not np.array_equal(other.image, a.image)


def test_sites_differ_for_same_seed():
    # The site name is part of the seed: a source subject never reappears in a target set.
    s, t = generate("source", 0, 0), generate("target", 0, 0)
    assert s.image.shape != t.image.shape or not np.array_equal(s.anatomy, t.anatomy)


def test_unknown_site_lists_valid_ones():
    with pytest.raises(ValueError, match="source.*target"):
        generate("hospital_x", 0, 0)


def test_site_tables_consistent():
    src = sites.get_site("source")
    assert src.seen == () and src.novel == ()
    for s in sites.SITES.values():
        assert s.labels["background"] == 0
        assert sorted(s.labels.values()) == list(range(len(s.labels)))
    for name in ("target", "target_ct"):
        t = sites.get_site(name)
        assert len(t.seen) == 1 and len(t.novel) == 1
        assert all(n in src.labels for n in t.seen), "seen structures must be labelled at the source"
        assert all(n not in src.labels for n in t.novel), "novel structures must not be labelled at the source"
        assert set(t.labels) == {"background", *t.seen, *t.novel}
    assert sites.label_names("target") == {"background": 0, "liver": 1, "gallbladder": 2}


def test_dtypes_shapes_affine(subjects):
    for name, phs in subjects.items():
        site = sites.get_site(name)
        for ph in phs:
            assert ph.image.dtype == np.float32 and ph.label.dtype == np.uint8
            assert ph.image.shape == ph.label.shape == ph.anatomy.shape == ph.body.shape
            assert site.shape_xy[0] <= ph.image.shape[0] <= site.shape_xy[1]
            assert site.shape_z[0] <= ph.image.shape[2] <= site.shape_z[1]
            assert np.allclose(np.diag(ph.affine)[:3], site.spacing)
            assert nib.aff2axcodes(ph.affine) == ("R", "A", "S")
            assert np.array_equal(ph.image, np.round(ph.image)), "intensities must be integer-valued"
            assert ph.image.min() >= site.value_range[0] and ph.image.max() <= site.value_range[1]


def test_labels_sane(subjects):
    names = {v: k for k, v in sites.ANATOMY.items()}
    for name, phs in subjects.items():
        site = sites.get_site(name)
        for ph in phs:
            ml = float(np.prod(ph.spacing)) / 1000.0
            for value, organ in names.items():
                if value == 0:
                    continue
                vol = float((ph.anatomy == value).sum()) * ml
                lo, hi = VOLUME_ML[organ]
                assert lo <= vol <= hi, f"{name} {ph.index}: {organ} volume {vol:.0f} mL outside {lo}..{hi}"
            assert not ph.anatomy[~ph.body].any(), "organs must lie inside the body"
            assert set(np.unique(ph.label).tolist()) == set(site.labels.values()), "every task label present"
            for organ, value in site.labels.items():  # task labels are the anatomy remapped
                assert np.array_equal(ph.label == value, ph.anatomy == sites.ANATOMY[organ]) or organ == "background"


def test_anatomy_plausible_positions(subjects):
    # Liver on the subject's right (+x in RAS), spleen on the left, kidneys posterior to the liver.
    for ph in subjects["source"]:
        com = {o: np.argwhere(ph.anatomy == v).mean(0) for o, v in sites.ANATOMY.items() if v}
        assert com["liver"][0] > com["spine"][0] > com["spleen"][0]
        assert com["kidney_right"][0] > com["spine"][0] > com["kidney_left"][0]
        assert com["kidney_right"][1] < com["liver"][1]
        assert com["gallbladder"][1] > com["spine"][1]


def test_domain_shift_between_source_and_target(subjects):
    def organ_means(ph):
        return {o: float(ph.image[ph.anatomy == v].mean()) for o, v in sites.ANATOMY.items() if v}

    src = [organ_means(p) for p in subjects["source"]]
    tgt = [organ_means(p) for p in subjects["target"]]
    # Contrast ordering differs: CT (portal venous) kidney > liver > gallbladder (bile ~ water);
    # MR (T2-like) gallbladder > spleen > liver (bile brightest, liver darkest abdominal organ).
    for m in src:
        assert m["kidney_left"] > m["liver"] > m["gallbladder"]
    for m in tgt:
        assert m["gallbladder"] > m["spleen"] > m["liver"]
    # Whole-volume statistics differ clearly (units, range, background).
    s = np.concatenate([p.image.ravel() for p in subjects["source"]])
    t = np.concatenate([p.image.ravel() for p in subjects["target"]])
    assert np.median(s) < -500 < 0 <= t.min()
    # After the shared percentile normalisation the same organ sits at very different levels.
    def normalised(ph, organ):
        lo, hi = np.percentile(ph.image, (0.5, 99.5))
        return float(np.clip((ph.image[ph.anatomy == sites.ANATOMY[organ]] - lo) / (hi - lo), 0, 1).mean())

    src_n = {o: np.mean([normalised(p, o) for p in subjects["source"]]) for o in ("liver", "gallbladder")}
    tgt_n = {o: np.mean([normalised(p, o) for p in subjects["target"]]) for o in ("liver", "gallbladder")}
    assert abs(src_n["liver"] - tgt_n["liver"]) > 0.2, (src_n, tgt_n)
    # the novel structure is darker than the seen one at the source but much brighter at the target
    assert src_n["gallbladder"] < src_n["liver"] and tgt_n["gallbladder"] > tgt_n["liver"] + 0.3, (src_n, tgt_n)


def test_write_and_read_datastore(tmp_path):
    items = datastore.write_sample_data(tmp_path, site="target", n=3, seed=3, n_unlabelled=1)
    assert len(items) == 2
    assert datastore.make_datalist(tmp_path) == items
    assert datastore.unlabelled_ids(tmp_path) == ["target_002"]
    img, lab, spacing = datastore.load_volume_pair(items[0]["image"], items[0]["label"], sites.label_names("target"))
    ph = generate("target", 3, 0)
    assert np.array_equal(img, ph.image) and np.array_equal(lab, ph.label)
    assert np.allclose(spacing, ph.spacing)
    assert np.allclose(nib.load(items[0]["image"]).affine, ph.affine)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "gallbladder": 2}
    with pytest.raises(ValueError, match="unknown label values"):
        datastore.load_volume_pair(items[0]["image"], items[0]["label"], {"background": 0, "liver": 1})


def test_load_volume_pair_errors(tmp_path):
    ph = generate("target", 3, 0)
    datastore.save_nifti(tmp_path / "a.nii.gz", ph.image, ph.affine, np.int16)
    datastore.save_nifti(tmp_path / "b.nii.gz", ph.label[:-1], ph.affine, np.uint8)
    datastore.save_nifti(tmp_path / "e.nii.gz", np.zeros_like(ph.label), ph.affine, np.uint8)
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="b.nii.gz.*differs"):
        datastore.load_volume_pair(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    with pytest.raises(ValueError, match="e.nii.gz.*empty"):
        datastore.load_volume_pair(tmp_path / "a.nii.gz", tmp_path / "e.nii.gz")
    with pytest.raises(ValueError, match="bad.nii.gz"):
        datastore.load_volume_pair(tmp_path / "bad.nii.gz")
    with pytest.raises(FileNotFoundError, match="missing"):
        datastore.load_volume_pair(tmp_path / "missing.nii.gz")
    datastore.save_nifti(tmp_path / "slice.nii.gz", ph.image[:, :, :1], ph.affine, np.int16)
    with pytest.raises(ValueError, match=r"slice.nii.gz: shape .* is a single 2D slice, not a 3D volume"):
        datastore.load_volume_pair(tmp_path / "slice.nii.gz")


def test_sample_data_matches_generator(tmp_path):
    meta_path = SAMPLE / datastore.DATASET_JSON
    if not meta_path.is_file():
        pytest.fail(f"{meta_path} missing: regenerate sample-data with the command in sample-data/README.md")
    meta = json.loads(meta_path.read_text())
    n = len(meta["indices"])
    datastore.write_sample_data(tmp_path, site=meta["site"], n=n, seed=meta["seed"], n_unlabelled=len(meta["unlabelled"]))
    assert json.loads((tmp_path / datastore.DATASET_JSON).read_text()) == meta
    assert datastore.list_ids(SAMPLE) == datastore.list_ids(tmp_path)
    assert datastore.unlabelled_ids(SAMPLE) == meta["unlabelled"] and len(meta["unlabelled"]) >= 1
    for sid in datastore.list_ids(SAMPLE):
        for path in (datastore.image_path, datastore.label_path):
            shipped, fresh = path(SAMPLE, sid), path(tmp_path, sid)
            assert shipped.is_file() == fresh.is_file()
            if shipped.is_file():
                a, b = nib.load(str(shipped)), nib.load(str(fresh))
                assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), shipped
                assert np.allclose(a.affine, b.affine), shipped


def test_train_transform_patches(tmp_path):
    torch = pytest.importorskip("torch")
    from seapeft_monailabel.data.transforms import eval_transforms, train_transforms

    items = datastore.write_site(tmp_path, "target", n=1, seed=4)
    patch = (48, 48, 32)
    t = train_transforms(patch, num_samples=4, seed=0)
    calls = [t(dict(items[0])) for _ in range(3)]
    fg = 0
    for out in calls:
        assert len(out) == 4
        for p in out:
            assert tuple(p["image"].shape) == (1, *patch) and tuple(p["label"].shape) == (1, *patch)
            assert p["image"].dtype == torch.float32
            fg += int(p["label"].max() > 0)
    assert fg >= len(calls) * 4 / 2, "at least half of the patches must contain foreground"
    assert not torch.equal(calls[0][0]["image"], calls[1][0]["image"]), "each call draws new patches"
    ev = eval_transforms()(dict(items[0]))
    ph = generate("target", 4, 0)
    assert tuple(ev["image"].shape) == (1, *ph.image.shape)
    assert float(ev["image"].min()) == 0.0 and float(ev["image"].max()) == 1.0
    assert np.array_equal(ev["label"][0].numpy().astype(np.uint8), ph.label)


def test_generation_is_fast():
    import time

    generate("source", 0, 0)
    t0 = time.perf_counter()
    generate("source", 0, 1)
    assert time.perf_counter() - t0 < 2.0  # well under 1 s on 2 cores; margin for loaded CI machines
