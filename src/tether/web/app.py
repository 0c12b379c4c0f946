"""The web service's app factory (design-notes D4; S12).

``create_app(settings)`` reads the settings once and returns a FastAPI app; nothing
happens at import. The lifespan builds the :class:`~tether.hub.tether.Tether` (unless one
is passed in), puts it on ``app.state``, starts the background jobs it is given, and
closes everything on shutdown. Routers are included here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response

from tether.config import Settings
from tether.hub.tether import Tether
from tether.web import admin, api, oauth, ops
from tether.web.config import WebConfig
from tether.web.errors import error_handlers
from tether.web.flows import FlowCookieMiddleware
from tether.web.metrics import Metrics, instrument
from tether.web.oauth import ConnectLinks

__all__ = [
    "BackgroundJob",
    "create_app",
    "create_app_from_env",
    "open_service_tether",
]

BackgroundJob = Callable[[Tether], Coroutine[Any, Any, None]]
"""A long-running job the lifespan starts with the service's Tether and cancels at
shutdown (proactive refresh, tool-list refresh, health checks)."""

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self' https: http:; frame-ancestors 'none'",
}


def _version() -> str:
    try:
        return version("tether-mcp")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


async def open_service_tether(web: WebConfig) -> Tether:
    """The Tether for a configured service (SQLite and the key file by default)."""
    return await Tether.open(
        database_url=web.database_url,
        key_ring=web.key_ring(),
        redirect_uri=web.callback_url,
        client_metadata_url=web.metadata_url,
        client_name=web.client_name,
        allow_networks=web.allow_networks,
        journal_path=web.settings.resolved_journal_path(),
    )


def create_app(
    settings: Settings,
    *,
    tether: Tether | None = None,
    background: Sequence[BackgroundJob] = (),
) -> FastAPI:
    """Build the Tether web service.

    Args:
        settings: Read once, here.
        tether: Use this Tether (tests, embedding) instead of opening one; it is then
            not closed at shutdown.
        background: Jobs to run for the app's lifetime, each given the Tether.

    Raises:
        ConfigurationError: The public URL is not https on a non-loopback host.
    """
    web = WebConfig.from_settings(settings)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = tether is None
        service = tether if tether is not None else await open_service_tether(web)
        app.state.tether = service
        instrument(service, metrics)
        tasks = [asyncio.create_task(job(service)) for job in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if owned:
                await service.aclose()

    app = FastAPI(
        title="Tether",
        version=_version(),
        lifespan=lifespan,
        exception_handlers=error_handlers(),
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.web = web
    app.state.metrics = metrics
    app.state.connect_links = ConnectLinks(web.session_secret)
    app.add_middleware(
        FlowCookieMiddleware, secret=web.session_secret, secure=web.secure_cookies
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=web.session_secret,
        session_cookie="tether_session",
        max_age=8 * 3600,
        same_site="lax",
        https_only=web.secure_cookies,
    )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    app.include_router(ops.router)
    app.include_router(oauth.router)
    app.include_router(api.router, prefix="/api/v1")
    app.include_router(admin.router, prefix="/admin")
    return app


async def run_jobs(tether: Tether) -> None:
    """The installation's background jobs (``tether.hub.jobs``).

    Every worker runs them; a lease per job elects the one that does each round.
    """
    await tether.jobs.forever()


def create_app_from_env() -> FastAPI:
    """Uvicorn's factory for ``tether serve``: each worker reads the settings once."""
    return create_app(Settings(), background=[run_jobs])
