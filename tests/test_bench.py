"""`seapeft bench`: the tiny preset end to end (JSON, Markdown, PNG), resuming, worker processes, presets, summary."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from seapeft_monailabel.commands import bench as bench_command
from seapeft_monailabel.data.datastore import image_path, label_path, write_subject
from seapeft_monailabel.data.phantoms import generate
from seapeft_monailabel.evaluate.bench import SEARCH, _jobs, applicable_methods, evaluation_predictor, run_bench
from seapeft_monailabel.data.transforms import eval_transforms
from seapeft_monailabel.evaluate.bench_data import source_phantom, support_set
from seapeft_monailabel.evaluate.bench_presets import (
    BENCH_PRESETS,
    BenchPreset,
    bench_preset,
)
from seapeft_monailabel.evaluate.bench_report import summarise
from seapeft_monailabel.evaluate.sliding import evaluate_predictor, evaluate_volumes
from seapeft_monailabel.models import load_base_model
from seapeft_monailabel.training import PretrainRecipe, pretrain

TINY_MODEL = PretrainRecipe(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, train_subjects=1, test_subjects=1,
                            target_subjects=1, steps=4, patch_size=(32, 32, 32), patches_per_step=1, eval_every=100)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny UNet pretrained in seconds on one source-site subject."""
    out = tmp_path_factory.mktemp("tiny_base")
    pretrain(TINY_MODEL, out, command="test")
    return out / "model.pt"


def _regime(results: dict, site: str = "target") -> dict:
    return results["regimes"][site]


@pytest.fixture(scope="module")
def tiny_bench(weights, tmp_path_factory):
    """The tiny preset's one regime (``target``): its folder, its results and the progress calls."""
    out = tmp_path_factory.mktemp("bench")
    calls = []
    results = run_bench(bench_preset("tiny"), weights, out, device="cpu", command="seapeft bench --preset tiny",
                        progress=lambda *a: calls.append(a))
    assert list(results["regimes"]) == ["target"] and (out / "results.md").is_file()
    return out / "target", _regime(results), calls


def test_tiny_bench_writes_every_run(tiny_bench):
    out, results, calls = tiny_bench
    for name in ("results.json", "results.md", "results.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"] == results["summary"]
    methods = [SEARCH, "head", "lora", "random"]
    assert sorted(results["methods"]) == sorted(methods)
    jobs = {(r["job"]["method"], r["job"]["shots"], r["job"]["fold"]) for r in results["runs"]}
    assert jobs == {(m, k, 0) for m in methods for k in (1, 2)}
    assert [c[1] for c in calls] == list(range(1, 9)) and calls[-1][2] == 8 and calls[0][0] == "bench target"
    for run in results["runs"]:
        assert set(run["dice"]) == {"liver", "gallbladder", "mean"}
        assert len(run["volumes"]) == run["job"]["shots"] + 1 and not set(run["volumes"]) & set(run["test"])
        # k support volumes and the selection volume, held out of the support set; k is what the run records
        assert sorted(run["support"] + [run["selection"]]) == sorted(run["volumes"])
        assert len(run["support"]) == run["shots"] == run["job"]["shots"]
        assert run["trainable"] == run["cost"] + run["head_parameters"] and run["seconds"] > 0
    by_key = {(r["job"]["method"], r["job"]["shots"]): r for r in results["runs"]}
    for k in (1, 2):  # the same support and selection volumes for every method; random sets cost what SEA-PEFT chose
        assert len({(tuple(by_key[(m, k)]["support"]), by_key[(m, k)]["selection"]) for m in methods}) == 1
        assert by_key[("random", k)]["job"]["target_cost"] == by_key[(SEARCH, k)]["cost"]
        assert by_key[("random", k)]["cost"] <= by_key[(SEARCH, k)]["cost"]
        assert by_key[("head", k)]["cost"] == 0 and by_key[(SEARCH, k)]["cost"] <= by_key[(SEARCH, k)]["budget"]


def test_pointing_game_of_base_and_adapted_models(tiny_bench):
    out, results, _ = tiny_bench
    structures = {"liver", "gallbladder"}
    assert set(results["base_pointing"]) == structures
    for run in results["runs"]:  # SEA-PEFT's models play it; the baselines do not
        if run["job"]["method"] == SEARCH:
            assert set(run["pointing"]) == structures
            assert all(rate in (0.0, 1.0) for rate in run["pointing"].values())  # one test volume: hit or miss
        else:
            assert run["pointing"] is None
    table = results["summary"]["pointing"]
    assert set(table) == {"base model", "SEA-PEFT, 1 shot", "SEA-PEFT, 2 shots"}
    assert table["base model"]["liver"] == 100 * results["base_pointing"]["liver"]
    assert "Pointing game" in (out / "results.md").read_text()


def test_markdown_and_goals(tiny_bench):
    out, results, _ = tiny_bench
    text = (out / "results.md").read_text()
    assert "| **SEA-PEFT** |" in text and "| lora |" in text and "liver (seen)" in text
    assert "gallbladder (novel)" in text and "seapeft bench --preset tiny" in text
    (volume,) = results["test_volumes"]  # the tiny preset's one test volume, its structures measured in ml
    assert volume["id"] == results["runs"][0]["test"][0] and min(volume["ml"].values()) > 0
    assert f"| {volume['id']} (" in text and "Per test volume" in text
    goals = results["summary"]["goals"]
    assert goals["strongest_peft"] in ("head", "lora")
    assert goals["gap"] == pytest.approx(goals["sea_peft_mean"] - goals["strongest_peft_mean"])
    assert goals["random_gap"] == pytest.approx(goals["sea_peft_mean"] - goals["random_mean"])
    assert "Forgetting and storage" in text and "| base model |" in text


def test_forgetting_on_source_volumes_and_bytes_per_site(tiny_bench):
    """Every adapted model and the base are scored on the held-out source volume for the seen structure only;
    each run records its adapter files' and its merged model's bytes."""
    out, results, _ = tiny_bench
    (source_id,) = results["source_volumes"]
    assert source_id.startswith("source_") and results["seen"] == ["liver"]
    label = nib.load(out / "data" / "source" / "labels" / "final" / f"{source_id}.nii.gz").get_fdata()
    assert set(np.unique(label)) == {0, 1}  # the source liver, in the target's value; nothing else labelled
    base = results["base_source_dice"]
    assert set(base) == {"liver", "mean", "volumes"} and 0 <= base["mean"] <= 1 and len(base["volumes"]) == 1
    for run in results["runs"]:
        assert set(run["source_dice"]) == {"liver", "mean", "volumes"} and 0 <= run["source_dice"]["mean"] <= 1
        adapter = sum((Path(run["out_dir"]) / f).stat().st_size for f in ("adapter_config.json",
                                                                         "adapter_model.safetensors"))
        assert run["bytes"] == {"adapter": adapter, "model": (Path(run["out_dir"]) / "model.pt").stat().st_size}
    goals = results["summary"]["goals"]
    assert goals["base_source_mean"] == pytest.approx(100 * base["mean"])
    assert goals["forgetting"] == pytest.approx(goals["sea_peft_source_mean"] - goals["base_source_mean"])


def test_rerun_resumes_without_training(tiny_bench, weights):
    out, results, _ = tiny_bench
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("model.pt")}
    again = _regime(run_bench(bench_preset("tiny"), weights, out.parent, device="cpu"))
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("model.pt")} == stamps
    assert [r["dice"] for r in again["runs"]] == [r["dice"] for r in results["runs"]]


def test_rerun_with_other_run_settings_trains_again(tiny_bench, weights, tmp_path):
    """A finished run is reused only for the same job: other run settings (``--set``, ``--steps``) retrain it."""
    out = tmp_path / "bench"
    shutil.copytree(tiny_bench[0], out / "target")
    tiny = bench_preset("tiny", methods=(), shots=(1,))
    old = out / "target" / "runs" / "k1" / "f0" / SEARCH / "model.pt"
    stamp = old.stat().st_mtime_ns
    run_bench(tiny, weights, out, device="cpu")
    assert old.stat().st_mtime_ns == stamp  # the same settings: reused
    again = run_bench(tiny.with_(run_changes={**tiny.run_changes, "audit_patches": 1}), weights, out, device="cpu")
    assert old.stat().st_mtime_ns != stamp
    assert _regime(again)["runs"][0]["job"]["run_changes"]["audit_patches"] == 1


def test_worker_processes_reproduce_the_same_runs(weights, tiny_bench, tmp_path):
    bench = bench_preset("tiny", methods=("head",), shots=(1,), workers=2)
    results = _regime(run_bench(bench, weights, tmp_path, device="cpu"))
    assert sorted(r["job"]["method"] for r in results["runs"]) == sorted([SEARCH, "head"])
    assert (tmp_path / "target" / "results.png").is_file()
    # the same jobs, trained again in other processes, give the same models
    earlier = {(r["job"]["method"], r["job"]["shots"]): r for r in tiny_bench[1]["runs"]}
    for run in results["runs"]:
        assert run["dice_volumes"] == earlier[(run["job"]["method"], 1)]["dice_volumes"], run["job"]


def test_custom_library_feeds_sea_peft_and_random_sets(weights, tmp_path):
    library = tmp_path / "ssf_only.yaml"
    library.write_text("name: ssf-only\nsites:\n  - pattern: 'model\\.[01](\\.[a-z0-9]+)*\\.adn\\.N'\n"
                       "    families: {ssf: [full]}\n")
    bench = bench_preset("tiny", methods=("random",), shots=(1,), manifest=str(library))
    results = _regime(run_bench(bench, weights, tmp_path / "out", device="cpu"))
    assert results["library"]["manifest"] == "ssf-only" and "`ssf-only`" in (tmp_path / "out" / "results.md").read_text()
    for run in results["runs"]:
        config = yaml.safe_load((Path(run["out_dir"]) / "config.yaml").read_text())
        assert config["manifest"] == "ssf-only" and {u["family"] for u in config["placements"]} <= {"ssf"}, run["job"]


def test_presets():
    cpu, gpu = BENCH_PRESETS["cpu"], BENCH_PRESETS["gpu"]
    assert set(cpu.methods) < set(gpu.methods) and cpu.folds <= gpu.folds and gpu.folds >= 3
    assert gpu.shots == cpu.shots == (1, 5, 10) and cpu.workers * cpu.threads <= 2
    keep, skipped = applicable_methods(gpu.methods, "unet")
    assert "adaptformer" in skipped and "adaptformer" not in keep and "random" in keep
    keep, skipped = applicable_methods(gpu.methods, "swinunetr")
    assert skipped == {} and keep == list(gpu.methods)
    with pytest.raises(ValueError, match="pool"):
        BenchPreset("x", methods=("head",), shots=(10,), pool=5)
    with pytest.raises(ValueError, match="unknown bench method"):
        BenchPreset("x", methods=("nope",))
    # the paper's regime (CT of another scanner) beside the MR-like one, 8 test volumes, forgetting measured
    for bench in (cpu, gpu):
        assert bench.sites == ("target", "target_ct") and bench.test == 8 and bench.source_test >= 4
        assert "full" in bench.methods and "random" in bench.methods
    assert cpu.regime("target_ct").site == "target_ct"
    with pytest.raises(ValueError, match="take one with regime"):
        cpu.site
    with pytest.raises(ValueError, match="unknown site 'mars'"):
        BenchPreset("x", methods=(), sites=("mars",))
    with pytest.raises(ValueError, match="different sites"):
        BenchPreset("x", methods=(), sites=("target", "target"))
    with pytest.raises(ValueError, match="pointing_folds"):
        BenchPreset("x", methods=(), pointing_folds=0)


def test_pointing_game_only_in_the_folds_asked():
    cpu = BENCH_PRESETS["cpu"]
    pool = [{"id": f"v{i}", "image": f"v{i}.nii.gz", "label": f"l{i}.nii.gz"} for i in range(cpu.pool)]
    jobs = _jobs(cpu, list(cpu.methods), [(pool, [])] * cpu.folds, "w.pt", {"background": 0}, "cpu", Path("o"))
    playing = {(j["method"], j["fold"]) for j in jobs if j["pointing"]}
    assert playing == {(SEARCH, 0)} and cpu.pointing_folds == 1
    assert all(j["pointing"] == (j["method"] == SEARCH) for j in _jobs(cpu.with_(pointing_folds=None), [], [(pool, [])] * 3,
                                                                     "w.pt", {"background": 0}, "cpu", Path("o")))


def test_two_regimes_side_by_side(weights, tmp_path):
    """One bench, two target sites: each regime its own volumes, runs and report, and a report beside them that
    compares SEA-PEFT with full fine-tuning (the reference) in both, forgetting and file size included."""
    bench = bench_preset("tiny", sites=("target", "target_ct"), methods=("full",), shots=(1,))
    results = run_bench(bench, weights, tmp_path, device="cpu", command="seapeft bench --preset tiny")
    assert list(results["regimes"]) == ["target", "target_ct"]
    ct = _regime(results, "target_ct")
    assert ct["labels"] == {"background": 0, "spleen": 1, "stomach": 2} and ct["seen"] == ["spleen"]
    assert {r["test"][0] for r in ct["runs"]} == {"target_ct_003"} and set(ct["base_source_dice"]) >= {"spleen"}
    for site in ("target", "target_ct"):
        assert (tmp_path / site / "results.png").is_file() and (tmp_path / site / "runs" / "k1" / "f0" / "full").is_dir()
        goals = _regime(results, site)["summary"]["goals"]
        assert "reference_mean" in goals and "strongest_peft" not in goals  # full is the reference, not a PEFT baseline
        full = _regime(results, site)["summary"]["methods"]["full"]
        ours = _regime(results, site)["summary"]["methods"][SEARCH]
        assert full["adapter_bytes"] > 10 * ours["adapter_bytes"]  # a full model per site against small adapters
    text = (tmp_path / "results.md").read_text()
    assert "Regimes side by side" in text and "### Regime `target_ct` (CT)" in text and "### Regime `target` (MR)" in text
    assert text.count("seapeft bench --preset tiny") == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["regimes"]["target_ct"]["results"] == "target_ct/results.json"
    assert saved["regimes"]["target_ct"]["summary"] == ct["summary"]


def test_support_sets_differ_by_fold_and_are_reproducible():
    pool = [{"id": f"v{i}"} for i in range(12)]
    a = [i["id"] for i in support_set(pool, 5, 0, 3001)]
    assert a == [i["id"] for i in support_set(pool, 5, 0, 3001)] and len(set(a)) == 6
    assert a != [i["id"] for i in support_set(pool, 5, 1, 3001)]
    with pytest.raises(ValueError, match="shots"):
        support_set(pool, 12, 0, 3001)


def _run(method, shots, fold, liver, gallbladder, cost=10):
    """A run record with two test volumes, the second 0.1 below the first in both structures."""
    return {"job": {"method": method, "shots": shots, "fold": fold}, "dice": {"liver": liver, "gallbladder": gallbladder,
            "mean": (liver + gallbladder) / 2}, "cost": cost, "trainable": cost + 5, "percent": cost / 10,
            "budget": 20, "seconds": 1.0,
            "dice_volumes": [[liver + 0.05, gallbladder + 0.05], [liver - 0.05, gallbladder - 0.05]]}


def test_summary_statistics():
    runs = [_run(SEARCH, 1, f, 0.8, 0.6 + 0.1 * f) for f in range(2)] + [_run("lora", 1, f, 0.7, 0.5) for f in range(2)] \
        + [_run("full", 1, f, 0.74, 0.45, cost=1000) for f in range(2)] + [_run("random", 1, f, 0.9, 0.9) for f in range(2)]
    results = {"labels": {"background": 0, "liver": 1, "gallbladder": 2}, "preset": {"shots": [1]},
               "methods": [SEARCH, "lora", "full", "random"], "runs": runs}
    summary = summarise(results)
    ours = summary["methods"][SEARCH]["per_shot"]["1"]
    assert ours["gallbladder"] == pytest.approx([65.0, 7.0710678])
    per_volume = summary["methods"][SEARCH]["per_volume"]["1"]  # test volume x structure, mean over folds
    assert [d for volume in per_volume for d in volume] == pytest.approx([85.0, 70.0, 75.0, 60.0])
    goals = summary["goals"]
    assert goals["strongest_peft"] == "lora"  # random sets are not a PEFT baseline, full fine-tuning the reference
    assert goals["reference_mean"] == pytest.approx(59.5) and not goals["random_gap_met"]
    assert goals["gap"] == pytest.approx(72.5 - 60.0) and goals["gap_met"]
    assert goals["random_gap"] == pytest.approx(72.5 - 90.0)
    assert goals["sea_peft_max_percent"] == 1.0 and not goals["percent_met"]


def test_command_line_round_trip():
    parser = argparse.ArgumentParser()
    bench_command.add_arguments(parser)
    args = parser.parse_args(["--preset", "cpu", "--out", "o", "--folds", "3", "--methods", "head", "lora",
                              "--steps", "50", "--budget-fraction", "0.02", "--data-seed", "7001"])
    again = parser.parse_args(shlex.split(bench_command.command_line(args))[2:])
    assert bench_command.bench_from_args(again) == bench_command.bench_from_args(args)
    bench = bench_command.bench_from_args(args)
    assert bench.folds == 3 and bench.methods == ("head", "lora") and bench.data_seed == 7001
    assert bench.run_changes["max_steps"] == 50 and bench.run_changes["budget_fraction"] == 0.02
    assert bench.run_changes["refine_steps"] == 40  # the preset's other run settings stay


def test_methods_option_alone_benches_sea_peft_only():
    parser = argparse.ArgumentParser()
    bench_command.add_arguments(parser)
    args = parser.parse_args(["--out", "o", "--methods"])
    assert bench_command.bench_from_args(args).methods == ()
    again = parser.parse_args(shlex.split(bench_command.command_line(args))[2:])
    assert bench_command.bench_from_args(again).methods == ()


def test_set_changes_run_settings_and_survives_the_command_line():
    parser = argparse.ArgumentParser()
    bench_command.add_arguments(parser)
    args = parser.parse_args(["--out", "o", "--methods", "--set", "audit_patches=8", "--set", "prior_start=false",
                              "--set", "patch_size=[32, 32, 32]", "--set", "robust_lambda=1"])
    bench = bench_command.bench_from_args(args)
    assert bench.run_changes["audit_patches"] == 8 and bench.run_changes["prior_start"] is False
    assert bench.run_changes["patch_size"] == (32, 32, 32) and bench.run_changes["robust_lambda"] == 1
    assert bench.run_changes["max_steps"] == 120  # the preset's other run settings stay
    again = parser.parse_args(shlex.split(bench_command.command_line(args))[2:])
    assert bench_command.bench_from_args(again) == bench


@pytest.mark.parametrize("item, message", [
    ("audit_patches", "expected KEY=VALUE"),
    ("audit_patch=8", "unknown run setting 'audit_patch'"),
    ("audit_patches=many", "'audit_patches' takes an integer like 4"),
    ("prior_start=1", "'prior_start' takes true or false"),
    ("audit_patches=0", "audit_patches must be >= 1"),
])
def test_set_rejects_bad_items_naming_them(item, message):
    parser = argparse.ArgumentParser()
    bench_command.add_arguments(parser)
    args = parser.parse_args(["--out", "o", "--set", item])
    with pytest.raises(ValueError, match=message):
        bench_command.bench_from_args(args)


def test_bench_measures_with_the_openvino_model_what_pytorch_gives(weights, tmp_path):
    """On a CPU the bench evaluates through OpenVINO FP32 (the served runtime): the same Dice as PyTorch's."""
    base = load_base_model(weights, {"background": 0, "liver": 1, "gallbladder": 2})
    write_subject(tmp_path, "target_000", generate("target", 11, 0))
    items = [{"image": str(image_path(tmp_path, "target_000")), "label": str(label_path(tmp_path, "target_000"))}]
    predictor = evaluation_predictor(base.network, 1, (32, 32, 32), torch.device("cpu"))
    assert predictor.runtime == "openvino"
    (ours,) = evaluate_predictor(predictor, items, 3)
    (torchs,) = evaluate_volumes(base.network, items, (32, 32, 32), 3)
    assert ours == pytest.approx(torchs, abs=1e-3) and max(ours) > 0


def test_a_model_of_another_label_map_is_scored_by_relabelling_its_classes(tmp_path):
    """The base model keeps its own head on the source volumes: its class for a seen structure is scored as the
    task's value of that structure, its other classes as background."""
    write_subject(tmp_path, "source_000", source_phantom("target_ct", 5, 0))
    item = {"image": str(image_path(tmp_path, "source_000")), "label": str(label_path(tmp_path, "source_000"))}
    truth = torch.as_tensor(eval_transforms(None)(dict(item))["label"][0]).long()

    class SourceHead:  # answers in the source's values: spleen is 2 there, and a kidney (3) beside it
        def class_map(self, image):
            return torch.where(truth == 1, 2, 3)

    assert evaluate_predictor(SourceHead(), [item], 3, relabel=[0, 0, 1, 0])[0][0] == 1.0
    assert evaluate_predictor(SourceHead(), [item], 3)[0][0] == 0.0  # unrelabelled: no voxel of value 1


def test_a_record_without_what_the_job_measures_is_run_again(tiny_bench, weights, tmp_path):
    """A finished run is reused only when its record holds what the job asks for (here the pointing game)."""
    out = tmp_path / "bench"
    shutil.copytree(tiny_bench[0], out / "target")
    record_path = out / "target" / "runs" / "k1" / "f0" / SEARCH / "record.json"
    record = json.loads(record_path.read_text())
    record["pointing"] = None
    record_path.write_text(json.dumps(record))
    again = _regime(run_bench(bench_preset("tiny", methods=(), shots=(1,)), weights, out, device="cpu"))
    assert again["runs"][0]["pointing"] is not None and json.loads(record_path.read_text())["pointing"]
