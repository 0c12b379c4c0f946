"""The OAuth routes a browser reaches: callback, metadata document, connect link.

These are the callback, the client ID metadata document, and the end-user "connect
your account" link.

The callback may land on any worker: the pending authorization is in the store, taken
once by ``state`` (design-notes S9). Which user the callback belongs to comes from the
browser's signed session, written when that same browser started the flow; so a callback
replayed in another browser is refused (CB-3, login CSRF).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.responses import JSONResponse, RedirectResponse, Response

from tether.errors import CallbackRejected, Forbidden, NotFound
from tether.web.config import CALLBACK_PATH, METADATA_PATH
from tether.web.flows import forget_flow, remember_flow
from tether.web.pages import RETURN_TO, html_errors, render, with_params
from tether.web.security import TetherDep, check_csrf

__all__ = ["ConnectLinks", "router"]

_LINK_TTL: Final = timedelta(minutes=10)


class ConnectLinks:
    """Signed, expiring links that start an end user's connect in their browser.

    The app asks the API for a link (it knows its user; Tether does not), and sends the
    user's browser to it. The signature binds server, user and return URL.
    """

    def __init__(self, secret: str) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="tether.connect-link")

    def make(self, server: str, user: str, back: str) -> str:
        """A token for :meth:`read`."""
        return self._s.dumps({"server": server, "user": user, "back": back})

    def read(self, token: str) -> dict[str, str]:
        """The link's content.

        Raises:
            CallbackRejected: Tampered or expired link.
        """
        try:
            data = self._s.loads(token, max_age=int(_LINK_TTL.total_seconds()))
        except SignatureExpired:
            raise CallbackRejected(
                "this connect link has expired", hint="start again from the app"
            ) from None
        except BadSignature:
            raise CallbackRejected("this connect link is not valid") from None
        return {str(k): str(v) for k, v in dict(data).items()}


router = APIRouter(tags=["oauth"])


@router.get(CALLBACK_PATH, dependencies=[Depends(html_errors)], include_in_schema=False)
async def oauth_callback(request: Request, tether: TetherDep) -> Response:
    """Finish a connect; back to where it started, or a result page."""
    state = str(request.query_params.get("state", ""))
    flow = forget_flow(request, state) or {}
    user = flow.get("user")
    back = str(flow.get("back") or "")
    if back and not back.startswith("/admin"):
        request.scope[RETURN_TO] = back  # a failure goes back to the host app too
    info = await tether.complete(_params(request), user=str(user) if user else None)
    if back:
        return RedirectResponse(
            with_params(
                back, tether_status=info.status, tether_server=info.server_name
            ),
            303,
        )
    return render(request, "connected.html", {"info": info})


def _params(request: Request) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        out[key] = values[0] if len(values) == 1 else values
    return out


@router.get(METADATA_PATH, include_in_schema=False)
async def client_metadata(tether: TetherDep) -> Response:
    """The client ID metadata document (CIMD-3 … CIMD-7); public and cacheable."""
    if tether.ctx.config.client_metadata_url is None:
        raise NotFound(
            "no client metadata document is served: the public URL is not https",
            hint="set TETHER_PUBLIC_URL to an https URL",
        )
    return JSONResponse(
        tether.client_metadata_document(),
        headers={"Cache-Control": "public, max-age=3600"},
    )


def _read_link(request: Request, token: str) -> dict[str, str]:
    link: ConnectLinks = request.app.state.connect_links
    data = link.read(token)
    back = data["back"]
    if back and not request.app.state.web.return_url_allowed(back):
        raise Forbidden("the return URL is not allowed", hint="add it to return_urls")
    return data


@router.get("/connect", dependencies=[Depends(html_errors)], include_in_schema=False)
async def connect_page(
    request: Request, tether: TetherDep, token: Annotated[str, Query()]
) -> Response:
    """The "connect your account" page: what is connected, for whom; then Continue.

    The connect starts only from this page's form (CSRF-protected), so a link sent by
    someone else cannot silently attach the visitor's account to another user.
    """
    data = _read_link(request, token)
    server = await tether.servers.get(data["server"])
    app, _, user = data["user"].rpartition("/")
    context = {"server": server, "app": app, "user": user, "token": token}
    context["back"] = data["back"]
    return render(request, "connect.html", context)


@router.post("/connect", dependencies=[Depends(html_errors)], include_in_schema=False)
async def connect_start(
    request: Request,
    tether: TetherDep,
    token: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Start the end user's connect and send the browser to the authorization server."""
    check_csrf(request, csrf)
    data = _read_link(request, token)
    started = await tether.connect(data["server"], user=data["user"])
    remember_flow(request, started, data["user"], data["back"])
    return RedirectResponse(started.authorization_url, 303)


def connect_link_url(
    base_url: str, links: ConnectLinks, server: str, user: str, back: str
) -> str:
    """The absolute URL of a connect link."""
    return f"{base_url}/connect?" + urlencode({"token": links.make(server, user, back)})
