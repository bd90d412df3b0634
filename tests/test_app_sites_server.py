"""Many sites, one base: per-site adapters through the real server and client (``--conf sites auto``).

The datastore is a copy of sample-data/: its six labelled images are given to two sites through the
datastore API (``PUT /datastore/image/info``, ``site``: ``North Hospital`` -> ``north-hospital`` and
``south``), and a held-out image is uploaded as site ``east`` (no labels, so no adapter). One training
request trains both sites (two runs, queued in one task); each site's image is then answered by its own
adapter, the east image by the base model exactly as before training, and after a restart of the server
both sites are still served.
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
from app_support import Server, base_model_for_tests, copy_datastore, write_generated_subject
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException, MONAILabelUtils

pytestmark = [pytest.mark.server, pytest.mark.slow]

SITES = {"North Hospital": ["target_000", "target_001", "target_002", "target_006"],
         "south": ["target_003", "target_004", "target_005", "target_007"]}
NORTH, SOUTH = "north-hospital", "south"
SHORT_TRAIN = {"preset": "tiny", "steps": 6, "refine_steps": 2}
TRAIN_TIMEOUT_S = 900


def _start(work, studies, base, app=None) -> tuple[Server, MONAILabelClient]:
    work.mkdir(parents=True, exist_ok=True)
    server = Server(work, studies, {"base_model": str(base), "auto_scoring": "false", "sites": "auto"}, app=app)
    server.wait_ready()
    return server, MONAILabelClient(server.url, tmpdir=str(work / "client"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    work = tmp_path_factory.mktemp("app_sites")
    base = base_model_for_tests(tmp_path_factory.mktemp("base_model"))
    studies = copy_datastore(work / "datastore")
    east = write_generated_subject(work / "east", 8)
    server, client = _start(work / "first", studies, base)
    state = {"server": server, "client": client, "studies": studies, "base": base, "east": east, "work": work}
    try:
        yield state
    finally:
        state["server"].stop()


def _error(call) -> str:
    with pytest.raises(MONAILabelClientException) as info:
        call()
    return info.value.msg


def _set_site(url: str, image_id: str, site: str) -> tuple[int, str]:
    status, body, _, _ = MONAILabelUtils.http_multipart("PUT", url, f"/datastore/image/info?image={image_id}",
                                                        {"info": json.dumps({"site": site})}, {})
    return status, body.decode() if isinstance(body, bytes) else str(body)


def _labels(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_sites_come_from_image_info_and_unsafe_names_are_refused(env):
    client, url = env["client"], env["server"].url
    for site, images in SITES.items():
        for image_id in images:
            assert _set_site(url, image_id, site)[0] == 200
    assert client.upload_image(env["east"]["image"], image_id="east_008", params={"site": "east"})["image"] == "east_008"
    status, body = _set_site(url, "target_000", "../..")
    assert status == 400 and "'../..'" in body and "target_000" in body and "empty or unsafe" in body
    assert client.datastore()["objects"]["target_000"]["image"]["info"]["site"] == "North Hospital"  # unchanged
    message = _error(lambda: client.infer("seapeft", "target_006", {"site": "///"}))
    assert "Status: 400" in message and "request parameter 'site'" in message and "empty or unsafe" in message


def test_before_training_every_site_gets_the_base_model_and_is_told_so(env):
    client = env["client"]
    _, params = client.infer("seapeft", "target_006", {})
    assert params["model"]["kind"] == "base"
    assert params["site"] == {"name": NORTH, "source": "image info 'site'", "adapter": False,
                              "served": f"the base model (site {NORTH} has no published adapter)"}
    path, params = client.infer("seapeft", "east_008", {})
    assert params["site"]["name"] == "east" and params["model"]["kind"] == "base"
    env["east_before"] = _labels(path)
    env["base_id"] = params["model"]["id"]


def test_training_trains_one_adapter_per_site(env):
    client = env["client"]
    client.train_start("seapeft", SHORT_TRAIN)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while (status := client.train_status())["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    log = env["server"].log.read_text()
    assert f"SEA-PEFT runs queued, one per site: {NORTH} (3 labelled), south (3 labelled)" in log
    sites = client.info()["seapeft"]["seapeft"]["sites"]
    assert sites["rule"] == "auto" and set(sites["sites"]) == {NORTH, SOUTH}
    for site in (NORTH, SOUTH):
        adapter = sites["sites"][site]["adapter"]
        assert adapter["site"] == site and adapter["shots"] == 2  # 3 labelled - 1 for the audits
        assert adapter["validation_dice"] is not None and adapter["cost"] <= adapter["budget"]
        sizes = adapter["sizes"]
        assert 0 < sum(v for name, v in sizes.items() if name != "model.pt") < sizes["model.pt"]  # adapter files
    assert sites["sites"][NORTH]["adapter"]["id"] != sites["sites"][SOUTH]["adapter"]["id"]
    env["adapters"] = {site: sites["sites"][site]["adapter"]["id"] for site in (NORTH, SOUTH)}


def _answers(client, adapters, base_id) -> dict[str, np.ndarray]:
    answers = {}
    for site, image_id in ((NORTH, "target_006"), (SOUTH, "target_007"), (NORTH, "target_000")):
        path, params = client.infer("seapeft", image_id, {})
        assert params["site"] == {"name": site, "source": "image info 'site'", "adapter": True,
                                  "served": f"the adapter of site {site}"}
        assert params["model"]["kind"] == "adapted" and params["model"]["site"] == site
        assert params["model"]["id"] == adapters[site]
        answers[image_id] = _labels(path)
    # the same image through each site's adapter (the request names the site): the adapters differ
    for site in (NORTH, SOUTH):
        path, params = client.infer("seapeft", "target_006", {"site": site})
        assert params["model"]["id"] == adapters[site] and params["site"]["source"] == "request parameter 'site'"
        answers[f"target_006@{site}"] = _labels(path)
    path, params = client.infer("seapeft", "east_008", {})
    assert params["model"]["id"] == base_id
    assert params["site"]["adapter"] is False
    answers["east_008"] = _labels(path)
    return answers


def test_each_site_is_answered_by_its_own_adapter(env):
    answers = _answers(env["client"], env["adapters"], env["base_id"])
    assert not np.array_equal(answers[f"target_006@{NORTH}"], answers[f"target_006@{SOUTH}"])
    np.testing.assert_array_equal(answers["east_008"], env["east_before"])  # other sites' adapters change nothing
    loaded = env["client"].info()["seapeft"]["seapeft"]["sites"]["loaded"]
    assert set(loaded) == {NORTH, SOUTH}
    env["answers"] = answers


def test_a_restarted_server_still_serves_both_sites(env):
    first = env["server"]
    first.stop()
    env["server"], client = _start(env["work"] / "restarted", env["studies"], env["base"], app=first.app)
    answers = _answers(client, env["adapters"], env["base_id"])
    for key, before in env["answers"].items():
        np.testing.assert_array_equal(answers[key], before, err_msg=key)
