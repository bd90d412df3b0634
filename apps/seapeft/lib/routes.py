"""An extra route on the running server: ``GET /seapeft/report.png?model=seapeft`` serves the SEA-PEFT audit
report (report.png) of the published run of that model (404 while nothing is published); ``&site=<site>``
that of the site's published run."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from .errors import NOT_FOUND, http_error
from .models.published import read_pointer
from .models.sites import site_dir
from .sites.names import SiteNameError

ROUTE = "/seapeft/report.png"


def add_report_route(app: FastAPI, model_dirs: dict[str, Path]) -> None:
    """Register the route once (``model_dirs``: model name -> its ``model/<name>`` folder)."""
    if any(getattr(r, "path", None) == ROUTE for r in app.router.routes):
        return
    default = next(iter(model_dirs))

    def report(model: str = default, site: str | None = None) -> FileResponse:
        if model not in model_dirs:
            raise http_error(NOT_FOUND, f"report: no model '{model}' (known: {', '.join(model_dirs)})")
        try:
            pointer = read_pointer(site_dir(model_dirs[model], site or None))
        except SiteNameError as err:
            raise http_error(NOT_FOUND, f"report: {err}") from None
        path = Path(pointer["report"]) if pointer else None
        if path is None or not path.is_file():
            whose = f"model '{model}'" + (f" site '{site}'" if site else "")
            raise http_error(NOT_FOUND, f"report: {whose} has no published run with a report.png yet")
        return FileResponse(path, media_type="image/png", filename=f"{model}-{pointer['run']}-report.png")

    app.add_api_route(ROUTE, report, methods=["GET"], summary="SEA-PEFT audit report of the published run",
                      tags=["SEA-PEFT"])
