"""Toolsets: what an agent may use (the reference's agent ↔ MCP server attachments).

A toolset names servers, each with an optional allow-list of original tool names
(``None`` = every tool; an empty list is refused rather than read as "all", unlike the
design-notes R2.3). It yields LLM-ready tool definitions with collision-free,
provider-safe names (:mod:`tether.mcp.naming`) and routes a call by exposed name back to
(server, original name). Export and import refer to servers by name (design-notes R3.22).

Views are computed once per (toolset, user, reserved names) and kept in a
:class:`~tether.hub.cache.ViewCache` (issue 9): a call routes by a dictionary lookup,
with no store read. A view is dropped when its toolset is edited, when one of its
servers changes, and when one of its servers' tool lists or connections changes (the
:class:`~tether.hub.tools.ToolRegistry` listeners, fed by ``Connections.on_change`` and
``notifications/tools/list_changed``). A change made by another worker sends no event:
a view older than :data:`VIEW_TTL` is still served once and rebuilt in the background.
A view is built by listing its servers' tools concurrently (at most :data:`FAN_OUT` at
a time), each within its own deadline (the server's ``timeout_seconds``), so one slow
or failing server leaves the others' tools in the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from tether.errors import (
    AuthorizationRequired,
    NotFound,
    TetherError,
    UsageError,
    ValidationFailed,
)
from tether.hub.audit import Auditor
from tether.hub.cache import SERVER_TTL, ViewCache
from tether.hub.clock import Clock
from tether.hub.tools import FAN_OUT, ToolRegistry
from tether.mcp.naming import ToolKey, ToolNames, assign_tool_names, safe_name
from tether.mcp.render import ToolDefinition, unique_definitions
from tether.mcp.results import ToolErrorCode, ToolResult, result_from_error
from tether.mcp.session import ProgressCallback
from tether.store.base import (
    ServerRecord,
    Stores,
    ToolCacheEntry,
    Toolset,
    ToolsetEntry,
)

__all__ = ["FAN_OUT", "VIEW_TTL", "ToolsetService", "ToolsetView", "Unavailable"]

logger = logging.getLogger(__name__)

MAX_NAME = 100
VIEW_TTL = SERVER_TTL
"""Age after which a cached view is rebuilt in the background (another worker's edits)."""


@dataclass(frozen=True, slots=True)
class ToolsetView:
    """A toolset's tools for one user at one moment.

    Attributes:
        tools: The definitions to hand to the model (render with
            :func:`tether.mcp.render.render_tools`).
        names: Exposed name ↔ (server id, original name).
        excluded: Server name → why its tools are left out (disabled, not connected…).
        unavailable: The same servers with the error a call to their tools returns.
        servers: Server id → record, for the servers whose tools are in the view (a
            call routes with it, without reading the store).
    """

    tools: tuple[ToolDefinition, ...]
    names: ToolNames
    excluded: Mapping[str, str] = field(default_factory=dict)
    unavailable: tuple[Unavailable, ...] = ()
    servers: Mapping[str, ServerRecord] = field(default_factory=dict)


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
        self._views: ViewCache[_ViewKey, ToolsetView] = ViewCache(clock, VIEW_TTL)
        self._background: set[asyncio.Task[None]] = set()
        self.fan_out = FAN_OUT
        #: (toolset, server, absent names) already warned about (issue 10 item 9)
        self._warned: set[tuple[str, str, tuple[str, ...]]] = set()
        registry.on_tools_changed(self.forget_server)

    # ------------------------------------------------------------------ invalidation

    def forget_server(self, server_id: str) -> None:
        """Drop the views naming a server (its record, tools or connection changed)."""
        self._views.drop(server_id)

    def forget_toolset(self, toolset_id: str) -> None:
        """Drop a toolset's views (it was edited or deleted)."""
        self._views.drop(toolset_id)

    async def aclose(self) -> None:
        """Stop background rebuilds."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def settle(self) -> None:
        """Wait for the background rebuilds started so far (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background))

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
                absent = await self._not_offered(server, names)
                if absent:
                    fields[f"servers.{server.name}.tools"] = (
                        f"the server has no tool {', '.join(map(repr, absent))}"
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
                hint="register the servers first, or fix the names (`tether tools "
                "list SERVER --refresh` shows a server's tools now)",
            )
        return tuple(entries)

    async def _not_offered(
        self, server: ServerRecord, names: Sequence[str]
    ) -> list[str]:
        """Allow-listed names the server's known tool list lacks (issue 10 item 9).

        Known means cached for the shared connection: nothing is fetched (a toolset
        can be written while a server is offline); a list learnt later is checked
        when the toolset's view is built (:meth:`_warn_absent`).
        """
        if server.auth_mode == "oauth" and server.oauth.per_user:
            return []
        cached = await self._stores.tools.get(server.id, "shared")
        if cached is None:
            return []
        offered = {str(t.get("name")) for t in cached.tools}
        return [name for name in names if name not in offered]

    def _warn_absent(
        self,
        toolset: Toolset,
        server: ServerRecord,
        entry: ToolsetEntry,
        tools: Sequence[Mapping[str, Any]],
    ) -> None:
        """Warn once when a now-known tool list lacks an allow-listed name."""
        if entry.tools is None:
            return
        offered = {t.get("name") for t in tools}
        absent = tuple(name for name in entry.tools if name not in offered)
        key = (toolset.id, server.id, absent)
        if not absent or key in self._warned:
            return
        self._warned.add(key)
        logger.warning(
            "toolset '%s': server '%s' has no tool %s; the allow-list entry offers "
            "nothing (edit the toolset, or check the server)",
            toolset.name,
            server.name,
            ", ".join(map(repr, absent)),
        )

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
        self.forget_toolset(current.id)
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
        self.forget_toolset(current.id)
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
        """A portable description referring to servers by name (design-notes R3.22)."""
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
        self,
        ref: str,
        *,
        user: str | None,
        reserved: Sequence[str] = (),
        refresh: bool = False,
    ) -> ToolsetView:
        """The toolset's tools for ``user``; unusable servers are left out with a reason.

        Served from the view cache (see the module docstring); ``refresh`` builds it
        anew.

        Raises:
            NotFound: No such toolset.
            TetherError: The store failed.
        """
        key = _ViewKey(ref, user, tuple(reserved))
        cached = None if refresh else self._views.get(key)
        if cached is not None:
            view, stale = cached
            if stale:
                self._rebuild_in_background(key)
            return view
        return await self._views.build(key, lambda: self._build(key))

    def _rebuild_in_background(self, key: _ViewKey) -> None:
        if any(task.get_name() == repr(key) for task in self._background):
            return

        async def run() -> None:
            try:
                await self._views.build(key, lambda: self._build(key))
            except TetherError:
                self._views.discard(key)  # e.g. deleted by another worker

        task = asyncio.get_running_loop().create_task(run(), name=repr(key))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _build(self, key: _ViewKey) -> tuple[ToolsetView, frozenset[str]]:
        toolset = await self.get(key.ref)
        listed = await self._list_all(toolset.entries, key.user)
        excluded: dict[str, str] = {}
        unavailable: list[Unavailable] = []
        found: list[tuple[ServerRecord, Mapping[str, Any]]] = []
        for entry, outcome in zip(toolset.entries, listed, strict=True):
            if isinstance(outcome, Unavailable):
                excluded[outcome.server.name] = (
                    "disabled"
                    if outcome.code is ToolErrorCode.SERVER_DISABLED
                    else f"{outcome.error.code}: {outcome.error.message}"
                )
                unavailable.append(outcome)
            elif outcome is not None:
                server, tools = outcome
                self._warn_absent(toolset, server, entry, tools)
                allowed = set(entry.tools) if entry.tools is not None else None
                found.extend(
                    (server, t)
                    for t in tools
                    if allowed is None or t.get("name") in allowed
                )
        names = assign_tool_names(
            [(s.id, s.name, str(t.get("name", ""))) for s, t in found], key.reserved
        )
        definitions = unique_definitions(
            _definition(s, t, names.exposed(s.id, str(t["name"])))
            for s, t in found
            if str(t.get("name", "")).strip()
        )
        view = ToolsetView(
            definitions,
            names,
            excluded,
            tuple(unavailable),
            {s.id: s for s, _ in found},
        )
        tags = frozenset({toolset.id, *(e.server_id for e in toolset.entries)})
        return view, tags

    async def _list_all(
        self, entries: Sequence[ToolsetEntry], user: str | None
    ) -> list[_Listed]:
        """Each entry's server and tools (or why not), listed concurrently.

        At most :attr:`fan_out` servers at once; each within its own deadline. The
        server records and cached lists are read in one go, and the fetched lists
        are written a batch at a time (G-31).

        Raises:
            TetherError: The store failed reading a server record.
        """
        results: list[_Listed | BaseException] = [None] * len(entries)
        limiter = anyio.CapacityLimiter(max(1, self.fan_out))
        servers = await self._stores.servers.get_many([e.server_id for e in entries])
        targets = []
        for server in servers.values():
            with contextlib.suppress(TetherError):  # reported by _list_one
                targets.append((server, self._registry.subject(server, user)))
        cached = await self._registry.cached(targets)

        async def one(index: int, entry: ToolsetEntry) -> None:
            async with limiter:
                try:
                    results[index] = await self._list_one(
                        entry, user, servers.get(entry.server_id), cached
                    )
                except TetherError as exc:  # a store failure: the view fails
                    results[index] = exc

        async with anyio.create_task_group() as group:
            for index, entry in enumerate(entries):
                group.start_soon(one, index, entry)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        listed = [r for r in results if not isinstance(r, BaseException)]
        # subscribe once every list is in, not while they are fetched (R6.4.4)
        for item in listed:
            if isinstance(item, tuple):
                server, _ = item
                self._registry.watch(server.id, self._registry.subject(server, user))
        return listed

    async def _list_one(
        self,
        entry: ToolsetEntry,
        user: str | None,
        server: ServerRecord | None,
        cached: Mapping[tuple[str, str], ToolCacheEntry],
    ) -> _Listed:
        if server is None:
            return None
        if not server.enabled:
            error: TetherError = UsageError(
                f"server '{server.name}' is disabled", server=server.name
            )
            return Unavailable(
                server, entry.tools, error, ToolErrorCode.SERVER_DISABLED
            )
        try:
            subject = self._registry.subject(server, user)
        except TetherError as exc:
            return Unavailable(server, entry.tools, exc)
        tools = await self._registry.list_within(
            server, subject, cached=cached, watch=False
        )
        if isinstance(tools, TetherError):
            return Unavailable(server, entry.tools, tools)
        self._registry.release(server.id, subject)  # the view holds lists (R6.4.7)
        return server, tools

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
        so the exposed names resolve the same way. The cached view routes the call;
        a name it does not know makes it build the view anew once (the tool, or its
        server's availability, may have changed where no event reached this worker).
        """
        try:
            current = view or await self.view(ref, user=user, reserved=reserved)
            key = current.names.by_exposed.get(name)
            if key is None and view is None:
                current = await self.view(
                    ref, user=user, reserved=reserved, refresh=True
                )
                key = current.names.by_exposed.get(name)
            if key is None:
                unavailable = _unavailable(current, name)
                if unavailable is None:
                    raise NotFound(
                        f"no tool is exposed as {name[:100]!r}", step="tool_call"
                    )
                if raise_errors:
                    raise unavailable.error from None
                return result_from_error(unavailable.error, code=unavailable.code)
            server = await self._route(current, key, name)
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

    async def _route(self, view: ToolsetView, key: ToolKey, name: str) -> ServerRecord:
        """The server a resolved tool goes to: from the view, else from the store."""
        server = view.servers.get(key.server_id)
        if server is None:
            server = await self._stores.servers.get(key.server_id)
        if server is None:
            raise NotFound(f"the server of tool '{name}' was deleted")
        return server


@dataclass(frozen=True, slots=True)
class _ViewKey:
    """What a cached view is for: the toolset reference, the user, reserved names."""

    ref: str
    user: str | None
    reserved: tuple[str, ...]


_Listed = tuple[ServerRecord, Sequence[Mapping[str, Any]]] | Unavailable | None
"""One entry's outcome: its server and tools, why it is left out, or ``None`` (gone)."""


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
