"""A signed cookie binding started connects to the browser that started them.

``remember_flow`` records, under the flow's ``state``, which user started it and where the
browser returns; the callback takes that record once. The cookie is signed (itsdangerous),
lives 10 minutes like the pending authorization, is ``HttpOnly`` and ``SameSite=Lax`` (the
authorization server's redirect back is a top-level GET, so the cookie comes along), and
is scoped to the path the routes are mounted at. It holds no secret: state, a user id and
a URL. It is its own cookie rather than the session, so a host app's session is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any, Final

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.hub.connections import StartedAuthorization

__all__ = ["FlowCookieMiddleware", "forget_flow", "remember_flow"]

KEY: Final = "tether.flows"
_MAX_FLOWS: Final = 8
_MAX_AGE: Final = 600


def remember_flow(
    request: Request, started: StartedAuthorization, user: str | None, back: str
) -> None:
    """Bind a started connect to this browser: its user and where to return."""
    flows: dict[str, Any] = request.scope.setdefault(KEY, {})
    flows[started.state] = {"user": user, "back": back}
    while len(flows) > _MAX_FLOWS:
        flows.pop(next(iter(flows)))


def peek_flow(request: Request, state: str) -> Mapping[str, Any] | None:
    """This browser's record of a flow, left in place."""
    found = request.scope.get(KEY, {}).get(state)
    return found if isinstance(found, Mapping) else None


def forget_flow(request: Request, state: str) -> Mapping[str, Any] | None:
    """Take this browser's record of a flow (once)."""
    found = request.scope.get(KEY, {}).pop(state, None)
    return found if isinstance(found, Mapping) else None


class FlowCookieMiddleware:
    """Loads the flows cookie into the scope and writes it back when it changed."""

    def __init__(
        self, app: ASGIApp, *, secret: str, cookie: str = "tether_flows", secure: bool
    ) -> None:
        self.app = app
        self.cookie = cookie
        self.secure = secure
        self._s = URLSafeTimedSerializer(secret, salt="tether.flows")

    def _load(self, scope: Scope) -> dict[str, Any]:
        raw = Request(scope).cookies.get(self.cookie)
        if not raw:
            return {}
        try:
            data = self._s.loads(raw, max_age=_MAX_AGE)
        except BadSignature:
            return {}
        return dict(data) if isinstance(data, dict) else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` with ``scope["tether.flows"]``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        before = self._load(scope)
        scope[KEY] = json.loads(json.dumps(before))
        path = scope.get("root_path") or "/"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and scope[KEY] != before:
                cookie: SimpleCookie = SimpleCookie()
                flows = scope[KEY]
                cookie[self.cookie] = self._s.dumps(flows) if flows else ""
                morsel = cookie[self.cookie]
                morsel["path"] = path
                morsel["httponly"] = True
                morsel["samesite"] = "lax"
                morsel["max-age"] = _MAX_AGE if flows else 0
                if self.secure:
                    morsel["secure"] = True
                headers = MutableHeaders(scope=message)
                headers.append("Set-Cookie", morsel.OutputString())
            await send(message)

        await self.app(scope, receive, send_with_cookie)
