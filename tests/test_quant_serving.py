"""CPU serving and INT8: a small adapted UNet through export, OpenVINO FP32/INT8, fallbacks and the CLI.

One module-scoped export (a tiny UNet trained for a few dozen steps on sample-data, with a merged LoRA
unit, an unmerged bottleneck adapter and an unmerged intensity curve on the first block's input) serves
every test; the fall-back tests work on copies.

Tolerances, on a real 32^3 patch of sample-data:
- OpenVINO FP32 vs PyTorch: max |logit difference| <= 1e-3 * max(1, max |logit|) (float rounding only);
- OpenVINO INT8 vs OpenVINO FP32: relative L2 error of the logits <= 0.2 and argmax agreement >= 90 %
  of voxels (8-bit weights and activations through ~10 convolutions).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss

from seapeft_monailabel.cli import main
from seapeft_monailabel.data import label_names, make_datalist, train_transforms
from seapeft_monailabel.quant import load_predictor
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names, save_model_file
from seapeft_monailabel.peft import UnitRegistry, load_merged_model, manifest_from_dict
from seapeft_monailabel.quant import QuantizationError, compare, count_quantized_convolutions, export_serving_models
from seapeft_monailabel.quant.convert import compile_model, read_ir
from seapeft_monailabel.quant.ptq import calibration_patches
from seapeft_monailabel.quant.qat import quantization_aware_training
from seapeft_monailabel.quant.runtime import OpenVINOPredictor, convolution_precisions, require_quantized

ROOT = Path(__file__).resolve().parents[1]
ROI = (32, 32, 32)
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
LOGGER = "seapeft_monailabel.quant.choose"


def _train_adapted_unet(out: Path, items: list[dict]) -> Path:
    """Train a tiny UNet briefly, add a LoRA unit (merged), a bottleneck adapter and an intensity curve on the
    first block's input (both left unmerged), save it."""
    torch.manual_seed(0)
    network = build_network(SPEC)
    chain = train_transforms(ROI, num_samples=2, augment=False, seed=0)
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    for step in range(30):
        batch = chain(items[step % len(items)])
        image = torch.stack([b["image"] for b in batch])
        label = torch.stack([b["label"] for b in batch])
        loss = loss_fn(network(image), label)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    heads = head_module_names(SPEC, network)
    manifest = manifest_from_dict({"name": "quant-test", "sites": [
        {"pattern": r"model\.1\.submodule\.0\.conv\.unit0\.conv", "families": {"lora": ["r2"]}},
        {"pattern": r"model\.0\.conv\.unit0\.conv", "families": {"adapter": ["b4"]}},
        {"pattern": r"model\.0", "families": {"curve": ["k8"]}},
    ]})
    registry = UnitRegistry(network.eval(), manifest, heads)
    registry.enable_only(list(registry.units))
    with torch.no_grad():
        for unit in registry.units.values():
            for p in unit.parameters():
                p.add_(0.01 * torch.randn_like(p))
    merged, unmerged = registry.merged_network()
    assert len(unmerged) == 2, "the adapter and the curve must stay unmerged for this test"
    units = [{"site": registry.unit(n).site, "family": registry.unit(n).family, "level": registry.unit(n).level}
             for n in unmerged]
    out.mkdir(parents=True, exist_ok=True)
    save_model_file(out / "model.pt", merged.state_dict(), SPEC, label_names("target"), units)
    return out


@pytest.fixture(scope="module")
def items():
    return make_datalist(str(ROOT / "sample-data"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, items):
    """A run folder with model.pt and its exported FP32/INT8 models; returns (folder, index)."""
    run = _train_adapted_unet(tmp_path_factory.mktemp("run"), items[:3])
    index = export_serving_models(run / "model.pt", run, items[:3], ROI, validation_datalist=items[3:5],
                                  n_patches=8, qat_steps=4, threads=2)
    return run, index


@pytest.fixture(scope="module")
def patch(items):
    """A real (1, 1, 32, 32, 32) patch of a sample volume not used for calibration."""
    sample = train_transforms(ROI, num_samples=1, augment=False, seed=3)(items[5])[0]
    return sample["image"][None]


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def test_export_writes_both_models_with_quantized_convolutions(exported):
    run, index = exported
    saved = json.loads((run / "serving.json").read_text())
    assert saved["model_sha256"] == index["model_sha256"] and saved["roi_size"] == list(ROI)
    for precision in ("fp32", "int8"):
        xml = run / saved["models"][precision]["xml"]
        assert xml.is_file() and xml.with_suffix(".bin").is_file()
    int8 = saved["models"]["int8"]
    assert int8["quantized_convolutions"] > 0
    assert count_quantized_convolutions(compile_model(read_ir(run / int8["xml"]))) == int8["quantized_convolutions"]
    assert saved["models"]["fp32"]["weight_bytes"] == saved["torch_weight_bytes"]
    assert saved["models"]["fp32"]["weight_bytes"] / int8["weight_bytes"] > 3.0
    assert {t["ends"] for t in saved["dice"]["tried"] if t["stage"] == "ptq"} == {"int8", "fp32"}
    assert saved["dice"]["held_out"] and len(saved["dice"]["fp32"]) == 2
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no staging folder, no temporary file


def test_unmerged_adapter_stays_fp32(exported):
    run, index = exported
    model = read_ir(run / index["models"]["int8"]["xml"])
    quantized_inputs = {t.get_node().get_friendly_name() for op in model.get_ordered_ops()
                        if op.get_type_name() == "FakeQuantize"
                        for t in op.output(0).get_target_inputs()}
    adapter_ops = [n for n in quantized_inputs if "peft_units" in n]
    assert not adapter_ops, f"adapter ops quantized: {adapter_ops}"
    assert any("peft_units" in op.get_friendly_name() for op in model.get_ordered_ops())


def test_openvino_fp32_agrees_with_pytorch(exported, patch):
    run, _ = exported
    network, _ = load_merged_model(run / "model.pt")
    served = load_predictor(run, "fp32", "openvino", threads=2)
    assert served.runtime == "openvino" and served.precision == "fp32" and served.note is None
    with torch.no_grad():
        reference = network(patch)
    converted = served.windows(patch)
    assert converted.shape == reference.shape == (1, 3, *ROI)
    assert float((converted - reference).abs().max()) <= 1e-3 * max(1.0, float(reference.abs().max()))


def test_openvino_int8_agrees_with_fp32(exported, patch):
    run, _ = exported
    fp32 = load_predictor(run, "fp32", "openvino", threads=2).windows(patch)
    served = load_predictor(run, "int8", "openvino", threads=2)
    assert served.precision == "int8" and served.info["quantized_convolutions"] > 0
    int8 = served.windows(patch)
    relative = float(torch.linalg.vector_norm(int8 - fp32) / torch.linalg.vector_norm(fp32))
    agreement = float((int8.argmax(1) == fp32.argmax(1)).float().mean())
    assert relative <= 0.2, relative
    assert agreement >= 0.9, agreement


def test_sliding_window_inference_with_served_int8(exported, items):
    run, index = exported
    served = load_predictor(run, "int8", device="cpu")  # auto: INT8 exists only in OpenVINO
    assert served.runtime == "openvino" and served.labels == label_names("target") and served.note is None
    assert served.describe() == {"runtime": "openvino", "precision": "int8", "roi_size": list(ROI),
                                 "int8_dice_drop_points": index["models"]["int8"]["dice_drop_points"],
                                 "int8_p_value": index["models"]["int8"]["p_value"]}
    image = torch.rand(1, 50, 41, 37)
    logits = sliding_window_inference(image[None], served.roi_size, 1, served.windows, overlap=0.25, mode="gaussian")
    assert logits.shape == (1, 3, 50, 41, 37)
    threads = torch.get_num_threads()
    assert torch.allclose(served.logits(image), logits[0], atol=1e-5)
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="roi_size"):
        served.windows(torch.rand(1, 1, 16, 16, 16))


def test_auto_serves_the_export_on_the_cpu(exported):
    run, _ = exported
    auto = load_predictor(run / "model.pt", device="cpu")
    assert (auto.runtime, auto.precision, auto.note, auto.roi_size) == ("openvino", "fp32", None, ROI)
    asked = load_predictor(run, runtime="torch", device="cpu")
    assert (asked.runtime, asked.precision, asked.note, asked.roi_size) == ("torch", "fp32", None, ROI)


def _one_warning(caplog) -> str:
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0].getMessage()


@pytest.mark.parametrize("damage", ["garbage_bin", "garbage_xml", "missing_xml", "missing_index"])
def test_damaged_int8_falls_back_to_torch_fp32(exported, tmp_path, caplog, damage):
    run = _copy(exported[0], tmp_path)
    xml = run / exported[1]["models"]["int8"]["xml"]
    if damage == "garbage_bin":
        xml.with_suffix(".bin").write_bytes(b"\x00garbage" * 100)
    elif damage == "garbage_xml":
        xml.write_text("<net>this is not an IR")
    elif damage == "missing_xml":
        xml.unlink()
    else:
        (run / "serving.json").unlink()
    with caplog.at_level(logging.WARNING):
        served = load_predictor(run, "int8", "openvino")
    assert served.runtime == "torch" and served.precision == "fp32"
    assert served.roi_size == ROI if damage != "missing_index" else len(served.roi_size) == 3
    message = _one_warning(caplog)
    assert "PyTorch FP32 answers instead" in message and served.note in message
    out = served.windows(torch.rand(1, 1, *served.roi_size))
    assert out.shape == (1, 3, *served.roi_size)


def test_stale_export_falls_back(exported, tmp_path, caplog):
    run = _copy(exported[0], tmp_path)
    data = torch.load(run / "model.pt", weights_only=True)
    data["state_dict"] = {k: v + 0.001 if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    torch.save(data, run / "model.pt")
    with caplog.at_level(logging.WARNING):
        served = load_predictor(run, "fp32", "openvino")
    assert served.runtime == "torch"
    assert "another model.pt" in _one_warning(caplog)


def test_int8_without_quantized_convolutions_fails_loudly(exported, tmp_path, caplog):
    run = _copy(exported[0], tmp_path)
    fp32 = compile_model(read_ir(run / exported[1]["models"]["fp32"]["xml"]))
    assert convolution_precisions(fp32) and count_quantized_convolutions(fp32) == 0
    with pytest.raises(QuantizationError, match="no quantized convolution"):
        require_quantized(fp32, "fp32.xml")
    index = json.loads((run / "serving.json").read_text())
    index["models"]["int8"]["xml"] = index["models"]["fp32"]["xml"]
    (run / "serving.json").write_text(json.dumps(index))
    with caplog.at_level(logging.WARNING):
        served = load_predictor(run, "int8", "openvino")
    assert served.runtime == "torch" and "no quantized convolution" in _one_warning(caplog)


def test_torch_runtime_serves_fp32_and_says_why(exported, caplog):
    run, _ = exported
    with caplog.at_level(logging.WARNING):
        served = load_predictor(run, "int8", "torch")
    assert (served.runtime, served.precision) == ("torch", "fp32")
    assert "no INT8 path" in _one_warning(caplog) and "int8" in served.note
    with pytest.raises(ValueError, match="precision"):
        load_predictor(run, "int4")


def test_quantization_aware_training_converts_with_learned_ranges(exported, items):
    run, _ = exported
    network, _ = load_merged_model(run / "model.pt")
    patches = calibration_patches(items[:2], ROI, 4)
    model = quantization_aware_training(network, 1, items[:2], ROI, patches, keep_fp32=["model.2.1.conv.unit0.conv"],
                                        steps=3)
    compiled = compile_model(model)
    precisions = convolution_precisions(compiled)
    assert count_quantized_convolutions(compiled) > 0 and precisions.get("f32", 0) >= 1
    out = OpenVINOPredictor(compiled)(torch.from_numpy(patches[0]))
    with torch.no_grad():
        reference = network(torch.from_numpy(patches[0]))
    assert float((out.argmax(1) == reference.argmax(1)).float().mean()) >= 0.9


def test_noninferiority_compare():
    same = compare([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert same.mean_drop_points == 0 and same.p_value == 1.0 and same.passed
    worse = compare(list(np.linspace(0.7, 0.9, 12)), list(np.linspace(0.7, 0.9, 12) - 0.02))
    assert worse.mean_drop_points == pytest.approx(2.0) and worse.p_value < 0.05 and not worse.passed
    # a small but consistent loss fails on the test even within the allowed drop
    slightly = compare(list(np.linspace(0.7, 0.9, 12)), list(np.linspace(0.7, 0.9, 12) - 0.002))
    assert slightly.mean_drop_points == pytest.approx(0.2) and slightly.p_value < 0.05 and not slightly.passed
    # non-inferiority: a consistently better INT8 model differs significantly (two-sided) but loses nothing
    better = compare(list(np.linspace(0.7, 0.9, 12)), list(np.linspace(0.7, 0.9, 12) + 0.002))
    assert better.p_two_sided < 0.05 and better.p_value > 0.95 and better.passed
    with pytest.raises(ValueError):
        compare([0.5], [0.5, 0.6])


def _heldout_folder(items, tmp_path) -> Path:
    """A datastore with one labelled volume: the centre 64 x 64 x 40 voxels of a sample volume (fast to time)."""
    heldout = tmp_path / "heldout"
    (heldout / "labels" / "final").mkdir(parents=True)
    for key, target in (("image", heldout), ("label", heldout / "labels" / "final")):
        volume = nib.load(items[4][key])
        x, y, z = (max(0, (n - m) // 2) for n, m in zip(volume.shape, (64, 64, 40)))
        nib.save(volume.slicer[x:x + 64, y:y + 64, z:z + 40], target / Path(items[4][key]).name)
    return heldout


def _check_printed(printed: str, result: dict) -> None:
    for name in ("PyTorch FP32", "OpenVINO FP32", "OpenVINO INT8", "VNNI", "AMX", "faster than PyTorch FP32"):
        assert name in printed
    engines = result["engines"]
    assert engines["OpenVINO INT8"]["weight_bytes"] < engines["OpenVINO FP32"]["weight_bytes"]
    assert all(e["latency_s"] > 0 and len(e["dice"]) == 1 for e in engines.values())


def test_quantize_command_benchmarks_an_export(exported, items, tmp_path, capsys):
    run = _copy(exported[0], tmp_path)
    code = main(["quantize", "--model", str(run / "model.pt"), "--images", str(ROOT / "sample-data"), "--bench-only",
                 "--heldout", str(_heldout_folder(items, tmp_path)), "--repeats", "1",
                 "--markdown", str(tmp_path / "bench.md")])
    assert code == 0
    printed = capsys.readouterr().out
    _check_printed(printed, json.loads((run / "benchmark.json").read_text()))
    assert (tmp_path / "bench.md").read_text() in printed


@pytest.mark.slow
def test_quantize_command_exports_and_benchmarks(exported, items, tmp_path, capsys):
    run = tmp_path / "cli"
    run.mkdir()
    shutil.copy(exported[0] / "model.pt", run / "model.pt")
    code = main(["quantize", "--model", str(run / "model.pt"), "--images", str(ROOT / "sample-data"),
                 "--heldout", str(_heldout_folder(items, tmp_path)), "--roi", "32", "--patches", "8", "--repeats", "1"])
    assert code == 0
    assert (run / "serving.json").is_file()
    _check_printed(capsys.readouterr().out, json.loads((run / "benchmark.json").read_text()))
