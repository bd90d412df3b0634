"""``seapeft adapters list|show|merge|export --bundle``: the adapter folders of an app's model folder, merged onto
their base, and exported as a MONAI bundle that MONAI alone runs with the answers of ``seapeft predict``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from adapter_run import LABELS, PATCH, SPEC, UNITS, make_run
from seapeft_monailabel.cli import main
from seapeft_monailabel.models import head_module_names, save_model_file
from seapeft_monailabel.models.bundle import BundleExportError, bundle_state_dict, network_def
from seapeft_monailabel.peft import UnitRegistry, load_merged_model, save_merged_model, units_manifest
from volume_files import write_volume

X = torch.randn(1, 1, *PATCH, generator=torch.Generator().manual_seed(4))


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


def _app_layout(tmp_path, run_dir):
    """An app model folder: the run published for site ``north``, and an unpublished copy for the shared model."""
    model_dir = tmp_path / "model" / "seapeft"
    site_run = model_dir / "sites" / "north" / "runs" / "r1"
    shutil.copytree(run_dir, site_run)
    (model_dir / "sites" / "north" / "published.json").write_text(json.dumps({"run": "r1"}))
    shutil.copytree(run_dir, model_dir / "runs" / "r0")
    return model_dir


def test_list_finds_each_adapter_folder_with_its_site_and_publish_state(run, tmp_path, capsys):
    model_dir = _app_layout(tmp_path, run[1])
    (model_dir / "runs" / "broken").mkdir()
    (model_dir / "runs" / "broken" / "adapter_config.json").write_text("{")
    code, out, _ = _cli(capsys, "adapters", "list", model_dir, "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed["unreadable"]) == 1 and "broken" in listed["unreadable"][0]
    rows = {r["folder"].split("seapeft/")[1]: r for r in listed["adapters"]}
    assert set(rows) == {"runs/r0", "sites/north/runs/r1"}
    assert rows["sites/north/runs/r1"]["site"] == "north" and rows["sites/north/runs/r1"]["published"]
    assert rows["runs/r0"]["site"] is None and not rows["runs/r0"]["published"]
    assert all(r["units"] == len(UNITS) and 0 < r["bytes"] < 20_000 for r in rows.values())
    code, out, _ = _cli(capsys, "adapters", "list", model_dir)
    assert code == 0 and "north" in out and "r1 *" in out and "unreadable: " in out


def test_show_prints_the_units_labels_base_and_tensors(run, capsys):
    _, run_dir = run
    code, out, _ = _cli(capsys, "adapters", "show", run_dir)
    assert code == 0
    assert all(name in out for name in UNITS) and "1 liver, 2 gallbladder" in out and "13 tensors" in out
    code, out, _ = _cli(capsys, "adapters", "show", run_dir, "--json")
    shown = json.loads(out)
    assert shown["tensors"]["unit/model.0.conv.unit0.conv:lora:r2/lora_A"] == [2, 27]  # rank 2 x (1 input channel x 3x3x3 kernel)
    assert [u["name"] for u in shown["config"]["units"]] == UNITS


def test_merge_onto_the_base_gives_the_runs_merged_model(run, tmp_path, capsys):
    base, run_dir = run
    out_file = tmp_path / "merged" / "model.pt"
    code, out, _ = _cli(capsys, "adapters", "merge", run_dir, "--base", base, "--out", out_file)
    assert code == 0 and "all merged" in out
    merged, meta = load_merged_model(out_file)
    reference, _ = load_merged_model(run_dir / "model.pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(X), reference(X), rtol=1e-5, atol=1e-6)
    assert meta["patch_size"] == PATCH and meta["labels"] == LABELS
    other, _ = make_run(tmp_path / "other", seed=5)
    code, _, err = _cli(capsys, "adapters", "merge", run_dir, "--base", other, "--out", tmp_path / "x.pt")
    assert code == 2 and "adapter_config.json: made for the base model with weights SHA-256" in err
    assert not (tmp_path / "x.pt").exists()


def _labels(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_the_exported_bundle_runs_with_monai_alone_and_answers_as_seapeft_predict(run, tmp_path, capsys):
    base, run_dir = run
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(40, 36, 28)).astype(np.float32)
    volume[10:25, 8:20, 5:15] += 3.0
    images = tmp_path / "images"
    write_volume(images / "a.nii.gz", volume)
    write_volume(images / "b.nrrd", volume[::-1].copy(), spacing=(1.0, 2.0, 2.5))
    bundle = tmp_path / "bundle"
    code, out, _ = _cli(capsys, "adapters", "export", run_dir, "--base", base, "--bundle", bundle)
    assert code == 0 and "largest logit difference 0" in out
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "liver",
                                                                                  "2": "gallbladder"}
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert inference["network_def"]["norm"] == ["instance", {"affine": True}]  # the SSF unit's merged affine
    assert inference["inferer"]["roi_size"] == PATCH
    labels = tmp_path / "bundle_labels"
    subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", bundle / "configs" / "inference.json",
                    "--bundle_root", bundle, "--dataset_dir", images, "--output_dir", labels], check=True,
                   capture_output=True, timeout=300)
    code, _, _ = _cli(capsys, "predict", "--model", run_dir / "model.pt", "--images", images,
                      "--out", tmp_path / "predicted", "--runtime", "torch")
    assert code == 0
    for image, predicted in (("a", "a.nii.gz"), ("b", "b.nrrd")):
        ours, theirs = _labels(tmp_path / "predicted" / predicted), _labels(labels / f"{image}_seg.nii.gz")
        assert ours.shape == theirs.shape and len(np.unique(ours)) > 1
        assert np.mean(ours == theirs) > 0.999
    code, _, err = _cli(capsys, "adapters", "export", run_dir, "--bundle", bundle)
    assert code == 2 and "exists and is not an empty folder" in err


def test_a_run_with_units_that_cannot_merge_is_not_exported(tmp_path, capsys):
    torch.manual_seed(0)
    from seapeft_monailabel.models import build_network

    network = build_network(SPEC)
    site = "model.1.submodule.0.conv.unit0.conv"
    registry = UnitRegistry(network, units_manifest([{"site": site, "family": "adapter", "level": "b2"}], "test"),
                            head_module_names(SPEC, network))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    unmerged = save_merged_model(run_dir / "model.pt", registry, list(registry.units), SPEC, LABELS)
    assert unmerged
    code, _, err = _cli(capsys, "adapters", "export", run_dir, "--bundle", tmp_path / "bundle")
    assert code == 2 and "cannot be merged into the weights" in err and "adapter" in err
    assert not (tmp_path / "bundle").exists()


def test_tensors_a_monai_network_has_no_place_for_are_named(tmp_path):
    from seapeft_monailabel.models import build_network

    network = build_network(SPEC)
    state = network.state_dict()
    save_model_file(tmp_path / "m.pt", state, SPEC, LABELS)
    network.model[0].conv.unit0.conv.register_parameter("extra", torch.nn.Parameter(torch.zeros(3)))
    with pytest.raises(BundleExportError, match=r"no place for \['model\.0\.conv\.unit0\.conv\.extra'\]"):
        bundle_state_dict(network, network_def(SPEC))
