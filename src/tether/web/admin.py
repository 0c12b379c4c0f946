"""Admin pages, server-rendered (design-notes D4; R3.19).

Every page needs the admin session (sign-in with an admin API key); every form carries
the session's CSRF token, checked before anything else. Endpoints parse the form, call
one hub function and render; failures reach the one exception mapping, which shows the
error page, re-renders a form with its field errors, or sends a signed-out browser to the
sign-in page (``web/pages.py``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from tether.errors import Unauthenticated, ValidationFailed
from tether.hub.servers import OAuthSpec, ServerSpec
from tether.hub.tether import ConnectionInfo, Tether
from tether.mcp.schema import flatten_schema
from tether.store.base import ServerRecord
from tether.web.flows import remember_flow
from tether.web.pages import FORM, html_errors, render
from tether.web.security import (
    Principal,
    TetherDep,
    authenticate_key,
    check_csrf,
    current_principal,
)

__all__ = ["router"]


async def signed_in(request: Request, tether: TetherDep) -> Principal:
    """The signed-in admin (never an API key header: pages use the session)."""
    who = await current_principal(request, tether, None, None)
    if who.role != "admin":  # pragma: no cover - sessions only hold admin keys
        raise Unauthenticated("sign in as an admin")
    return who


async def csrf_checked(request: Request) -> None:
    """Refuse any POST whose form lacks the session's CSRF token."""
    if request.method == "POST":
        form = await request.form()
        check_csrf(request, str(form.get("csrf") or ""))


Admin = Annotated[Principal, Depends(signed_in)]
router = APIRouter(
    dependencies=[Depends(html_errors), Depends(csrf_checked)],
    include_in_schema=False,
)


def _go(url: str) -> Response:
    return RedirectResponse(url, 303)


# ---------------------------------------------------------------------- sign-in


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    return render(request, "login.html", {})


@router.post("/login")
async def login(
    request: Request, tether: TetherDep, api_key: Annotated[str, Form()]
) -> Response:
    """Sign in with an admin API key."""
    request.scope[FORM] = ("login.html", {})
    record = await authenticate_key(tether, api_key.strip())
    if record.role != "admin":
        raise ValidationFailed(
            "this is an app key; sign in with an admin key",
            fields={"api_key": "not an admin key"},
        )
    request.session.clear()
    request.session["admin_key"] = record.id
    request.session["admin_name"] = record.name
    return _go("/admin/")


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out."""
    request.session.clear()
    return _go("/admin/login")


# ---------------------------------------------------------------------- servers


async def _badge(tether: Tether, server: ServerRecord) -> dict[str, Any]:
    conns = await tether.stores.connections.list(server.id)
    shared = next((c for c in conns if c.subject == "shared"), None)
    cached = await tether.stores.tools.get(server.id, "shared")
    health = await tether.stores.tools.get_health(server.id, "shared")
    return {
        "server": server,
        "status": (
            "not needed"
            if server.auth_mode != "oauth"
            else f"{sum(c.status == 'connected' for c in conns)} users connected"
            if server.oauth.per_user
            else (shared.status if shared else "disconnected")
        ),
        "tool_count": len(cached.tools) if cached else None,
        "health": health.status if health else "unknown",
        "health_error": health.last_error if health else None,
    }


@router.get("/")
async def server_list(request: Request, tether: TetherDep, _: Admin) -> Response:
    """Every server with health, connection badge and tool count."""
    rows = [await _badge(tether, s) for s in await tether.servers.list()]
    return render(request, "servers.html", {"rows": rows})


async def _editor_context(
    tether: Tether, server: ServerRecord | None, values: dict[str, Any]
) -> dict[str, Any]:
    return {
        "server": server,
        "v": values,
        "credentials": await tether.credentials.list(),
        "errors": {},
    }


def _values(server: ServerRecord | None) -> dict[str, Any]:
    spec = ServerSpec.from_record(server) if server else None
    data = spec.model_dump() if spec else ServerSpec(name="x", url="x").model_dump()
    if spec is None:
        data.update(name="", url="")
    for key in ("authorization_params", "token_params"):
        params = data["oauth"][key]
        data["oauth"][key] = json.dumps(params) if params else ""
    data["allow_networks"] = ", ".join(data["allow_networks"])
    return data


@router.get("/servers/new")
async def new_server(request: Request, tether: TetherDep, _: Admin) -> Response:
    """An empty server editor."""
    context = await _editor_context(tether, None, _values(None))
    return render(request, "server_edit.html", context)


def _json_object(form: FormData, key: str, errors: dict[str, str]) -> Any:
    raw = str(form.get(f"oauth.{key}") or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        errors[f"oauth.{key}"] = f"not valid JSON ({exc.msg})"
        return {}
    if not isinstance(value, dict):
        errors[f"oauth.{key}"] = 'must be a JSON object, e.g. {"access_type":"offline"}'
        return {}
    return value


def _text(form: FormData, key: str) -> str | None:
    value = str(form.get(key) or "").strip()
    return value or None


def spec_from_form(form: FormData) -> dict[str, Any]:
    """The server spec a submitted editor describes.

    Raises:
        ValidationFailed: The params fields are not JSON objects.
    """
    errors: dict[str, str] = {}
    oauth: dict[str, Any] = {
        "authorization_params": _json_object(form, "authorization_params", errors),
        "token_params": _json_object(form, "token_params", errors),
    }
    if errors:
        raise ValidationFailed("the OAuth parameters are invalid", fields=errors)
    for name, field in OAuthSpec.model_fields.items():
        if name in oauth:
            continue
        if field.annotation is bool:
            oauth[name] = form.get(f"oauth.{name}") == "on"
        else:
            value = _text(form, f"oauth.{name}")
            if value is not None:
                oauth[name] = value
    networks = str(form.get("allow_networks") or "")
    return {
        "name": str(form.get("name") or ""),
        "url": str(form.get("url") or ""),
        "description": str(form.get("description") or ""),
        "enabled": form.get("enabled") == "on",
        "timeout_seconds": str(form.get("timeout_seconds") or "30"),
        "auth_mode": str(form.get("auth_mode") or "none"),
        "header_name": _text(form, "header_name"),
        "header_scheme": str(form.get("header_scheme") or "") or None,
        "credential_id": _text(form, "credential_id"),
        "allow_networks": [n.strip() for n in networks.split(",") if n.strip()],
        "ca_bundle": _text(form, "ca_bundle"),
        "oauth": oauth,
    }


def _form_values(form: FormData) -> dict[str, Any]:
    values = {k: form.get(k) for k in form}
    oauth = {k.removeprefix("oauth."): v for k, v in values.items() if "." in k}
    return {**values, "oauth": oauth, "enabled": form.get("enabled") == "on"}


@router.post("/servers/new")
async def create_server(request: Request, tether: TetherDep, who: Admin) -> Response:
    """Save a new server; invalid fields re-render the editor with messages."""
    form = await request.form()
    context = await _editor_context(tether, None, _form_values(form))
    request.scope[FORM] = ("server_edit.html", context)
    server = await tether.servers.create(spec_from_form(form), actor=who.actor)
    return _go(f"/admin/servers/{server.id}")


async def _details(tether: Tether, server: ServerRecord) -> dict[str, Any]:
    info: ConnectionInfo | None = None
    if server.auth_mode == "oauth" and not server.oauth.per_user:
        info = await tether.connection(server.id)
    discovery = await tether.stores.discovery.get(server.id)
    meta = dict(discovery.as_metadata) if discovery else {}
    return {
        "info": info,
        "discovery": discovery,
        "endpoints": {
            k: meta.get(k)
            for k in (
                "authorization_endpoint",
                "token_endpoint",
                "revocation_endpoint",
                "registration_endpoint",
            )
        },
        "metadata_url": tether.ctx.config.client_metadata_url,
        "users": [
            ConnectionInfo.of(server, c)
            for c in await tether.stores.connections.list(server.id)
            if c.subject != "shared"
        ],
    }


@router.get("/servers/{server_id}")
async def edit_server(
    request: Request, server_id: str, tether: TetherDep, _: Admin
) -> Response:
    """The editor, the connection panel and the last test result."""
    server = await tether.servers.get(server_id)
    context = await _editor_context(tether, server, _values(server))
    context.update(await _details(tether, server))
    context["test"] = request.session.pop("test_result", None)
    context["notice"] = request.session.pop("notice", None)
    return render(request, "server_edit.html", context)


@router.post("/servers/{server_id}")
async def update_server(
    request: Request, server_id: str, tether: TetherDep, who: Admin
) -> Response:
    """Save the editor; a re-authorization trigger disconnects."""
    form = await request.form()
    server = await tether.servers.get(server_id)
    context = await _editor_context(tether, server, _form_values(form))
    context.update(await _details(tether, server))
    request.scope[FORM] = ("server_edit.html", context)
    await tether.servers.update(server.id, spec_from_form(form), actor=who.actor)
    request.session["notice"] = "Saved."
    return _go(f"/admin/servers/{server.id}")


@router.post("/servers/{server_id}/delete")
async def delete_server(server_id: str, tether: TetherDep, who: Admin) -> Response:
    """Revoke the server's grants and delete it."""
    await tether.delete_server(server_id, actor=who.actor)
    return _go("/admin/")


@router.post("/servers/{server_id}/connect")
async def connect(
    request: Request, server_id: str, tether: TetherDep, who: Admin
) -> Response:
    """Start a shared connect in this browser; the callback returns to the editor."""
    started = await tether.connect(server_id, user=who.actor)
    remember_flow(request, started, who.actor, f"/admin/servers/{started.server_id}")
    return _go(started.authorization_url)


@router.post("/servers/{server_id}/disconnect")
async def disconnect(
    request: Request, server_id: str, tether: TetherDep, who: Admin
) -> Response:
    """Revoke and forget the shared connection (or one user's, with ``user``)."""
    form = await request.form()
    user = _text(form, "user")
    outcomes = await tether.disconnect(server_id, user=user, actor=who.actor)
    request.session["notice"] = "Disconnected. " + "; ".join(outcomes)
    return _go(f"/admin/servers/{server_id}")


@router.post("/servers/{server_id}/test")
async def check_connection(
    request: Request, server_id: str, tether: TetherDep, _: Admin
) -> Response:
    """Connect and list tools now; the result shows on the editor."""
    result = await tether.test_connection(server_id)
    request.session["test_result"] = {
        "protocol_version": result.protocol_version,
        "tool_count": result.tool_count,
        "tool_names": list(result.tool_names),
    }
    return _go(f"/admin/servers/{server_id}")


# ---------------------------------------------------------------------- tools


def _parameters(tool: dict[str, Any]) -> list[dict[str, Any]]:
    schema = flatten_schema(dict(tool.get("inputSchema") or {}))
    required = set(schema.get("required") or ())
    return [
        {
            "name": name,
            "type": prop.get("type", "any") if isinstance(prop, dict) else "any",
            "description": prop.get("description", "")
            if isinstance(prop, dict)
            else "",
            "required": name in required,
        }
        for name, prop in dict(schema.get("properties") or {}).items()
    ]


@router.get("/servers/{server_id}/tools")
async def tools_page(
    request: Request, server_id: str, tether: TetherDep, _: Admin
) -> Response:
    """The server's tools: parameters with required markers, and a call form."""
    server = await tether.servers.get(server_id)
    tools = await tether.list_tools(server.id, refresh=True)
    rows = [{"tool": t, "params": _parameters(t)} for t in tools]
    result = request.session.pop("call_result", None)
    return render(
        request, "tools.html", {"server": server, "rows": rows, "result": result}
    )


@router.post("/servers/{server_id}/tools/{tool}/call")
async def call_tool(
    request: Request, server_id: str, tool: str, tether: TetherDep, _: Admin
) -> Response:
    """Try a call; string fields holding JSON are sent as JSON values."""
    form = await request.form()
    arguments: dict[str, Any] = {}
    for key in form:
        if key.startswith("arg."):
            raw = str(form.get(key) or "")
            if raw == "":
                continue
            try:
                arguments[key.removeprefix("arg.")] = json.loads(raw)
            except json.JSONDecodeError:
                arguments[key.removeprefix("arg.")] = raw
    result = await tether.call_tool(server_id, tool, arguments)
    request.session["call_result"] = {
        "tool": tool,
        "text": result.text,
        "is_error": result.is_error,
        "error_code": result.error_code,
    }
    return _go(f"/admin/servers/{server_id}/tools")


# ---------------------------------------------------------------------- toolsets


@router.get("/toolsets")
async def toolsets_page(request: Request, tether: TetherDep, _: Admin) -> Response:
    """Every toolset, and a form for a new one."""
    toolsets = [
        await tether.toolsets.export(t.id) | {"id": t.id}
        for t in await tether.stores.toolsets.list()
    ]
    return render(request, "toolsets.html", {"toolsets": toolsets, "errors": {}})


@router.post("/toolsets")
async def create_toolset(request: Request, tether: TetherDep, who: Admin) -> Response:
    """Create an empty toolset, then pick its tools."""
    form = await request.form()
    request.scope[FORM] = ("toolsets.html", {"toolsets": [], "errors": {}})
    toolset = await tether.toolsets.create(
        str(form.get("name") or ""),
        [],
        description=str(form.get("description") or ""),
        actor=who.actor,
    )
    return _go(f"/admin/toolsets/{toolset.id}")


@router.get("/toolsets/{toolset_id}")
async def toolset_page(
    request: Request, toolset_id: str, tether: TetherDep, _: Admin
) -> Response:
    """The tool picker: each server's shared tools, checked when selected."""
    toolset = await tether.toolsets.get(toolset_id)
    chosen = {e.server_id: e.tools for e in toolset.entries}
    servers = []
    for server in await tether.servers.list():
        cached = await tether.stores.tools.get(server.id, "shared")
        names = [str(t.get("name")) for t in (cached.tools if cached else [])]
        servers.append(
            {
                "server": server,
                "included": server.id in chosen,
                "all": server.id in chosen and chosen[server.id] is None,
                "selected": set(chosen.get(server.id) or ()),
                "tools": names,
            }
        )
    return render(
        request,
        "toolset_edit.html",
        {
            "toolset": toolset,
            "servers": servers,
            "notice": request.session.pop("notice", None),
        },
    )


@router.post("/toolsets/{toolset_id}")
async def update_toolset(
    request: Request, toolset_id: str, tether: TetherDep, who: Admin
) -> Response:
    """Save the picker: per server, every tool or the ticked ones."""
    form = await request.form()
    entries = []
    for server_id in form.getlist("server"):
        picked = [str(t) for t in form.getlist(f"tools.{server_id}")]
        every = form.get(f"all.{server_id}") == "on" or not picked
        entries.append({"server": str(server_id), "tools": None if every else picked})
    await tether.toolsets.update(toolset_id, entries, actor=who.actor)
    request.session["notice"] = "Saved."
    return _go(f"/admin/toolsets/{toolset_id}")


@router.post("/toolsets/{toolset_id}/delete")
async def delete_toolset(toolset_id: str, tether: TetherDep, who: Admin) -> Response:
    """Delete a toolset."""
    await tether.toolsets.delete(toolset_id, actor=who.actor)
    return _go("/admin/toolsets")


# ---------------------------------------------------------------------- credentials, audit


@router.get("/credentials")
async def credentials_page(request: Request, tether: TetherDep, _: Admin) -> Response:
    """Credential names (values are write-only)."""
    return render(
        request,
        "credentials.html",
        {"credentials": await tether.credentials.list(), "errors": {}},
    )


@router.post("/credentials")
async def create_credential(
    request: Request, tether: TetherDep, who: Admin
) -> Response:
    """Store a secret."""
    form = await request.form()
    request.scope[FORM] = (
        "credentials.html",
        {"credentials": await tether.credentials.list(), "errors": {}},
    )
    await tether.credentials.create(
        str(form.get("name") or ""),
        str(form.get("value") or ""),
        description=str(form.get("description") or ""),
        actor=who.actor,
    )
    return _go("/admin/credentials")


@router.get("/audit")
async def audit_page(
    request: Request, tether: TetherDep, _: Admin, server: str | None = None
) -> Response:
    """The newest audit events."""
    events = await tether.audit(server_ref=server or None, limit=200)
    return render(request, "audit.html", {"events": events})


# ---------------------------------------------------------------------- jobs


@router.get("/jobs")
async def jobs_page(request: Request, tether: TetherDep, _: Admin) -> Response:
    """The background jobs (issue 10 item 6): last round, counts, next run, holder."""
    reports = await tether.jobs.report()
    return render(
        request,
        "jobs.html",
        {"reports": reports, "worker": tether.jobs.holder},
    )
