"""Clear HTTP errors: MONAI Label turns an ordinary exception into a bare "Internal Server Error", so
the app raises FastAPI's HTTPException with a message naming the file and the problem, and logs it."""

from __future__ import annotations

import logging

from fastapi import HTTPException

logger = logging.getLogger("seapeft")

BAD_INPUT = 400
NOT_FOUND = 404
SERVER_FAULT = 500


def http_error(status: int, message: str) -> HTTPException:
    """Log ``message`` and return the HTTPException to raise (``status`` 4xx: the request; 5xx: the server)."""
    logger.error(f"HTTP {status}: {message}")
    return HTTPException(status_code=status, detail=message)
