"""The shipped base model: it loads, segments a held-out source-site volume, and adapts its head to the target labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seapeft_monailabel.data import label_names
from seapeft_monailabel.evaluate import evaluate_volumes
from seapeft_monailabel.models import WeightLoadError, file_sha256, load_base_model
from seapeft_monailabel.training import write_subjects

BASE = Path(__file__).resolve().parents[1] / "sample-data" / "base_model"
MODEL = BASE / "model.pt"
#: mean Dice over the six source structures that the shipped model must reach on a subject it never saw
MIN_SOURCE_DICE = 0.80
MIN_LIVER_DICE = 0.85


@pytest.fixture(scope="module")
def model_file():
    data = torch.load(MODEL, map_location="cpu", weights_only=True)
    return data


def test_shipped_files(model_file):
    assert MODEL.stat().st_size <= 25e6
    for name in ("MODEL_CARD.md", "training_curve.png", "training_log.jsonl"):
        assert (BASE / name).is_file()
    card = (BASE / "MODEL_CARD.md").read_text()
    assert file_sha256(MODEL) in card  # the card describes exactly the shipped weights
    assert model_file["pretraining"]["command"] in card
    assert model_file["network"]["name"] == "unet"


def test_loads_and_segments_a_held_out_source_volume(model_file, tmp_path):
    base = load_base_model(MODEL)
    assert base.labels == label_names("source") and base.report.missing == []
    recipe = model_file["pretraining"]["recipe"]
    # a subject after the training and test indices of the recipe: never seen during pretraining
    index = recipe["train_subjects"] + recipe["test_subjects"]
    items = write_subjects(tmp_path, recipe["site"], recipe["data_seed"], [index])
    dice = evaluate_volumes(base.network, items, recipe["patch_size"], len(base.labels))[0]
    names = [n for n, _ in sorted(base.labels.items(), key=lambda kv: kv[1]) if n != "background"]
    scores = dict(zip(names, dice))
    assert sum(dice) / len(dice) >= MIN_SOURCE_DICE, scores
    assert scores["liver"] >= MIN_LIVER_DICE, scores


def test_target_labels_copy_the_liver_row():
    source = load_base_model(MODEL)
    target = load_base_model(MODEL, label_names("target"))
    # target background (0) and liver (1) <- the source's background (0) and liver (1); gallbladder (2) is new
    assert target.report.copied_classes == {0: 0, 1: 1}
    up, final = (target.network.get_submodule(n) for n in target.head_names)  # ConvTranspose3d 16->3, Conv3d 3->3
    up_src, final_src = (source.network.get_submodule(n) for n in source.head_names)
    assert up.weight.shape[1] == 3 and final.weight.shape[:2] == (3, 3)
    for c in (0, 1):
        assert torch.equal(up.weight[:, c], up_src.weight[:, c]) and torch.equal(up.bias[c], up_src.bias[c])
        assert torch.equal(final.bias[c], final_src.bias[c])
        for d in (0, 1):
            assert torch.equal(final.weight[c, d], final_src.weight[c, d])
    assert not torch.equal(final.weight[2, 2], final_src.weight[2, 2])  # gallbladder: not the spleen's row
    body = [k for k in source.network.state_dict() if not any(k.startswith(h + ".") for h in source.head_names)]
    src, tgt = source.network.state_dict(), target.network.state_dict()
    assert all(torch.equal(src[k], tgt[k]) for k in body)


def test_plain_weights_load_through_the_same_loader(tmp_path):
    """A plain state dict needs the network named and the task's labels; it then loads as the model file does."""
    source = load_base_model(MODEL)
    torch.save(source.network.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="label names"):
        load_base_model(tmp_path / "plain.pt", network="unet")
    with pytest.raises(WeightLoadError, match="name the network"):
        load_base_model(tmp_path / "plain.pt", source.labels)
    plain = load_base_model(tmp_path / "plain.pt", source.labels, network="unet", patch_size=(40, 40, 40))
    assert plain.spec == source.spec and plain.base_labels is None and not plain.same_as_file and source.same_as_file
    assert plain.patch_size == (40, 40, 40) and source.patch_size == (48, 48, 48)  # the recipe's window
    state = source.network.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in plain.network.state_dict().items())


def test_new_head_rows_are_seeded_and_leave_the_global_rng_alone():
    """Two runs on the same data train the same network: the novel structure's head rows do not depend on
    whatever the global RNG was doing before the model was loaded."""
    torch.manual_seed(123)
    first = load_base_model(MODEL, label_names("target")).network.state_dict()
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(7)  # another RNG history
    second = load_base_model(MODEL, label_names("target")).network.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = load_base_model(MODEL, label_names("target"), seed=1).network.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # loading drew nothing from the global RNG
