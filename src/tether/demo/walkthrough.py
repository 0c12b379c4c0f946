"""``tether demo --headless``: the newcomer's walkthrough, scripted over HTTP (issue 10 item 10).

What a person does in a browser, done by an HTTP client that only reads pages and submits
their forms (no browser, no JSON API shortcut): sign in to the admin pages with the admin
key, press Connect, fill the authorization server's sign-in and consent forms, land back on
the server page showing Connected, list the tools, call one, look at the Jobs page, and
Disconnect. Each step is reported through ``say``; a step that does not see what a person
would see raises :class:`~tether.errors.InvalidResponse` naming the step.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx2

from tether.demo.stack import DEMO_PASSWORD, DEMO_USER, DemoStack
from tether.errors import InvalidResponse

__all__ = ["Form", "forms_of", "walk"]

_MAX_HOPS = 20
STEPS = 8


@dataclass(slots=True)
class Form:
    """One ``<form>`` of a page: its id, action and named inputs' values."""

    id: str | None
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(a.get("id"), a.get("action", ""))
            self.forms.append(self._open)
        elif tag in ("input", "button") and self._open is not None and a.get("name"):
            self._open.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms_of(page: str) -> list[Form]:
    """Every form of an HTML page."""
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def _form(
    page: str, step: str, *, id: str | None = None, action: str | None = None
) -> Form:
    for form in forms_of(page):
        if (id is None or form.id == id) and (action is None or form.action == action):
            return form
    raise InvalidResponse(f"the page has no form {id or action!r}", step=step)


def _text_of(page: str, element_id: str) -> str | None:
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', page, re.S)
    return html.unescape(found.group(1)).strip() if found else None


class _Browser:
    """Cookies, redirects one hop at a time, and the URL of the page now shown."""

    def __init__(self, client: httpx2.AsyncClient, step: str = "") -> None:
        self.client = client
        self.url = ""
        self.step = step

    async def open(
        self, method: str, url: str, data: dict[str, str] | None = None
    ) -> str:
        """Request ``url`` and follow redirects; return the final page's HTML."""
        for _ in range(_MAX_HOPS):
            answer = await self.client.request(method, url, data=data)
            if answer.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, answer.headers["location"])
                method, data = "GET", None
                continue
            self.url = url
            if answer.status_code >= 400:
                shown = _text_of(answer.text, "error") or _text_of(
                    answer.text, "form-error"
                )
                raise InvalidResponse(
                    f"{url.split('?')[0]} answered {answer.status_code}"
                    + (f": {shown}" if shown else ""),
                    step=self.step,
                )
            return answer.text
        raise InvalidResponse(f"more than {_MAX_HOPS} redirects", step=self.step)

    async def submit(self, form: Form, **values: str) -> str:
        """Submit ``form`` (its hidden fields plus ``values``) from the current page."""
        return await self.open(
            "POST", urljoin(self.url, form.action), {**form.fields, **values}
        )


def _expect(condition: bool, step: str, message: str) -> None:
    if not condition:
        raise InvalidResponse(message, step=step)


async def walk(stack: DemoStack, say: Callable[[str], None]) -> None:
    """Run the walkthrough against a started demo stack.

    Raises:
        InvalidResponse: A step did not show what it should (the step is named).
    """
    base = stack.base_url
    editor = f"{base}/admin/servers/{stack.server_id}"
    async with httpx2.AsyncClient(timeout=60.0) as client:
        b = _Browser(client)

        b.step = "sign in"
        page = await b.open("GET", f"{base}/admin/")
        page = await b.submit(
            _form(page, b.step, action="/admin/login"), api_key=stack.admin_key
        )
        _expect(
            'id="servers"' in page and ">demo</a>" in page,
            b.step,
            "the server list does not show 'demo'",
        )
        say(
            f"[1/{STEPS}] signed in to {stack.admin_url} with the admin key; server 'demo' is listed"
        )

        b.step = "connect"
        page = await b.open("GET", editor)
        _expect(
            _text_of(page, "connection-status") == "Disconnected",
            b.step,
            "the server is not Disconnected",
        )
        page = await b.submit(
            _form(page, b.step, action=f"/admin/servers/{stack.server_id}/connect")
        )
        _expect(
            b.url.startswith(stack.issuer),
            b.step,
            f"Connect did not lead to {stack.issuer}",
        )
        login = _form(page, b.step, id="login-form")
        say(
            f"[2/{STEPS}] pressed Connect: the authorization server shows its sign-in page"
        )

        b.step = "sign in at the authorization server"
        page = await b.submit(login, username=DEMO_USER, password=DEMO_PASSWORD)
        consent = _form(page, b.step, id="consent-form")
        scopes = ", ".join(re.findall(r"<li>(.*?)</li>", page))
        say(
            f"[3/{STEPS}] signed in as {DEMO_USER}; the consent page asks for: {scopes}"
        )

        b.step = "consent"
        page = await b.submit(consent)
        status = _text_of(page, "connection-status")
        back = b.url.split("?")[0]
        _expect(
            back == editor, b.step, f"the callback led to {back}, not the server page"
        )
        _expect(
            status == "Connected",
            b.step,
            f"back at the server page the status is {status!r}",
        )
        say(f"[4/{STEPS}] allowed: back at the server page, status Connected")

        b.step = "list tools"
        page = await b.open("GET", f"{editor}/tools")
        tools = re.findall(r'<fieldset class="tool" id="tool-([^"]+)"', page)
        _expect("add" in tools, b.step, f"the tools page lists {tools}, no 'add'")
        say(f"[5/{STEPS}] tools: {', '.join(tools)}")

        b.step = "call a tool"
        page = await b.submit(
            _form(
                page, b.step, action=f"/admin/servers/{stack.server_id}/tools/add/call"
            ),
            **{"arg.a": "2", "arg.b": "40"},
        )
        result = re.search(r'id="call-result".*?<pre>(.*?)</pre>', page, re.S)
        _expect(
            result is not None and "42" in result.group(1),
            b.step,
            "add(2, 40) did not show 42",
        )
        say(f"[6/{STEPS}] called add(a=2, b=40) from the tools browser: 42")

        b.step = "jobs"
        page = await b.open("GET", f"{base}/admin/jobs")
        jobs = re.findall(r'<tr id="job-([^"]+)"', page)
        _expect(
            {"refresh", "tools", "health"} <= set(jobs),
            b.step,
            f"the Jobs page lists {jobs}",
        )
        say(f"[7/{STEPS}] the Jobs page shows the background jobs: {', '.join(jobs)}")

        b.step = "disconnect"
        page = await b.open("GET", editor)
        page = await b.submit(
            _form(page, b.step, action=f"/admin/servers/{stack.server_id}/disconnect")
        )
        status = _text_of(page, "connection-status")
        _expect(
            status == "Disconnected",
            b.step,
            f"after Disconnect the status is {status!r}",
        )
        notice = _text_of(page, "notice") or ""
        say(f"[8/{STEPS}] pressed Disconnect: {notice}")
