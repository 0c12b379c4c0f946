"""Toolsets: what an agent may use (the reference's agent ↔ MCP server attachments).

A toolset names servers, each with an optional allow-list of original tool names
(``None`` = every tool; an empty list is refused rather than read as "all", unlike the
reference, §2.3). It yields LLM-ready tool definitions with collision-free,
provider-safe names (:mod:`tether.mcp.naming`) and routes a call by exposed name back to
(server, original name). Export and import refer to servers by name (reference §3.22).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.errors import (
    AuthorizationRequired,
    NotFound,
    TetherError,
    UsageError,
    ValidationFailed,
)
from tether.hub.audit import Auditor
from tether.hub.clock import Clock
from tether.hub.tools import ToolRegistry
from tether.mcp.naming import ToolNames, assign_tool_names, safe_name
from tether.mcp.render import ToolDefinition, unique_definitions
from tether.mcp.results import ToolErrorCode, ToolResult, result_from_error
from tether.mcp.session import ProgressCallback
from tether.store.base import ServerRecord, Stores, Toolset, ToolsetEntry

__all__ = ["ToolsetService", "ToolsetView", "Unavailable"]

MAX_NAME = 100


@dataclass(frozen=True, slots=True)
class ToolsetView:
    """A toolset's tools for one user at one moment.

    Attributes:
        tools: The definitions to hand to the model (render with
            :func:`tether.mcp.render.render_tools`).
        names: Exposed name ↔ (server id, original name).
        excluded: Server name → why its tools are left out (disabled, not connected…).
        unavailable: The same servers with the error a call to their tools returns.
    """

    tools: tuple[ToolDefinition, ...]
    names: ToolNames
    excluded: Mapping[str, str] = field(default_factory=dict)
    unavailable: tuple[Unavailable, ...] = ()


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A server left out of a view, kept so a call to one of its tools says why.

    Attributes:
        server: The server.
        tools: The tool names it would offer (its allow-list), or ``None`` if unknown.
        error: Why it is left out (disabled, not connected for this user, …).
        code: The result's error code, when the error's class does not say it.
    """

    server: ServerRecord
    tools: tuple[str, ...] | None
    error: TetherError
    code: ToolErrorCode | None = None


def _definition(
    server: ServerRecord, tool: Mapping[str, Any], name: str
) -> ToolDefinition:
    annotations = tool.get("annotations") or {}
    title = tool.get("title") or (
        annotations.get("title") if isinstance(annotations, dict) else None
    )
    return ToolDefinition(
        name=name,
        description=str(tool.get("description") or ""),
        input_schema=tool.get("inputSchema") or {},
        server_id=server.id,
        original_name=str(tool["name"]),
        title=str(title) if title else None,
        annotations=annotations if isinstance(annotations, dict) else {},
    )


class ToolsetService:
    """Create, change, export, import and use toolsets."""

    def __init__(
        self, stores: Stores, clock: Clock, auditor: Auditor, registry: ToolRegistry
    ) -> None:
        self._stores = stores
        self._clock = clock
        self._audit = auditor
        self._registry = registry

    async def _entries(
        self, servers: Sequence[Mapping[str, Any]]
    ) -> tuple[ToolsetEntry, ...]:
        entries: list[ToolsetEntry] = []
        missing: list[str] = []
        fields: dict[str, str] = {}
        for item in servers:
            ref = str(item.get("server", ""))
            server = await self._stores.servers.get(
                ref
            ) or await self._stores.servers.get_by_name(ref)
            if server is None:
                missing.append(ref)
                continue
            tools = item.get("tools")
            if tools is not None:
                names = tuple(
                    dict.fromkeys(str(t).strip() for t in tools if str(t).strip())
                )
                if not names:
                    fields[f"servers.{server.name}.tools"] = (
                        "an empty allow-list is not allowed; omit it for all tools"
                    )
                tools = names
            if any(e.server_id == server.id for e in entries):
                fields[f"servers.{server.name}"] = "listed twice"
            entries.append(ToolsetEntry(server.id, tools))
        if missing:
            fields["servers"] = f"unknown servers: {', '.join(missing)}"
        if fields:
            raise ValidationFailed(
                "the toolset is invalid: "
                + "; ".join(f"{k}: {v}" for k, v in fields.items()),
                fields=fields,
                hint="register the servers first, or fix the names",
            )
        return tuple(entries)

    async def create(
        self,
        name: str,
        servers: Sequence[Mapping[str, Any]],
        *,
        description: str = "",
        actor: str | None,
    ) -> Toolset:
        """Create a toolset from ``[{"server": name_or_id, "tools": [...] | None}]``."""
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise ValidationFailed(
                f"toolset name must be 1–{MAX_NAME} characters",
                fields={"name": "invalid length"},
            )
        now = self._clock.now()
        toolset = await self._stores.toolsets.add(
            Toolset(
                id=uuid.uuid4().hex,
                name=name,
                entries=await self._entries(servers),
                description=description,
                created_at=now,
                updated_at=now,
            )
        )
        await self._audit.record(
            "toolset.create",
            actor=actor,
            target_type="toolset",
            target_id=toolset.id,
            after=self._view(toolset),
        )
        return toolset

    async def get(self, ref: str) -> Toolset:
        """A toolset by id or name."""
        toolset = await self._stores.toolsets.get(
            ref
        ) or await self._stores.toolsets.get_by_name(ref)
        if toolset is None:
            raise NotFound(f"no toolset '{ref}'")
        return toolset

    async def update(
        self, ref: str, servers: Sequence[Mapping[str, Any]], *, actor: str | None
    ) -> Toolset:
        """Replace a toolset's servers."""
        current = await self.get(ref)
        updated = await self._stores.toolsets.update(
            Toolset(
                id=current.id,
                name=current.name,
                entries=await self._entries(servers),
                description=current.description,
                created_at=current.created_at,
                updated_at=self._clock.now(),
                version=current.version,
            ),
            expected_version=current.version,
        )
        await self._audit.record(
            "toolset.update",
            actor=actor,
            target_type="toolset",
            target_id=current.id,
            before=self._view(current),
            after=self._view(updated),
        )
        return updated

    async def delete(self, ref: str, *, actor: str | None) -> None:
        """Delete a toolset."""
        current = await self.get(ref)
        await self._stores.toolsets.delete(current.id)
        await self._audit.record(
            "toolset.delete",
            actor=actor,
            target_type="toolset",
            target_id=current.id,
            before=self._view(current),
        )

    @staticmethod
    def _view(toolset: Toolset) -> dict[str, Any]:
        return {
            "name": toolset.name,
            "servers": [
                {"server_id": e.server_id, "tools": list(e.tools) if e.tools else None}
                for e in toolset.entries
            ],
        }

    async def export(self, ref: str) -> dict[str, Any]:
        """A portable description referring to servers by name (reference §3.22)."""
        toolset = await self.get(ref)
        servers = []
        for entry in toolset.entries:
            server = await self._stores.servers.get(entry.server_id)
            if server is not None:
                servers.append(
                    {
                        "server": server.name,
                        "tools": list(entry.tools) if entry.tools else None,
                    }
                )
        return {
            "name": toolset.name,
            "description": toolset.description,
            "servers": servers,
        }

    async def import_(self, data: Mapping[str, Any], *, actor: str | None) -> Toolset:
        """Create a toolset from :meth:`export` output.

        Raises:
            ValidationFailed: Unknown server names, or allow-listed tools the server
                does not offer (checked against its shared tool list when available).
        """
        servers = list(data.get("servers") or [])
        await self._check_tools(servers)
        return await self.create(
            str(data.get("name", "")),
            servers,
            description=str(data.get("description", "")),
            actor=actor,
        )

    async def _check_tools(self, servers: Sequence[Mapping[str, Any]]) -> None:
        missing: dict[str, str] = {}
        for item in servers:
            server = await self._stores.servers.get_by_name(str(item.get("server", "")))
            wanted = item.get("tools")
            if (
                server is None
                or not wanted
                or (server.auth_mode == "oauth" and server.oauth.per_user)
            ):
                continue
            offered = {
                t.get("name") for t in await self._registry.list_tools(server, "shared")
            }
            absent = [t for t in wanted if t not in offered]
            if absent:
                missing[f"servers.{server.name}.tools"] = (
                    f"not offered: {', '.join(absent)}"
                )
        if missing:
            raise ValidationFailed(
                "the toolset names tools its servers do not offer: "
                + "; ".join(f"{k} {v}" for k, v in missing.items()),
                fields=missing,
            )

    async def view(
        self, ref: str, *, user: str | None, reserved: Sequence[str] = ()
    ) -> ToolsetView:
        """The toolset's tools for ``user``; unusable servers are left out with a reason."""
        toolset = await self.get(ref)
        excluded: dict[str, str] = {}
        unavailable: list[Unavailable] = []
        found: list[tuple[ServerRecord, Mapping[str, Any]]] = []
        for entry in toolset.entries:
            server = await self._stores.servers.get(entry.server_id)
            if server is None:
                continue
            if not server.enabled:
                excluded[server.name] = "disabled"
                error: TetherError = UsageError(
                    f"server '{server.name}' is disabled", server=server.name
                )
                unavailable.append(
                    Unavailable(
                        server, entry.tools, error, ToolErrorCode.SERVER_DISABLED
                    )
                )
                continue
            try:
                subject = self._registry.subject(server, user)
                tools = await self._registry.list_tools(server, subject)
            except TetherError as exc:
                excluded[server.name] = f"{exc.code}: {exc.message}"
                unavailable.append(Unavailable(server, entry.tools, exc))
                continue
            allowed = set(entry.tools) if entry.tools is not None else None
            found.extend(
                (server, t)
                for t in tools
                if allowed is None or t.get("name") in allowed
            )
        names = assign_tool_names(
            [(s.id, s.name, str(t.get("name", ""))) for s, t in found], reserved
        )
        definitions = unique_definitions(
            _definition(s, t, names.exposed(s.id, str(t["name"])))
            for s, t in found
            if str(t.get("name", "")).strip()
        )
        return ToolsetView(definitions, names, excluded, tuple(unavailable))

    async def call(
        self,
        ref: str,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        user: str | None,
        raise_errors: bool = False,
        reserved: Sequence[str] = (),
        view: ToolsetView | None = None,
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call a tool by its exposed name; failures come back as error results.

        Pass the same ``reserved`` names as to :meth:`view` (or the ``view`` itself),
        so the exposed names resolve the same way.
        """
        try:
            view = view or await self.view(ref, user=user, reserved=reserved)
            try:
                key = view.names.resolve(name)
            except NotFound:
                unavailable = _unavailable(view, name)
                if unavailable is None:
                    raise
                if raise_errors:
                    raise unavailable.error from None
                return result_from_error(unavailable.error, code=unavailable.code)
            server = await self._stores.servers.get(key.server_id)
            if server is None:
                raise NotFound(f"the server of tool '{name}' was deleted")
            subject = self._registry.subject(server, user)
        except TetherError as exc:
            if raise_errors:
                raise
            return result_from_error(exc)
        return await self._registry.call(
            server,
            subject,
            key.tool_name,
            arguments,
            raise_errors=raise_errors,
            progress=progress,
        )


def _unavailable(view: ToolsetView, name: str) -> Unavailable | None:
    """The left-out server ``name`` belongs to, if any (so the call can say why).

    A tool on a left-out server's allow-list (by its original or provider-safe name)
    belongs to that server; failing that, a server whose tools are unknown because the
    user has not connected it (``AuthorizationRequired``) is the likeliest owner.
    Anything else stays an unknown tool.
    """
    for unavailable in view.unavailable:
        tools = unavailable.tools or ()
        if name in tools or name in {safe_name(tool) for tool in tools}:
            return unavailable
    for unavailable in view.unavailable:
        if unavailable.tools is None and isinstance(
            unavailable.error, AuthorizationRequired
        ):
            return unavailable
    return None
