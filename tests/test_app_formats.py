"""NRRD, NIfTI (.nii, uncompressed) and MetaImage (.mha) datastores through the real server and client.

One server per format (``monailabel start_server``, free loopback port) over sample-data images and
labels converted with SimpleITK, each cropped to a 64x56x40 box around its structures (fewer windows
to infer and train on, same anatomy and scale; the box keeps its place in space).

For each format: inference answers a label file of the input's format (checked with SimpleITK's own
file reader) on the input's grid; a label saved in that format lands in ``labels/final`` and in the
training datalist; a bad upload is refused with a message naming the file it would have become.

To keep the suite short, two paths run for one format each. NRRD: an uploaded image (in no datastore,
as Slicer sends one) is answered in NRRD, an image upload is stored as NRRD and a 2D one is refused by
name. MetaImage (which MONAI Label does not list by default, so the app's datastore in the training
subprocess must): a short training run publishes an adapted model and inference answers with it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException, MONAILabelUtils
from app_support import SAMPLE_DATA, TARGET_LABELS, Server, base_model_for_tests, write_generated_subject, write_nifti
from volume_files import convert_volume, crop_box, write_volume

from seapeft_monailabel.data import generate, read_volume

pytestmark = pytest.mark.server

#: extension -> the ITK image IO that must read the answers (the file's real format, not only its name)
FORMATS = {".nrrd": "NrrdImageIO", ".nii": "NiftiImageIO", ".mha": "MetaImageIO"}
LABELLED = ["target_000", "target_001", "target_002"]
UNLABELLED = "target_006"  # labelled through the server in test_save_label_in_the_format
UPLOAD = ".nrrd"
FULL_LOOP = ".mha"
TRAIN_TIMEOUT_S = 600
#: a short run of the tiny preset: the search probes, allocates once and refines; enough to publish
SHORT_TRAIN = {"preset": "tiny", "steps": 4, "refine_steps": 1}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return base_model_for_tests(tmp_path_factory.mktemp("base_model"))


@pytest.fixture(scope="module", params=list(FORMATS), ids=[e.lstrip(".") for e in FORMATS])
def store(request, tmp_path_factory, base_model):
    ext = request.param
    work = tmp_path_factory.mktemp(f"formats_{ext.lstrip('.')}")
    studies = work / "datastore"
    for sid in LABELLED:
        label = SAMPLE_DATA / "labels" / "final" / f"{sid}.nii.gz"
        box = crop_box(read_volume(label)[0])
        convert_volume(SAMPLE_DATA / f"{sid}.nii.gz", studies / f"{sid}{ext}", box)
        convert_volume(label, studies / "labels" / "final" / f"{sid}{ext}", box)
    truth = generate("target", 2025, 6)  # the true label of sample-data's unlabelled target_006
    unlabelled_box = crop_box(truth.label)
    convert_volume(SAMPLE_DATA / f"{UNLABELLED}.nii.gz", studies / f"{UNLABELLED}{ext}", unlabelled_box)
    held_out = write_generated_subject(work / "held_out_nifti", 8)
    upload = convert_volume(held_out["image"], work / "held_out" / f"target_008{ext}",
                            crop_box(read_volume(held_out["label"])[0]))
    server = Server(work, studies, {"base_model": str(base_model), "auto_scoring": "false", "export": "none",
                                    "runtime": "torch"})
    try:
        server.wait_ready()
        yield {"ext": ext, "studies": studies, "upload": upload, "server": server, "truth": (truth, unlabelled_box),
               "client": MONAILabelClient(server.url, tmpdir=str(work / "client"))}
    finally:
        server.stop()


def _assert_label_on_grid(result: str, image, ext: str) -> None:
    """``result`` is a label file in ``ext``'s format on the grid of ``image``, holding task label values."""
    assert result.endswith(ext) and sitk.ImageFileReader.GetImageIOFromFileName(result) == FORMATS[ext]
    label, reference = sitk.ReadImage(result), sitk.ReadImage(str(image))
    assert label.GetSize() == reference.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(label.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(label.GetDirection(), reference.GetDirection(), atol=1e-6)
    values = set(np.unique(sitk.GetArrayFromImage(label)).tolist())
    assert values <= set(TARGET_LABELS.values()) and len(values) > 1


def _error(call) -> str:
    with pytest.raises(MONAILabelClientException) as info:
        call()
    return info.value.msg


def test_infer_answers_in_the_input_format_on_its_grid(store):
    client, ext = store["client"], store["ext"]
    assert {"target_000", UNLABELLED} <= set(client.datastore()["objects"])  # listed, whatever the format
    path, params = client.infer("seapeft", "target_000", {})
    _assert_label_on_grid(path, store["studies"] / f"target_000{ext}", ext)
    assert params["model"]["kind"] == "base" and params["label_names"] == TARGET_LABELS


def test_uploaded_images_are_answered_and_stored_in_their_format(store, tmp_path):
    if store["ext"] != UPLOAD:
        pytest.skip(f"uploads run once, with {UPLOAD} (the other formats share its code)")
    client, ext = store["client"], store["ext"]
    path, _ = client.infer("seapeft", "", {}, file=str(store["upload"]))  # an image in no datastore
    _assert_label_on_grid(path, store["upload"], ext)
    assert client.upload_image(str(store["upload"]), image_id="target_008")["image"] == "target_008"
    assert (store["studies"] / f"target_008{ext}").read_bytes() == store["upload"].read_bytes()
    flat = write_volume(tmp_path / f"flat{ext}", np.zeros((16, 16, 1), np.int16))
    message = _error(lambda: client.upload_image(str(flat), image_id="flat_upload"))
    assert "Status: 400" in message and f"flat_upload{ext} (upload)" in message and "3D" in message
    assert not (store["studies"] / f"flat_upload{ext}").exists()


def test_save_label_in_the_format(store, tmp_path):
    client, studies, ext = store["client"], store["studies"], store["ext"]
    phantom, box = store["truth"]
    nifti = write_nifti(tmp_path / "truth.nii.gz", phantom.label.astype(np.uint8), phantom.affine)
    label = convert_volume(nifti, tmp_path / f"{UNLABELLED}{ext}", box)
    assert client.save_label(UNLABELLED, str(label), tag="final")["image"] == UNLABELLED
    saved = studies / "labels" / "final" / f"{UNLABELLED}{ext}"
    np.testing.assert_array_equal(read_volume(saved)[0], read_volume(label)[0])
    _, body, _, _ = MONAILabelUtils.http_method("GET", store["server"].url, "/datastore/?output=train")
    assert {"image": str(studies / f"{UNLABELLED}{ext}"), "label": str(saved)} in json.loads(body)
    assert client.info()["datastore"]["completed"] == len(LABELLED) + 1

    stored = studies / "labels" / "final" / f"target_000{ext}"
    before = stored.read_bytes()
    empty = tmp_path / f"empty{ext}"
    sitk.WriteImage(sitk.ReadImage(str(stored)) * 0, str(empty))  # on the image's grid, no foreground
    message = _error(lambda: client.save_label("target_000", str(empty), tag="final"))
    assert "Status: 400" in message and f"labels/final/target_000{ext} (upload)" in message and "empty" in message
    assert stored.read_bytes() == before


@pytest.mark.slow
def test_train_then_infer_with_the_adapted_model(store):
    if store["ext"] != FULL_LOOP:
        pytest.skip(f"the training loop runs once, on the {FULL_LOOP} datastore (the other formats share its code)")
    client, ext = store["client"], store["ext"]
    client.train_start("seapeft", SHORT_TRAIN)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while (status := client.train_status())["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    adapter = client.info()["seapeft"]["seapeft"]["adapter"]
    assert adapter["shots"] == len(LABELLED)  # the saved target_006 label counts; one volume goes to the audits
    path, params = client.infer("seapeft", "target_001", {})
    assert params["model"]["kind"] == "adapted" and params["model"]["id"] == adapter["id"]
    _assert_label_on_grid(path, store["studies"] / f"target_001{ext}", ext)
