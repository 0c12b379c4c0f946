"""A scripted stand-in for the hub's fetcher, for error injection without a peer.

Every request is recorded as a :class:`Sent`; a subclass (or a test) says how to answer
by overriding :meth:`FakeFetcher.answer`, which may also raise a Tether error as the
real fetcher would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.net.fetch import Fetcher, HttpResponse, NetworkProfile
from tether.net.policy import NetworkPolicy


@dataclass(frozen=True)
class Sent:
    """One request the hub sent."""

    method: str
    url: str
    step: str
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    json_body: Any = None


class FakeFetcher(Fetcher):
    """Records requests and answers them with :meth:`answer`."""

    def __init__(self) -> None:
        super().__init__(NetworkPolicy())
        self.requests: list[Sent] = []

    def answer(self, sent: Sent) -> HttpResponse:
        """The response to ``sent``; override (raise to inject a failure)."""
        raise NotImplementedError

    async def request(
        self,
        method: str,
        url: str,
        *,
        profile: NetworkProfile,
        server: str | None,
        step: str,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> HttpResponse:
        """Record the request, then answer it."""
        sent = Sent(method, url, step, dict(headers or {}), dict(form or {}), json_body)
        self.requests.append(sent)
        return self.answer(sent)
