"""Server faults through the real server and client: missing base weights, training with no labelled image.

The server starts over a datastore of images without any label and with ``--conf base_model`` naming a
file that does not exist: it must start and keep serving, say what is wrong in /info, refuse inference
with an HTTP error naming the missing file, and fail a training run with a message in /train.
"""

from __future__ import annotations

import time

import pytest
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from app_support import SAMPLE_DATA, Server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import shutil

    work = tmp_path_factory.mktemp("app_faults")
    studies = work / "datastore"
    studies.mkdir()
    for name in ("target_000.nii.gz", "target_006.nii.gz"):
        shutil.copy2(SAMPLE_DATA / name, studies / name)
    missing = work / "no_such_dir" / "model.pt"
    server = Server(work, studies, {"base_model": str(missing), "auto_scoring": "false"})
    try:
        server.wait_ready()
        yield {"server": server, "client": MONAILabelClient(server.url), "missing": missing}
    finally:
        server.stop()


def test_info_reports_missing_base_model(env):
    info = env["client"].info()
    assert info["seapeft"]["seapeft"]["base_model_exists"] is False
    assert info["models"]["seapeft"]["served"] == {"kind": "base", "path": str(env["missing"]), "exists": False}


def test_infer_without_base_weights_is_a_clear_server_error(env):
    with pytest.raises(MONAILabelClientException) as err:
        env["client"].infer("seapeft", "target_000", {})
    assert "Status: 500" in err.value.msg and "base model file not found" in err.value.msg
    assert str(env["missing"]) in err.value.msg
    assert env["client"].info()["name"] == "SEA-PEFT"  # still serving


def test_training_without_labelled_images_fails_with_message(env):
    client = env["client"]
    client.train_start("seapeft", {"preset": "tiny"})
    deadline = time.monotonic() + 300
    while (status := client.train_status())["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(1)
    assert status["status"] == "ERROR"
    assert any("no labelled image" in line for line in status["details"])
    stats = client.info()["train_stats"]["seapeft"]
    assert stats["status"] == "failed" and "no labelled image" in stats["message"]
    assert not (env["server"].app / "model" / "seapeft" / "published.json").exists()
