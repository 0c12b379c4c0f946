"""The JSON API under ``/api/v1`` (design-notes D4; R3.18).

Each endpoint parses, calls one hub function and renders; errors reach the client
through the app's one exception mapping (``web/errors.py``). Admin keys may do
everything; ``app`` keys read servers, use tools and toolsets, and connect their own
users (``X-Tether-User``), never another app's.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tether.errors import Forbidden, UsageError
from tether.hub.audit import server_view
from tether.hub.credentials import CredentialInfo
from tether.hub.servers import ServerSpec
from tether.hub.tether import ConnectionInfo
from tether.mcp.render import render_tools
from tether.mcp.results import ToolResult
from tether.store.base import AuditEvent, ConnectionStatus, ServerRecord, Toolset
from tether.store.listing import ConnectionSummary, listing_of
from tether.store.paging import decode_cursor, encode_cursor
from tether.web.oauth import connect_link_url
from tether.web.security import (
    AdminPrincipal,
    CurrentPrincipal,
    Principal,
    TetherDep,
    require_admin,
)

__all__ = ["router"]

router = APIRouter()
admin_only = [Depends(require_admin)]


# ---------------------------------------------------------------------- models


class ServerOut(BaseModel):
    """A server's settings (never a secret)."""

    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    url: str


class ServerTestOut(BaseModel):
    """What a connection test learned."""

    protocol_version: str | None
    server_capabilities: dict[str, Any]
    server_info: dict[str, Any]
    tool_count: int
    tool_names: list[str]


class CredentialIn(BaseModel):
    """A new named secret; the value is never returned."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=10_000)
    description: str = Field(default="", max_length=1000)


class CredentialUpdate(BaseModel):
    """Rename, re-describe or replace the value."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    value: str | None = Field(default=None, min_length=1, max_length=10_000)
    description: str | None = Field(default=None, max_length=1000)


class CredentialOut(BaseModel):
    """A credential's metadata."""

    id: str
    name: str
    description: str
    created_at: datetime | None
    updated_at: datetime | None


class ConnectionOut(BaseModel):
    """A connection without its tokens."""

    server_id: str
    server_name: str
    subject: str
    status: str
    issuer: str | None
    client_id: str | None
    scopes: list[str]
    required_scopes: list[str]
    expires_at: datetime | None
    has_refresh_token: bool
    connected_at: datetime | None
    refreshed_at: datetime | None
    last_error_code: str | None
    last_error: str | None


class ConnectStart(BaseModel):
    """Options for starting a connect."""

    model_config = ConfigDict(extra="forbid")
    return_to: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the end user's browser returns (checked against "
        "the allow-list); needed for connect_url.",
    )
    user: str | None = Field(default=None, description="Admins: act for this user.")


class ConnectStarted(BaseModel):
    """Where to send the browser."""

    authorization_url: str
    state: str
    expires_at: datetime
    server_id: str
    subject: str
    connect_url: str | None = Field(
        default=None,
        description="A signed Tether link that starts the flow in the initiator's "
        "browser (and returns to return_to, if given); only a flow started this way "
        "can complete.",
    )


class ToolsetServer(BaseModel):
    """One server of a toolset, with an optional tool allow-list."""

    model_config = ConfigDict(extra="forbid")
    server: str = Field(min_length=1)
    tools: list[str] | None = None


class ToolsetIn(BaseModel):
    """A toolset to create or import."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)
    servers: list[ToolsetServer] = Field(default_factory=list)


class ToolsetUpdate(BaseModel):
    """A toolset's new servers."""

    model_config = ConfigDict(extra="forbid")
    servers: list[ToolsetServer]


class ToolsetOut(BaseModel):
    """A toolset."""

    id: str
    name: str
    description: str
    servers: list[dict[str, Any]]


class CallIn(BaseModel):
    """A tool call."""

    model_config = ConfigDict(extra="forbid")
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolsetCallIn(CallIn):
    """A toolset tool call by exposed name."""

    tool: str = Field(min_length=1)


class CallOut(BaseModel):
    """A tool call's result (failures are results too, for the model)."""

    text: str
    is_error: bool
    error_code: str | None
    structured: Any = None


class JobOut(BaseModel):
    """A background job as this worker saw it, and who holds its lease now."""

    name: str
    every_seconds: float
    runs: int = Field(description="Rounds run by this worker.")
    lease_skips: int = Field(
        description="Rounds skipped: another worker held the lease."
    )
    last_started: datetime | None
    last_finished: datetime | None
    last_outcome: Literal["ok", "partial", "failed"] | None
    last_error: str | None = Field(
        description="Error code that failed the whole round."
    )
    last_counts: dict[str, int] = Field(
        description="ok, failed, skipped in the last round."
    )
    totals: dict[str, int] = Field(description="ok, failed, skipped over every round.")
    errors: dict[str, int] = Field(description="Failed items by error code.")
    next_run: datetime | None
    lease_holder: str | None = Field(
        description="Worker holding the lease; null: free."
    )
    held_here: bool


class AuditOut(BaseModel):
    """One audit event (secrets masked when recorded)."""

    id: int | None
    at: datetime
    actor: str | None
    action: str
    target_type: str
    target_id: str | None
    server_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None


# ---------------------------------------------------------------------- helpers


def _server(record: ServerRecord) -> dict[str, Any]:
    return server_view(record)


def _conn(info: ConnectionInfo) -> ConnectionOut:
    return ConnectionOut(**info.to_dict())


def _cred(info: CredentialInfo) -> CredentialOut:
    return CredentialOut(**dataclasses.asdict(info))


def _call(result: ToolResult) -> CallOut:
    return CallOut(
        text=result.text,
        is_error=result.is_error,
        error_code=result.error_code,
        structured=result.structured,
    )


async def _toolset(tether: TetherDep, toolset: Toolset) -> ToolsetOut:
    exported = await tether.toolsets.export(toolset.id)
    return ToolsetOut(
        id=toolset.id,
        name=toolset.name,
        description=toolset.description,
        servers=exported["servers"],
    )


def _audit(event: AuditEvent) -> AuditOut:
    return AuditOut(
        id=event.id,
        at=event.at,
        actor=event.actor,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        server_id=event.server_id,
        before=dict(event.before) if event.before is not None else None,
        after=dict(event.after) if event.after is not None else None,
        detail=event.detail,
    )


UserQuery = Annotated[
    str | None, Query(description="Admins: act for this user (per-user servers).")
]


# ---------------------------------------------------------------------- servers


@router.get("/servers", tags=["servers"], response_model=list[ServerOut])
async def list_servers(tether: TetherDep, _: CurrentPrincipal) -> list[dict[str, Any]]:
    """Every server, ordered by name."""
    return [_server(s) for s in await tether.servers.list()]


@router.post("/servers", tags=["servers"], status_code=201, response_model=ServerOut)
async def create_server(
    spec: ServerSpec, tether: TetherDep, who: AdminPrincipal
) -> dict[str, Any]:
    """Register a server; 422 with field errors when invalid."""
    record = await tether.servers.create(spec.model_dump(), actor=who.actor)
    return _server(record)


@router.post("/servers/test", tags=["servers"], dependencies=admin_only)
async def check_unsaved_server(spec: ServerSpec, tether: TetherDep) -> ServerTestOut:
    """Test a server form before saving (``initialize`` + ``tools/list``)."""
    record = await tether.servers.preview(spec.model_dump())
    if record.auth_mode == "oauth":
        raise UsageError(
            "an OAuth server must be saved and connected before it can be tested",
            hint="save it, connect it, then test",
        )
    result = await tether.tools.test_connection(record, "shared")
    return _test_out(result)


def _test_out(result: Any) -> ServerTestOut:
    return ServerTestOut(
        protocol_version=result.protocol_version,
        server_capabilities=dict(result.capabilities),
        server_info=dict(result.server_info),
        tool_count=result.tool_count,
        tool_names=list(result.tool_names),
    )


@router.get("/servers/{ref}", tags=["servers"], response_model=ServerOut)
async def get_server(
    ref: str, tether: TetherDep, _: CurrentPrincipal
) -> dict[str, Any]:
    """One server by id or name."""
    return _server(await tether.servers.get(ref))


@router.patch("/servers/{ref}", tags=["servers"], response_model=ServerOut)
async def update_server(
    ref: str, changes: dict[str, Any], tether: TetherDep, who: AdminPrincipal
) -> dict[str, Any]:
    """Change fields; a re-authorization trigger disconnects every grant."""
    return _server(await tether.servers.update(ref, changes, actor=who.actor))


@router.delete("/servers/{ref}", tags=["servers"], status_code=204)
async def delete_server(ref: str, tether: TetherDep, who: AdminPrincipal) -> Response:
    """Revoke the server's grants and delete it."""
    await tether.delete_server(ref, actor=who.actor)
    return Response(status_code=204)


@router.post("/servers/{ref}/test", tags=["servers"])
async def check_server(
    ref: str, tether: TetherDep, who: CurrentPrincipal, user: UserQuery = None
) -> ServerTestOut:
    """Connect and list tools now, without touching caches or health."""
    return _test_out(await tether.test_connection(ref, user=who.user(user)))


# ---------------------------------------------------------------------- credentials


@router.get("/credentials", tags=["credentials"], dependencies=admin_only)
async def list_credentials(tether: TetherDep) -> list[CredentialOut]:
    """Credential names and descriptions (never values)."""
    return [_cred(c) for c in await tether.credentials.list()]


@router.post("/credentials", tags=["credentials"], status_code=201)
async def create_credential(
    body: CredentialIn, tether: TetherDep, who: AdminPrincipal
) -> CredentialOut:
    """Store a secret, encrypted at rest; it is never shown again."""
    info = await tether.credentials.create(
        body.name, body.value, description=body.description, actor=who.actor
    )
    return _cred(info)


@router.patch("/credentials/{ref}", tags=["credentials"])
async def update_credential(
    ref: str, body: CredentialUpdate, tether: TetherDep, who: AdminPrincipal
) -> CredentialOut:
    """Rename, re-describe or replace the value."""
    info = await tether.credentials.update(
        ref,
        name=body.name,
        value=body.value,
        description=body.description,
        actor=who.actor,
    )
    return _cred(info)


@router.delete("/credentials/{ref}", tags=["credentials"], status_code=204)
async def delete_credential(
    ref: str, tether: TetherDep, who: AdminPrincipal
) -> Response:
    """Delete a credential no server uses (409 otherwise)."""
    await tether.credentials.delete(ref, actor=who.actor)
    return Response(status_code=204)


# ---------------------------------------------------------------------- connections


@router.get("/connections", tags=["connections"])
async def list_connections(
    tether: TetherDep,
    who: CurrentPrincipal,
    response: Response,
    server: str | None = None,
    status: ConnectionStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    after: str | None = None,
) -> list[ConnectionOut]:
    """Connections (admins: all; apps: their own users'), a page at a time.

    Ordered by server id and subject; no token is read to build the page. The
    ``X-Next-Cursor`` header carries the cursor to pass as ``after`` for the next
    page, absent on the last one: a keyset page, as fast deep in the list as at
    its start (``offset`` still works, but walks every skipped row).
    """
    names = {s.id: s.name for s in await tether.servers.list()}
    server_ids = [(await tether.servers.get(server)).id] if server else None
    page = await listing_of(tether.stores).page(
        server_ids=server_ids,
        status=status,
        subject_prefix=None if who.role == "admin" else f"{who.app}/",
        limit=limit + 1,
        offset=offset,
        after=None if after is None else _key(decode_cursor(after, (str, str))),
    )
    if len(page) > limit:
        page = page[:limit]
        cursor = encode_cursor((page[-1].server_id, page[-1].subject))
        response.headers["X-Next-Cursor"] = cursor
    return [
        ConnectionOut(server_name=names.get(c.server_id, ""), **_fields(c))
        for c in page
    ]


def _key(parts: tuple[str | int, ...]) -> tuple[str, str]:
    return str(parts[0]), str(parts[1])


def _fields(summary: ConnectionSummary) -> dict[str, Any]:
    out = dataclasses.asdict(summary)
    out["scopes"] = list(summary.scopes)
    out["required_scopes"] = list(summary.required_scopes)
    return out


@router.get("/servers/{ref}/connection", tags=["connections"])
async def get_connection(
    ref: str, tether: TetherDep, who: CurrentPrincipal, user: UserQuery = None
) -> ConnectionOut:
    """The shared connection, or the user's for a per-user server."""
    return _conn(await tether.connection(ref, user=who.user(user)))


@router.post("/servers/{ref}/connection", tags=["connections"], status_code=201)
async def start_connection(
    ref: str,
    request: Request,
    tether: TetherDep,
    who: CurrentPrincipal,
    body: ConnectStart | None = None,
) -> ConnectStarted:
    """Start connecting: the authorization URL, and a ``connect_url`` when asked.

    ``connect_url`` (with ``return_to``) binds the flow to the user's browser.

    A shared connection needs an admin; a per-user one acts for the caller's user.
    """
    body = body or ConnectStart()
    server = await tether.servers.get(ref)
    user = _connect_user(who, body, per_user=server.oauth.per_user)
    back = body.return_to or ""
    web = request.app.state.web
    if back and not web.return_url_allowed(back):
        raise Forbidden(
            "return_to is not on the allow-list",
            hint="add its prefix to TETHER_RETURN_URLS",
        )
    started = await tether.connect(server.id, user=user)
    out = ConnectStarted(**dataclasses.asdict(started))
    # Every start is bound to its initiator (issue 7 item 11): the browser that
    # opens connect_url completes the flow for ``user``; the bare authorization_url
    # can only be completed by a browser that started it through Tether.
    out.connect_url = connect_link_url(
        web.base_url,
        request.app.state.connect_links,
        server.id,
        started.initiator,
        back,
    )
    return out


def _connect_user(who: Principal, body: ConnectStart, *, per_user: bool) -> str | None:
    if not per_user:
        if who.role != "admin":
            raise Forbidden("only an admin connects a shared server")
        return who.actor  # the admin is the initiator of a shared connection
    return who.require_user(body.user)


@router.post("/servers/{ref}/connection/refresh", tags=["connections"])
async def refresh_connection(
    ref: str, tether: TetherDep, who: CurrentPrincipal, user: UserQuery = None
) -> ConnectionOut:
    """Refresh the connection's tokens now (401 when it must be connected again)."""
    server = await tether.servers.get(ref)
    if not server.oauth.per_user and who.role != "admin":
        raise Forbidden("only an admin refreshes a shared connection")
    acting = who.require_user(user) if server.oauth.per_user else None
    return _conn(await tether.refresh(server.id, user=acting))


@router.delete("/servers/{ref}/connection", tags=["connections"])
async def disconnect(
    ref: str, tether: TetherDep, who: CurrentPrincipal, user: UserQuery = None
) -> dict[str, list[str]]:
    """Revoke and forget the connection's tokens."""
    server = await tether.servers.get(ref)
    if not server.oauth.per_user and who.role != "admin":
        raise Forbidden("only an admin disconnects a shared server")
    acting = who.require_user(user) if server.oauth.per_user else None
    outcomes = await tether.disconnect(server.id, user=acting, actor=who.actor)
    return {"revocation": outcomes}


# ---------------------------------------------------------------------- tools


@router.get("/servers/{ref}/tools", tags=["tools"])
async def list_tools(
    ref: str,
    tether: TetherDep,
    who: CurrentPrincipal,
    user: UserQuery = None,
    refresh: bool = False,
) -> list[dict[str, Any]]:
    """A server's MCP tools (cached)."""
    return await tether.list_tools(ref, user=who.user(user), refresh=refresh)


@router.post("/servers/{ref}/tools/{tool}/call", tags=["tools"])
async def call_tool(
    ref: str,
    tool: str,
    body: CallIn,
    tether: TetherDep,
    who: CurrentPrincipal,
    user: UserQuery = None,
) -> CallOut:
    """Call a tool by its MCP name; failures come back as error results."""
    result = await tether.call_tool(ref, tool, body.arguments, user=who.user(user))
    return _call(result)


# ---------------------------------------------------------------------- toolsets


@router.get("/toolsets", tags=["toolsets"])
async def list_toolsets(tether: TetherDep, _: CurrentPrincipal) -> list[ToolsetOut]:
    """Every toolset."""
    return [await _toolset(tether, t) for t in await tether.stores.toolsets.list()]


@router.post("/toolsets", tags=["toolsets"], status_code=201)
async def create_toolset(
    body: ToolsetIn, tether: TetherDep, who: AdminPrincipal
) -> ToolsetOut:
    """Create a toolset from servers and optional tool allow-lists."""
    toolset = await tether.toolsets.create(
        body.name,
        [s.model_dump() for s in body.servers],
        description=body.description,
        actor=who.actor,
    )
    return await _toolset(tether, toolset)


@router.post("/toolsets/import", tags=["toolsets"], status_code=201)
async def import_toolset(
    body: ToolsetIn, tether: TetherDep, who: AdminPrincipal
) -> ToolsetOut:
    """Create a toolset from an export; servers are matched by name."""
    toolset = await tether.toolsets.import_(body.model_dump(), actor=who.actor)
    return await _toolset(tether, toolset)


@router.get("/toolsets/{ref}", tags=["toolsets"])
async def get_toolset(ref: str, tether: TetherDep, _: CurrentPrincipal) -> ToolsetOut:
    """One toolset by id or name."""
    return await _toolset(tether, await tether.toolsets.get(ref))


@router.put("/toolsets/{ref}", tags=["toolsets"])
async def update_toolset(
    ref: str, body: ToolsetUpdate, tether: TetherDep, who: AdminPrincipal
) -> ToolsetOut:
    """Replace a toolset's servers."""
    toolset = await tether.toolsets.update(
        ref, [s.model_dump() for s in body.servers], actor=who.actor
    )
    return await _toolset(tether, toolset)


@router.delete("/toolsets/{ref}", tags=["toolsets"], status_code=204)
async def delete_toolset(ref: str, tether: TetherDep, who: AdminPrincipal) -> Response:
    """Delete a toolset."""
    await tether.toolsets.delete(ref, actor=who.actor)
    return Response(status_code=204)


@router.get("/toolsets/{ref}/export", tags=["toolsets"])
async def export_toolset(
    ref: str, tether: TetherDep, _: CurrentPrincipal
) -> dict[str, Any]:
    """A portable description naming servers by name."""
    return await tether.toolsets.export(ref)


@router.get("/toolsets/{ref}/tools", tags=["toolsets"])
async def toolset_tools(
    ref: str,
    tether: TetherDep,
    who: CurrentPrincipal,
    provider: Literal["openai_chat", "openai_responses", "anthropic"] = "openai_chat",
    strict: bool = False,
    user: UserQuery = None,
) -> dict[str, Any]:
    """The toolset's tool definitions for one model provider, for this user."""
    view = await tether.toolset(ref, user=who.user(user))
    return {
        "tools": render_tools(view.tools, provider, strict=strict),
        "excluded": dict(view.excluded),
    }


@router.post("/toolsets/{ref}/call", tags=["toolsets"])
async def toolset_call(
    ref: str,
    body: ToolsetCallIn,
    tether: TetherDep,
    who: CurrentPrincipal,
    user: UserQuery = None,
) -> CallOut:
    """Call a toolset's tool by its exposed name."""
    result = await tether.call(ref, body.tool, body.arguments, user=who.user(user))
    return _call(result)


# ---------------------------------------------------------------------- audit


@router.get("/audit", tags=["audit"], dependencies=admin_only)
async def audit(
    tether: TetherDep,
    server: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Newest audit events (secrets masked)."""
    return [_audit(e) for e in await tether.audit(server_ref=server, limit=limit)]


# ---------------------------------------------------------------------- jobs


@router.get("/jobs", tags=["operations"], dependencies=admin_only)
async def jobs(tether: TetherDep) -> list[JobOut]:
    """The background jobs (refresh, tools, health): last round, counts, lease holder."""
    out = []
    for report in await tether.jobs.report():
        s = report.status
        out.append(
            JobOut(
                name=s.name,
                every_seconds=s.every.total_seconds(),
                runs=s.runs,
                lease_skips=s.lease_skips,
                last_started=s.last_started,
                last_finished=s.last_finished,
                last_outcome=s.last_outcome,
                last_error=s.last_error,
                last_counts={
                    "ok": s.last.ok,
                    "failed": s.last.failed,
                    "skipped": s.last.skipped,
                },
                totals={"ok": s.ok, "failed": s.failed, "skipped": s.skipped},
                errors=dict(s.errors),
                next_run=s.next_run,
                lease_holder=report.holder,
                held_here=report.held_here,
            )
        )
    return out
