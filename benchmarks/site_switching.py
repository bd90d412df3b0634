"""Per-site adapters served per request: infer latency with three sites interleaved against one site, and memory.

Runs the real MONAI Label server on a copy of sample-data/ with three sites (two labelled images each,
named by ``--conf sites``), trains the three site adapters with one train request (one SEA-PEFT run per
site, each converted for OpenVINO on publish), restarts the server, and then times infer requests of one
held-out image from the client, in three phases of one server each:

1. ``one site``: every request names site ``north`` (after one warm-up request);
2. ``3 sites interleaved``: requests cycle north, south, east (after one warm-up request per site), the
   site models staying cached (``--conf site_cache 4``, the default);
3. ``3 sites, no cache``: the same cycle with ``--conf site_cache 1``, so each switch loads the site's model
   and compiles its OpenVINO model again (what a server without the cache would pay).

It prints one Markdown table (median and 90th-percentile latency, ratio to one site, the server's resident
memory after the phase) and the ratios, all measured in this one run; docs/BENCHMARKS.md holds its output.

  .venv/bin/python benchmarks/site_switching.py [--requests 12] [--steps 40]

Uses the test support's server starter (``tests/app_support.py``); about ten minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from app_support import Server, base_model_for_tests, copy_datastore  # noqa: E402

SITES = {"north": ["target_000", "target_001"], "south": ["target_002", "target_003"],
         "east": ["target_004", "target_005"]}
IMAGE = "target_006"  # held out: labelled by no site


def _rss_mib(server: Server) -> float:
    """Resident memory of the server process and its children, MiB."""
    process = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def _start(work: Path, studies: Path, base: Path, cache: int, app: Path | None = None):
    from monailabel.client import MONAILabelClient

    work.mkdir(parents=True, exist_ok=True)
    mapping = {image: site for site, images in SITES.items() for image in images}
    server = Server(work, studies, {"base_model": str(base), "auto_scoring": "false", "sites": json.dumps(mapping),
                                    "site_cache": str(cache)}, app=app)
    server.wait_ready()
    return server, MONAILabelClient(server.url, tmpdir=str(work / "client"))


def _train(client, steps: int, timeout: float = 3600) -> float:
    started = time.monotonic()
    client.train_start("seapeft", {"preset": "cpu", "steps": steps, "refine_steps": max(1, steps // 4)})
    while (status := client.train_status())["status"] in ("SUBMITTED", "RUNNING"):
        if time.monotonic() - started > timeout:
            raise TimeoutError("training did not finish")
        time.sleep(2)
    if status["status"] != "DONE":
        raise RuntimeError("training failed:\n" + "\n".join(status.get("details", [])))
    return time.monotonic() - started


def _infer(client, site: str) -> float:
    started = time.monotonic()
    _, params = client.infer("seapeft", IMAGE, {"site": site})
    seconds = time.monotonic() - started
    if not params["site"]["adapter"] or params["model"]["site"] != site:
        raise RuntimeError(f"site {site} was not answered by its adapter: {params['site']}")
    return seconds


def _phase(client, sites: list[str], requests: int, warm: bool = True) -> list[float]:
    if warm:
        for site in sites:
            _infer(client, site)
    return [_infer(client, sites[i % len(sites)]) for i in range(requests)]


def _row(name: str, seconds: list[float], one: float, rss: float) -> str:
    median = statistics.median(seconds)
    p90 = statistics.quantiles(seconds, n=10)[-1] if len(seconds) > 1 else median
    return f"| {name} | {len(seconds)} | {median:.2f} | {p90:.2f} | {median / one:.2f}x | {rss:.0f} |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12, help="timed requests per phase (default 12)")
    parser.add_argument("--steps", type=int, default=40, help="search steps of each site's run (cpu preset)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="site-switching-") as tmp:
        work = Path(tmp)
        base = base_model_for_tests(work / "base_model")
        studies = copy_datastore(work / "datastore")
        server, client = _start(work / "train", studies, base, cache=4)
        try:
            train_s = _train(client, args.steps)
            sites = client.info()["seapeft"]["seapeft"]["sites"]["sites"]
        finally:
            server.stop()
        app = server.app
        server, client = _start(work / "cached", studies, base, cache=4, app=app)
        try:
            one = _phase(client, ["north"], args.requests)
            rss_one = _rss_mib(server)
            interleaved = _phase(client, list(SITES), args.requests)
            rss_three = _rss_mib(server)
            loaded = client.info()["seapeft"]["seapeft"]["sites"]["loaded"]
        finally:
            server.stop()
        server, client = _start(work / "uncached", studies, base, cache=1, app=app)
        try:
            reloading = _phase(client, list(SITES), args.requests, warm=False)
            rss_reload = _rss_mib(server)
        finally:
            server.stop()
    one_median = statistics.median(one)
    print(f"Machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores; image {IMAGE}, "
          f"{args.requests} timed requests per phase; three site adapters trained in {train_s:.0f} s "
          f"({args.steps} search steps each, cpu preset)")
    print(f"Sites: " + "; ".join(f"{name}: {site['adapter']['cost']} parameters, adapter files "
                                 f"{sum(v for k, v in site['adapter']['sizes'].items() if k != 'model.pt') / 1024:.1f} KB, "
                                 f"merged model {site['adapter']['sizes']['model.pt'] / 2**20:.1f} MiB, "
                                 f"served by {(site['adapter'].get('serving') or {}).get('precisions') or 'PyTorch'}"
                                 for name, site in sorted(sites.items())))
    print()
    print("| phase | requests | median s | p90 s | median / one site | server RSS MiB |")
    print("|---|---|---|---|---|---|")
    print(_row("one site (north)", one, one_median, rss_one))
    print(_row(f"3 sites interleaved, cached ({', '.join(loaded)} loaded)", interleaved, one_median, rss_three))
    print(_row("3 sites interleaved, site_cache 1 (reload per switch)", reloading, one_median, rss_reload))
    print()
    print(f"interleaved / one site: {statistics.median(interleaved) / one_median:.2f}x latency, "
          f"{rss_three - rss_one:+.0f} MiB for two more cached sites; without the cache: "
          f"{statistics.median(reloading) / one_median:.2f}x latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
