"""Sites in the app without a server: safe names, the site rule, per-site models and their isolation."""

from __future__ import annotations

import sys

import pytest
import torch
from app_support import APP_DIR, TARGET_LABELS

sys.path.insert(0, str(APP_DIR))

from lib.configs.conf import AppConf, ConfError
from lib.infers.predictor import PredictorPicker
from lib.models.published import POINTER, publish
from lib.models.sites import SiteModels, known_sites, site_dir
from lib.sites.names import MAX_LENGTH, SiteNameError, safe_site_name
from lib.sites.resolve import NO_SITE, SiteResolver

from test_app_publish import _model_file, _run

def _publish(model_dir, run_id, seed):
    _run(model_dir, run_id, seed)
    return publish(model_dir, run_id, {"patch_size": [32, 32, 32]})


@pytest.fixture
def models(tmp_path):
    (tmp_path / "base").mkdir()
    conf = AppConf.from_conf({"base_model": str(_model_file(tmp_path / "base" / "model.pt", 0)), "device": "cpu",
                              "sites": "auto", "site_cache": "2"}, APP_DIR)
    return SiteModels(conf, tmp_path / "model" / "seapeft", conf.site_cache)


def test_site_names_are_sanitised_for_paths_or_refused():
    assert safe_site_name("St. Mary's Hospital", "x") == "st-mary-s-hospital"
    assert safe_site_name("../../etc/passwd", "x") == "etc-passwd"  # one folder name, never a path
    assert safe_site_name("Zürich CT 2", "x") == "zurich-ct-2"
    for bad in ("", "../..", "///", "☃"):
        with pytest.raises(SiteNameError, match="request parameter 'site'.*empty or unsafe"):
            safe_site_name(bad, "request parameter 'site'")
    with pytest.raises(SiteNameError, match=f"longer than {MAX_LENGTH}"):
        safe_site_name("a" * (MAX_LENGTH + 1), "x")


def test_conf_sites_keys():
    assert AppConf.from_conf({}, APP_DIR).sites == "none"
    conf = AppConf.from_conf({"sites": '{"img1": "North Hospital"}', "site_cache": "3"}, APP_DIR)
    assert (conf.sites, conf.site_map, conf.site_cache) == ("auto", {"img1": "north-hospital"}, 3)
    for bad, words in (({"sites": "some"}, "--conf sites: expected none, auto"),
                       ({"sites": '{"img1": "//"}'}, "--conf sites, image img1"),
                       ({"site_cache": "0"}, "--conf site_cache")):
        with pytest.raises(ConfError, match=words):
            AppConf.from_conf(bad, APP_DIR)


class _Datastore:
    """The two calls the site rule makes of a MONAI Label datastore."""

    def __init__(self, paths: dict, infos: dict):
        self.paths, self.infos = paths, infos

    def get_image_uri(self, image_id):
        return self.paths.get(image_id, "")

    def get_image_info(self, image_id):
        return self.infos.get(image_id, {})


def _dicom_series(folder, **tags):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPInstanceUID, ds.Modality = meta, meta.MediaStorageSOPInstanceUID, "MR"
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(str(folder / "1.dcm"), write_like_original=False)
    return folder


def test_site_rule_order(tmp_path):
    (tmp_path / "plain.nii.gz").write_bytes(b"")
    paths = {"series": str(_dicom_series(tmp_path / "series", StationName="MR-2", Manufacturer="Acme")),
             "beside": str(tmp_path / "beside.nii.gz"), "plain": str(tmp_path / "plain.nii.gz")}
    _dicom_series(tmp_path / "beside", InstitutionName="General", StationName="MR-2")  # DICOMweb: <id>/ beside
    datastore = _Datastore(paths, {"series": {"site": "ignored"}, "plain": {"site": "Client Site"}, "bad": {"site": ".."}})
    rule = SiteResolver("auto", {"mapped": "from-conf"})
    found = {i: rule.of_image(datastore, i) for i in ("series", "beside", "plain", "mapped", "none")}
    assert {i: (s.name, s.source) for i, s in found.items()} == {
        "series": ("mr-2", "DICOM StationName"), "beside": ("general", "DICOM InstitutionName"),
        "plain": ("client-site", "image info 'site'"), "mapped": ("from-conf", "--conf sites"), "none": (None, NO_SITE)}
    with pytest.raises(SiteNameError, match="'site' in the datastore info of image bad"):
        rule.of_image(datastore, "bad")
    asked = rule.of_request({"image": "plain", "site": "Other"}, datastore)
    assert (asked.name, asked.source) == ("other", "request parameter 'site'")
    assert rule.of_request({"image": paths["plain"]}, datastore).name is None  # a file sent with the request
    assert SiteResolver("none").of_request({"image": "plain"}, datastore).name is None
    with pytest.raises(SiteNameError, match="runs without sites"):
        SiteResolver("none").of_request({"image": "plain", "site": "x"}, datastore)


def test_each_site_is_served_its_own_model_and_others_never_change(models):
    shared = models.current(None)
    assert shared.kind == "base" and models.current("north") is shared  # no adapter yet: the shared model
    _publish(site_dir(models.model_dir, "north"), "n1", seed=1)
    _publish(site_dir(models.model_dir, "south"), "s1", seed=2)
    north, south = models.current("north"), models.current("south")
    assert (north.kind, north.site, south.site) == ("adapted", "north", "south") and north.sha256 != south.sha256
    assert known_sites(models.model_dir) == ["north", "south"]
    picker = PredictorPicker("torch", "fp32", capacity=3)
    image = torch.rand(1, 40, 36, 32)
    south_logits = picker(south).logits(image, 0.25)
    _publish(site_dir(models.model_dir, "north"), "n2", seed=3)  # north publishes again
    assert models.current("north").model_id.startswith("adapted:n2:")
    assert models.current("south") is south and models.current(None) is shared
    assert torch.equal(picker(models.current("south")).logits(image, 0.25), south_logits)


def test_site_cache_is_bounded_and_a_broken_site_falls_back_to_the_shared_model(models):
    for seed, site in enumerate(("a", "b", "c"), 1):
        _publish(site_dir(models.model_dir, site), f"r{site}", seed=seed)
        models.current(site)
    assert models.loaded() == ["b", "c"]  # capacity 2: the least recently used went
    models.current("b")
    assert models.loaded() == ["c", "b"]
    _model_file(site_dir(models.model_dir, "c") / "runs" / "rc" / "model.pt", seed=9)  # altered after publishing
    (site_dir(models.model_dir, "c") / POINTER).touch()
    served = models.current("c")
    assert served.kind == "base" and served.site is None and "site c:" in served.note and "checksum" in served.note
    with pytest.raises(SiteNameError):
        models.current("..")


def test_predictor_cache_keeps_the_models_used_last(models):
    picker = PredictorPicker("torch", "fp32", capacity=2)
    for seed, site in enumerate(("a", "b"), 1):
        _publish(site_dir(models.model_dir, site), f"r{site}", seed=seed)
    a = picker(models.current("a"))
    assert picker(models.current("a")) is a
    picker(models.current("b"))
    picker(models.current(None))
    assert picker(models.current("a")) is not a  # evicted by two others, built again
    assert picker.answering()["model"] == models.current("a").model_id
