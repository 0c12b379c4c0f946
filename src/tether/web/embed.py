"""What a host web app mounts to embed Tether (design-notes D4).

:func:`embedded_app` returns a small ASGI (FastAPI) app with the browser-facing routes
an app embedding Tether needs, for *its own* signed-in users:

* ``GET /oauth/callback`` finishes a connect (mount so that this is the redirect URI
  the host's :class:`~tether.hub.tether.Tether` was opened with);
* ``GET /oauth/client-metadata.json`` serves the client ID metadata document;
* ``GET /connect/{server}?return_to=…`` starts the current user's connect and sends the
  browser to the authorization server; the callback returns to ``return_to`` (a local
  path, or under one of ``return_urls``) with ``tether_status`` or ``tether_error``;
* ``GET /connections/{server}`` and ``POST /connections/{server}/disconnect`` for the
  current user, as JSON.

The host tells Tether who the user is with a dependency (any FastAPI dependency: a
callable taking ``Request``), and gives the Tether the same way, usually from its own
lifespan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from starlette.responses import RedirectResponse, Response

from tether.errors import Forbidden, Unauthenticated
from tether.web.config import METADATA_PATH, return_url_allowed
from tether.web.errors import error_handlers
from tether.web.flows import FlowCookieMiddleware, peek_flow, remember_flow
from tether.web.oauth import client_metadata as metadata_endpoint
from tether.web.oauth import oauth_callback
from tether.web.pages import html_errors
from tether.web.security import TetherDep, get_tether

__all__ = ["embedded_app", "host_user"]


def host_user(request: Request) -> str | None:
    """Placeholder dependency the host replaces (``current_user=`` of :func:`embedded_app`)."""
    return None  # pragma: no cover - always overridden


async def _user(user: Annotated[str | None, Depends(host_user)]) -> str:
    if not user:
        raise Unauthenticated("sign in to the app first")
    return user


User = Annotated[str, Depends(_user)]


def embedded_app(
    *,
    tether: Callable[..., Any],
    current_user: Callable[..., Any],
    session_secret: str,
    return_urls: Sequence[str] = (),
    secure_cookies: bool = True,
) -> FastAPI:
    """The sub-application a host mounts (e.g. at ``/tether``).

    Args:
        tether: A FastAPI dependency returning the host's :class:`Tether`.
        current_user: A FastAPI dependency returning the signed-in user's id, or
            ``None`` when nobody is signed in.
        session_secret: Signs the small cookie that binds a connect to the browser
            that started it (path-scoped to the mount).
        return_urls: Absolute URL prefixes ``return_to`` may point at (local paths are
            always allowed).
        secure_cookies: Mark the cookie ``Secure`` (keep it on outside local tests).
    """
    app = FastAPI(
        exception_handlers=error_handlers(),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.return_urls = tuple(return_urls)
    app.dependency_overrides[get_tether] = tether
    app.dependency_overrides[host_user] = current_user
    app.add_middleware(
        FlowCookieMiddleware, secret=session_secret, secure=secure_cookies
    )
    html = [Depends(html_errors)]
    app.add_api_route("/oauth/callback", _callback, methods=["GET"], dependencies=html)
    app.add_api_route(METADATA_PATH, metadata_endpoint, methods=["GET"])
    app.add_api_route("/connect/{server}", _connect, methods=["GET"], dependencies=html)
    app.add_api_route("/connections/{server}", _status, methods=["GET"])
    app.add_api_route("/connections/{server}/disconnect", _disconnect, methods=["POST"])
    return app


async def _callback(request: Request, tether: TetherDep, user: User) -> Response:
    """Complete the current user's connect (the user must be the one who started it)."""
    flow = peek_flow(request, str(request.query_params.get("state", ""))) or {}
    if flow.get("user") not in (None, user):
        raise Forbidden("this connect was started by another user of this browser")
    return await oauth_callback(request, tether)


async def _connect(
    request: Request,
    server: str,
    tether: TetherDep,
    user: User,
    return_to: Annotated[str, Query(max_length=2000)] = "/",
) -> Response:
    """Start connecting ``server`` for the current user."""
    if not return_url_allowed(return_to, request.app.state.return_urls):
        raise Forbidden("return_to is not allowed", hint="add it to return_urls")
    started = await tether.connect(server, user=user)
    remember_flow(request, started, user, return_to)
    return RedirectResponse(started.authorization_url, 303)


async def _status(server: str, tether: TetherDep, user: User) -> dict[str, Any]:
    """The current user's connection to ``server`` (never a token)."""
    return (await tether.connection(server, user=user)).to_dict()


async def _disconnect(server: str, tether: TetherDep, user: User) -> dict[str, Any]:
    """Revoke and forget the current user's connection."""
    outcomes = await tether.disconnect(server, user=user, actor=user)
    return {"revocation": outcomes}
