"""The seapeft command line end to end, as a user runs it (the real console script in subprocesses; error lines
of further inputs through ``cli.main`` in this process, which prints them the same way)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from seapeft_monailabel.models import NetworkSpec, build_network, save_model_file
from seapeft_monailabel.peft import load_adapter_files, load_merged_model, read_adapter_config

SEAPEFT = str(Path(sys.executable).with_name("seapeft"))
LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))


def _run(*args, timeout=600):
    return subprocess.run([SEAPEFT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _run_here(capsys, *args):
    """``seapeft ARGS`` in this process (``cli.main``; seconds less than a new interpreter), as ``_run`` reports it."""
    from seapeft_monailabel import cli

    capsys.readouterr()
    returncode = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, returncode, captured.out, captured.err)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    done = _run("generate", "--site", "target", "--count", 3, "--unlabelled", 0, "--seed", 7, "--out", root / "data")
    assert done.returncode == 0, done.stderr
    torch.manual_seed(0)
    save_model_file(root / "base.pt", build_network(SPEC).state_dict(), SPEC, LABELS)
    return root


def test_search_writes_every_output(workspace):
    out = workspace / "search"
    done = _run("search", "--images", workspace / "data", "--weights", workspace / "base.pt", "--out", out,
                "--preset", "tiny")
    assert done.returncode == 0, done.stderr
    assert "SEA-PEFT chose" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "config.yaml",
                                                     "events.jsonl", "model.pt", "report.png"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == "sea-peft" and config["labels"] == LABELS
    assert config["cost"] == sum(config["unit_costs"].values()) <= config["budget"]
    assert [u["cost"] for u in config["placements"]] == [config["unit_costs"][n] for n in config["units"]]
    assert 0.0 <= config["selection_dice"] <= 1.0
    # the merged model and the base with the adapter files reproduce the same network
    merged, meta = load_merged_model(out / "model.pt")
    assert [u["name"] for u in read_adapter_config(out)["units"]] == config["units"]
    adapted = load_adapter_files(out, workspace / "base.pt")
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), adapted(x), rtol=1e-4, atol=1e-5)


def test_finetune_runs_a_baseline(workspace):
    out = workspace / "lora"
    done = _run("finetune", "--method", "lora", "--images", workspace / "data", "--weights", workspace / "base.pt",
                "--out", out, "--preset", "tiny", "--steps", 4, "--refine-steps", 2, "--shots", 1)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == "lora" and config["units"] and all(u["family"] == "lora" for u in config["placements"])
    # one shot: one support volume, and the selection volume held out of it, as in `seapeft search --shots 1`
    assert config["shots"] == len(config["support"]) == 1 and config["audit_volume"] not in config["support"]
    assert "1-shot" in done.stdout and f"4 + {config['refine_steps']} refine steps" in done.stdout


def _one_error_line(done, *fragments):
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_task_labels_come_from_the_datastore(workspace):
    """A base model with other labels (the source site's) trains for the labels the datastore describes."""
    source = {"background": 0, "liver": 1, "spleen": 2, "aorta": 3}
    spec = NetworkSpec(name="unet", out_channels=4, channels=(8, 16, 32), strides=(2, 2))
    save_model_file(workspace / "source_base.pt", build_network(spec).state_dict(), spec, source)
    out = workspace / "relabelled"
    done = _run("finetune", "--method", "head", "--images", workspace / "data", "--weights",
                workspace / "source_base.pt", "--out", out, "--preset", "tiny")
    assert done.returncode == 0, done.stderr
    assert load_merged_model(out / "model.pt")[1]["labels"] == LABELS  # from data/dataset.json, not the file's


def test_bad_input_gets_one_clear_line(workspace, tmp_path):
    common = ["--out", tmp_path / "out", "--preset", "tiny"]
    _one_error_line(_run("search", "--images", tmp_path / "missing", "--weights", workspace / "base.pt", *common),
                    "missing", "not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    _one_error_line(_run("search", "--images", workspace / "data", "--weights", corrupt, *common), "corrupt.pt")
    # a label whose grid differs from its image
    bad = tmp_path / "bad"
    (bad / "labels" / "final").mkdir(parents=True)
    image = nib.load(workspace / "data" / "target_000.nii.gz")
    nib.save(image, bad / "target_000.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), image.affine), bad / "labels" / "final" / "target_000.nii.gz")
    _one_error_line(_run("search", "--images", bad, "--weights", workspace / "base.pt", *common),
                    "target_000.nii.gz", "differs from image shape")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_names_and_settings_get_one_clear_line(workspace, tmp_path, capsys):
    _one_error_line(_run_here(capsys, "finetune", "--method", "head", "--images", workspace / "data", "--weights",
                         workspace / "base.pt", "--label-names", '["liver"]', "--out", tmp_path / "out"),
                    "--label-names", "expected a JSON object")
    _one_error_line(_run_here(capsys, "generate", "--site", "hospital_x", "--out", tmp_path / "data"),
                    "unknown site 'hospital_x'", "target")
    _one_error_line(_run_here(capsys, "bench", "--preset", "tiny", "--out", tmp_path / "bench", "--set", "audit_patchs=8"),
                    "unknown run setting 'audit_patchs'", "audit_patches")
    _one_error_line(_run_here(capsys, "bench", "--preset", "tiny", "--out", tmp_path / "bench", "--set", "max_steps=many"),
                    "'max_steps' takes an integer like")
    assert not any((tmp_path / name).exists() for name in ("out", "data", "bench"))


def test_a_bug_shows_its_traceback(monkeypatch, tmp_path, capsys):
    """Only input errors become one line: a KeyError or TypeError inside a command is a bug and propagates."""
    from seapeft_monailabel import cli
    from seapeft_monailabel.commands import generate

    for bug in (KeyError("spacing"), TypeError("unsupported operand")):
        def broken(args, bug=bug):
            raise bug
        monkeypatch.setattr(generate, "run", broken)
        with pytest.raises(type(bug)):
            cli.main(["generate", "--out", str(tmp_path)])
    monkeypatch.setattr(generate, "run", lambda args: (_ for _ in ()).throw(ValueError("x.nii.gz: not 3D")))
    assert cli.main(["generate", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "seapeft generate: error: x.nii.gz: not 3D\n"


def test_errors_reports_a_structure_per_model_group(workspace, capsys):
    done = _run("errors", "--data", workspace / "data", "--structure", "liver", "--preset", "tiny",
                "--models", workspace / "base.pt", workspace / "b*.pt")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and "(1 models x 3 volumes): liver Dice" in lines[0]
    assert lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]  # the same model, found by name and by glob
    assert "missed" in lines[0] and "within 7 mm of the surface" in lines[0]
    _one_error_line(_run_here(capsys, "errors", "--data", workspace / "data", "--structure", "spleen", "--models", workspace / "base.pt"),
                    "base.pt", "no label 'spleen'")
    _one_error_line(_run_here(capsys, "errors", "--data", workspace / "data", "--structure", "liver",
                              "--models", workspace / "none*.pt"),
                    "none*.pt", "no model file matches")


def test_ctrl_c_leaves_no_half_written_output(workspace, tmp_path):
    out = tmp_path / "interrupted"
    # a fixed method runs all its steps (a search may stop early once its set settles)
    process = subprocess.Popen([SEAPEFT, "finetune", "--method", "lora", "--images", str(workspace / "data"), "--weights",
                                str(workspace / "base.pt"), "--out", str(out), "--preset", "tiny", "--steps", "5000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # a job started in the background (nohup, CI) inherits SIGINT ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out.exists() and any(p.name.startswith(".staging") for p in out.iterdir())):
        time.sleep(0.2)
    time.sleep(2)  # well inside the run: the events log is being written into the staging folder
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert list(out.iterdir()) == []
