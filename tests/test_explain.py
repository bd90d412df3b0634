"""Grad-CAM explanations, the pointing game and `seapeft explain`, on the shipped base model.

The base model segments its own (source) site well (test Dice 92), so held-out source subjects are where
an explanation must point inside the structure. Subjects come from the pretraining recipe's seed at
indices after its training and test subjects: never seen in pretraining.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.visualize import GradCAM
from PIL import Image

from seapeft_monailabel.data.transforms import eval_transforms
from seapeft_monailabel.explain import (
    check_layer,
    default_layer,
    explain_image,
    explain_labels,
    explanation_window,
    peak_inside,
    pointing_game,
)
from seapeft_monailabel.peft import load_merged_model
from seapeft_monailabel.training import write_subjects

MODEL = Path(__file__).resolve().parents[1] / "sample-data" / "base_model" / "model.pt"
SEAPEFT = str(Path(sys.executable).with_name("seapeft"))
WINDOW = (64, 64, 64)


@pytest.fixture(scope="module")
def model():
    network, meta = load_merged_model(MODEL)
    return network, meta


@pytest.fixture(scope="module")
def source_subjects(model, tmp_path_factory):
    recipe = model[1]["pretraining"]["recipe"]
    first = recipe["train_subjects"] + recipe["test_subjects"]
    return write_subjects(tmp_path_factory.mktemp("source"), recipe["site"], recipe["data_seed"], [first, first + 1])


@pytest.fixture(scope="module")
def liver_map(model, source_subjects):
    network, meta = model
    data = eval_transforms()(dict(source_subjects[0]))
    heat = explain_image(network, data["image"], meta["labels"]["liver"], default_layer("unet"), WINDOW)
    return heat, data


def test_map_has_the_image_shape_and_peaks_inside_the_structure(model, liver_map):
    heat, data = liver_map
    truth = torch.as_tensor(data["label"])[0]
    assert tuple(heat.shape) == tuple(data["image"].shape[1:])
    assert float(heat.min()) >= 0 and float(heat.max()) == pytest.approx(1.0)
    assert float(heat.std()) > 0.05  # not constant
    assert peak_inside(heat, truth, model[1]["labels"]["liver"])
    liver = truth == model[1]["labels"]["liver"]
    assert float(heat[liver].mean()) > 3 * float(heat[~liver].mean())  # the map concentrates on the liver


def test_the_callers_network_keeps_no_hooks_and_its_mode(model, liver_map):
    """The served network is shared with other requests: explaining must leave nothing on it."""
    network = model[0]
    layer = network.get_submodule(default_layer("unet"))
    assert not layer._forward_hooks and not layer._backward_hooks
    assert not network.training


def test_voxelwise_weighting_localises_where_mean_gradient_grad_cam_does_not(model, liver_map):
    """Why the map multiplies gradient and activation voxel by voxel instead of using Grad-CAM's channel means."""
    network, meta = model
    ours, data = liver_map
    liver = torch.as_tensor(data["label"])[0] == meta["labels"]["liver"]
    plain = explain_image(network, data["image"], meta["labels"]["liver"], default_layer("unet"), WINDOW, method=GradCAM)

    def concentration(heat: torch.Tensor) -> float:
        return float(heat[liver].mean() / heat[~liver].mean())

    assert concentration(ours) > 5 and concentration(plain) < 2


def test_several_labels_share_one_forward_pass_and_give_the_single_label_maps(model, liver_map):
    """The pointing game explains every structure of a volume at once; each map is the one asked alone."""
    network, meta = model
    liver, data = liver_map
    spine = explain_image(network, data["image"], meta["labels"]["spine"], default_layer("unet"), WINDOW)
    both = explain_labels(network, data["image"], [meta["labels"]["liver"], meta["labels"]["spine"]],
                          default_layer("unet"), WINDOW)
    assert tuple(both.shape) == (2, *liver.shape)
    torch.testing.assert_close(both[0], liver, rtol=0, atol=1e-6)
    torch.testing.assert_close(both[1], spine, rtol=0, atol=1e-6)
    assert not torch.equal(both[0], both[1])


def test_pointing_game_hits_on_the_base_models_own_site(model, source_subjects):
    network, meta = model
    labels = {name: meta["labels"][name] for name in ("background", "liver", "spine")}
    game = pointing_game(network, source_subjects, labels, default_layer("unet"), WINDOW)
    assert set(game) == {"liver", "spine"}
    assert game["liver"]["hit_rate"] == 1.0 and game["spine"]["hit_rate"] == 1.0
    assert game["liver"]["hits"] == [True, True]


def test_empty_map_is_a_miss_and_windows_and_layers_are_checked(model):
    assert not peak_inside(torch.zeros(4, 4, 4), torch.ones(4, 4, 4, dtype=torch.long), 1)
    assert explanation_window((16, 16, 16)) == (64, 64, 64)
    assert explanation_window((96, 80, 48)) == (96, 96, 64)
    with pytest.raises(ValueError, match="layer 'decoder9' is not a module"):
        check_layer(model[0], "decoder9")
    with pytest.raises(ValueError, match="no default explanation layer"):
        default_layer("vnet")


def test_explain_command_writes_nifti_on_the_image_grid_and_a_png(model, source_subjects, tmp_path):
    item = source_subjects[1]
    done = subprocess.run([SEAPEFT, "explain", "--model", str(MODEL), "--image", item["image"], "--label", "liver",
                           "--spacing", "4", "4", "4", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    source = nib.load(item["image"])
    result = nib.load(next(tmp_path.glob("*_liver_gradcam.nii.gz")))
    assert result.shape == source.shape  # resampled to 4 mm for the model, then back to the file's grid
    np.testing.assert_allclose(result.affine, source.affine, atol=1e-3)
    heat = np.asarray(result.dataobj)
    assert heat.max() > 0.9 and heat.std() > 0.05
    truth = np.asarray(nib.load(item["label"]).dataobj)
    assert truth[np.unravel_index(int(np.argmax(heat)), heat.shape)] == model[1]["labels"]["liver"]
    pixels = np.asarray(Image.open(next(tmp_path.glob("*_liver_gradcam.png"))).convert("RGB")).astype(float)
    assert pixels.std() > 10 and (pixels[..., 0] - pixels[..., 2] > 100).any()  # an image with a warm overlay
    bad = subprocess.run([SEAPEFT, "explain", "--model", str(MODEL), "--image", item["image"], "--label", "pancreas",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no label 'pancreas'" in bad.stderr
