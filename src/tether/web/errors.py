"""One mapping from Tether's errors to HTTP responses (design-notes S12).

Every :class:`~tether.errors.TetherError` becomes ``{"error": {...}}`` with the status
:func:`tether.errors.http_status` maps and the error's stable ``code``. Request validation
failures become a :class:`~tether.errors.ValidationFailed` with one message per field, so
clients see a single error shape. Endpoints never catch errors themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from tether.errors import (
    NotFound,
    TetherError,
    Unauthenticated,
    UsageError,
    ValidationFailed,
    http_status,
)
from tether.web.pages import HTML, render_error

__all__ = ["error_handlers", "error_response", "validation_error"]

log = logging.getLogger("tether.web")

Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def validation_error(errors: Any) -> ValidationFailed:
    """A pydantic/FastAPI error list as one :class:`ValidationFailed` with field errors."""
    fields: dict[str, str] = {}
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        fields[".".join(loc) or "body"] = str(err.get("msg", "invalid"))
    return ValidationFailed(
        "the request is invalid: " + "; ".join(f"{k}: {v}" for k, v in fields.items()),
        fields=fields,
        hint="correct the named fields",
    )


def error_response(exc: TetherError) -> JSONResponse:
    """The JSON response for a Tether error."""
    status = http_status(exc)
    body = exc.to_dict()
    headers = {"WWW-Authenticate": 'Bearer realm="tether"'} if status == 401 else None
    if status >= 500:
        log.error("request failed: %s [%s]", exc, exc.code)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _tether(request: Request, exc: TetherError) -> Response:
    if request.scope.get(HTML):
        return render_error(request, exc)
    return error_response(exc)


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    return await _tether(request, validation_error(exc.errors()))


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    error: TetherError
    if exc.status_code == 404:
        error = NotFound(f"no route {request.url.path}")
    elif exc.status_code == 401:
        error = Unauthenticated(str(exc.detail))
    else:
        error = UsageError(str(exc.detail))
    response = error_response(error)
    response.status_code = exc.status_code
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not a Tether error: keep the shape, log the traceback (masked), say no more.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(TetherError("internal error; see the service log"))


def error_handlers() -> dict[Any, Handler]:
    """The app's ``exception_handlers`` mapping."""
    return {
        Exception: _unexpected,
        TetherError: _tether,
        RequestValidationError: _validation,
        StarletteHTTPException: _http,
    }
