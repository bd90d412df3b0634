"""`seapeft pretrain`: a tiny run end to end (model, log, curve, card), the recipe checks, the command line, atomicity."""

from __future__ import annotations

import argparse
import json
import shlex

import pytest
import torch

from seapeft_monailabel.commands import pretrain as pretrain_command
from seapeft_monailabel.data import label_names
from seapeft_monailabel.models import load_base_model, read_model_header
from seapeft_monailabel.models import file_sha256
from seapeft_monailabel.training import PretrainRecipe, pretrain

TINY = PretrainRecipe(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, train_subjects=1, test_subjects=1,
                      target_subjects=1, steps=6, patch_size=(32, 32, 32), patches_per_step=1, eval_every=3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "base"
    calls = []
    result = pretrain(TINY, out, command="seapeft pretrain --tiny", progress=lambda *a: calls.append(a))
    return out, result, calls


def test_outputs_and_model_file(tiny_run):
    out, _, calls = tiny_run
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "model.pt", "training_curve.png",
                                                     "training_log.jsonl"]
    spec, labels = read_model_header(out / "model.pt")
    assert labels == label_names("source") and spec.name == "unet" and spec.channels == (8, 16, 32)
    data = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert data["pretraining"]["recipe"]["steps"] == 6 and data["pretraining"]["command"] == "seapeft pretrain --tiny"
    assert set(data["pretraining"]["source_test_dice"]) == set(labels) - {"background"} | {"mean"}
    base = load_base_model(out / "model.pt")
    assert base.report.head_reinitialised == []
    assert [c[1] for c in calls] == list(range(1, 7)) and calls[-1][2] == 6


def test_log_and_results(tiny_run):
    out, result, _ = tiny_run
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "train"] == list(range(1, 7))
    assert [r["step"] for r in log if r["event"] == "eval"] == [3, 6]
    assert log[-1]["dice"] == result.source_dice
    assert all(0.0 <= v <= 1.0 for v in result.source_dice.values())
    assert set(result.target_dice) == {"liver", "gallbladder", "mean"}
    assert len(result.source_dice_volumes) == 1 and len(result.source_dice_volumes[0]) == 6


def test_model_card_is_measured(tiny_run):
    out, result, _ = tiny_run
    card = (out / "MODEL_CARD.md").read_text()
    assert "seapeft pretrain --tiny" in card
    assert file_sha256(out / "model.pt") in card
    assert result.machine["cpu"] in card and f"{result.machine['cores']} cores" in card
    assert f"| mean | {100 * result.source_dice['mean']:.1f} |" in card
    assert "gallbladder (novel" in card and "liver (seen" in card
    assert "training_curve.png" in card and f"seed {TINY.data_seed}" in card


def test_interrupted_run_leaves_nothing(tmp_path):
    def stop(stage, step, total, info):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(TINY, tmp_path / "base", command="x", progress=stop)
    assert not (tmp_path / "base").exists() or list((tmp_path / "base").iterdir()) == []


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": (18, 18, 18)}, "multiples of 4"),
    ({"network": "swinunetr", "patch_size": (32, 32, 32)}, "at least 64"),
    ({"network": "swinunetr", "patch_size": (48, 48, 48)}, "multiples of 32"),
    ({"steps": 0}, "steps"),
    ({"lr": 0.0}, "lr"),
])
def test_recipe_checks(changes, message):
    with pytest.raises(ValueError, match=message):
        PretrainRecipe(**{**TINY.__dict__, **changes})


def test_command_line_reproduces_the_recipe():
    parser = argparse.ArgumentParser()
    pretrain_command.add_arguments(parser)
    recipe = PretrainRecipe(steps=321, train_subjects=5, data_seed=77, patch_size=(48, 48, 32), lr=5e-4, seed=3)
    line = pretrain_command.command_line(recipe, "out dir", threads=1)
    args = parser.parse_args(shlex.split(line)[2:])
    rebuilt = pretrain_command.recipe_from_args(args)
    assert rebuilt == recipe and args.threads == 1
    swin = pretrain_command.recipe_from_args(parser.parse_args(["--network", "swinunetr", "--out", "o"]))
    assert swin.patch_size == (64, 64, 64) and swin.network == "swinunetr"
