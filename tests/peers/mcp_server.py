"""Loopback MCP resource server for Tether's end-to-end tests.

Built on the official ``mcp`` SDK (lowlevel ``Server`` and
``StreamableHTTPSessionManager``) and served by uvicorn. Authentication, the
RFC 9728 document, protocol-revision restriction and the fault switches are a
thin ASGI layer in front of the SDK transport. Run it as a script; every
setting comes from the environment (``tests/peers/fixture.py`` sets them):

  MCP_HOST (127.0.0.1)  MCP_PORT (9401)  MCP_PATH (/mcp)
  MCP_PUBLIC_URL        base URL clients use (default scheme://host:port)
  MCP_TLS_CERT / MCP_TLS_KEY   serve HTTPS;  MCP_CA_FILE  CA to trust for AS calls
  MCP_AUTH              1 (default when MCP_AS_ISSUER is set) | 0 (no auth at all)
  MCP_AS_ISSUER         issuer of the authorization server, echoed byte for byte in PRM
  MCP_TOKEN_VALIDATION  jwt (default: signature via the AS JWKS + iss/aud/exp, PyJWT)
                        | introspection (RFC 7662 as MCP_RS_CLIENT_ID, checks active/aud/exp)
  MCP_JWKS_URI (<issuer>/jwks)  MCP_JWT_ALGS (RS256,ES256,PS256)
  MCP_INTROSPECTION_URL (<issuer>/token/introspection)
  MCP_RS_CLIENT_ID / MCP_RS_CLIENT_SECRET (mcp-resource-server / mcp-resource-server-secret)
  MCP_AUDIENCE          expected aud (default: the resource URL)
  MCP_REQUIRED_SCOPES   scopes every request needs (default "mcp:tools"; "" = none)
  MCP_TOOL_SCOPES       extra scopes per tool for tools/call, "tool=s1 s2;tool2=s3"
                        (default "admin_only=mcp:admin"); missing -> 403 insufficient_scope
  MCP_SCOPES_SUPPORTED  PRM scopes_supported (default: required + tool scopes)
  MCP_PRM               1 (default) | 0 no RFC 9728 document at all
  MCP_PRM_ROOT          1 (default) also serve /.well-known/oauth-protected-resource
  MCP_PRM_AUTHORIZATION_SERVERS  comma list overriding authorization_servers
  MCP_PRM_RESOURCE      override the PRM `resource` (to test a mismatch)
  MCP_WWW_AUTH_RESOURCE_METADATA 1 (default) | 0 no resource_metadata in challenges
  MCP_STATELESS         0 (default: sessions, Mcp-Session-Id) | 1
  MCP_JSON_RESPONSE     0 (default: SSE responses) | 1 (application/json)
  MCP_PROTOCOL_VERSIONS comma list the server speaks (default: all the SDK knows).
                        Handshake revisions (2024-11-05 .. 2025-11-25) are negotiated
                        through initialize (an offer outside the list is answered with
                        the newest listed one); 2026-07-28 is the stateless per-request
                        revision. A request for a revision outside the list gets
                        HTTP 400 with JSON-RPC error -32022 (supported/requested).
  MCP_SESSION_IDLE_TIMEOUT  seconds (SDK default 1800)
  MCP_BIG_TOOLS         1 -> 120 extra tools bulk_000..bulk_119 (tools/list pages)
  MCP_PAGE_SIZE         tools per tools/list page (default: 50 with MCP_BIG_TOOLS, else all)
  MCP_ODD_TOOLS         1 -> a tool with a 100-character name and one whose input schema
                        uses a recursive $ref, $defs, allOf and a nullable anyOf
  MCP_HOSTILE_TOOLS     1 -> "same" listed five times, and tools whose schemas have a
                        dangling $ref, an external $ref, or expand past the node cap
  MCP_MEDIA_TOOLS       1 -> chart(): a caption, a 1x1 PNG image and structured content
  MCP_ERROR_HTTP_STATUS status of the `http_error` tool's answer (default 400): the body
                        is still a JSON-RPC result with isError: true
  MCP_ALLOWED_HOSTS     extra Host header values accepted (comma list)
  MCP_TOOLS_TTL_MS      ttlMs on tools/list results at 2026-07-28 (the SDK's cache hint;
                        unset: the SDK's default, 0)
  MCP_TOOLS_CACHE_SCOPE cacheScope with it: private (default) | public
  MCP_LOG_LEVEL         uvicorn log level (warning)
  MCP_CHATTER           1 -> a `chatter(after)` tool: it answers at once, then sends
                        `after` (default 5) log messages tied to no request, 2 ms
                        apart (a stateful session gets them on its GET stream, often
                        while the client is closing: the issue-10 stray tracebacks)

Tools: echo(text), add(a, b), fail(message) -> isError, slow(seconds, steps) with
progress notifications, whoami() -> the caller's token claims, admin_only(),
change_tools() -> adds a tool and sends notifications/tools/list_changed (on the
call's stream in the handshake revisions; at 2026-07-28 to the `subscriptions/listen`
streams that asked for tool-list changes, the only place that revision allows),
http_error().

Test-only endpoints: GET /healthz; GET /_calls (every tools/call: tool, sub,
client_id, scope, session_id, protocol_version); DELETE /_calls clears it;
POST /_expire_sessions (every session id issued so far answers 404 from now on);
GET /_listeners ({"listeners": n}: open `subscriptions/listen` streams).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import jwt
import mcp.types as types
import uvicorn
from mcp.server import CacheHint, NotificationOptions, Server, ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ServerEvent,
    ToolsListChanged,
)
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    KNOWN_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSIONS,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

Ctx = ServerRequestContext[Any, Any]
CLAIMS_KEY = "tether_peers.claims"
UNSUPPORTED_PROTOCOL_VERSION = -32022


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _flag(name: str, default: str = "0") -> bool:
    return _env(name, default) == "1"


def _split(value: str, sep: str = ",") -> list[str]:
    return [v.strip() for v in value.split(sep) if v.strip()]


@dataclass
class Config:
    """Settings read from the environment once at start."""

    host: str = field(default_factory=lambda: _env("MCP_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("MCP_PORT", "9401")))
    path: str = field(default_factory=lambda: "/" + _env("MCP_PATH", "/mcp").strip("/"))
    tls_cert: str = field(default_factory=lambda: _env("MCP_TLS_CERT"))
    tls_key: str = field(default_factory=lambda: _env("MCP_TLS_KEY"))
    ca_file: str = field(default_factory=lambda: _env("MCP_CA_FILE"))
    issuer: str = field(default_factory=lambda: _env("MCP_AS_ISSUER"))
    validation: str = field(default_factory=lambda: _env("MCP_TOKEN_VALIDATION", "jwt"))
    required_scopes: list[str] = field(
        default_factory=lambda: _env("MCP_REQUIRED_SCOPES", "mcp:tools").split()
    )
    tool_scopes: dict[str, list[str]] = field(default_factory=dict)
    stateless: bool = field(default_factory=lambda: _flag("MCP_STATELESS"))
    json_response: bool = field(default_factory=lambda: _flag("MCP_JSON_RESPONSE"))
    versions: list[str] = field(
        default_factory=lambda: _split(
            _env("MCP_PROTOCOL_VERSIONS") or ",".join(KNOWN_PROTOCOL_VERSIONS)
        )
    )
    big_tools: bool = field(default_factory=lambda: _flag("MCP_BIG_TOOLS"))
    odd_tools: bool = field(default_factory=lambda: _flag("MCP_ODD_TOOLS"))
    chatter: bool = field(default_factory=lambda: _flag("MCP_CHATTER"))
    hostile_tools: bool = field(default_factory=lambda: _flag("MCP_HOSTILE_TOOLS"))
    media_tools: bool = field(default_factory=lambda: _flag("MCP_MEDIA_TOOLS"))
    error_http_status: int = field(
        default_factory=lambda: int(_env("MCP_ERROR_HTTP_STATUS", "400"))
    )

    def __post_init__(self) -> None:
        self.tls = bool(self.tls_cert and self.tls_key)
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls else "http"
        public = _env("MCP_PUBLIC_URL") or f"{scheme}://{host}:{self.port}"
        self.public_url = public.rstrip("/")
        self.resource = self.public_url + ("" if self.path == "/" else self.path)
        self.issuer = self.issuer.rstrip("/")
        self.auth = _flag("MCP_AUTH", "1" if self.issuer else "0")
        if self.auth and not self.issuer:
            sys.exit("MCP_AUTH=1 needs MCP_AS_ISSUER")
        self.audience = _env("MCP_AUDIENCE") or self.resource
        raw = _env("MCP_TOOL_SCOPES", "admin_only=mcp:admin")
        for item in _split(raw, ";"):
            tool, _, scopes = item.partition("=")
            self.tool_scopes[tool.strip()] = scopes.split()
        supported = _env("MCP_SCOPES_SUPPORTED")
        if supported:
            self.scopes_supported = supported.split()
        else:
            extra = [s for v in self.tool_scopes.values() for s in v]
            self.scopes_supported = list(dict.fromkeys(self.required_scopes + extra))
        suffix = "" if self.path == "/" else self.path
        self.prm_path = "/.well-known/oauth-protected-resource" + suffix
        self.prm_url = self.public_url + self.prm_path
        page = _env("MCP_PAGE_SIZE") or ("50" if self.big_tools else "0")
        self.page_size = int(page)
        unknown = [v for v in self.versions if v not in KNOWN_PROTOCOL_VERSIONS]
        if unknown:
            sys.exit(f"MCP_PROTOCOL_VERSIONS: unknown revision(s) {unknown}")
        self.handshake = [v for v in HANDSHAKE_PROTOCOL_VERSIONS if v in self.versions]
        self.modern = [v for v in MODERN_PROTOCOL_VERSIONS if v in self.versions]


CFG = Config()


# ---------------------------------------------------------------- tokens


class TokenError(Exception):
    """The bearer token is not acceptable (401 invalid_token)."""


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=CFG.ca_file or None)


class JWTVerifier:
    """Checks signature (AS JWKS), iss, aud and exp of a JWT access token."""

    def __init__(self) -> None:
        uri = _env("MCP_JWKS_URI") or f"{CFG.issuer}/jwks"
        self.client = jwt.PyJWKClient(uri, ssl_context=_ssl_context(), lifespan=60)
        self.algs = _split(_env("MCP_JWT_ALGS", "RS256,ES256,PS256"))

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            key = self.client.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self.algs,
                audience=CFG.audience,
                issuer=CFG.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from exc
        return claims

    async def verify(self, token: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self._verify, token)


class IntrospectionVerifier:
    """Asks the AS (RFC 7662) and checks active, aud and exp."""

    def __init__(self) -> None:
        self.url = _env("MCP_INTROSPECTION_URL") or f"{CFG.issuer}/token/introspection"
        self.auth = (
            _env("MCP_RS_CLIENT_ID", "mcp-resource-server"),
            _env("MCP_RS_CLIENT_SECRET", "mcp-resource-server-secret"),
        )

    async def verify(self, token: str) -> dict[str, Any]:
        async with httpx2.AsyncClient(verify=_ssl_context(), timeout=10.0) as client:
            resp = await client.post(self.url, data={"token": token}, auth=self.auth)
        if resp.status_code != 200:
            raise TokenError(f"introspection answered {resp.status_code}")
        claims: dict[str, Any] = resp.json()
        if not claims.get("active"):
            raise TokenError("token is not active")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if CFG.audience not in auds:
            raise TokenError(f"audience {aud!r} is not {CFG.audience!r}")
        if isinstance(claims.get("exp"), int) and claims["exp"] < time.time():
            raise TokenError("token expired")
        return claims


Verifier = JWTVerifier | IntrospectionVerifier


def make_verifier() -> Verifier | None:
    if not CFG.auth:
        return None
    if CFG.validation == "jwt":
        return JWTVerifier()
    if CFG.validation == "introspection":
        return IntrospectionVerifier()
    sys.exit(f"unknown MCP_TOKEN_VALIDATION={CFG.validation!r}")


# ---------------------------------------------------------------- tools

CALLS: list[dict[str, Any]] = []
LONG_NAME = "long_" + "x" * 90 + "_name"  # 100 characters
EXTRA_TOOLS: list[str] = []
CHATTER: set[asyncio.Task[None]] = set()  # chatter's late log messages, kept alive


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


RECURSIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name"],
        }
    },
    "properties": {
        "root": {"$ref": "#/$defs/node"},
        "mode": {"allOf": [{"type": "string"}, {"enum": ["flat", "deep"]}]},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["root"],
}


def base_tools() -> list[types.Tool]:
    text = {"type": "string"}
    num = {"type": "number"}
    tools = [
        types.Tool(
            name="echo",
            description="Return the text.",
            input_schema=_obj({"text": text}, ["text"]),
        ),
        types.Tool(
            name="add",
            description="Add two numbers.",
            input_schema=_obj({"a": num, "b": num}, ["a", "b"]),
        ),
        types.Tool(
            name="fail",
            description="Always fails (isError).",
            input_schema=_obj({"message": text}),
        ),
        types.Tool(
            name="slow",
            description="Sleep, sending progress notifications.",
            input_schema=_obj({"seconds": num, "steps": {"type": "integer"}}),
        ),
        types.Tool(
            name="whoami",
            description="Claims of the caller's token.",
            input_schema=_obj({}),
        ),
        types.Tool(
            name="admin_only",
            description="Needs an extra scope.",
            input_schema=_obj({}),
        ),
        types.Tool(
            name="change_tools",
            description="Add a tool; list_changed.",
            input_schema=_obj({}),
        ),
        types.Tool(
            name="http_error",
            description="Answers with an HTTP 4xx.",
            input_schema=_obj({}),
        ),
    ]
    if CFG.chatter:
        tools.append(
            types.Tool(
                name="chatter",
                description="Answer at once, then log messages tied to no request.",
                input_schema=_obj({"after": num}),
            )
        )
    if CFG.odd_tools:
        tools.append(
            types.Tool(
                name=LONG_NAME, description="100-character name.", input_schema=_obj({})
            )
        )
        tools.append(
            types.Tool(
                name="tree",
                description="Recursive schema.",
                input_schema=RECURSIVE_SCHEMA,
            )
        )
    if CFG.hostile_tools:
        tools.extend(HOSTILE_TOOLS)
    if CFG.media_tools:
        tools.append(
            types.Tool(
                name="chart",
                description="A caption and a tiny PNG.",
                input_schema=_obj({}),
            )
        )
    if CFG.big_tools:
        for i in range(120):
            tools.append(
                types.Tool(
                    name=f"bulk_{i:03d}",
                    description=f"Filler tool {i}.",
                    input_schema=_obj({"text": text}),
                )
            )
    for name in EXTRA_TOOLS:
        tools.append(
            types.Tool(
                name=name, description="Added by change_tools.", input_schema=_obj({})
            )
        )
    return tools


PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
"""A 1x1 PNG, base64 (the ``chart`` tool's image)."""


def _hostile_tools() -> list[types.Tool]:
    # 2**20 expansions: each level refers to the next one twice.
    defs = {
        f"L{i}": {
            "type": "object",
            "properties": {
                "a": {"$ref": f"#/$defs/L{i + 1}"},
                "b": {"$ref": f"#/$defs/L{i + 1}"},
            },
        }
        for i in range(20)
    }
    defs["L20"] = {"type": "string"}
    schemas = {
        "dangling": {"type": "object", "properties": {"x": {"$ref": "#/$defs/gone"}}},
        "external": {
            "type": "object",
            "properties": {"x": {"$ref": "https://schemas.example/x.json"}},
        },
        "exponential": {"type": "object", "$defs": defs, "$ref": "#/$defs/L0"},
    }
    same = [
        types.Tool(
            name="same", description=f"Listed five times ({i}).", input_schema=_obj({})
        )
        for i in range(5)
    ]
    return same + [
        types.Tool(name=name, description="Poisoned schema.", input_schema=schema)
        for name, schema in schemas.items()
    ]


HOSTILE_TOOLS = _hostile_tools()


async def list_tools(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    tools = base_tools()
    size = CFG.page_size
    if size <= 0:
        return types.ListToolsResult(tools=tools)
    start = 0
    cursor = params.cursor if params is not None else None
    if cursor:
        try:
            start = int(
                base64.urlsafe_b64decode(cursor.encode())
                .decode()
                .removeprefix("offset:")
            )
        except ValueError as exc:
            raise MCPError(types.INVALID_PARAMS, f"invalid cursor {cursor!r}") from exc
    end = start + size
    nxt = (
        base64.urlsafe_b64encode(f"offset:{end}".encode()).decode()
        if end < len(tools)
        else None
    )
    return types.ListToolsResult(tools=tools[start:end], next_cursor=nxt)


def _text(
    value: str, *, error: bool = False, structured: Any = None
) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=value)],
        is_error=error,
        structured_content=structured,
    )


def _caller(ctx: Ctx) -> dict[str, Any]:
    request = ctx.request
    if isinstance(request, Request):
        claims = request.scope.get(CLAIMS_KEY)
        if isinstance(claims, dict):
            return claims
    return {}


def _session_id(ctx: Ctx) -> str | None:
    request = ctx.request
    return (
        request.headers.get("mcp-session-id") if isinstance(request, Request) else None
    )


async def call_tool(
    ctx: Ctx, params: types.CallToolRequestParams
) -> types.CallToolResult:
    args: Mapping[str, Any] = params.arguments or {}
    claims = _caller(ctx)
    CALLS.append(
        {
            "tool": params.name,
            "sub": claims.get("sub"),
            "client_id": claims.get("client_id"),
            "scope": claims.get("scope"),
            "session_id": _session_id(ctx),
            "protocol_version": ctx.protocol_version,
        }
    )
    handler = TOOLS.get(params.name)
    if handler is None:
        if (
            params.name in EXTRA_TOOLS
            or params.name.startswith("bulk_")
            or params.name == LONG_NAME
            or params.name == "same"
        ):
            return _text(f"{params.name}: {args.get('text', 'ok')}")
        if params.name == "chart" and CFG.media_tools:
            return types.CallToolResult(
                content=[
                    types.TextContent(type="text", text="a 1x1 chart"),
                    types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                ],
                structured_content={"points": 1},
            )
        if params.name == "chatter" and CFG.chatter:
            return await t_chatter(ctx, args)
        if params.name == "tree" and CFG.odd_tools:
            return _text(json.dumps(args, sort_keys=True), structured=dict(args))
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    return await handler(ctx, args)


async def t_echo(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    return _text(str(args.get("text", "")))


async def t_chatter(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    # a log message tied to no request: a stateful session delivers it on the
    # listening GET stream, racing this call's answer on the POST stream
    session = ctx.session

    async def later() -> None:
        for _ in range(int(args.get("after", 5))):
            await asyncio.sleep(0.002)
            await session.send_log_message("info", "chatter", logger="peer")

    CHATTER.add(asyncio.get_running_loop().create_task(later()))
    return _text("chatter")


async def t_add(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    try:
        total = float(args["a"]) + float(args["b"])
    except (KeyError, TypeError, ValueError) as exc:
        return _text(f"bad arguments: {exc}", error=True)
    shown = int(total) if total.is_integer() else total
    return _text(str(shown), structured={"result": shown})


async def t_fail(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    return _text(str(args.get("message", "this tool always fails")), error=True)


async def t_slow(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    seconds = float(args.get("seconds", 2.0))
    steps = max(1, int(args.get("steps", 4)))
    for i in range(steps):
        await anyio.sleep(seconds / steps)
        await ctx.session.report_progress(i + 1, steps, f"step {i + 1}/{steps}")
    return _text(f"slept {seconds}s in {steps} steps")


async def t_whoami(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    claims = _caller(ctx)
    keys = ("sub", "client_id", "scope", "aud", "iss", "exp")
    out = {k: claims.get(k) for k in keys}
    return _text(json.dumps(out), structured=out)


async def t_admin_only(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    return _text(f"admin ok for {_caller(ctx).get('sub')}")


class CountingBus(InMemorySubscriptionBus):
    """The SDK's in-process bus, counting the listen streams subscribed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners = 0

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(listener)
        self.listeners += 1
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                self.listeners -= 1
                unsubscribe()

        return once


BUS = CountingBus()


async def t_change_tools(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    name = f"added_{len(EXTRA_TOOLS) + 1}"
    EXTRA_TOOLS.append(name)
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        await BUS.publish(ToolsListChanged())
    else:
        await ctx.session.send_notification(
            types.ToolListChangedNotification(), related_request_id=ctx.request_id
        )
    return _text(f"added {name}", structured={"added": name})


async def t_http_error(ctx: Ctx, args: Mapping[str, Any]) -> types.CallToolResult:
    # Normally answered by McpGate with an HTTP error status before reaching here.
    return _text("http_error", error=True)


TOOLS: dict[
    str, Callable[[Ctx, Mapping[str, Any]], Awaitable[types.CallToolResult]]
] = {
    "echo": t_echo,
    "add": t_add,
    "fail": t_fail,
    "slow": t_slow,
    "whoami": t_whoami,
    "admin_only": t_admin_only,
    "change_tools": t_change_tools,
    "http_error": t_http_error,
}


class PeerServer(Server[Any]):
    """Advertises tools.listChanged (change_tools sends the notification)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(tools_changed=True)
        return super().create_initialization_options(
            options, experimental_capabilities, extensions
        )


SERVER = PeerServer(
    "tether-peers-mcp",
    version="1.0.0",
    instructions="Loopback MCP server for Tether tests.",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_subscriptions_listen=ListenHandler(BUS),
    cache_hints=(
        {
            "tools/list": CacheHint(
                ttl_ms=int(os.environ["MCP_TOOLS_TTL_MS"]),
                scope="public"
                if os.environ.get("MCP_TOOLS_CACHE_SCOPE") == "public"
                else "private",
            )
        }
        if os.environ.get("MCP_TOOLS_TTL_MS")
        else None
    ),
)


# ---------------------------------------------------------------- HTTP layer


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _rpc_error(
    msg_id: Any, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": err}


def _challenge(
    error: str | None = None,
    description: str | None = None,
    scope: list[str] | None = None,
) -> str:
    parts: list[str] = []
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    wanted = scope if scope is not None else CFG.required_scopes
    if wanted:
        parts.append('scope="{}"'.format(" ".join(wanted)))
    if _flag("MCP_WWW_AUTH_RESOURCE_METADATA", "1"):
        parts.append(f'resource_metadata="{CFG.prm_url}"')
    return "Bearer " + ", ".join(parts) if parts else "Bearer"


class McpGate:
    """ASGI layer in front of the SDK transport: auth, version gate, faults."""

    def __init__(
        self, manager: StreamableHTTPSessionManager, verifier: Verifier | None
    ) -> None:
        self.manager = manager
        self.verifier = verifier
        self.sessions: set[str] = set()
        self.expired: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        body = b""
        if request.method == "POST":
            body = await _read_body(receive)
        message: Any = None
        if body:
            try:
                message = json.loads(body)
            except ValueError:
                message = None
        msg = message if isinstance(message, dict) else {}
        response = await self._precheck(request, scope, msg)
        if response is not None:
            await response(scope, _replay(b"", receive), send)
            return
        body = self._negotiate(request, msg, body)
        await self.manager.handle_request(
            scope, _replay(body, receive), self._watch(send)
        )

    async def _precheck(
        self, request: Request, scope: Scope, msg: dict[str, Any]
    ) -> Response | None:
        sid = request.headers.get("mcp-session-id")
        if sid is not None and sid in self.expired:
            return _json(
                404, _rpc_error(None, types.INVALID_REQUEST, "Session not found")
            )
        if self.verifier is not None:
            denied = await self._authenticate(request, scope, msg)
            if denied is not None:
                return denied
        version_error = self._version_gate(request, msg)
        if version_error is not None:
            return version_error
        if (
            msg.get("method") == "tools/call"
            and _params(msg).get("name") == "http_error"
        ):
            CALLS.append(
                {
                    "tool": "http_error",
                    **_who(scope),
                    "session_id": sid,
                    "protocol_version": None,
                }
            )
            result = {
                "content": [
                    {
                        "type": "text",
                        "text": f"refused with HTTP {CFG.error_http_status}",
                    }
                ],
                "isError": True,
            }
            return _json(
                CFG.error_http_status,
                {"jsonrpc": "2.0", "id": msg.get("id"), "result": result},
            )
        return None

    async def _authenticate(
        self, request: Request, scope: Scope, msg: dict[str, Any]
    ) -> Response | None:
        assert self.verifier is not None
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return Response(status_code=401, headers={"WWW-Authenticate": _challenge()})
        try:
            claims = await self.verifier.verify(token.strip())
        except TokenError as exc:
            body = {"error": "invalid_token", "error_description": str(exc)}
            challenge = _challenge("invalid_token", str(exc))
            return _json(401, body, {"WWW-Authenticate": challenge})
        granted = set(str(claims.get("scope", "")).split())
        needed = list(CFG.required_scopes)
        if msg.get("method") == "tools/call":
            needed += CFG.tool_scopes.get(str(_params(msg).get("name")), [])
        missing = [s for s in needed if s not in granted]
        if missing:
            desc = "Required scope: " + " ".join(missing)
            wanted = list(dict.fromkeys([*granted, *needed])) if granted else needed
            body = {"error": "insufficient_scope", "error_description": desc}
            return _json(
                403,
                body,
                {"WWW-Authenticate": _challenge("insufficient_scope", desc, wanted)},
            )
        scope[CLAIMS_KEY] = claims
        aud = claims.get("aud")
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token=token.strip(),
                client_id=str(claims.get("client_id", "")),
                scopes=sorted(granted),
                expires_at=claims.get("exp")
                if isinstance(claims.get("exp"), int)
                else None,
                resource=aud if isinstance(aud, str) else None,
                subject=claims.get("sub"),
                claims={"iss": claims.get("iss")},
            )
        )
        return None

    def _version_gate(self, request: Request, msg: dict[str, Any]) -> Response | None:
        header = request.headers.get("mcp-protocol-version")
        modern_route = header is not None and header not in HANDSHAKE_PROTOCOL_VERSIONS
        msg_id = msg.get("id")
        if modern_route:
            if header in CFG.modern:
                return None
            data = {"supported": CFG.versions, "requested": header}
            err = _rpc_error(
                msg_id,
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                data,
            )
            return _json(400, err)
        if not CFG.handshake:
            requested = header or _params(msg).get("protocolVersion") or ""
            data = {"supported": CFG.modern, "requested": requested}
            if request.method != "POST":
                return Response(status_code=405, headers={"Allow": "POST"})
            err = _rpc_error(
                msg_id,
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                data,
            )
            return _json(400, err)
        if header is not None and header not in CFG.handshake:
            text = f"Bad Request: Unsupported protocol version: {header}. Supported: {', '.join(CFG.handshake)}"
            return _json(400, _rpc_error(msg_id, types.INVALID_REQUEST, text))
        return None

    def _negotiate(self, request: Request, msg: dict[str, Any], body: bytes) -> bytes:
        """Make the SDK counter-offer only a listed handshake revision."""
        params = msg.get("params")
        if (
            msg.get("method") != "initialize"
            or not isinstance(params, dict)
            or not CFG.handshake
        ):
            return body
        if params.get("protocolVersion") in CFG.handshake:
            return body
        params["protocolVersion"] = CFG.handshake[-1]
        return json.dumps(msg).encode()

    def _watch(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == b"mcp-session-id":
                        self.sessions.add(value.decode("latin-1"))
            await send(message)

        return wrapped

    def expire_all(self) -> int:
        fresh = self.sessions - self.expired
        self.expired |= self.sessions
        return len(fresh)


def _params(msg: dict[str, Any]) -> dict[str, Any]:
    params = msg.get("params")
    return params if isinstance(params, dict) else {}


def _who(scope: Scope) -> dict[str, Any]:
    claims = scope.get(CLAIMS_KEY) or {}
    return {
        "sub": claims.get("sub"),
        "client_id": claims.get("client_id"),
        "scope": claims.get("scope"),
    }


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def prm_document() -> dict[str, Any]:
    # Written by hand so the issuer is echoed byte for byte (pydantic AnyHttpUrl
    # would add a trailing slash and break strict RFC 8414 issuer comparison).
    servers = _split(_env("MCP_PRM_AUTHORIZATION_SERVERS")) or [CFG.issuer]
    doc: dict[str, Any] = {
        "resource": _env("MCP_PRM_RESOURCE") or CFG.resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Tether test MCP server",
    }
    if CFG.scopes_supported:
        doc["scopes_supported"] = CFG.scopes_supported
    return doc


CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, OPTIONS",
    "access-control-allow-headers": "*",
}


async def prm_endpoint(request: Request) -> Response:
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=CORS)
    return JSONResponse(prm_document(), headers=CORS)


def build_app() -> Starlette:
    hosts = [
        "127.0.0.1:*",
        "localhost:*",
        "[::1]:*",
        *_split(_env("MCP_ALLOWED_HOSTS")),
    ]
    origins = [
        f"{s}://{h}"
        for s in ("http", "https")
        for h in ("127.0.0.1:*", "localhost:*", "[::1]:*")
    ]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=origins,
    )
    idle = _env("MCP_SESSION_IDLE_TIMEOUT")
    manager = StreamableHTTPSessionManager(
        app=SERVER,
        json_response=CFG.json_response,
        stateless=CFG.stateless,
        security_settings=security,
        session_idle_timeout=float(idle) if idle else 30 * 60,
    )
    gate = McpGate(manager, make_verifier())

    async def healthz(request: Request) -> Response:
        info = {
            "ok": True,
            "resource": CFG.resource,
            "issuer": CFG.issuer or None,
            "auth": CFG.auth,
            "validation": CFG.validation if CFG.auth else None,
            "stateless": CFG.stateless,
            "json_response": CFG.json_response,
            "versions": CFG.versions,
        }
        return JSONResponse(info)

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            CALLS.clear()
            return Response(status_code=204)
        return JSONResponse(CALLS)

    async def expire(request: Request) -> Response:
        return JSONResponse({"expired": gate.expire_all()})

    async def listeners(request: Request) -> Response:
        return JSONResponse({"listeners": BUS.listeners})

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_calls", calls, methods=["GET", "DELETE"]),
        Route("/_expire_sessions", expire, methods=["POST"]),
        Route("/_listeners", listeners, methods=["GET"]),
        Route(CFG.path, endpoint=gate, methods=["GET", "POST", "DELETE"]),
    ]
    if CFG.auth and _flag("MCP_PRM", "1"):
        routes.append(Route(CFG.prm_path, prm_endpoint, methods=["GET", "OPTIONS"]))
        if _flag("MCP_PRM_ROOT", "1") and CFG.path != "/":
            routes.append(
                Route(
                    "/.well-known/oauth-protected-resource",
                    prm_endpoint,
                    methods=["GET", "OPTIONS"],
                )
            )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    app = build_app()
    print(
        json.dumps(
            {
                "mcp": CFG.resource,
                "issuer": CFG.issuer,
                "auth": CFG.auth,
                "versions": CFG.versions,
            }
        ),
        flush=True,
    )
    uvicorn.run(
        app,
        host=CFG.host,
        port=CFG.port,
        log_level=_env("MCP_LOG_LEVEL", "warning"),
        ssl_certfile=CFG.tls_cert or None,
        ssl_keyfile=CFG.tls_key or None,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
