"""Server-rendered HTML: the Jinja2 environment and the error page.

Autoescaping is on for every template. Pages carry no third-party resources and no
script; the responses' CSP (``app.py``) forbids them anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from tether.errors import TetherError, Unauthenticated, ValidationFailed, http_status

__all__ = [
    "FORM",
    "HTML",
    "RETURN_TO",
    "html_errors",
    "render",
    "render_error",
    "templates",
    "with_params",
]

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
HTML = "tether.html"
RETURN_TO = "tether.return_to"
FORM = "tether.form"  # (template, context) to re-render with field errors


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters appended."""
    return url + ("&" if "?" in url else "?") + urlencode(params)


def html_errors(request: Request) -> None:
    """Dependency: this route's errors are shown as an HTML page, not JSON."""
    request.scope[HTML] = True


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """Render a template with the request, the CSRF token and the signed-in admin."""
    from tether.web.security import csrf_token

    service = getattr(request.app.state, "web", None) is not None
    context = {
        # only the service's own session gets a CSRF token (never a host app's)
        "csrf": csrf_token(request) if service else "",
        "admin": request.session.get("admin_name")
        if "session" in request.scope
        else None,
        **context,
    }
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def render_error(request: Request, exc: TetherError) -> Response:
    """The page for a failed OAuth step or admin action: what, where, what next.

    An end user's failed connect goes back to the host app's return URL instead,
    with the error's code (``tether_error``).
    """
    back = request.scope.get(RETURN_TO)
    if isinstance(back, str):
        return RedirectResponse(with_params(back, tether_error=exc.code), 303)
    form = request.scope.get(FORM)
    if form is not None and isinstance(exc, ValidationFailed | Unauthenticated):
        name, context = form
        fields = exc.details.get("fields") or {"form": exc.message}
        context = {**context, "errors": fields, "message": exc.message}
        return render(request, name, context, status_code=http_status(exc))
    if isinstance(exc, Unauthenticated):
        return RedirectResponse("/admin/login", 303)
    return render(
        request,
        "error.html",
        {"error": exc, "status": http_status(exc)},
        status_code=http_status(exc),
    )
