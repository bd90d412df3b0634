"""The one predictor (runtime choice, sliding window) and ``seapeft predict`` on small crops of sample volumes.

The model is the shipped base model (a UNet trained on the source site, 48^3 window); crops of
48 x 56 x 40 voxels keep each prediction to a few windows.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from monai.inferers import sliding_window_inference

from seapeft_monailabel.cli import main
from seapeft_monailabel.inference import predict_file, torch_predictor
from seapeft_monailabel.quant import load_predictor
from seapeft_monailabel.inference import files as files_module
from seapeft_monailabel.models import NetworkSpec, build_network

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sample-data" / "base_model" / "model.pt"
CROP = (48, 56, 40)


def _crop(source: Path, target: Path) -> Path:
    """The centre ``CROP`` voxels of ``source`` written to ``target`` (NIfTI with its affine)."""
    volume = nib.load(str(source))
    start = [(n - m) // 2 for n, m in zip(volume.shape, CROP)]
    nib.save(volume.slicer[tuple(slice(s, s + m) for s, m in zip(start, CROP))], str(target))
    return target


@pytest.fixture(scope="module")
def base():
    return load_predictor(MODEL, runtime="torch", device="cpu")


@pytest.fixture
def image(tmp_path) -> Path:
    return _crop(ROOT / "sample-data" / "target_003.nii.gz", tmp_path / "case_a.nii.gz")


def test_predictor_logits_are_monai_gaussian_sliding_window():
    torch.manual_seed(0)
    spec = NetworkSpec(name="unet", out_channels=3, channels=(4, 8), strides=(2,), num_res_units=0)
    network = build_network(spec).eval()
    predictor = torch_predictor(network, (16, 16, 16), labels={"background": 0, "a": 1, "b": 2})
    image = torch.rand(1, 30, 21, 17)
    with torch.no_grad():
        expected = sliding_window_inference(image[None], (16, 16, 16), 1, network, overlap=0.25, mode="gaussian")[0]
    assert torch.allclose(predictor.logits(image), expected, atol=1e-6)
    assert torch.equal(predictor.class_map(image), expected.argmax(0))
    assert torch.allclose(predictor.probabilities(image).sum(0), torch.ones(30, 21, 17), atol=1e-5)


def test_runtime_choice_without_an_export(caplog):
    with caplog.at_level(logging.WARNING, logger="seapeft_monailabel.quant.choose"):
        auto = load_predictor(MODEL, device="cpu")
        assert (auto.runtime, auto.precision, auto.note) == ("torch", "fp32", None)  # nothing exported: no note
        assert not caplog.records
        int8 = load_predictor(MODEL, "int8", device="cpu")
        asked = load_predictor(MODEL, "fp32", "openvino", device="cpu")
    assert (int8.runtime, int8.precision) == ("torch", "fp32") and "serving.json" in int8.note
    assert asked.runtime == "torch" and "OpenVINO FP32 cannot answer" in asked.note
    assert len(caplog.records) == 2
    assert auto.roi_size == (48, 48, 48) and auto.labels["liver"] == 1
    with pytest.raises(ValueError, match="runtime"):
        load_predictor(MODEL, runtime="tensorrt")


def test_predict_writes_a_label_file_on_the_image_grid(image, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "--model", str(MODEL), "--image", str(image), "--out", str(out), "--runtime", "torch"]) == 0
    assert "torch fp32 answers" in capsys.readouterr().out
    written = nib.load(str(out / "case_a.nii.gz"))
    source = nib.load(str(image))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
    values = np.asarray(written.dataobj)
    labels = torch.load(MODEL, map_location="cpu", weights_only=True, mmap=True)["labels"]
    assert written.get_data_dtype() == np.uint8 and set(np.unique(values)) <= set(labels.values())
    assert values.any()  # the model finds organs in an abdominal crop
    assert sorted(p.name for p in out.iterdir()) == ["case_a.nii.gz"]  # no staging folder left


def test_a_run_trained_with_resampling_predicts_on_the_image_grid(image, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(MODEL, run / "model.pt")
    (run / "config.yaml").write_text(yaml.safe_dump({"config": {"spacing": [2.0, 2.5, 3.0], "patch_size": [32] * 3}}))
    predictor = load_predictor(run, runtime="torch", device="cpu")
    assert predictor.info["spacing"] == (2.0, 2.5, 3.0) and predictor.roi_size == (32, 32, 32)
    written = nib.load(str(predict_file(predictor, image, tmp_path / "out")))
    source = nib.load(str(image))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)


def _same_grid(result: sitk.Image, volume: sitk.Image) -> None:
    assert result.GetSize() == volume.GetSize()
    np.testing.assert_allclose(result.GetOrigin(), volume.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(result.GetDirection(), volume.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(result.GetSpacing(), volume.GetSpacing(), atol=1e-6)


def test_nrrd_in_gives_nrrd_out_on_the_same_grid(base, image, tmp_path):
    volume = sitk.ReadImage(str(image))
    sitk.WriteImage(volume, str(tmp_path / "case_b.nrrd"))
    written = predict_file(base, tmp_path / "case_b.nrrd", tmp_path / "out")
    assert written == tmp_path / "out" / "case_b.nrrd"
    result = sitk.ReadImage(str(written))
    _same_grid(result, volume)
    # the same array on the same grid as the NIfTI: the same prediction, whatever the format
    from_nifti = np.asarray(nib.load(str(predict_file(base, image, tmp_path / "nifti"))).dataobj)
    assert np.array_equal(sitk.GetArrayFromImage(result).transpose(2, 1, 0), from_nifti)

    volume.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))  # rotated about z: RAS swaps two axes
    volume.SetOrigin((12.5, -40.0, 3.0))
    sitk.WriteImage(volume, str(tmp_path / "case_c.nrrd"))
    _same_grid(sitk.ReadImage(str(predict_file(base, tmp_path / "case_c.nrrd", tmp_path / "out"))), volume)


def test_corrupt_input_gives_a_clear_error_and_no_file(image, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    image.rename(folder / image.name)
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    out = tmp_path / "out"
    code = main(["predict", "--model", str(MODEL), "--images", str(folder), "--out", str(out), "--runtime", "torch"])
    assert code == 2
    error = capsys.readouterr().err
    assert "1 of 2 images" in error and f"{folder / 'broken.nii.gz'}: cannot read" in error
    assert sorted(p.name for p in out.iterdir()) == ["case_a.nii.gz"]
    code = main(["predict", "--model", str(MODEL), "--image", str(folder / "broken.nii.gz"), "--out", str(out)])
    assert code == 2 and "broken.nii.gz: cannot read" in capsys.readouterr().err


def test_interrupted_write_leaves_no_file(base, image, tmp_path, monkeypatch):
    class Interrupted:
        """A writer stopped (Ctrl-C) after writing half of its file."""

        def __init__(self, output_ext, **kwargs):
            self.ext = output_ext

        def __call__(self, img, filename):
            Path(f"{filename}{self.ext}").write_bytes(b"half a file")
            raise KeyboardInterrupt

    monkeypatch.setattr(files_module, "SaveImage", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_file(base, image, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
