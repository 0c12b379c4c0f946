"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from tether.store.listing import listing_of
from tether.web.metrics import CONTENT_TYPE, Metrics
from tether.web.security import TetherDep

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(tether: TetherDep) -> dict[str, str]:
    """The store answers (a failure is a ``StorageError``: 500 with its code)."""
    await tether.stores.servers.list()
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, tether: TetherDep) -> Response:
    """Prometheus text exposition (connections, calls, refreshes, background jobs)."""
    registry: Metrics = request.app.state.metrics
    counts = await listing_of(tether.stores).count_by_status()
    jobs = await tether.jobs.report()
    sessions = (tether.tools.open_sessions, tether.tools.open_connections)
    return PlainTextResponse(
        registry.render(counts, jobs, sessions=sessions), media_type=CONTENT_TYPE
    )
